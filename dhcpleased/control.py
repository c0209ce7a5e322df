"""The control socket, served inside the frontend (control.c).

The parent creates the socket (mode 0660, root:root) and passes it down with CONTROLFD;
the unprivileged frontend accepts on it and relays between dhcpleasectl clients and the
engine or the parent. Clients are the least trusted peers a daemon process talks to, so
nothing a client does may take the frontend down or slow it:

* Each connection's credentials come from the kernel (SO_PEERCRED): anyone but root is
  refused at once, whatever the socket's mode says, so a mistaken chmod or a socket
  moved somewhere else does not open the daemon up.
* A message of an unknown type, of the wrong size or carrying a descriptor is ignored;
  a broken frame (the channel's own checks) closes that one client.
* Replies are routed back by a connection id the frontend assigns and puts in the imsg
  peerid: the pid a client writes in its header is never looked at.
* Everything is bounded: clients (``MAX_CLIENTS``), messages queued to one client
  (``CLIENT_QUEUE``: a client that does not read is dropped, never waited for),
  requests one client may have outstanding (``MAX_INFLIGHT``), and how far clients may
  fill a sibling channel (``SIBLING_HEADROOM``, well below that channel's own limit,
  past which the frontend would treat the sibling as lost).
* EMFILE/ENFILE on accept pauses accepting for a second, as the original does.

The client protocol (every answer carries the request's peerid, which clients ignore):

* CTL_SHOW_INTERFACE_INFO (IfIndex): the engine's CTL_SHOW_INTERFACE_INFO
  (CtlEngineInfo), or CTL_END when the engine does not know the interface.
* CTL_SEND_REQUEST (IfIndex, with a request token): no answer; MANAGE_IF with the token
  to the parent, which manages an interface that is not managed yet (the original sets
  AUTOCONF4, which only root can) and sets a down one up (IFF_UP, as the original does),
  and REQUEST_REBOOT to the engine if it is managed already. The token is one end of a
  SEQPACKET socketpair the client made, holding one CTL_SEND_REQUEST it wrote into the
  other end before closing that: the parent reads the client's credentials (SO_PEERCRED)
  and its request from it itself (:func:`read_request_token`), so the frontend, which
  cannot make sockets, cannot forge one. Without a token only the REQUEST_REBOOT goes.
* CTL_LOG_VERBOSE (Verbose): forwarded to the parent and the engine; CTL_END.
* CTL_RELOAD (Empty): forwarded to the parent, which reloads and answers
  CTL_RELOAD_RESULT (ReloadResult: ok, and the parser's messages when not), relayed.
* CTL_MONITOR (Empty): CTL_MONITOR (Empty) as an acknowledgement, then one
  CTL_MONITOR_EVENT (MonitorEvent) per state change until the client hangs up. The
  first subscriber also forwards CTL_MONITOR to the engine, which sends state changes
  from then on (they are rare: the engine never stops, the frontend drops them when no
  one listens).
* CTL_PROCINFO (Empty): one CTL_PROCINFO (ProcInfo) each for the frontend, the parent
  and the engine, in the order they arrive, then CTL_END.
* CTL_RELEASE (IfIndex): no answer; REQUEST_RELEASE to the engine for a managed
  interface (dhcpleasectl release IF then polls until it shows Released), else ignored.

The CTL_END acknowledgement of CTL_LOG_VERBOSE and CTL_RELOAD_RESULT are additions: they
let dhcpleasectl tell a refused connection from an accepted command, and a failed reload
from one that took.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final, Protocol

from dhcpleased import imsg
from dhcpleased.imsg import HEADER, Header, ImsgError, ImsgType, type_name
from dhcpleased.ipc import Channel, Imsg
from dhcpleased.log import log

MAX_CLIENTS: Final = 64
CLIENT_QUEUE: Final = 64
MAX_INFLIGHT: Final = 4
SIBLING_HEADROOM: Final = 256
ACCEPT_PAUSE: Final = 1.0
ACCEPT_BUDGET: Final = 16  # connections taken per readable event
LISTEN_BACKLOG: Final = 32
ROOT_UID: Final = 0
_UCRED: Final = struct.Struct("=iII")  # struct ucred: pid, uid, gid

# What a client may send, and the payload each must carry.
CLIENT_REQUESTS: Final[dict[ImsgType, type[imsg.Payload]]] = {
    ImsgType.CTL_LOG_VERBOSE: imsg.Verbose,
    ImsgType.CTL_SHOW_INTERFACE_INFO: imsg.IfIndex,
    ImsgType.CTL_SEND_REQUEST: imsg.IfIndex,
    ImsgType.CTL_RELOAD: imsg.Empty,
    ImsgType.CTL_MONITOR: imsg.Empty,
    ImsgType.CTL_PROCINFO: imsg.Empty,
    ImsgType.CTL_RELEASE: imsg.IfIndex,
}


class Forward(Protocol):
    """to_main / to_engine: queue (type, payload, peerid[, descriptor]); False if dropped."""

    def __call__(self, t: ImsgType, data: bytes, peerid: int, fd: int | None = None) -> bool: ...


def forward(
    channel: Channel | None, t: ImsgType, data: bytes, peerid: int, fd: int | None = None
) -> bool:
    """Queue a client's request on a sibling channel unless clients have filled it enough.

    A sibling channel that overflows is fatal for the frontend, so clients get only
    ``SIBLING_HEADROOM`` of its queue; past that their requests are dropped (and ``fd``,
    which is the channel's either way, closed).
    """
    if channel is None or channel.closed or channel.pending >= SIBLING_HEADROOM:
        if fd is not None:
            os.close(fd)
        return False
    channel.compose(t, data, fd=fd, peerid=peerid)
    return True


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that connected, as the kernel recorded them."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


@dataclass(eq=False)
class Client:
    """One accepted connection."""

    id: int
    channel: Channel
    pid: int
    monitor: bool = False
    inflight: int = 0
    procinfo_wait: set[str] = field(default_factory=set)


class Control:
    """control_listen / control_accept / control_dispatch_imsg / control_imsg_relay."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        to_main: Forward,
        to_engine: Forward,
        is_managed: Callable[[int], bool],
        set_verbose: Callable[[int], None],
        procinfo: Callable[[], imsg.ProcInfo],
        max_clients: int = MAX_CLIENTS,
        allowed_uid: int = ROOT_UID,  # the daemon never passes another; tests run unprivileged
    ) -> None:
        sock.setblocking(False)
        self.allowed_uid = allowed_uid
        self._sock = sock
        self._fileno = sock.fileno()
        self.to_main = to_main
        self.to_engine = to_engine
        self.is_managed = is_managed
        self.set_verbose = set_verbose
        self.procinfo = procinfo
        self.max_clients = max_clients
        self.clients: dict[int, Client] = {}
        self.monitoring = False  # the engine was asked for state changes (never undone)
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening = False
        self._paused: asyncio.TimerHandle | None = None
        self._closed = False

    # --- accepting ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start accepting on the running loop (the frontend does so at STARTUP)."""
        if self._closed or self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._listen()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unlisten()
        if self._paused is not None:
            self._paused.cancel()
        for client in list(self.clients.values()):
            client.channel.close()
        self.clients.clear()
        self._sock.close()

    def _listen(self) -> None:
        if not self._listening and not self._closed and self._loop is not None:
            self._loop.add_reader(self._fileno, self._accept)
            self._listening = True

    def _unlisten(self) -> None:
        if self._listening and self._loop is not None:
            self._loop.remove_reader(self._fileno)
        self._listening = False

    def _resume(self) -> None:
        self._paused = None
        self._listen()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BUDGET):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    log.warning("control: accept: %s, pausing", e.strerror)
                    self._unlisten()
                    assert self._loop is not None
                    self._paused = self._loop.call_later(ACCEPT_PAUSE, self._resume)
                elif e.errno != errno.ECONNABORTED:
                    log.warning("control: accept: %s", e.strerror)
                return
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        try:
            pid, uid, _ = peer_credentials(conn)
        except OSError as e:
            log.warning("control: no peer credentials: %s", e.strerror)
            conn.close()
            return
        if uid != self.allowed_uid:
            log.warning("control: refused connection from uid %d (pid %d)", uid, pid)
            conn.close()
            return
        if len(self.clients) >= self.max_clients:
            log.warning("control: too many clients, refused pid %d", pid)
            conn.close()
            return
        cid = self._new_id()
        channel = Channel(
            conn,
            lambda msg: self._dispatch(cid, msg),
            lambda reason: self._lost(cid, reason),
            name=f"control {cid}",
            max_queue=CLIENT_QUEUE,
        )
        self.clients[cid] = Client(cid, channel, pid)
        log.debug("control: client %d (pid %d) connected", cid, pid)
        channel.start()

    def _new_id(self) -> int:
        while True:
            self._next_id = self._next_id % 0xFFFFFFFF + 1
            if self._next_id not in self.clients:
                return self._next_id

    def _lost(self, cid: int, reason: str) -> None:
        client = self.clients.pop(cid, None)
        if client is None:
            return
        if reason == "peer closed":
            log.debug("control: client %d disconnected", cid)
        else:
            log.debug("control: dropped client %d: %s", cid, reason)

    def drop(self, cid: int, reason: str) -> None:
        """Close one client (its channel does not call back for an owner's close)."""
        client = self.clients.get(cid)
        if client is not None:
            client.channel.close()
            self._lost(cid, reason)

    # --- requests from clients ----------------------------------------------------------------
    def _dispatch(self, cid: int, msg: Imsg) -> None:
        """control_dispatch_imsg: bad requests are ignored, never fatal."""
        client = self.clients.get(cid)
        token = msg.fd  # CTL_SEND_REQUEST's only; closed here unless _serve takes it
        try:
            if token is not None and msg.type != ImsgType.CTL_SEND_REQUEST:
                log.debug("control: client %d sent a descriptor, ignored", cid)
                return
            if client is None:
                return
            try:
                t = ImsgType(msg.type)
                cls = CLIENT_REQUESTS[t]
            except (ValueError, KeyError):
                log.debug("control: client %d: unexpected %s, ignored", cid, type_name(msg.type))
                return
            try:
                payload = cls.unpack(msg.data)
            except ImsgError as e:
                log.debug("control: client %d: invalid %s, ignored: %s", cid, type_name(t), e)
                return
            self._serve(client, t, payload, msg.data, token)
            token = None
        finally:
            if token is not None:
                os.close(token)

    def _serve(
        self,
        client: Client,
        t: ImsgType,
        payload: imsg.Payload,
        data: bytes,
        token: int | None = None,
    ) -> None:
        cid = client.id
        if t is ImsgType.CTL_SHOW_INTERFACE_INFO:
            if client.inflight >= MAX_INFLIGHT:
                log.debug("control: client %d: too many requests, ignored", cid)
            elif self.to_engine(t, data, cid):
                client.inflight += 1
        elif t is ImsgType.CTL_SEND_REQUEST:
            assert isinstance(payload, imsg.IfIndex)
            if payload.if_index == 0:
                if token is not None:
                    os.close(token)
                return
            managed = self.is_managed(payload.if_index)
            if managed:
                self.to_engine(ImsgType.REQUEST_REBOOT, data, 0)
            if token is not None:  # root asked: manage it if need be, set it up
                self.to_main(ImsgType.MANAGE_IF, data, 0, token)
            elif not managed:
                log.debug("control: client %d: no request token, not managing it", cid)
        elif t is ImsgType.CTL_RELEASE:
            assert isinstance(payload, imsg.IfIndex)
            if payload.if_index != 0 and self.is_managed(payload.if_index):
                self.to_engine(ImsgType.REQUEST_RELEASE, data, 0)
        elif t is ImsgType.CTL_LOG_VERBOSE:
            assert isinstance(payload, imsg.Verbose)
            self.set_verbose(payload.verbose)
            self.to_main(t, data, 0)
            self.to_engine(t, data, 0)
            self.reply(cid, ImsgType.CTL_END)
        elif t is ImsgType.CTL_RELOAD:
            if client.inflight >= MAX_INFLIGHT:
                log.debug("control: client %d: too many requests, ignored", cid)
            elif self.to_main(t, b"", cid):
                client.inflight += 1
            else:
                busy = imsg.ReloadResult(False, "dhcpleased is busy: reload not attempted")
                self.reply(cid, ImsgType.CTL_RELOAD_RESULT, busy.pack())
        elif t is ImsgType.CTL_MONITOR:
            if not client.monitor:
                if not self.monitoring:  # the engine sends state changes from now on
                    self.monitoring = self.to_engine(t, b"", 0)
                client.monitor = True
                log.debug("control: client %d monitors state changes", cid)
            self.reply(cid, ImsgType.CTL_MONITOR)
        elif t is ImsgType.CTL_PROCINFO:
            if client.procinfo_wait:
                log.debug("control: client %d: procinfo already pending, ignored", cid)
                return
            self.reply(cid, ImsgType.CTL_PROCINFO, self.procinfo().pack())
            client.procinfo_wait = {
                role for role, fwd in (("main", self.to_main), ("engine", self.to_engine))
                if fwd(ImsgType.CTL_PROCINFO, b"", cid)
            }  # fmt: skip
            if not client.procinfo_wait:
                self.reply(cid, ImsgType.CTL_END)

    # --- answers to clients -------------------------------------------------------------------
    def reply(self, cid: int, t: ImsgType, data: bytes = b"") -> None:
        """Queue a message for one client; gone clients are skipped, full ones dropped."""
        client = self.clients.get(cid)
        if client is not None:
            client.channel.compose(t, data, peerid=cid)

    def sibling_reply(self, cid: int, t: ImsgType, data: bytes) -> None:
        """A sibling's answer to a counted request (checked by the frontend): the engine's
        CTL_SHOW_INTERFACE_INFO, the parent's CTL_RELOAD_RESULT."""
        client = self.clients.get(cid)
        if client is None:
            return
        client.inflight = max(0, client.inflight - 1)
        self.reply(cid, t, data)

    def procinfo_reply(self, role: str, cid: int, data: bytes) -> None:
        """A sibling's PROCINFO: pass it on; CTL_END once both siblings have answered."""
        client = self.clients.get(cid)
        if client is None or role not in client.procinfo_wait:
            return
        client.procinfo_wait.discard(role)
        self.reply(cid, ImsgType.CTL_PROCINFO, data)
        if not client.procinfo_wait:
            self.reply(cid, ImsgType.CTL_END)

    def monitor_event(self, data: bytes) -> None:
        """Fan a state change out to every subscriber; a stuck one is dropped, not awaited."""
        for client in list(self.clients.values()):
            if client.monitor:
                client.channel.compose(ImsgType.CTL_MONITOR_EVENT, data)


