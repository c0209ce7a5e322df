"""imsg framing and payloads: the Python twin of dhcpleased.h's imsg structs.

Every message type has exactly one payload layout (a fixed-size ``struct.Struct``, or
for OptionBytes/HostName an explicit variable size with hard bounds).  A payload object
is validated when it is built, so an invalid one cannot exist: ``pack()`` therefore
never sends what the receiver would refuse, and ``unpack()`` checks the size before it
reads a byte, then every raw field (NUL termination, zero padding, booleans, counts)
and finally the decoded values.  Any mismatch raises :class:`ImsgError`; the caller
decides whether that is fatal (sibling process) or a dropped client (dhcpleasectl).

The encoding is canonical: whatever ``unpack`` accepts, ``pack`` reproduces byte for
byte.  That is stricter than the original (which only checks the last byte of a char
array) and means a peer cannot smuggle data in padding.

This module is pure: no I/O, nothing here touches a socket.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address
from typing import Any, ClassVar, Final, Self, TypeVar

from dhcpleased import defs
from dhcpleased.packet import Route

HEADER: Final = struct.Struct("=IHHII")  # type, len (incl. header), flags, peerid, pid
IMSGF_HASFD: Final = 1
MAX_IMSGSIZE: Final = defs.MAX_IMSGSIZE
MAX_PAYLOAD: Final = MAX_IMSGSIZE - HEADER.size

# The fsm's state names (fsm.State values); the ctl report and monitor events carry them.
STATE_NAMES: Final = frozenset(
    {"Down", "Init", "Requesting", "Bound", "Renewing", "Rebinding", "Rebooting", "IPv6 only"}
    | {"Releasing", "Released", "Probing", "Declined"}
)
# acd.Phase values: what address conflict detection is doing (RFC 5227)
ARP_PHASES: Final = frozenset({"idle", "probing", "clear", "conflict", "announcing", "defending"})
STATE_SIZE: Final = 16  # the original's state[sizeof("IF_INIT_REBOOT")], rounded up
PROC_NAME_SIZE: Final = 16
REASON_SIZE: Final = 64
DOMAIN_SIZE: Final = defs.MAX_DOMAIN  # a vis-encoded option 15 (<= 4 * 255) + NUL

_U32: Final = 0xFFFFFFFF
_U64: Final = 0xFFFFFFFFFFFFFFFF
_I32_MIN: Final = -(2**31)
_I32_MAX: Final = 2**31 - 1


class ImsgError(ValueError):
    """A header or payload that does not match its layout (size or any field)."""


class ImsgType(enum.IntEnum):
    """Message types in the order of dhcpleased.h (facts §4), Linux additions last."""

    NONE = 0
    CTL_LOG_VERBOSE = enum.auto()
    CTL_SHOW_INTERFACE_INFO = enum.auto()
    CTL_SEND_REQUEST = enum.auto()
    CTL_RELOAD = enum.auto()
    CTL_END = enum.auto()
    RECONF_CONF = enum.auto()
    RECONF_END = enum.auto()
    RECONF_IFACE = enum.auto()
    RECONF_VC_ID = enum.auto()
    RECONF_C_ID = enum.auto()
    RECONF_H_NAME = enum.auto()
    SEND_DISCOVER = enum.auto()
    SEND_REQUEST = enum.auto()
    SOCKET_IPC = enum.auto()
    OPEN_BPFSOCK = enum.auto()
    BPFSOCK = enum.auto()
    UDPSOCK = enum.auto()
    CLOSE_UDPSOCK = enum.auto()
    ROUTESOCK = enum.auto()
    CONTROLFD = enum.auto()
    STARTUP = enum.auto()
    UPDATE_IF = enum.auto()
    REMOVE_IF = enum.auto()
    DHCP = enum.auto()
    CONFIGURE_INTERFACE = enum.auto()
    DECONFIGURE_INTERFACE = enum.auto()
    WITHDRAW_ROUTES = enum.auto()
    PROPOSE_RDNS = enum.auto()
    WITHDRAW_RDNS = enum.auto()
    REPROPOSE_RDNS = enum.auto()  # unused, number kept: the original answers resolvd's
    # RTP_PROPOSAL_SOLICIT with it; Linux has no such solicitation, so nothing sends it
    REQUEST_REBOOT = enum.auto()
    # --- Linux additions ---
    CTL_MONITOR = enum.auto()  # ctl -> fe: subscribe to state changes (dhcpleasectl -m)
    CTL_MONITOR_EVENT = enum.auto()  # engine -> fe -> subscribed ctl clients
    CTL_PROCINFO = enum.auto()  # ctl -> fe, fe -> main/engine: query (empty); fe -> ctl: ProcInfo
    PROCINFO = enum.auto()  # main/engine -> fe: own ProcInfo, answering CTL_PROCINFO (peerid kept)
    MANAGE_IF = enum.auto()  # fe -> main: dhcpleasectl asked about an unmanaged interface,
    # with the client's request token (a socket only the client wrote to: control.py)
    CTL_RELOAD_RESULT = enum.auto()  # main -> fe -> ctl: how a dhcpleasectl reload went
    CTL_RELEASE = enum.auto()  # ctl -> fe: dhcpleasectl release IF (no answer)
    REQUEST_RELEASE = enum.auto()  # fe -> engine (ctl), main -> engine (release on exit)
    SEND_RELEASE = enum.auto()  # engine -> fe: unicast a DHCPRELEASE (ReqDhcp)
    RELEASE_SENT = enum.auto()  # fe -> engine: done with SEND_RELEASE, the address may go
    RELEASED = enum.auto()  # engine -> main: lease given back, drop its lease file
    SANDBOX_UP = enum.auto()  # engine/fe -> main, once: my sandbox is in place (readiness)
    BCASTSOCK = enum.auto()  # main -> fe: UDP socket 0.0.0.0:68 -> 255.255.255.255:67
    # --- address conflict detection (RFC 5227) ---
    SEND_DECLINE = enum.auto()  # engine -> fe: broadcast a DHCPDECLINE (ReqDhcp)
    ARP_WATCH = enum.auto()  # engine -> main: open the ARP socket for an address (0: close)
    ARP_PROBE = enum.auto()  # engine -> main: send an ARP probe for the watched address
    ARP_ANNOUNCE = enum.auto()  # engine -> main: announce (or defend) a configured address
    ARPSOCK = enum.auto()  # main -> fe: locked receive-only packet socket, ARP about it
    CLOSE_ARPSOCK = enum.auto()  # main -> fe: the address is no longer watched
    ARP = enum.auto()  # fe -> engine: one ARP frame from that socket (Dhcp's layout)
    SET_MTU = enum.auto()  # engine -> main: the lease's MTU (option 26) on the interface
    RESTORE_MTU = enum.auto()  # engine -> main: the MTU it had before SET_MTU
    PROPOSE_NTP = enum.auto()  # engine -> main: NTP servers (option 42) to hand on
    WITHDRAW_NTP = enum.auto()  # engine -> main: take them back (NtpServers, empty)


def type_name(t: int) -> str:
    """Log name of a type, e.g. ``IMSG_CTL_END`` (the original's i2s)."""
    try:
        return "IMSG_" + ImsgType(t).name
    except ValueError:
        return f"IMSG_<unknown {t}>"


@dataclass(frozen=True, slots=True)
class Header:
    """The 16-byte imsg header; ``length`` includes the header itself."""

    type: int
    length: int
    flags: int
    peerid: int
    pid: int

    def __post_init__(self) -> None:
        _u32(self.type, "type")
        if not HEADER.size <= self.length <= MAX_IMSGSIZE:
            raise ImsgError(f"bad imsg length {self.length}")
        if self.flags & ~IMSGF_HASFD:
            raise ImsgError(f"unknown imsg flags {self.flags:#x}")
        _u32(self.peerid, "peerid")
        _u32(self.pid, "pid")

    def pack(self) -> bytes:
        return HEADER.pack(self.type, self.length, self.flags, self.peerid, self.pid)

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        if len(data) != HEADER.size:
            raise ImsgError(f"imsg header: {len(data)} bytes, want {HEADER.size}")
        return cls(*HEADER.unpack(data))


# --- field codecs -------------------------------------------------------------------------
# Each payload field names a codec in its metadata: the codec's struct fragment, how the
# value is checked (on construction), encoded, and decoded from the raw struct items.


def _u32(v: int, field: str) -> None:
    if not isinstance(v, int) or not 0 <= v <= _U32:
        raise ImsgError(f"{field} out of range: {v!r}")


def _is_netmask(mask: IPv4Address) -> bool:
    host = ~int(mask) & _U32
    return host & (host + 1) == 0


def _text(s: object, size: int, field: str, *, space: bool = True, empty: bool = True) -> None:
    """A char[size] string: printable and, NUL included, fits; names also without spaces."""
    if not isinstance(s, str):
        raise ImsgError(f"{field} is not a string")
    if not s and not empty:
        raise ImsgError(f"{field} is empty")
    if not s.isprintable() or (not space and " " in s):
        raise ImsgError(f"{field} contains non-printable characters")
    if len(s.encode()) >= size:
        raise ImsgError(f"{field} too long")


# isspace() of the kernel's ctype table: C whitespace, and 0xa0 (Latin-1 no-break space)
_KERNEL_SPACE: Final = frozenset(b" \t\n\v\f\r\xa0")


def ifname_problem(name: str) -> str | None:
    """Why ``name`` cannot be an interface name we carry, or None.

    The kernel's dev_valid_name(): not empty, shorter than IFNAMSIZ, not "." or "..",
    no "/", ":" or whitespace.  On top of that a name must be printable UTF-8, as every
    char[] text field here is: one the kernel allows but we cannot carry (a control
    byte, a byte that is not UTF-8) is refused too.  The config parser and the command
    line ask this same question, so a name they accept always fits in an imsg.
    """
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file can have produced
        return "invalid interface name: non-printable character or not UTF-8"
    if not raw:
        return "interface name is empty"
    if len(raw) >= defs.IF_NAMESIZE:
        return "name too long"
    if name in (".", ".."):
        return f"invalid interface name {name}"
    if any(b in _KERNEL_SPACE or b in b"/:" for b in raw):
        return "invalid interface name: whitespace, '/' or ':'"
    if not name.isprintable():
        return "invalid interface name: non-printable character or not UTF-8"
    return None


def _cstr(raw: bytes, field: str) -> bytes:
    """The bytes before the NUL of a char[] field; everything after it must be NUL."""
    nul = raw.find(0)
    if nul < 0:
        raise ImsgError(f"{field} not NUL-terminated")
    if raw.count(0, nul) != len(raw) - nul:
        raise ImsgError(f"{field} has data after its NUL")
    return raw[:nul]


def _decode(raw: bytes, field: str) -> str:
    try:
        return _cstr(raw, field).decode()
    except UnicodeDecodeError:
        raise ImsgError(f"{field} is not valid UTF-8") from None


def _zero_tail(raw: bytes, used: int, field: str) -> None:
    if raw.count(0, used) != len(raw) - used:
        raise ImsgError(f"{field}: unused slots not zero")


class _Codec:
    """How one field travels: ``fmt`` is its struct fragment with ``n`` items."""

    fmt: str = ""
    n: int = 1

    def check(self, v: Any, field: str) -> None:
        raise NotImplementedError

    def encode(self, v: Any) -> tuple[Any, ...]:
        return (v,)

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        return items[0]


class _Int(_Codec):
    def __init__(self, fmt: str = "I", lo: int = 0, hi: int = _U32, mask: int | None = None):
        self.fmt, self.lo, self.hi, self.mask = fmt, lo, hi, mask

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or not self.lo <= v <= self.hi:
            raise ImsgError(f"{field} out of range: {v!r}")
        if self.mask is not None and v & ~self.mask:
            raise ImsgError(f"{field}: unknown bits in {v:#x}")


class _Bool(_Codec):
    fmt = "B"

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, bool):
            raise ImsgError(f"{field} is not a bool")

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        if items[0] not in (0, 1):
            raise ImsgError(f"{field} is not a boolean: {items[0]}")
        return items[0] == 1


