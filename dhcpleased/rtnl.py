"""A small rtnetlink client for the parent: addresses and routes, on the asyncio loop.

pyroute2 did this before and cost the parent more import time and memory than the rest of
the daemon's own code (bench/RESULTS.md); the parent needs five message kinds, so they
are built and decoded here with :mod:`struct`, in the style of :mod:`dhcpleased.bpf`'s
link-event decoder.

One ``NETLINK_ROUTE`` socket, non-blocking, read through ``loop.add_reader``: a request
gets a sequence number and ``NLM_F_ACK``, its future is resolved by the ACK or the
``NLMSG_ERROR`` carrying that number (an error becomes ``OSError(errno)``, with the
kernel's extended-ack text when there is one); a dump collects every message up to
``NLMSG_DONE``.  Nothing blocks the loop and nothing starts a thread.  The decoders are
bounds-checked and never raise: what does not parse is dropped, and a request it
concerned fails by its timeout instead of the whole parent.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Final, NamedTuple

from dhcpleased.bpf import NLA_TYPE_MASK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR

# --- kernel ABI (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h) -------------------------
NLMSG_NOOP: Final = 1
NLM_F_MULTI: Final = 0x2
NLM_F_ACK: Final = 0x4
NLM_F_REPLACE: Final = 0x100
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400
NLM_F_CAPPED: Final = 0x100  # in an NLMSG_ERROR: the echoed request is the header only
NLM_F_ACK_TLVS: Final = 0x200  # in an NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG: Final = 1

SOL_NETLINK: Final = 270
NETLINK_CAP_ACK: Final = 10
NETLINK_EXT_ACK: Final = 11
NETLINK_GET_STRICT_CHK: Final = 12

RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25

IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_BROADCAST: Final = 4

RTA_DST: Final = 1
RTA_OIF: Final = 4
RTA_GATEWAY: Final = 5
RTA_PRIORITY: Final = 6
RTA_PREFSRC: Final = 7
RTA_TABLE: Final = 15
RTN_UNSPEC: Final = 0
RTN_UNICAST: Final = 1

NLMSGHDR: Final = struct.Struct("=IHHII")  # len, type, flags, seq, pid
RTATTR: Final = struct.Struct("=HH")  # len, type
IFADDRMSG: Final = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
RTMSG: Final = struct.Struct("=BBBBBBBBI")  # family dst/src len tos table proto scope type flags
_ERRNO: Final = struct.Struct("=i")
_U32: Final = struct.Struct("=I")

RECV_SIZE: Final = 32768  # the kernel never builds a netlink skb larger than this
MAX_DUMP_BYTES: Final = 1 << 20  # one interface's addresses are a few hundred bytes
_MAX_READS: Final = 64  # datagrams per readable event: the loop always gets a turn
DEFAULT_TIMEOUT: Final = 10.0  # rtnetlink answers inside send(); this is a broken kernel


def align4(n: int) -> int:
    return (n + 3) & ~3


# --- building ---------------------------------------------------------------------------------
def nlmsg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message: header + body, padded to 4 bytes (pid 0: the kernel fills it)."""
    data = NLMSGHDR.pack(NLMSGHDR.size + len(body), mtype, flags, seq & 0xFFFFFFFF, 0) + body
    return data + b"\0" * (-len(data) % 4)


def rtattr(atype: int, payload: bytes) -> bytes:
    data = RTATTR.pack(RTATTR.size + len(payload), atype) + payload
    return data + b"\0" * (-len(data) % 4)


def _u32(atype: int, value: int) -> bytes:
    return rtattr(atype, _U32.pack(value & 0xFFFFFFFF))


def addr_body(
    if_index: int,
    prefixlen: int,
    local: IPv4Address | None = None,
    *,
    address: IPv4Address | None = None,
    broadcast: IPv4Address | None = None,
) -> bytes:
    """ifaddrmsg + IFA_LOCAL/IFA_ADDRESS/IFA_BROADCAST for RTM_{NEW,DEL,GET}ADDR.

    A delete with IFA_LOCAL only matches the address whatever its prefix; with IFA_ADDRESS
    too the kernel also demands the same prefix length.
    """
    body = IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, 0, if_index)
    if local is not None:
        body += rtattr(IFA_LOCAL, local.packed)
    if address is not None:
        body += rtattr(IFA_ADDRESS, address.packed)
    if broadcast is not None:
        body += rtattr(IFA_BROADCAST, broadcast.packed)
    return body


