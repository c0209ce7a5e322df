"""rtnetlink through pyroute2's message classes: the glue the parent and the frontend share.

pyroute2 builds and decodes every netlink message the daemon sends or reads (DESIGN.md);
what is here only fills in its messages, moves their bytes over a socket and turns its
answers into what the callers need.

**How pyroute2 is imported.** Its package ``__init__`` imports about 230 modules (NDB,
IPDB, conntrack, nftables, wireguard, multiprocessing users, ...): 65-90 ms and +13 MB of
RSS over asyncio.  No lighter entry point is offered: ``pyroute2.minimal`` runs that
``__init__`` first, and the ``pyroute2-minimal`` distribution is the same package with an
``__init__`` nearly as heavy.  The message classes need none of it, so the package module
is created from its spec *without executing* ``__init__`` and the submodules below are
imported as usual: 36 modules, +9-11 ms, +2 MB.  It depends on those submodules not
reaching back into the package's namespace, which holds for the pinned range
(pyproject.toml) and is checked by ``tests/unit/test_netlink.py`` (the modules loaded, the
version, no process spawned at import); a later ``import pyroute2`` in the same process
would get the bare package, and nothing in the daemon does that.  ``pyroute2.iproute``'s
``AsyncIPRoute`` would add another ~25 ms and ~5 MB (~120 modules) to the parent for the
same few requests, so the parent drives its own socket (:class:`Rtnl`).

pyroute2 must be 0.9.7 or later: 0.9.5 and 0.9.6 run ``uname -p`` and ``file`` in
subprocesses when ``pyroute2.config`` is imported (``platform.uname()`` resolved in
full, ``platform.architecture()``), in every process that imports a message class.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import os
import socket
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Final


def _package_without_init() -> None:
    """Put a ``pyroute2`` package module in sys.modules without running its ``__init__``."""
    if "pyroute2" in sys.modules:  # imported already, in full or like this
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("pyroute2 is not installed", name="pyroute2")
    sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)


_package_without_init()

from pyroute2.netlink import (  # noqa: E402
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    nlmsg,
)
from pyroute2.netlink.marshal import Marshal  # noqa: E402
from pyroute2.netlink.rtnl import (  # noqa: E402
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTMGRP_LINK,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import IFF_RUNNING, IFF_UP, ifinfmsg, state_by_name  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

from dhcpleased import defs  # noqa: E402

__all__ = [
    "IFF_UP",
    "NLM_F_CREATE",
    "NLM_F_REPLACE",
    "RTMGRP_LINK",
    "RTM_DELADDR",
    "RTM_DELROUTE",
    "RTM_GETADDR",
    "RTM_GETLINK",
    "RTM_NEWADDR",
    "RTM_NEWLINK",
    "RTM_NEWROUTE",
    "ifaddrmsg",
    "ifinfmsg",
    "rtmsg",
]

SOL_NETLINK: Final = 270
NETLINK_EXT_ACK: Final = 11  # the kernel's reason in the error (not NETLINK_CAP_ACK:
NETLINK_GET_STRICT_CHK: Final = 12  # pyroute2 finds that reason past the echoed request)
RECV_SIZE: Final = 65536  # the kernel never builds a netlink datagram larger than 32 KiB
MAX_DUMP: Final = 4096  # messages: one interface's addresses are a handful
_MAX_READS: Final = 64  # datagrams per readable event: the loop always gets a turn
DEFAULT_TIMEOUT: Final = 10.0  # rtnetlink answers inside send(); this is a broken kernel


class _donemsg(nlmsg):  # type: ignore[misc]
    """NLMSG_DONE's payload, the dump's status (pyroute2 reads it only with an ext-ack)."""

    fields = (("error", "i"),)


class _RtnlMarshal(Marshal):  # type: ignore[misc]
    """pyroute2's datagram splitter, knowing only the message types the daemon reads."""

    msg_map: Final = {
        NLMSG_DONE: _donemsg,
        RTM_NEWLINK: ifinfmsg,
        RTM_DELLINK: ifinfmsg,
        RTM_NEWADDR: ifaddrmsg,
        RTM_NEWROUTE: rtmsg,
    }


_MARSHAL: Final = _RtnlMarshal()


def parse(data: bytes) -> list[Any]:
    """pyroute2's messages in one datagram from the kernel; what does not decode is dropped.

    An answer to a request carries ``msg['header']['error']`` (None for an ACK).
    """
    out: list[Any] = []
    try:
        for msg in _MARSHAL.parse(data):
            out.append(msg)
    except Exception:  # kernel bytes, but a bug in a decoder must not kill us
        pass
    return out