def read_request_token(fd: int, daemon_pids: Collection[int], uid: int = ROOT_UID) -> int:
    """The interface a root client asked for, read by the parent from its request token.

    Takes ``fd``.  Raises ImsgError unless ``fd`` is a connected SEQPACKET socket whose
    peer, as the kernel recorded it, is a ``uid`` process outside the daemon (the
    daemon's own socketpairs and the listening socket have root's credentials too), and
    holds a well-formed CTL_SEND_REQUEST: only the process at the other end can have
    written it, and the frontend can make no socket of its own.  Never blocks.
    """
    try:
        tok = socket.socket(fileno=fd)
    except OSError as e:
        os.close(fd)
        raise ImsgError(f"request token: {e.strerror}") from None
    with tok:
        try:
            if tok.family != socket.AF_UNIX or tok.type != socket.SOCK_SEQPACKET:
                raise ImsgError("request token is not a unix SEQPACKET socket")
            if tok.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                raise ImsgError("request token is a listening socket")
            pid, peer_uid, _ = peer_credentials(tok)
            if peer_uid != uid:
                raise ImsgError(f"request token made by uid {peer_uid}")
            if pid in daemon_pids:
                raise ImsgError("request token made by the daemon itself")
            data = tok.recv(HEADER.size + imsg.IfIndex.MAX_SIZE + 1, socket.MSG_DONTWAIT)
        except BlockingIOError:
            raise ImsgError("request token holds no request") from None
        except OSError as e:
            raise ImsgError(f"request token: {e.strerror}") from None
    hdr = Header.unpack(data[: HEADER.size]) if len(data) >= HEADER.size else None
    if hdr is None or hdr.length != len(data) or hdr.type != ImsgType.CTL_SEND_REQUEST:
        raise ImsgError("request token holds no CTL_SEND_REQUEST")
    return imsg.IfIndex.unpack(data[HEADER.size :]).if_index


def create_socket(path: str, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """The parent's control_init: a listening SOCK_SEQPACKET socket, 0660, root:root.

    A stale socket from an earlier run is removed; anything else at ``path`` is left
    alone and reported (FileExistsError). The umask makes the socket 0660 from birth,
    so there is no window in which it is more open than that.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a socket", path)
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    old = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        os.chown(path, 0, 0)
        os.chmod(path, 0o660)
        sock.listen(backlog)
    except OSError:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return sock