class _Float(_Codec):
    fmt = "d"

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise ImsgError(f"{field} is not a finite number")


class _Addr(_Codec):
    fmt = "4s"

    def __init__(self, netmask: bool = False):
        self.netmask = netmask

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, IPv4Address):
            raise ImsgError(f"{field} is not an IPv4 address")
        if self.netmask and not _is_netmask(v):
            raise ImsgError(f"{field} {v} is not a contiguous netmask")

    def encode(self, v: Any) -> tuple[Any, ...]:
        return (v.packed,)

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        return IPv4Address(items[0])


class _Text(_Codec):
    """char[size], NUL-terminated and NUL-padded, UTF-8, printable."""

    def __init__(self, size: int, *, space: bool = True, empty: bool = True, choices: Any = None):
        self.fmt, self.size, self.space, self.empty = f"{size}s", size, space, empty
        self.choices: frozenset[str] | None = choices

    def check(self, v: Any, field: str) -> None:
        if self.choices is not None:
            if v not in self.choices:
                raise ImsgError(f"{field}: unknown value {v!r}")
            return
        _text(v, self.size, field, space=self.space, empty=self.empty)

    def encode(self, v: Any) -> tuple[Any, ...]:
        return (v.encode(),)

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        return _decode(items[0], field)


class _IfName(_Text):
    """char[IF_NAMESIZE]: a name the kernel can have and we can carry (ifname_problem)."""

    def __init__(self) -> None:
        super().__init__(defs.IF_NAMESIZE)

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, str):
            raise ImsgError(f"{field} is not a string")
        problem = ifname_problem(v)
        if problem is not None:
            raise ImsgError(f"{field}: {problem}")