def route_body(
    *,
    dst: IPv4Address,
    dst_len: int,
    oif: int,
    table: int,
    proto: int,
    priority: int,
    scope: int,
    rtype: int = RTN_UNICAST,
    gateway: IPv4Address | None = None,
    prefsrc: IPv4Address | None = None,
) -> bytes:
    """rtmsg + attributes for RTM_{NEW,DEL}ROUTE (table in both the header and RTA_TABLE)."""
    body = RTMSG.pack(
        socket.AF_INET, dst_len, 0, 0, table if table < 256 else 0, proto, scope, rtype, 0
    )
    body += rtattr(RTA_DST, dst.packed) + _u32(RTA_TABLE, table)
    body += _u32(RTA_OIF, oif) + _u32(RTA_PRIORITY, priority)
    if gateway is not None:
        body += rtattr(RTA_GATEWAY, gateway.packed)
    if prefsrc is not None:
        body += rtattr(RTA_PREFSRC, prefsrc.packed)
    return body


# --- parsing (never raises) -------------------------------------------------------------------
class NlMsg(NamedTuple):
    mtype: int
    flags: int
    seq: int
    pid: int
    payload: bytes


def parse_messages(data: bytes) -> list[NlMsg]:
    """Split one datagram into messages; a header whose length runs past the end stops it."""
    out: list[NlMsg] = []
    off = 0
    while off + NLMSGHDR.size <= len(data):
        mlen, mtype, flags, seq, pid = NLMSGHDR.unpack_from(data, off)
        if mlen < NLMSGHDR.size or off + mlen > len(data):
            break
        out.append(NlMsg(mtype, flags, seq, pid, data[off + NLMSGHDR.size : off + mlen]))
        off += align4(mlen)
    return out


def parse_attrs(data: bytes, off: int = 0) -> dict[int, bytes]:
    """Attribute type -> payload (the first of each type); a bad length ends the walk."""
    attrs: dict[int, bytes] = {}
    while off + RTATTR.size <= len(data):
        alen, atype = RTATTR.unpack_from(data, off)
        if alen < RTATTR.size or off + alen > len(data):
            break
        attrs.setdefault(atype & NLA_TYPE_MASK, data[off + RTATTR.size : off + alen])
        off += align4(alen)
    return attrs


def _errno_of(value: int) -> int:
    """The kernel sends -errno; anything else in that field is a protocol error."""
    return -value if value < 0 else errno.EPROTO


def parse_error(flags: int, payload: bytes) -> tuple[int, str]:
    """(errno, text) of an NLMSG_ERROR payload; errno 0 is an ACK.

    The text is the kernel's extended ack (``NLMSGERR_ATTR_MSG``) when it sent one, else
    strerror.  The echoed request is skipped by its own length field, capped or not.
    """
    if len(payload) < _ERRNO.size:
        return errno.EPROTO, "short netlink error message"
    (value,) = _ERRNO.unpack_from(payload)
    if value == 0:
        return 0, ""
    code = _errno_of(value)
    text = ""
    if flags & NLM_F_ACK_TLVS and len(payload) >= _ERRNO.size + NLMSGHDR.size:
        echoed = NLMSGHDR.unpack_from(payload, _ERRNO.size)[0]
        skip = NLMSGHDR.size if flags & NLM_F_CAPPED else align4(echoed)
        raw = parse_attrs(payload, _ERRNO.size + skip).get(NLMSGERR_ATTR_MSG, b"")
        text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return code, text or os.strerror(code)


def parse_done(flags: int, payload: bytes) -> tuple[int, str]:
    """(errno, text) of an NLMSG_DONE: a dump that failed says so here (0: it did not)."""
    if len(payload) < _ERRNO.size:
        return 0, ""  # old kernels may send an empty DONE
    (value,) = _ERRNO.unpack_from(payload)
    if value == 0:
        return 0, ""
    code = _errno_of(value)
    text = ""
    if flags & NLM_F_ACK_TLVS:
        raw = parse_attrs(payload, _ERRNO.size).get(NLMSGERR_ATTR_MSG, b"")
        text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return code, text or os.strerror(code)


@dataclass(frozen=True, slots=True)
class IfAddr:
    """One RTM_NEWADDR, reduced to what kroute needs."""

    if_index: int
    prefixlen: int
    local: IPv4Address | None  # IFA_LOCAL, else IFA_ADDRESS (the same on broadcast links)


def parse_ifaddr(payload: bytes) -> IfAddr | None:
    """Decode an IPv4 RTM_NEWADDR payload; None for anything else or short."""
    if len(payload) < IFADDRMSG.size:
        return None
    family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(payload)
    if family != socket.AF_INET:
        return None
    attrs = parse_attrs(payload, IFADDRMSG.size)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    local = IPv4Address(raw) if raw is not None and len(raw) == 4 else None
    return IfAddr(index, prefixlen, local)


