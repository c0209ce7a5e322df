"""imsg.py: header, every payload layout (round trip, exact sizes, each field check)."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased import defs
from dhcpleased.imsg import (
    ARP_PHASES,
    FD_TYPES,
    HEADER,
    IMSGF_HASFD,
    MAX_IMSGSIZE,
    PAYLOAD,
    REPLY_PAYLOAD,
    STATE_NAMES,
    ArpReq,
    ConfigureInterface,
    CtlEngineInfo,
    Dhcp,
    Empty,
    Header,
    HostName,
    IfaceConf,
    IfIndex,
    IfInfo,
    IfMtu,
    ImsgError,
    ImsgType,
    MonitorEvent,
    NtpServers,
    OptionBytes,
    Payload,
    ProcInfo,
    ProposeRdns,
    ReloadResult,
    ReqDhcp,
    UdpSock,
    Verbose,
    decode,
    ifname_problem,
    type_name,
)
from dhcpleased.packet import Route

A = IPv4Address

# --- strategies ---------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
addrs = st.builds(IPv4Address, u32)
netmasks = st.integers(0, 32).map(lambda p: IPv4Address((0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF))
routes = st.builds(Route, addrs, netmasks, addrs)
finite = st.floats(allow_nan=False, allow_infinity=False)
_printable = st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S"))


def _no_nul(b: bytes) -> bytes:
    return b.replace(b"\0", b"")


def text(size: int, *, space: bool = True, min_size: int = 0) -> st.SearchStrategy[str]:
    """Strings a char[size] field accepts (printable, < size bytes encoded)."""
    alphabet = st.one_of(_printable, st.just(" ")) if space else _printable
    return st.text(alphabet, min_size=min_size, max_size=size - 1).filter(
        lambda s: len(s.encode()) < size
    )


def names(size: int) -> st.SearchStrategy[tuple[str, ...]]:
    return (
        st.lists(text(64, space=False, min_size=1), max_size=12)
        .map(tuple)
        .filter(lambda t: len(" ".join(t).encode()) < size)
    )


ifname = text(defs.IF_NAMESIZE, space=False, min_size=1).filter(lambda s: ifname_problem(s) is None)
states = st.sampled_from(sorted(STATE_NAMES))
lease_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=600)

STRATEGIES: dict[type[Payload], st.SearchStrategy[Any]] = {
    Empty: st.just(Empty()),
    IfIndex: st.builds(IfIndex, u32),
    Verbose: st.builds(Verbose, st.integers(0, 2**31 - 1)),
    IfaceConf: st.builds(
        IfaceConf,
        ifname,
        st.integers(0, 15),
        st.lists(addrs, max_size=defs.MAX_SERVERS).map(tuple),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    OptionBytes: st.builds(OptionBytes, st.integers(1, 254), st.binary(max_size=255)),
    HostName: st.builds(HostName, st.binary(max_size=defs.MAX_HOSTNAME - 1).map(_no_nul)),
    ReloadResult: st.builds(
        ReloadResult, st.booleans(), st.lists(text(200), max_size=8).map("\n".join)
    ),
    ReqDhcp: st.builds(ReqDhcp, u32, u32, addrs, addrs, addrs, addrs),
    UdpSock: st.builds(UdpSock, u32, addrs),
    ArpReq: st.builds(ArpReq, u32, addrs),
    IfInfo: st.builds(
        IfInfo, u32, ifname, u32, st.booleans(), u32, st.binary(min_size=6, max_size=6), lease_text
    ),
    Dhcp: st.builds(Dhcp, u32, st.sampled_from([0, 0x08, 0x80, 0x88]), st.binary(max_size=1500)),
    ConfigureInterface: st.builds(
        ConfigureInterface,
        u32,
        u32,
        addrs,
        netmasks,
        addrs,
        addrs,
        st.lists(st.integers(0x20, 0x7E), max_size=512).map(bytes),
        text(defs.MAX_DOMAIN),
        text(defs.MAX_DOMAIN),
        u32,
        st.lists(routes, max_size=defs.MAX_DHCP_ROUTES).map(tuple),
    ),
    ProposeRdns: st.builds(
        ProposeRdns,
        u32,
        u32,
        st.lists(addrs, max_size=8).map(tuple),
        text(defs.MAX_DOMAIN, space=False),
        names(defs.MAX_SEARCH),
    ),
    CtlEngineInfo: st.builds(
        CtlEngineInfo,
        u32,
        st.booleans(),
        u32,
        states,
        finite,
        addrs,
        addrs,
        addrs,
        addrs,
        st.lists(routes, max_size=40).map(tuple),
        st.lists(addrs, max_size=8).map(tuple),
        u32,
        u32,
        u32,
        text(defs.MAX_DOMAIN, space=False),
        names(defs.MAX_SEARCH),
        st.booleans(),
        st.booleans(),
        st.sampled_from(sorted(ARP_PHASES)),
        addrs,
        u32,
        u32,
        addrs,
        st.binary(min_size=6, max_size=6),
        finite,
        st.integers(0, 0xFFFF),
        st.lists(addrs, max_size=defs.MAX_NTP_COUNT).map(tuple),
    ),
    IfMtu: st.builds(IfMtu, u32, st.integers(defs.MIN_MTU, defs.MAX_MTU)),
    NtpServers: st.builds(NtpServers, u32, st.lists(addrs, max_size=defs.MAX_NTP_COUNT).map(tuple)),
    ProcInfo: st.builds(
        ProcInfo,
        text(16, space=False, min_size=1),
        u32,
        u32,
        u32,
        st.integers(0, 2**64 - 1),
        st.booleans(),
        st.integers(0, 2),
        i32,
        i32,
        u64 := st.integers(0, 2**64 - 1),
        u64,
        u64,
        st.integers(0, 0xFFFF),
        st.booleans(),
        st.booleans(),
        u32,
        u32,
        u32,
        u32,
        u32,
    ),
    MonitorEvent: st.builds(MonitorEvent, finite, u32, ifname, states, states, addrs, text(64)),
}

CLASSES = sorted(STRATEGIES, key=lambda c: c.__name__)
FIXED = [c for c in CLASSES if c not in (OptionBytes, HostName)]


def example(cls: type[Payload]) -> Any:
    """A valid, non-trivial instance (fields set, arrays partly used)."""
    return {
        Empty: Empty(),
        IfIndex: IfIndex(3),
        Verbose: Verbose(2),
        IfaceConf: IfaceConf("eth0", defs.IGN_DNS, (A("10.0.0.1"),), True),
        OptionBytes: OptionBytes(60, b"vendor"),
        HostName: HostName(b"myhost"),
        ReloadResult: ReloadResult(False, "a.conf:1: syntax error\na.conf:2: syntax error"),
        ReqDhcp: ReqDhcp(2, 0xDEADBEEF, A(0), A("10.0.0.5"), A("10.0.0.1"), A(0)),
        UdpSock: UdpSock(2, A("10.0.0.1")),
        ArpReq: ArpReq(2, A("10.0.0.5")),
        IfInfo: IfInfo(2, "eth0", 0, True, 6, b"\x02\0\0\0\0\x01", "version: 2\nip: 10.0.0.5\n"),
        Dhcp: Dhcp(2, 0x80, b"\x01" * 342),
        ConfigureInterface: ConfigureInterface(
            2,
            0,
            A("10.0.0.5"),
            A("255.255.255.0"),
            A("10.0.0.1"),
            A("10.0.0.1"),
            b"pxelinux.0",
            "example.org",
            "host",
            3600,
            (Route(A(0), A(0), A("10.0.0.1")),),
        ),
        ProposeRdns: ProposeRdns(
            2, 0, (A("10.0.0.1"), A("9.9.9.9")), "example.org", ("a.example", "b.example")
        ),
        CtlEngineInfo: CtlEngineInfo(
            2,
            True,
            6,
            "Bound",
            123.5,
            A("10.0.0.1"),
            A("10.0.0.1"),
            A("10.0.0.5"),
            A("255.255.255.0"),
            (Route(A(0), A(0), A("10.0.0.1")),),
            (A("10.0.0.1"),),
            3600,
            1800,
            3150,
            "example.org",
            ("example.org",),
            False,
            mtu=1400,
            ntp=(A("10.0.0.123"),),
        ),
        IfMtu: IfMtu(2, 1400),
        NtpServers: NtpServers(2, (A("10.0.0.123"), A("10.0.0.124"))),
        ProcInfo: ProcInfo(
            "frontend", 1234, 999, 999, 0, True, 2, 4, 2, 10, 1, 2, 40, False, False, 1, 0, 1, 1
        ),
        MonitorEvent: MonitorEvent(
            1.7e9, 2, "eth0", "Requesting", "Bound", A("10.0.0.5"), "DHCPACK"
        ),
    }[cls]


def tamper(obj: Payload, **raw: Any) -> bytes:
    """obj packed, with the raw struct items of the named fields replaced."""
    items: list[Any] = []
    for name, codec in type(obj)._CODECS:
        enc = codec.encode(getattr(obj, name))
        if name in raw:
            new = raw[name]
            enc = new if isinstance(new, tuple) else (new,)
        items.extend(enc)
    return type(obj).FMT.pack(*items)


# --- header, names, tables ----------------------------------------------------------------


def test_header_round_trip() -> None:
    h = Header(ImsgType.DHCP, 16 + 1510, IMSGF_HASFD, 7, 4242)
    raw = h.pack()
    assert len(raw) == HEADER.size == 16
    assert raw == struct.pack("=IHHII", ImsgType.DHCP, 1526, 1, 7, 4242)
    assert Header.unpack(raw) == h


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\0" * 15,
        b"\0" * 17,
        struct.pack("=IHHII", 1, 15, 0, 0, 0),
        struct.pack("=IHHII", 1, MAX_IMSGSIZE + 1, 0, 0, 0),
        struct.pack("=IHHII", 1, 16, 2, 0, 0),
    ],
)
def test_header_rejects(raw: bytes) -> None:
    with pytest.raises(ImsgError):
        Header.unpack(raw)


def test_header_bounds() -> None:
    assert Header.unpack(struct.pack("=IHHII", 1, MAX_IMSGSIZE, 1, 0, 0)).length == MAX_IMSGSIZE
    with pytest.raises(ImsgError):
        Header(2**32, 16, 0, 0, 0)


def test_type_name() -> None:
    assert type_name(ImsgType.CTL_END) == "IMSG_CTL_END"
    assert type_name(int(ImsgType.REQUEST_REBOOT)) == "IMSG_REQUEST_REBOOT"
    assert type_name(999) == "IMSG_<unknown 999>"
    assert type_name(0) == "IMSG_NONE"


def test_type_order() -> None:
    names_ = [t.name for t in ImsgType]
    assert names_[:4] == ["NONE", "CTL_LOG_VERBOSE", "CTL_SHOW_INTERFACE_INFO", "CTL_SEND_REQUEST"]
    assert names_[-24:-11] == [
        "CTL_MONITOR",
        "CTL_MONITOR_EVENT",
        "CTL_PROCINFO",
        "PROCINFO",
        "MANAGE_IF",
        "CTL_RELOAD_RESULT",
        "CTL_RELEASE",
        "REQUEST_RELEASE",
        "SEND_RELEASE",
        "RELEASE_SENT",
        "RELEASED",
        "SANDBOX_UP",
        "BCASTSOCK",
    ]
    assert names_[-11:-4] == [  # issue 15.1, appended: numbers 45-51
        "SEND_DECLINE",
        "ARP_WATCH",
        "ARP_PROBE",
        "ARP_ANNOUNCE",
        "ARPSOCK",
        "CLOSE_ARPSOCK",
        "ARP",
    ]
    assert int(ImsgType.SEND_DECLINE) == 45 and int(ImsgType.ARP) == 51
    assert names_[-4:] == ["SET_MTU", "RESTORE_MTU", "PROPOSE_NTP", "WITHDRAW_NTP"]  # 15.3
    assert [int(t) for t in ImsgType] == list(range(len(names_)))


def test_every_type_has_a_payload() -> None:
    assert set(PAYLOAD) == set(ImsgType) - {ImsgType.NONE}
    assert set(PAYLOAD.values()) | set(REPLY_PAYLOAD.values()) == set(CLASSES)
    assert set(PAYLOAD) >= FD_TYPES
    assert REPLY_PAYLOAD[ImsgType.CTL_SHOW_INTERFACE_INFO] is CtlEngineInfo
    for cls in PAYLOAD.values():
        assert HEADER.size + cls.MAX_SIZE <= MAX_IMSGSIZE


def test_decode() -> None:
    assert decode(ImsgType.REMOVE_IF, IfIndex(5).pack()) == IfIndex(5)
    info = example(CtlEngineInfo)
    assert decode(ImsgType.CTL_SHOW_INTERFACE_INFO, info.pack(), reply=True) == info
    assert decode(ImsgType.CTL_SHOW_INTERFACE_INFO, IfIndex(0).pack(), reply=False) == IfIndex(0)
    with pytest.raises(ImsgError):
        decode(999, b"")
    with pytest.raises(ImsgError):
        decode(ImsgType.NONE, b"")
    with pytest.raises(ImsgError):
        decode(ImsgType.REMOVE_IF, b"\0" * 5)


# --- round trips and sizes ----------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(cls: type[Payload], data: st.DataObject) -> None:
    obj = data.draw(STRATEGIES[cls])
    raw = obj.pack()
    assert cls.MIN_SIZE <= len(raw) <= cls.MAX_SIZE
    back = cls.unpack(raw)
    assert back == obj
    assert back.pack() == raw


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_example_round_trip(cls: type[Payload]) -> None:
    obj = example(cls)
    assert cls.unpack(obj.pack()) == obj


@pytest.mark.parametrize("cls", FIXED, ids=lambda c: c.__name__)
def test_wrong_sizes(cls: type[Payload]) -> None:
    raw = example(cls).pack()
    assert len(raw) == cls.FMT.size
    bad = [raw + b"\0", b"\0" * (len(raw) + 1)]
    if raw:
        bad += [raw[:-1], b""]
    for data in bad:
        with pytest.raises(ImsgError, match="invalid"):
            cls.unpack(data)


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (OptionBytes, b""),
        (OptionBytes, b"\x3c"),
        (OptionBytes, b"\x3c\xff" + b"x" * 256),
        (HostName, b""),
        (HostName, b"a" * 256 + b"\0"),
    ],
)
def test_variable_wrong_sizes(cls: type[Payload], data: bytes) -> None:
    with pytest.raises(ImsgError):
        cls.unpack(data)


def test_variable_bounds() -> None:
    assert OptionBytes.unpack(b"\x3d\x00") == OptionBytes(61, b"")
    assert len(OptionBytes(61, b"x" * 255).pack()) == 257
    assert HostName.unpack(b"\0") == HostName(b"")
    assert len(HostName(b"a" * 255).pack()) == 256
    # any byte but NUL: spaces, quotes, control bytes, not UTF-8 (as the original)
    odd = b"my host \"'\x01\x7f\xff\xc3"
    assert HostName.unpack(odd + b"\0") == HostName(odd)
    with pytest.raises(ImsgError):
        HostName(b"a" * 256)
    with pytest.raises(ImsgError):
        OptionBytes(61, b"x" * 256)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_mutations_canonical(cls: type[Payload], data: st.DataObject) -> None:
    """A valid packing with bytes changed: either ImsgError, or it re-packs identically."""
    raw = bytearray(data.draw(STRATEGIES[cls]).pack())
    if not raw:
        return
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        obj = cls.unpack(bytes(raw))
    except ImsgError:
        return
    assert obj.pack() == raw


# --- field checks on receipt --------------------------------------------------------------

_ROUTES_RAW = 12 * defs.MAX_DHCP_ROUTES
_CASES: list[tuple[str, type[Payload], Callable[[], bytes], str]] = [
    ("verbose<0", Verbose, lambda: struct.pack("=i", -1), "out of range"),
    (
        "name no NUL",
        IfaceConf,
        lambda: tamper(example(IfaceConf), name=b"a" * 16),
        "NUL-terminated",
    ),
    ("name empty", IfaceConf, lambda: tamper(example(IfaceConf), name=b""), "empty"),
    ("name space", IfaceConf, lambda: tamper(example(IfaceConf), name=b"et h0"), "whitespace"),
    ("name slash", IfaceConf, lambda: tamper(example(IfaceConf), name=b"a/b"), "'/'"),
    ("name colon", IfaceConf, lambda: tamper(example(IfaceConf), name=b"a:b"), "':'"),
    ("name dotdot", IfaceConf, lambda: tamper(example(IfaceConf), name=b".."), "invalid"),
    ("name ctrl", IfaceConf, lambda: tamper(example(IfaceConf), name=b"eth\x01"), "non-printable"),
    (
        "name after NUL",
        IfaceConf,
        lambda: tamper(example(IfaceConf), name=b"eth0\0x"),
        "after its NUL",
    ),
    ("name utf8", IfaceConf, lambda: tamper(example(IfaceConf), name=b"\xff\xfe"), "UTF-8"),
    ("ignore bits", IfaceConf, lambda: tamper(example(IfaceConf), ignore=16), "unknown bits"),
    (
        "servers>16",
        IfaceConf,
        lambda: tamper(example(IfaceConf), ignore_servers=(17, b"")),
        "too many",
    ),
    (
        "servers slot",
        IfaceConf,
        lambda: tamper(example(IfaceConf), ignore_servers=(0, b"\x01")),
        "unused slots",
    ),
    ("prefer bool", IfaceConf, lambda: tamper(example(IfaceConf), prefer_ipv6=2), "boolean"),
    ("opt len", OptionBytes, lambda: b"\x3c\x03ab", "length byte"),
    ("opt code 0", OptionBytes, lambda: b"\x00\x01a", "option code"),
    ("opt code 255", OptionBytes, lambda: b"\xff\x00", "option code"),
    ("host no NUL", HostName, lambda: b"host", "NUL"),
    ("host inner NUL", HostName, lambda: b"ho\0st\0", "NUL"),
    ("if_name empty", IfInfo, lambda: tamper(example(IfInfo), if_name=b""), "empty"),
    ("running 2", IfInfo, lambda: tamper(example(IfInfo), running=2), "boolean"),
    ("lease[4095]", IfInfo, lambda: tamper(example(IfInfo), lease=b"x" * 4096), "NUL-terminated"),
    ("lease after NUL", IfInfo, lambda: tamper(example(IfInfo), lease=b"ip\0x"), "after its NUL"),
    ("lease utf8", IfInfo, lambda: tamper(example(IfInfo), lease=b"ip: \xff"), "UTF-8"),
    ("packet len", Dhcp, lambda: tamper(example(Dhcp), packet=(1501, b"x" * 1500)), "length 1501"),
    ("packet tail", Dhcp, lambda: tamper(example(Dhcp), packet=(2, b"abc")), "unused"),
    ("csumflags", Dhcp, lambda: tamper(example(Dhcp), csumflags=0x01), "unknown bits"),
    (
        "routes>256",
        ConfigureInterface,
        lambda: tamper(example(ConfigureInterface), routes=(257, b"")),
        "too many routes in imsg",
    ),
    (
        "route slot",
        ConfigureInterface,
        lambda: tamper(example(ConfigureInterface), routes=(0, b"\0" * 11 + b"\1")),
        "unused slots",
    ),
    (
        "route mask",
        ConfigureInterface,
        lambda: tamper(
            example(ConfigureInterface), routes=(1, A(0).packed + A("255.0.255.0").packed)
        ),
        "contiguous",
    ),
    (
        "mask",
        ConfigureInterface,
        lambda: tamper(example(ConfigureInterface), mask=A("255.255.0.255").packed),
        "contiguous",
    ),
    (
        "file no NUL",
        ConfigureInterface,
        lambda: tamper(example(ConfigureInterface), file=b"f" * 513),
        "NUL",
    ),
    (
        "file ctrl",
        ConfigureInterface,
        lambda: tamper(example(ConfigureInterface), file=b"a\tb"),
        "non-printable",
    ),
    (
        "domain no NUL",
        ConfigureInterface,
        lambda: tamper(example(ConfigureInterface), domain_name=b"d" * 1021),
        "NUL",
    ),
    (
        "host_name ctrl",
        ConfigureInterface,
        lambda: tamper(example(ConfigureInterface), host_name=b"a\x7fb"),
        "non-printable",
    ),
    (
        "rdns>8",
        ProposeRdns,
        lambda: tamper(example(ProposeRdns), rdns=(9, b"\1" * 32)),
        "too many rdns",
    ),
    (
        "domain space",
        ProposeRdns,
        lambda: tamper(example(ProposeRdns), domain=b"a b"),
        "non-printable",
    ),
    (
        "search empty name",
        ProposeRdns,
        lambda: tamper(example(ProposeRdns), search=b"a  b"),
        "empty",
    ),
    (
        "search tab",
        ProposeRdns,
        lambda: tamper(example(ProposeRdns), search=b"a\tb"),
        "non-printable",
    ),
    ("search trailing", ProposeRdns, lambda: tamper(example(ProposeRdns), search=b"a "), "empty"),
    ("search no NUL", ProposeRdns, lambda: tamper(example(ProposeRdns), search=b"s" * 1024), "NUL"),
    (
        "state",
        CtlEngineInfo,
        lambda: tamper(example(CtlEngineInfo), state=b"Selecting"),
        "unknown value",
    ),
    (
        "state NUL",
        CtlEngineInfo,
        lambda: tamper(example(CtlEngineInfo), state=b"Bound" + b"x" * 11),
        "NUL",
    ),
    (
        "request_time",
        CtlEngineInfo,
        lambda: tamper(example(CtlEngineInfo), request_time=math.nan),
        "finite",
    ),
    (
        "nameservers>8",
        CtlEngineInfo,
        lambda: tamper(example(CtlEngineInfo), nameservers=(9, b"")),
        "too many nameservers",
    ),
    (
        "info routes",
        CtlEngineInfo,
        lambda: tamper(example(CtlEngineInfo), routes=(300, b"")),
        "too many routes",
    ),
    ("seccomp", ProcInfo, lambda: tamper(example(ProcInfo), seccomp=3), "out of range"),
    ("nnp", ProcInfo, lambda: tamper(example(ProcInfo), no_new_privs=7), "boolean"),
    ("proc name", ProcInfo, lambda: tamper(example(ProcInfo), name=b""), "empty"),
    (
        "old_state",
        MonitorEvent,
        lambda: tamper(example(MonitorEvent), old_state=b"Down "),
        "unknown value",
    ),
    ("time", MonitorEvent, lambda: tamper(example(MonitorEvent), time=math.inf), "finite number"),
    ("mtu<576", IfMtu, lambda: tamper(example(IfMtu), mtu=575), "out of range"),
    ("mtu 0", IfMtu, lambda: tamper(example(IfMtu), mtu=0), "out of range"),
    ("ntp>8", NtpServers, lambda: tamper(example(NtpServers), servers=(9, b"")), "too many"),
    (
        "ntp slack",
        NtpServers,
        lambda: tamper(example(NtpServers), servers=(1, b"\1" * 32)),
        "not zero",
    ),
    ("info ntp>8", CtlEngineInfo, lambda: tamper(example(CtlEngineInfo), ntp=(9, b"")), "too many"),
    ("reason", MonitorEvent, lambda: tamper(example(MonitorEvent), reason=b"r" * 64), "NUL"),
]


@pytest.mark.parametrize(("case", "cls", "make", "match"), _CASES, ids=[c[0] for c in _CASES])
def test_field_check(case: str, cls: type[Payload], make: Callable[[], bytes], match: str) -> None:
    data = make()
    assert cls is Verbose or cls.MIN_SIZE <= len(data) <= cls.MAX_SIZE
    with pytest.raises(ImsgError, match=match):
        cls.unpack(data)


# --- checks on construction (nothing invalid can be packed) -------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: IfIndex(-1),
        lambda: IfIndex(2**32),
        lambda: Verbose(-1),
        lambda: IfaceConf("eth0", 0, (A(1),) * 17, False),
        lambda: IfaceConf("a" * 16, 0, (), False),
        lambda: IfaceConf("eth0", 0, (), 1),
        lambda: HostName(b"a\0b"),
        lambda: HostName("host"),  # type: ignore[arg-type]
        lambda: ReloadResult(False, "a\x1b[31m"),
        lambda: ReloadResult(False, "x" * 4096),
        lambda: IfInfo(1, "eth0", 0, True, 0, b"\0" * 5, ""),
        lambda: IfInfo(1, "eth0", 0, True, 0, b"\0" * 6, "x" * 4096),
        lambda: IfInfo(1, "eth0", 0, True, 0, b"\0" * 6, "a\0"),
        lambda: Dhcp(1, 0, b"x" * 1501),
        lambda: ConfigureInterface(1, 0, A(1), A("255.0.255.0"), A(0), A(0), b"", "", "", 0, ()),
        lambda: ConfigureInterface(
            1, 0, A(1), A(0), A(0), A(0), b"", "", "", 0, (Route(A(0), A(5), A(0)),)
        ),
        lambda: ConfigureInterface(
            1, 0, A(1), A(0), A(0), A(0), b"", "", "", 0, (Route(A(0), A(0), A(0)),) * 257
        ),
        lambda: ConfigureInterface(1, 0, A(1), A(0), A(0), A(0), b"x" * 513, "", "", 0, ()),
        lambda: ConfigureInterface(1, 0, A(1), A(0), A(0), A(0), b"", "a\nb", "", 0, ()),
        lambda: ProposeRdns(1, 0, (A(1),) * 9, "", ()),
        lambda: ProposeRdns(1, 0, (), "", ("a b",)),
        lambda: ProposeRdns(1, 0, (), "", ("",)),
        lambda: ProposeRdns(1, 0, (), "", ("x" * 600, "y" * 600)),
        lambda: MonitorEvent(0.0, 1, "eth0", "Down", "Selecting", A(0), ""),
        lambda: ProcInfo("engine", 1, 0, 0, 2**64, False, 0, 0, 0),
    ],
)
def test_construction_checks(make: Callable[[], object]) -> None:
    with pytest.raises(ImsgError):
        make()


def test_imsg_error_is_value_error() -> None:
    assert issubclass(ImsgError, ValueError)


def test_numbers_accept_int_and_reject_bool() -> None:
    info = CtlEngineInfo(1, False, 0, "Down", 0, A(0), A(0), A(0), A(0), (), (), 0, 0, 0, "", ())
    assert CtlEngineInfo.unpack(info.pack()).request_time == 0.0
    with pytest.raises(ImsgError):
        IfIndex(True)