def message(msg: Any, mtype: int, flags: int, seq: int = 0) -> bytes:
    """The bytes of a filled-in pyroute2 message (pid 0: the kernel fills it in)."""
    msg["header"]["type"] = mtype
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq & 0xFFFFFFFF
    msg.encode()
    return bytes(msg.data)


def error_of(msg: Any) -> OSError | None:
    """The error an NLMSG_ERROR (or a failed NLMSG_DONE) reports, as OSError; None for ACK."""
    err = msg["header"].get("error")
    if err is None:
        status = msg.get("error", 0) if msg["header"]["type"] == NLMSG_DONE else 0
        return OSError(-status, os.strerror(-status)) if status < 0 else None
    code = getattr(err, "code", None) or getattr(err, "errno", None) or errno.EPROTO
    text = next((a for a in err.args[1:] if isinstance(a, str) and a), "")
    return OSError(code, text or os.strerror(code))


# --- link events (frontend) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One RTM_NEWLINK/RTM_DELLINK, reduced to what the frontend's UPDATE_IF needs."""

    deleted: bool
    if_index: int
    if_name: str
    hw_address: bytes
    up: bool  # IFF_UP and IFF_RUNNING (RUNNING follows carrier on Linux)
    link_state: int  # IF_OPER_* from IFLA_OPERSTATE (IF_OPER_UNKNOWN when absent)
    arphrd: int  # ifi_type, ARPHRD_ETHER (1) for Ethernet


def link_event(msg: Any) -> LinkEvent | None:
    """A link event from a decoded RTM_NEWLINK/RTM_DELLINK, None for anything else.

    AF_BRIDGE messages on the same group describe bridge *ports* (an AF_BRIDGE DELLINK
    means "left the bridge", not "interface gone").  The hardware address is read only
    for Ethernet: pyroute2 decodes IFLA_ADDRESS as exactly six bytes, and a tunnel's
    four-byte one makes it format a traceback, which a sandboxed process must not do.
    """
    mtype = msg["header"]["type"]
    if mtype not in (RTM_NEWLINK, RTM_DELLINK) or msg.get("family") != socket.AF_UNSPEC:
        return None
    index, flags, arphrd = msg.get("index", 0), msg.get("flags", 0), msg.get("ifi_type", 0)
    if index <= 0:
        return None
    name = msg.get_attr("IFLA_IFNAME") or ""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    hw = b""
    if arphrd == defs.ARPHRD_ETHER:
        mac = msg.get_attr("IFLA_ADDRESS")
        if isinstance(mac, str):
            try:
                hw = bytes.fromhex(mac.replace(":", ""))
            except ValueError:
                hw = b""
    oper = state_by_name.get(msg.get_attr("IFLA_OPERSTATE"), defs.IF_OPER_UNKNOWN)
    up = (flags & (IFF_UP | IFF_RUNNING)) == (IFF_UP | IFF_RUNNING)
    return LinkEvent(
        mtype == RTM_DELLINK, index, name[: defs.IF_NAMESIZE - 1], hw, up, oper, arphrd
    )


def link_dump_request(seq: int) -> bytes:
    """RTM_GETLINK for every link; answered by RTM_NEWLINKs and NLMSG_DONE with ``seq``."""
    return message(ifinfmsg(), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq)


def dump_state(msg: Any, seq: int) -> str | None:
    """Where a message stands in the dump ``seq``: "part" (with DUMP_INTR: "intr"),
    "done", "failed", or None when it is not part of that dump (a multicast event)."""
    header = msg["header"]
    if seq == 0 or header["sequence_number"] != seq:
        return None
    if header["type"] == NLMSG_DONE:
        return "failed" if error_of(msg) is not None else "done"
    if header["type"] == NLMSG_ERROR:
        return "failed"
    return "intr" if header["flags"] & NLM_F_DUMP_INTR else "part"