class _Lines(_Text):
    """Printable lines joined by newlines, in a char[size] (a reload's error messages)."""

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, str):
            raise ImsgError(f"{field} is not a string")
        if not all(line.isprintable() for line in v.split("\n")):
            raise ImsgError(f"{field} contains non-printable characters")
        if len(v.encode()) >= self.size:
            raise ImsgError(f"{field} too long")


class _Lease(_Text):
    """The lease file text: multi-line, anything but NUL; its last byte must be NUL."""

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, str) or "\0" in v:
            raise ImsgError(f"{field} is not a string without NUL")
        try:
            size = len(v.encode())
        except UnicodeEncodeError:
            raise ImsgError(f"{field} is not valid UTF-8") from None
        if size >= self.size:
            raise ImsgError(f"{field} too long")

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        if items[0][-1] != 0:
            raise ImsgError(f"{field} not NUL-terminated")
        return super().decode(items, field)


class _File(_Codec):
    """BOOTP file after strvis: printable ASCII bytes, NUL-terminated in char[size]."""

    def __init__(self, size: int):
        self.fmt, self.size = f"{size}s", size

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, bytes) or len(v) >= self.size:
            raise ImsgError(f"{field} too long")
        if any(not 0x20 <= c < 0x7F for c in v):
            raise ImsgError(f"{field} contains non-printable characters")

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        return _cstr(items[0], field)


class _Raw(_Codec):
    """Exactly ``size`` opaque bytes (a MAC address)."""

    def __init__(self, size: int):
        self.fmt, self.size = f"{size}s", size

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, bytes) or len(v) != self.size:
            raise ImsgError(f"{field} is not {self.size} bytes")


