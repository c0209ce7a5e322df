"""The engine fuzz target (fuzz/fuzz_engine.py) in the suite, and the findings it made,
each kept as a regression test: a reply or a lease file that made the engine send the
parent something it rejects as coming from a compromised engine (the daemon then exits)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased import defs, imsg, main
from dhcpleased.imsg import ImsgType
from dhcpleased.ipc import Imsg
from dhcpleased.parse import Config
from fuzz.fuzz_engine import (
    ADDRS,
    COOKIE,
    GOOD,
    IFINDEX,
    IFNAME,
    MASKS,
    RANDOM_IMSG,
    SERVER,
    START,
    STEPS,
    Finding,
    Harness,
    check_for_parent,
    run_case,
)
from fuzz.fuzz_packet import CLIENT_MAC, ip_udp


@settings(max_examples=150, deadline=None, database=None)
@given(st.integers(0, 2**32 - 1), st.lists(STEPS, max_size=25), RANDOM_IMSG)
def test_engine_dispatch_never_fails(
    seed: int, steps: list[tuple[object, ...]], last: tuple[bool, int, bytes] | None
) -> None:
    run_case(seed, steps, last)


def reply(xid: int, mtype: int, *extra: bytes) -> bytes:
    hdr = bytearray(236)
    hdr[0:3] = b"\x02\x01\x06"
    struct.pack_into("!I", hdr, 4, xid)
    hdr[16:20] = GOOD.packed
    hdr[28:34] = CLIENT_MAC
    opts = bytes([53, 1, mtype, 54, 4]) + SERVER.packed + bytes([1, 4, 255, 255, 255, 0])
    opts += bytes([51, 4]) + struct.pack("!I", 3600) + b"".join(extra) + b"\xff"
    return ip_udp(bytes(hdr) + COOKIE + opts, src=SERVER)


def bind(h: Harness, *extra: bytes) -> None:
    for s in START:
        h.step(s)
    assert h.iface is not None
    for mtype in (defs.DHCPOFFER, defs.DHCPACK):
        frame = reply(h.iface.machine.xid, mtype, *extra)
        h.from_fe(ImsgType.DHCP, imsg.Dhcp(IFINDEX, 0, frame).pack())
        h.alive("reply")


def configured(h: Harness) -> imsg.ConfigureInterface:
    data = next(d for t, d in h.main.sent if t is ImsgType.CONFIGURE_INTERFACE)
    return imsg.ConfigureInterface.unpack(data)


@pytest.mark.parametrize("gw", ["240.0.0.1", "224.0.0.1", "127.0.0.1", "255.255.255.255"])
def test_route_via_non_unicast_gateway_is_dropped(gw: str) -> None:
    """Finding 1: option 3/121 with such a gateway reached CONFIGURE_INTERFACE."""
    h = Harness(1)
    bad = IPv4Address(gw).packed
    routes121 = bytes([24, 198, 51, 100]) + bad + bytes([0]) + SERVER.packed
    bind(h, bytes([121, len(routes121)]) + routes121)
    ci = configured(h)
    assert [str(r.gw) for r in ci.routes] == [str(SERVER)]
    assert h.iface is not None and h.iface.machine.state.value == "Bound"


def test_non_unicast_nameservers_are_dropped() -> None:
    """Finding 3: 127.0.0.1 in option 6 reached PROPOSE_RDNS."""
    h = Harness(1)
    ns = [IPv4Address(a) for a in ("127.0.0.1", "192.0.2.53", "224.0.0.9", "240.1.1.1")]
    bind(h, bytes([6, 16]) + b"".join(a.packed for a in ns))
    data = next(d for t, d in h.main.sent if t is ImsgType.PROPOSE_RDNS)
    assert imsg.ProposeRdns.unpack(data).rdns == (IPv4Address("192.0.2.53"),)


def test_class_e_address_in_lease_file_is_not_remembered() -> None:
    """Finding 2: ``ip: 240.1.2.3`` was INIT-REBOOTed, then deconfigured -> fatal."""
    h = Harness(1)
    h.step(("conf", 0, False, None))
    h.step(("link", True, 6, "version: 2\nip: 240.1.2.3\n"))
    assert h.iface is not None and h.iface.machine.state.value == "Init"
    nak = reply(h.iface.machine.xid, defs.DHCPNAK)
    h.from_fe(ImsgType.DHCP, imsg.Dhcp(IFINDEX, 0, nak).pack())
    h.alive("NAK")
    assert not any(t is ImsgType.DECONFIGURE_INTERFACE for t, _ in h.main.sent)


def test_parent_checks_are_the_parents() -> None:
    """The harness's oracle refuses what main.py refuses (so findings are real)."""
    ci = imsg.ConfigureInterface(
        IFINDEX, 0, IPv4Address("240.0.0.1"), IPv4Address("255.255.255.0"), SERVER, SERVER,
        b"", "", "", 60, (),
    )  # fmt: skip
    with pytest.raises(Finding):
        check_for_parent(ImsgType.CONFIGURE_INTERFACE, ci.pack())
    assert IFNAME == "dl0"


# --- the oracle against a real parent ---------------------------------------------------------

QUAD = ADDRS.map(lambda a: a.packed) | MASKS  # hostile 4-byte values for any address field


