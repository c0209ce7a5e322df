"""The real Engine on a fake clock (the fuzz harness's loop): waits measured in seconds of
protocol time, not of test time."""

from __future__ import annotations

import math
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
    due = math.ceil(300 + h.iface.machine.jitter)  # the floor plus the sub-second jitter
    sent = len(h.fe.sent)
    for _ in range(due - 1):  # second by second: every timer due until then fires, none sends
        h.step(("advance", 1.0))
    assert h.fe.sent[sent:] == [] and h.iface.machine.state.value == "IPv6 only"
    h.step(("advance", 1.0))
    assert discovers(h) == 2 and h.iface.machine.state.value == "Init"
    assert not any(t is ImsgType.SEND_REQUEST for t, _ in h.fe.sent)