class _Blob(_Codec):
    """Up to ``size`` bytes with a u32 length in front, zero padded (imsg_dhcp.packet)."""

    n = 2

    def __init__(self, size: int):
        self.fmt, self.size = f"I{size}s", size

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, bytes) or len(v) > self.size:
            raise ImsgError(f"{field} longer than {self.size} bytes")

    def encode(self, v: Any) -> tuple[Any, ...]:
        return (len(v), v)

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        length, raw = items
        if length > self.size:
            raise ImsgError(f"{field} length {length} > {self.size}")
        _zero_tail(raw, length, field)
        return raw[:length]


class _Addrs(_Codec):
    """count + in_addr[bound]; unused slots zero."""

    n = 2

    def __init__(self, bound: int):
        self.fmt, self.bound = f"I{4 * bound}s", bound

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, tuple):
            raise ImsgError(f"{field} is not a tuple")
        if len(v) > self.bound:
            raise ImsgError(f"too many {field} in imsg: {len(v)}")
        for a in v:
            _ADDR.check(a, field)

    def encode(self, v: Any) -> tuple[Any, ...]:
        return (len(v), b"".join(a.packed for a in v))

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        count, raw = items
        if count > self.bound:
            raise ImsgError(f"too many {field} in imsg: {count}")
        _zero_tail(raw, 4 * count, field)
        return tuple(IPv4Address(raw[i : i + 4]) for i in range(0, 4 * count, 4))


_ROUTE: Final = struct.Struct("=4s4s4s")


class _Routes(_Codec):
    """routes_len + {dst, mask, gw}[256]; masks contiguous, unused slots zero."""

    n = 2
    fmt = f"I{_ROUTE.size * defs.MAX_DHCP_ROUTES}s"

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, tuple):
            raise ImsgError(f"{field} is not a tuple")
        if len(v) > defs.MAX_DHCP_ROUTES:
            raise ImsgError("too many routes in imsg")
        for r in v:
            if not isinstance(r, Route):
                raise ImsgError(f"{field}: not a Route")
            _ADDR.check(r.dst, "route dst")
            _NETMASK.check(r.mask, "route mask")
            _ADDR.check(r.gw, "route gw")

    def encode(self, v: Any) -> tuple[Any, ...]:
        return (len(v), b"".join(_ROUTE.pack(r.dst.packed, r.mask.packed, r.gw.packed) for r in v))

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        count, raw = items
        if count > defs.MAX_DHCP_ROUTES:
            raise ImsgError("too many routes in imsg")
        used = count * _ROUTE.size
        _zero_tail(raw, used, field)
        return tuple(
            Route(IPv4Address(d), IPv4Address(m), IPv4Address(g))
            for d, m, g in _ROUTE.iter_unpack(raw[:used])
        )


class _Names(_Text):
    """A tuple of names sent space separated in one char[size] (the search list)."""

    def check(self, v: Any, field: str) -> None:
        if not isinstance(v, tuple):
            raise ImsgError(f"{field} is not a tuple")
        for name in v:
            _text(name, self.size, field, space=False, empty=False)
        if len(" ".join(v).encode()) >= self.size:
            raise ImsgError(f"{field} too long")

    def encode(self, v: Any) -> tuple[Any, ...]:
        return (" ".join(v).encode(),)

    def decode(self, items: tuple[Any, ...], field: str) -> Any:
        text = _decode(items[0], field)
        return tuple(text.split(" ")) if text else ()


_U32C: Final = _Int()
_ADDR: Final = _Addr()
_NETMASK: Final = _Addr(netmask=True)
_BOOL: Final = _Bool()
_FLOAT: Final = _Float()
_IFNAME: Final = _IfName()
_STATE: Final = _Text(STATE_SIZE, choices=STATE_NAMES)
_DOMAIN: Final = _Text(DOMAIN_SIZE, space=False)
_SEARCH: Final = _Names(defs.MAX_SEARCH)


def _m(codec: _Codec) -> dict[str, _Codec]:
    """Field metadata: the field travels with ``codec``."""
    return {"codec": codec}


# --- payloads -----------------------------------------------------------------------------


class Payload:
    """Base of every payload: checked on construction, ``pack()``, exact-size ``unpack()``.

    Fixed-size payloads declare each field's codec; ``_wire`` derives the struct from
    them in field order (the wire order is this module's, not the C struct's).
    """

    __slots__ = ()
    FMT: ClassVar[struct.Struct]  # fixed-size payloads only
    MIN_SIZE: ClassVar[int]  # bounds of the payload size, equal for fixed-size payloads
    MAX_SIZE: ClassVar[int]
    _CODECS: ClassVar[tuple[tuple[str, _Codec], ...]]

    def __post_init__(self) -> None:
        for name, codec in self._CODECS:
            try:
                codec.check(getattr(self, name), name)
            except ImsgError as e:
                raise ImsgError(f"{type(self).__name__}: {e}") from None

    def pack(self) -> bytes:
        items: list[Any] = []
        for name, codec in self._CODECS:
            items.extend(codec.encode(getattr(self, name)))
        return self.FMT.pack(*items)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        if len(data) != cls.FMT.size:
            raise ImsgError(f"invalid {cls.__name__}: {len(data)} bytes, want {cls.FMT.size}")
        items = cls.FMT.unpack(data)
        values, i = [], 0
        try:
            for name, codec in cls._CODECS:
                values.append(codec.decode(items[i : i + codec.n], name))
                i += codec.n
        except ImsgError as e:
            raise ImsgError(f"{cls.__name__}: {e}") from None
        return cls(*values)