# --- the parent's requests --------------------------------------------------------------------
def open_socket(groups: int = 0) -> socket.socket:
    """A bound NETLINK_ROUTE socket, non-blocking, with extended ACKs; in no multicast
    group (the parent's: only answers to its own requests arrive) unless told."""
    sock = socket.socket(
        socket.AF_NETLINK,
        socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
        socket.NETLINK_ROUTE,
    )
    try:
        sock.bind((0, groups))
        # strict checking makes the kernel filter an address dump by ifa_index; both are
        # refinements an old kernel may lack
        for opt in (NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
            try:
                sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(eq=False)
class _Pending:
    future: asyncio.Future[list[Any]]
    dump: bool
    what: str
    msgs: list[Any] = field(default_factory=list)


class Rtnl:
    """The parent's NETLINK_ROUTE socket on its asyncio loop, requests matched by sequence.

    A request gets NLM_F_ACK and is resolved by its ACK or NLMSG_ERROR (an error becomes
    ``OSError(errno, "what: kernel's reason")``); a dump collects pyroute2 messages up to
    NLMSG_DONE.  Nothing blocks the loop, every request yields to it, and nothing starts
    a thread.
    """

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self._pending: dict[int, _Pending] = {}

    def open(self, sock: socket.socket | None = None) -> None:
        """Open the socket (or adopt ``sock``) and read it on the running loop."""
        self._loop = asyncio.get_running_loop()
        if sock is None:
            sock = open_socket()
        try:
            self._seq = int.from_bytes(os.urandom(2), "little")  # a stale reply never matches
            self._loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._fail_all(OSError(errno.ENOTCONN, "netlink socket closed"))

    async def request(self, msg: Any, mtype: int, flags: int, what: str) -> list[Any]:
        """Send one request with NLM_F_ACK; OSError(errno) if the kernel refuses it.

        Returns what the kernel answered before its ACK (for a "get": the object).
        """
        return await self._call(msg, mtype, flags | NLM_F_REQUEST | NLM_F_ACK, what, dump=False)

    async def dump(self, msg: Any, mtype: int, what: str) -> list[Any]:
        """Send a NLM_F_DUMP request; the decoded messages up to NLMSG_DONE."""
        return await self._call(msg, mtype, NLM_F_REQUEST | NLM_F_DUMP, what, dump=True)

    async def _call(self, msg: Any, mtype: int, flags: int, what: str, *, dump: bool) -> list[Any]:
        if self.sock is None or self._loop is None:
            raise OSError(errno.ENOTCONN, "netlink socket not open")
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        pending = _Pending(self._loop.create_future(), dump, what)
        self._pending[seq] = pending
        try:
            self.sock.send(message(msg, mtype, flags, seq))
            # The kernel answers inside send(), but the answer is left to the loop's reader:
            # each request then yields, and a backlog of configure jobs (256 interfaces
            # bound at once) cannot keep the parent from reading its children's channels.
            async with asyncio.timeout(self.timeout):
                return await pending.future
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, f"{what}: no answer from the kernel") from None
        finally:
            self._pending.pop(seq, None)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(_MAX_READS):
            try:
                data, _anc, mflags, addr = sock.recvmsg(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ENOBUFS: the receive queue overflowed, answers are lost
                self._fail_all(OSError(e.errno or errno.EIO, os.strerror(e.errno or errno.EIO)))
                return
            if mflags & socket.MSG_TRUNC:
                self._fail_all(OSError(errno.EMSGSIZE, "netlink answer truncated"))
                continue
            if not isinstance(addr, tuple) or addr[0] != 0:  # only the kernel answers
                continue
            for msg in parse(data):
                self._dispatch(msg)

    def _dispatch(self, msg: Any) -> None:
        header = msg["header"]
        p = self._pending.get(header["sequence_number"])
        if p is None or p.future.done():
            return
        mtype = header["type"]
        if mtype == NLMSG_ERROR or (mtype == NLMSG_DONE and p.dump):
            err = error_of(msg)
            if err is not None:
                p.future.set_exception(OSError(err.errno, f"{p.what}: {err.strerror}"))
            elif mtype == NLMSG_DONE or not p.dump:
                p.future.set_result(p.msgs)
        elif len(p.msgs) >= MAX_DUMP:
            p.future.set_exception(OSError(errno.EMSGSIZE, f"{p.what}: answer too large"))
        else:
            p.msgs.append(msg)

    def _fail_all(self, err: OSError) -> None:
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(OSError(err.errno, f"{p.what}: {err.strerror}"))


def ipv4_addresses(msgs: list[Any], if_index: int) -> list[tuple[IPv4Address, int]]:
    """(address, prefix length) of each IPv4 RTM_NEWADDR on if_index in a dump."""
    out: list[tuple[IPv4Address, int]] = []
    for m in msgs:
        if m["header"]["type"] != RTM_NEWADDR or m.get("family") != socket.AF_INET:
            continue
        if m.get("index") != if_index:
            continue
        local = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
        try:
            out.append((IPv4Address(local), int(m.get("prefixlen", 0))))
        except ValueError:
            continue
    return out