# --- the socket -------------------------------------------------------------------------------
def open_socket() -> socket.socket:
    """A bound NETLINK_ROUTE socket in no group, with extended and capped ACKs."""
    sock = socket.socket(
        socket.AF_NETLINK,
        socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
        socket.NETLINK_ROUTE,
    )
    try:
        sock.bind((0, 0))  # no groups: only answers to our own requests arrive
        # strict checking makes the kernel filter an address dump by ifa_index (and
        # refuse a missing one); all three are refinements an old kernel may lack
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
            try:
                sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
    except BaseException:
        sock.close()
        raise
    return sock


def netlink_error(code: int, text: str, what: str = "") -> OSError:
    return OSError(code, f"{what}: {text}" if what else text)


@dataclass(eq=False)
class _Pending:
    future: asyncio.Future[list[NlMsg]]
    dump: bool
    what: str
    msgs: list[NlMsg] = field(default_factory=list)
    size: int = 0


class Rtnl:
    """One NETLINK_ROUTE socket with requests in flight by sequence number."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self._pending: dict[int, _Pending] = {}

    def open(
        self, loop: asyncio.AbstractEventLoop | None = None, sock: socket.socket | None = None
    ) -> None:
        """Open the socket (or adopt ``sock``) and read it on ``loop`` (the running one)."""
        self._loop = loop or asyncio.get_running_loop()
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
        self._fail_all(errno.ENOTCONN, "netlink socket closed")

    async def request(self, mtype: int, flags: int, body: bytes, what: str = "") -> None:
        """Send one request with NLM_F_ACK; OSError(errno) if the kernel refuses it."""
        await self._call(mtype, flags | NLM_F_REQUEST | NLM_F_ACK, body, what, dump=False)

    async def dump(self, mtype: int, body: bytes, what: str = "") -> list[NlMsg]:
        """Send a NLM_F_DUMP request; every message up to NLMSG_DONE (DONE excluded)."""
        return await self._call(mtype, NLM_F_REQUEST | NLM_F_DUMP, body, what, dump=True)

    async def _call(
        self, mtype: int, flags: int, body: bytes, what: str, *, dump: bool
    ) -> list[NlMsg]:
        if self.sock is None or self._loop is None:
            raise OSError(errno.ENOTCONN, "netlink socket not open")
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        pending = _Pending(self._loop.create_future(), dump, what)
        self._pending[seq] = pending
        try:
            self.sock.send(nlmsg(mtype, flags, seq, body))
            self._readable()  # the kernel usually answers inside send(): skip a loop turn
            async with asyncio.timeout(self.timeout):
                return await pending.future
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, f"{what}: no answer from the kernel") from None
        finally:
            self._pending.pop(seq, None)

    # --- reading ------------------------------------------------------------------------------
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
                self._fail_all(e.errno or errno.EIO, os.strerror(e.errno or errno.EIO))
                return
            if mflags & socket.MSG_TRUNC:
                self._fail_all(errno.EMSGSIZE, "netlink answer truncated")
                continue
            if not isinstance(addr, tuple) or addr[0] != 0:  # only the kernel answers
                continue
            for msg in parse_messages(data):
                self._dispatch(msg)

    def _dispatch(self, msg: NlMsg) -> None:
        p = self._pending.get(msg.seq)
        if p is None or p.future.done():
            return
        if msg.mtype == NLMSG_ERROR:
            code, text = parse_error(msg.flags, msg.payload)
            if code == 0 and not p.dump:
                p.future.set_result([])
            elif code != 0:
                p.future.set_exception(netlink_error(code, text, p.what))
        elif not p.dump:
            return  # a request's answer is its ACK; anything else is not ours to keep
        elif msg.mtype == NLMSG_DONE:
            code, text = parse_done(msg.flags, msg.payload)
            if code:
                p.future.set_exception(netlink_error(code, text, p.what))
            else:
                p.future.set_result(p.msgs)
        elif msg.mtype != NLMSG_NOOP:
            p.size += NLMSGHDR.size + len(msg.payload)
            if p.size > MAX_DUMP_BYTES:
                p.future.set_exception(OSError(errno.EMSGSIZE, f"{p.what}: dump too large"))
            else:
                p.msgs.append(msg)

    def _fail_all(self, code: int, text: str) -> None:
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_exception(netlink_error(code, text, p.what))