_P = TypeVar("_P", bound=Payload)


def _wire(cls: type[_P]) -> type[_P]:
    cls._CODECS = tuple((f.name, f.metadata["codec"]) for f in fields(cls))  # type: ignore[arg-type]
    cls.FMT = struct.Struct("=" + "".join(c.fmt for _, c in cls._CODECS))
    cls.MIN_SIZE = cls.MAX_SIZE = cls.FMT.size
    return cls


@_wire
@dataclass(frozen=True, slots=True)
class Empty(Payload):
    """No payload: CTL_RELOAD, CTL_END, RECONF_CONF/END, STARTUP, the fd-only types..."""


@_wire
@dataclass(frozen=True, slots=True)
class IfIndex(Payload):
    """u32 if_index; 0 in CTL_SHOW_INTERFACE_INFO means every interface."""

    if_index: int = field(metadata=_m(_U32C))


@_wire
@dataclass(frozen=True, slots=True)
class Verbose(Payload):
    """CTL_LOG_VERBOSE's C int (non-negative)."""

    verbose: int = field(metadata=_m(_Int("i", 0, _I32_MAX)))


@_wire
@dataclass(frozen=True, slots=True)
class IfaceConf(Payload):
    """iface_conf without its pointers (those follow as RECONF_VC_ID/C_ID/H_NAME)."""

    name: str = field(metadata=_m(_IFNAME))
    ignore: int = field(
        metadata=_m(_Int(mask=defs.IGN_ROUTES | defs.IGN_DNS | defs.IGN_MTU | defs.IGN_NTP))
    )
    ignore_servers: tuple[IPv4Address, ...] = field(metadata=_m(_Addrs(defs.MAX_SERVERS)))
    prefer_ipv6: bool = field(metadata=_m(_BOOL))
    rapid_commit: bool = field(default=False, metadata=_m(_BOOL))  # "send rapid commit"
    arp_probe: bool = field(default=False, metadata=_m(_BOOL))  # "arp probe" (RFC 5227)


@_wire
@dataclass(frozen=True, slots=True)
class ReqDhcp(Payload):
    """imsg_req_dhcp: what the frontend needs to build a DISCOVER/REQUEST/RELEASE (0.0.0.0 =
    unset)."""

    if_index: int = field(metadata=_m(_U32C))
    xid: int = field(metadata=_m(_U32C))
    ciaddr: IPv4Address = field(metadata=_m(_ADDR))
    requested_ip: IPv4Address = field(metadata=_m(_ADDR))
    server_identifier: IPv4Address = field(metadata=_m(_ADDR))
    dhcp_server: IPv4Address = field(metadata=_m(_ADDR))  # unicast target: RENEWING, RELEASE


@_wire
@dataclass(frozen=True, slots=True)
class ArpReq(Payload):
    """ARP_WATCH/PROBE/ANNOUNCE and ARPSOCK: an interface and the address concerned."""

    if_index: int = field(metadata=_m(_U32C))
    address: IPv4Address = field(metadata=_m(_ADDR))


@_wire
@dataclass(frozen=True, slots=True)
class IfInfo(Payload):
    """imsg_ifinfo; ``lease`` is "" fe->main and the lease file text main->engine."""

    if_index: int = field(metadata=_m(_U32C))
    if_name: str = field(metadata=_m(_IFNAME))
    rdomain: int = field(metadata=_m(_U32C))
    running: bool = field(metadata=_m(_BOOL))
    link_state: int = field(metadata=_m(_U32C))
    hw_address: bytes = field(metadata=_m(_Raw(defs.ETH_ALEN)))
    lease: str = field(metadata=_m(_Lease(defs.LEASE_SIZE)))


@_wire
@dataclass(frozen=True, slots=True)
class Dhcp(Payload):
    """imsg_dhcp: one received Ethernet frame (<= 1500 bytes) and its checksum flags."""

    if_index: int = field(metadata=_m(_U32C))
    csumflags: int = field(
        metadata=_m(_Int("H", mask=defs.TP_STATUS_CSUMNOTREADY | defs.TP_STATUS_CSUM_VALID))
    )
    packet: bytes = field(metadata=_m(_Blob(defs.MAX_PACKET)))


@_wire
@dataclass(frozen=True, slots=True)
class UdpSock(Payload):
    """UDPSOCK: the renewal socket of if_index, connected to server:67 by the parent."""

    if_index: int = field(metadata=_m(_U32C))
    server: IPv4Address = field(metadata=_m(_ADDR))


