"""The real Engine on a fake clock (the fuzz harness's loop): waits measured in seconds of
protocol time, not of test time."""

from __future__ import annotations

import struct

from dhcpleased import defs, imsg
from dhcpleased.imsg import ImsgType
from fuzz.fuzz_engine import IFINDEX, Harness
from tests.unit.test_fuzz_engine import reply


def discovers(h: Harness) -> int:
    return sum(t is ImsgType.SEND_DISCOVER for t, _ in h.fe.sent)


def test_ipv6_only_preferred_waits_at_least_300s() -> None:
    """RFC 8925 with prefer ipv6: an OFFER with option 108 = 1 s silences the interface for
    300 s (MIN_V6ONLY_WAIT), not 1 s; then it starts over with a DISCOVER."""
    h = Harness(1)
    h.step(("conf", 0, True, None))
    h.step(("link", True, 6, ""))
    assert h.iface is not None and discovers(h) == 1
    offer = reply(h.iface.machine.xid, defs.DHCPOFFER, bytes([108, 4]) + struct.pack("!I", 1))
    h.from_fe(ImsgType.DHCP, imsg.Dhcp(IFINDEX, 0, offer).pack())
    assert h.iface.machine.state.value == "IPv6 only"
    start, sent = h.loop.now, len(h.fe.sent)
    for _ in range(299):  # every timer due in the first 299 s fires: none may send
        h.step(("advance", 1.0))
    assert h.fe.sent[sent:] == [] and h.iface.machine.state.value == "IPv6 only"
    h.step(("advance", None))  # the next timer, whenever it is due
    assert 300 <= h.loop.now - start < 301  # the floor plus the sub-second jitter
    assert discovers(h) == 2 and h.iface.machine.state.value == "Init"
    assert not any(t is ImsgType.SEND_REQUEST for t, _ in h.fe.sent)