@st.composite
def configure_payload(draw: st.DrawFn) -> bytes:
    """A CONFIGURE_INTERFACE-shaped payload whose address, mask and routes are raw bytes
    (the imsg constructor would refuse some of them: the parent must, too)."""
    ci = imsg.ConfigureInterface(
        draw(st.sampled_from([IFINDEX, IFINDEX + 1])), 0, GOOD, IPv4Address("255.255.255.0"),
        SERVER, SERVER, b"", "", "", draw(st.integers(0, 2**32 - 1)), (),
    )  # fmt: skip
    data = bytearray(ci.pack())
    data[8:12], data[12:16] = draw(QUAD), draw(QUAD)
    routes = draw(st.lists(st.tuples(QUAD, QUAD, QUAD), max_size=3))
    start = len(data) - 12 * defs.MAX_DHCP_ROUTES
    struct.pack_into("=I", data, start - 4, len(routes))
    data[start : start + 12 * len(routes)] = b"".join(b"".join(r) for r in routes)
    return bytes(data)


ENGINE_TYPES = st.sampled_from(sorted(main.ALLOWED["engine"])) | st.sampled_from(list(ImsgType))
RDNS = st.builds(
    imsg.ProposeRdns,
    if_index=st.sampled_from([IFINDEX, IFINDEX + 1]), rdomain=st.just(0),
    rdns=st.lists(ADDRS, max_size=3).map(tuple), domain=st.just(""), search=st.just(()),
).map(lambda rd: rd.pack())  # fmt: skip


@pytest.fixture(scope="module")
def real_parent() -> Iterator[tuple[asyncio.AbstractEventLoop, main.Main]]:
    """A real Main (the parent's class, not the oracle's stand-in) that manages dl0 as 7."""
    loop = asyncio.new_event_loop()

    async def make() -> main.Main:
        return main.Main(
            opts=main.Options(ifaces=[IFNAME]), conf=Config(), load_config=Config,
            kroute=SimpleNamespace(withdraw_routes=print), resolver=None,  # type: ignore[arg-type]
            open_bpfsock=None, open_bcastsock=None, open_udpsock=None,  # type: ignore[arg-type]
            open_routesock=None,  # type: ignore[arg-type]
        )  # fmt: skip

    parent = loop.run_until_complete(make())
    parent.ifnames[IFINDEX] = IFNAME
    yield loop, parent
    loop.close()


@settings(max_examples=400, deadline=None, database=None)
@given(t=ENGINE_TYPES, data=configure_payload() | RDNS | st.binary(max_size=400))
def test_oracle_agrees_with_the_parent(
    real_parent: tuple[asyncio.AbstractEventLoop, main.Main], t: ImsgType, data: bytes
) -> None:
    """What the fuzz oracle calls a finding is exactly what makes a real parent fatal."""
    loop, parent = real_parent
    parent.done = loop.create_future()
    parent.sandboxed = set()  # as fresh as the oracle's stand-in: SANDBOX_UP is once only
    parent.dispatch("engine", Imsg(t, 0, 0, data, None))
    fatal = parent.done.done()
    while not parent.work.empty():  # accepted: the job would configure the kernel; drop it
        parent.work.get_nowait()
    try:
        check_for_parent(t, data)
    except Finding:
        assert fatal, (t.name, data[:60].hex())
    else:
        assert not fatal, (t.name, data[:60].hex())


def raw_configure(addr: str, mask: str, routes: tuple[tuple[str, str, str], ...] = ()) -> bytes:
    data = bytearray(
        imsg.ConfigureInterface(
            IFINDEX, 0, GOOD, IPv4Address("255.255.255.0"), SERVER, SERVER, b"", "", "", 60, ()
        ).pack()
    )
    data[8:16] = IPv4Address(addr).packed + IPv4Address(mask).packed
    start = len(data) - 12 * defs.MAX_DHCP_ROUTES
    struct.pack_into("=I", data, start - 4, len(routes))
    for i, r in enumerate(routes):
        data[start + 12 * i : start + 12 * i + 12] = b"".join(IPv4Address(a).packed for a in r)
    return bytes(data)


@pytest.mark.parametrize(
    ("addr", "mask", "routes", "refused"),
    [
        ("192.0.2.10", "255.255.255.0", (("0.0.0.0", "0.0.0.0", "192.0.2.1"),), False),
        ("192.0.2.10", "255.0.255.0", (), True),  # not contiguous
        ("192.0.2.10", "0.0.0.0", (), True),  # empty
        ("224.0.0.1", "255.255.255.0", (), True),  # not unicast
        ("192.0.2.10", "255.255.255.0", (("10.1.2.3", "255.255.255.0", "192.0.2.1"),), True),
        ("192.0.2.10", "255.255.255.0", (("10.1.2.0", "255.255.255.0", "240.0.0.1"),), True),
    ],
)
def test_oracle_refuses_what_the_readme_says_the_parent_does(
    addr: str, mask: str, routes: tuple[tuple[str, str, str], ...], refused: bool
) -> None:
    """README: "a unicast address, a contiguous netmask, routes without host bits and with
    unicast gateways"; the oracle (the parent's own dispatch) refuses exactly those."""
    data = raw_configure(addr, mask, routes)
    if refused:
        with pytest.raises(Finding):
            check_for_parent(ImsgType.CONFIGURE_INTERFACE, data)
    else:
        check_for_parent(ImsgType.CONFIGURE_INTERFACE, data)