@_wire
@dataclass(frozen=True, slots=True)
class ConfigureInterface(Payload):
    """imsg_configure_interface: CONFIGURE/DECONFIGURE_INTERFACE, WITHDRAW_ROUTES.

    ``file``, ``domain_name`` and ``host_name`` are strvis'd by the engine, hence
    printable (strvis keeps spaces); ``mask`` must be contiguous.
    """

    if_index: int = field(metadata=_m(_U32C))
    rdomain: int = field(metadata=_m(_U32C))
    addr: IPv4Address = field(metadata=_m(_ADDR))
    mask: IPv4Address = field(metadata=_m(_NETMASK))
    siaddr: IPv4Address = field(metadata=_m(_ADDR))
    server: IPv4Address = field(metadata=_m(_ADDR))
    file: bytes = field(metadata=_m(_File(defs.MAX_FILE)))
    domain_name: str = field(metadata=_m(_Text(defs.MAX_DOMAIN)))
    host_name: str = field(metadata=_m(_Text(defs.MAX_DOMAIN)))
    lease_time: int = field(metadata=_m(_U32C))
    routes: tuple[Route, ...] = field(metadata=_m(_Routes()))


@_wire
@dataclass(frozen=True, slots=True)
class ProposeRdns(Payload):
    """imsg_propose_rdns plus domain and search list; WITHDRAW_RDNS sends them empty."""

    if_index: int = field(metadata=_m(_U32C))
    rdomain: int = field(metadata=_m(_U32C))
    rdns: tuple[IPv4Address, ...] = field(metadata=_m(_Addrs(defs.MAX_RDNS_COUNT)))
    domain: str = field(metadata=_m(_DOMAIN))
    search: tuple[str, ...] = field(metadata=_m(_SEARCH))


@_wire
@dataclass(frozen=True, slots=True)
class CtlEngineInfo(Payload):
    """ctl_engine_info: the engine's answer to CTL_SHOW_INTERFACE_INFO, one per interface.

    ``mask`` is shown as received, so it need not be contiguous here.
    """

    if_index: int = field(metadata=_m(_U32C))
    running: bool = field(metadata=_m(_BOOL))
    link_state: int = field(metadata=_m(_U32C))
    state: str = field(metadata=_m(_STATE))
    request_time: float = field(metadata=_m(_FLOAT))  # CLOCK_BOOTTIME of the last ACK
    server_identifier: IPv4Address = field(metadata=_m(_ADDR))
    dhcp_server: IPv4Address = field(metadata=_m(_ADDR))
    requested_ip: IPv4Address = field(metadata=_m(_ADDR))
    mask: IPv4Address = field(metadata=_m(_ADDR))
    routes: tuple[Route, ...] = field(metadata=_m(_Routes()))
    nameservers: tuple[IPv4Address, ...] = field(metadata=_m(_Addrs(defs.MAX_RDNS_COUNT)))
    lease_time: int = field(metadata=_m(_U32C))
    renewal_time: int = field(metadata=_m(_U32C))
    rebinding_time: int = field(metadata=_m(_U32C))
    domain: str = field(metadata=_m(_DOMAIN))
    search: tuple[str, ...] = field(metadata=_m(_SEARCH))
    rapid_commit: bool = field(default=False, metadata=_m(_BOOL))  # lease from DISCOVER + ACK
    # address conflict detection (RFC 5227): configured?, what it does, about which
    # address, probes sent of the current probe; conflicts seen, the last one's address,
    # claimant and CLOCK_BOOTTIME (0 when there was none)
    arp_probe: bool = field(default=False, metadata=_m(_BOOL))
    arp_phase: str = field(default="idle", metadata=_m(_Text(STATE_SIZE, choices=ARP_PHASES)))
    arp_address: IPv4Address = field(default=IPv4Address(0), metadata=_m(_ADDR))
    arp_probes_sent: int = field(default=0, metadata=_m(_U32C))
    arp_conflicts: int = field(default=0, metadata=_m(_U32C))
    conflict_address: IPv4Address = field(default=IPv4Address(0), metadata=_m(_ADDR))
    conflict_mac: bytes = field(default=bytes(6), metadata=_m(_Raw(defs.ETH_ALEN)))
    conflict_time: float = field(default=0.0, metadata=_m(_FLOAT))
    mtu: int = field(default=0, metadata=_m(_Int("H", hi=defs.MAX_MTU)))  # option 26, 0 = none
    ntp: tuple[IPv4Address, ...] = field(default=(), metadata=_m(_Addrs(defs.MAX_NTP_COUNT)))


@_wire
@dataclass(frozen=True, slots=True)
class IfMtu(Payload):
    """SET_MTU: an MTU a lease may set (576..65535; the device's maximum is checked by the
    parent against the kernel)."""

    if_index: int = field(metadata=_m(_U32C))
    mtu: int = field(metadata=_m(_Int("H", lo=defs.MIN_MTU, hi=defs.MAX_MTU)))


@_wire
@dataclass(frozen=True, slots=True)
class NtpServers(Payload):
    """PROPOSE_NTP / WITHDRAW_NTP (empty): an interface's NTP servers from option 42."""

    if_index: int = field(metadata=_m(_U32C))
    servers: tuple[IPv4Address, ...] = field(metadata=_m(_Addrs(defs.MAX_NTP_COUNT)))


