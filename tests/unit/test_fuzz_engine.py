"""The engine fuzz target (fuzz/fuzz_engine.py) in the suite, and the findings it made,
each kept as a regression test: a reply or a lease file that made the engine send the
parent something it rejects as coming from a compromised engine (the daemon then exits)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased import defs, imsg
from dhcpleased.imsg import ImsgType
from fuzz.fuzz_engine import (
    COOKIE,
    GOOD,
    IFINDEX,
    IFNAME,
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