@_wire
@dataclass(frozen=True, slots=True)
class ProcInfo(Payload):
    """One process's identity and sandbox state, for ``dhcpleasectl -p``."""

    name: str = field(metadata=_m(_Text(PROC_NAME_SIZE, space=False, empty=False)))  # "engine", ...
    pid: int = field(metadata=_m(_U32C))
    uid: int = field(metadata=_m(_U32C))
    gid: int = field(metadata=_m(_U32C))
    cap_eff: int = field(metadata=_m(_Int("Q", hi=_U64)))  # CapEff mask
    no_new_privs: bool = field(metadata=_m(_BOOL))
    seccomp: int = field(metadata=_m(_Int("B", hi=2)))  # 0 off, 1 strict, 2 filter
    landlock_abi: int = field(
        metadata=_m(_Int("i", _I32_MIN, _I32_MAX))
    )  # ABI in use, 0 none, <0 unsupported
    landlock_status: int = field(metadata=_m(_Int("i", _I32_MIN, _I32_MAX)))  # owner-defined code
    # the frontend's packet sockets (0 elsewhere): frames read, frames the kernel dropped
    # while reading was paused for a busy engine, and how often it was paused
    frames_read: int = field(default=0, metadata=_m(_Int("Q", hi=_U64)))
    frames_dropped: int = field(default=0, metadata=_m(_Int("Q", hi=_U64)))
    read_pauses: int = field(default=0, metadata=_m(_Int("Q", hi=_U64)))
    # what the process can send (procinfo.py): the calls its seccomp filter admits (0 = no
    # filter), whether it may open sockets or name a destination address at all, and the
    # sockets it holds: packet sockets that only receive or can send, UDP sockets
    # connected to 255.255.255.255:67 and to a server's port 67
    seccomp_calls: int = field(default=0, metadata=_m(_Int("H", hi=0xFFFF)))
    opens_sockets: bool = field(default=True, metadata=_m(_BOOL))
    names_dest: bool = field(default=True, metadata=_m(_BOOL))
    packet_rx_only: int = field(default=0, metadata=_m(_U32C))
    packet_tx: int = field(default=0, metadata=_m(_U32C))
    udp_broadcast: int = field(default=0, metadata=_m(_U32C))
    udp_unicast: int = field(default=0, metadata=_m(_U32C))
    arp_rx_only: int = field(default=0, metadata=_m(_U32C))  # ARP sockets, receive only


@_wire
@dataclass(frozen=True, slots=True)
class MonitorEvent(Payload):
    """A state transition, streamed to ``dhcpleasectl -m`` subscribers."""

    time: float = field(metadata=_m(_FLOAT))  # wall clock of the transition
    if_index: int = field(metadata=_m(_U32C))
    if_name: str = field(metadata=_m(_IFNAME))
    old_state: str = field(metadata=_m(_STATE))
    new_state: str = field(metadata=_m(_STATE))
    address: IPv4Address = field(metadata=_m(_ADDR))  # 0.0.0.0 if none
    reason: str = field(metadata=_m(_Text(REASON_SIZE)))


@dataclass(frozen=True, slots=True)
class OptionBytes(Payload):
    """RECONF_VC_ID/RECONF_C_ID: the option as sent, [code, len, data], 2..257 bytes."""

    code: int
    data: bytes
    _CODECS: ClassVar[tuple[tuple[str, _Codec], ...]] = ()
    MIN_SIZE: ClassVar[int] = 2
    MAX_SIZE: ClassVar[int] = 2 + defs.MAX_OPT_LEN

    def __post_init__(self) -> None:
        if not isinstance(self.code, int) or not 0 < self.code < defs.DHO_END:
            raise ImsgError(f"OptionBytes: bad option code {self.code!r}")
        if not isinstance(self.data, bytes) or len(self.data) > defs.MAX_OPT_LEN:
            raise ImsgError("OptionBytes: data too long")

    def pack(self) -> bytes:
        return bytes((self.code, len(self.data))) + self.data

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        if not cls.MIN_SIZE <= len(data) <= cls.MAX_SIZE:
            raise ImsgError(f"invalid OptionBytes: {len(data)} bytes")
        if data[1] != len(data) - 2:
            raise ImsgError(f"OptionBytes: length byte {data[1]} but {len(data) - 2} bytes")
        return cls(data[0], bytes(data[2:]))


@dataclass(frozen=True, slots=True)
class HostName(Payload):
    """RECONF_H_NAME: the bytes of ``send host name``, NUL-terminated, 1..256 bytes.

    Any byte but NUL, as the original carries it (a config file's host name need not be
    text, let alone UTF-8); b"" means send no host name.
    """

    name: bytes
    _CODECS: ClassVar[tuple[tuple[str, _Codec], ...]] = ()
    MIN_SIZE: ClassVar[int] = 1
    MAX_SIZE: ClassVar[int] = defs.MAX_HOSTNAME

    def __post_init__(self) -> None:
        if not isinstance(self.name, bytes):
            raise ImsgError("HostName: name is not bytes")
        if 0 in self.name:
            raise ImsgError("HostName: name contains NUL")
        if len(self.name) >= defs.MAX_HOSTNAME:
            raise ImsgError("HostName: name too long")

    def pack(self) -> bytes:
        return self.name + b"\0"

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        if not cls.MIN_SIZE <= len(data) <= cls.MAX_SIZE:
            raise ImsgError(f"invalid HostName: {len(data)} bytes")
        if data.find(0) != len(data) - 1:
            raise ImsgError("HostName: not NUL-terminated exactly at its end")
        return cls(bytes(data[:-1]))


RELOAD_TEXT_SIZE: Final = 4096


@_wire
@dataclass(frozen=True, slots=True)
class ReloadResult(Payload):
    """CTL_RELOAD_RESULT: whether a dhcpleasectl reload took, and if not, why.

    ``message`` is the parser's ``file:line: message`` lines (made printable, cut to fit).
    """

    ok: bool = field(metadata=_m(_BOOL))
    message: str = field(metadata=_m(_Lines(RELOAD_TEXT_SIZE)))


_T = ImsgType

# The payload each type carries (for replies that differ see REPLY_PAYLOAD).
PAYLOAD: Final[dict[ImsgType, type[Payload]]] = {
    _T.CTL_LOG_VERBOSE: Verbose,
    _T.CTL_SHOW_INTERFACE_INFO: IfIndex,
    _T.CTL_SEND_REQUEST: IfIndex,
    _T.CTL_RELOAD: Empty,
    _T.CTL_END: Empty,
    _T.RECONF_CONF: Empty,
    _T.RECONF_END: Empty,
    _T.RECONF_IFACE: IfaceConf,
    _T.RECONF_VC_ID: OptionBytes,
    _T.RECONF_C_ID: OptionBytes,
    _T.RECONF_H_NAME: HostName,
    _T.SEND_DISCOVER: ReqDhcp,
    _T.SEND_REQUEST: ReqDhcp,
    _T.SOCKET_IPC: Empty,
    _T.OPEN_BPFSOCK: IfIndex,
    _T.BPFSOCK: IfIndex,
    _T.UDPSOCK: UdpSock,
    _T.CLOSE_UDPSOCK: IfIndex,
    _T.ROUTESOCK: Empty,
    _T.CONTROLFD: Empty,
    _T.STARTUP: Empty,
    _T.UPDATE_IF: IfInfo,
    _T.REMOVE_IF: IfIndex,
    _T.DHCP: Dhcp,
    _T.CONFIGURE_INTERFACE: ConfigureInterface,
    _T.DECONFIGURE_INTERFACE: ConfigureInterface,
    _T.WITHDRAW_ROUTES: ConfigureInterface,
    _T.PROPOSE_RDNS: ProposeRdns,
    _T.WITHDRAW_RDNS: ProposeRdns,
    _T.REPROPOSE_RDNS: Empty,
    _T.REQUEST_REBOOT: IfIndex,
    _T.CTL_MONITOR: Empty,
    _T.CTL_MONITOR_EVENT: MonitorEvent,
    _T.CTL_PROCINFO: Empty,
    _T.PROCINFO: ProcInfo,
    _T.MANAGE_IF: IfIndex,
    _T.CTL_RELOAD_RESULT: ReloadResult,
    _T.CTL_RELEASE: IfIndex,
    _T.REQUEST_RELEASE: IfIndex,
    _T.SEND_RELEASE: ReqDhcp,
    _T.RELEASE_SENT: IfIndex,
    _T.RELEASED: IfIndex,
    _T.SANDBOX_UP: Empty,
    _T.BCASTSOCK: IfIndex,
    _T.SEND_DECLINE: ReqDhcp,
    _T.ARP_WATCH: ArpReq,
    _T.ARP_PROBE: ArpReq,
    _T.ARP_ANNOUNCE: ArpReq,
    _T.ARPSOCK: ArpReq,
    _T.CLOSE_ARPSOCK: IfIndex,
    _T.ARP: Dhcp,
    _T.SET_MTU: IfMtu,
    _T.RESTORE_MTU: IfIndex,
    _T.PROPOSE_NTP: NtpServers,
    _T.WITHDRAW_NTP: NtpServers,
}

# Types whose answer (same type, opposite direction) has another layout.
REPLY_PAYLOAD: Final[dict[ImsgType, type[Payload]]] = {
    _T.CTL_SHOW_INTERFACE_INFO: CtlEngineInfo,
    _T.CTL_PROCINFO: ProcInfo,
}

# Types that must arrive with exactly one descriptor; all others must arrive without.
FD_TYPES: Final = frozenset(
    {_T.SOCKET_IPC, _T.BPFSOCK, _T.BCASTSOCK, _T.UDPSOCK, _T.ROUTESOCK, _T.CONTROLFD, _T.MANAGE_IF}
    | {_T.ARPSOCK}
)


def decode(t: int, data: bytes, *, reply: bool = False) -> Payload:
    """Unpack ``data`` with the layout of type ``t`` (its reply layout if ``reply``)."""
    try:
        key = ImsgType(t)
    except ValueError:
        raise ImsgError(f"unknown imsg type {t}") from None
    cls = (REPLY_PAYLOAD.get(key) if reply else None) or PAYLOAD.get(key)
    if cls is None:
        raise ImsgError(f"no payload for {type_name(t)}")
    return cls.unpack(data)
