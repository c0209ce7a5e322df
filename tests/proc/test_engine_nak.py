"""Broken NAKs sent to the engine where a correct NAK would change everything.

In Requesting, Renewing and Rebooting a NAK restarts discovery (and, with a lease held,
deconfigures it), so each check of the receive path matters only there: a NAK with the
wrong xid, a bad checksum, a wrong cookie... must leave the engine exactly where it is,
and the correct NAK sent after them must still act (proof that the state was listening).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

import pytest

from dhcpleased import defs, imsg
from dhcpleased.imsg import ImsgType
from tests.proc import test_engine as base
from tests.proc.test_engine import Rig, dhcp, update_if
from tests.unit import frames
from tests.unit.frames import ACK_OPTIONS

rig = base.rig  # the engine against a fake parent and frontend

NAK_OPTIONS = ((53, bytes([defs.DHCPNAK])), (54, frames.SERVER.packed))


def nak(xid: int, **kw: object) -> bytes:
    return frames.frame(frames.bootp(NAK_OPTIONS, xid=xid, yiaddr=frames.ZERO), **kw)  # type: ignore[arg-type]


def broken_naks(xid: int) -> dict[str, bytes]:
    """A correct NAK for ``xid`` but for one thing each (and two frames of nothing)."""
    good = nak(xid)
    return {
        "empty": b"",
        "zeros": bytes(1500),
        "wrong xid": nak(xid ^ 0x5A5A5A5A),
        "bad IP checksum": nak(xid, ip_csum=0x1234),
        "bad UDP checksum": nak(xid, udp_csum=0x1234),
        "truncated": good[:-40],  # the NAK's options survive, the IP length lies
        "IP fragment": nak(xid, frag=0x2000),
        "not for our MAC": nak(xid, dst_mac=b"\x02\x00\x00\x00\x00\x99"),
        "wrong cookie": frames.frame(
            frames.bootp(NAK_OPTIONS, xid=xid, yiaddr=frames.ZERO, cookie=b"c\x82Sd")
        ),
        "a BOOTREQUEST": frames.frame(frames.bootp(NAK_OPTIONS, xid=xid, yiaddr=frames.ZERO, op=1)),
    }


async def requesting(r: Rig) -> int:
    update_if(r.main)
    disc = imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_DISCOVER)).data)
    dhcp(r.fe, base.reply(disc.xid, defs.DHCPOFFER))
    return imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_REQUEST)).data).xid


async def rebooting(r: Rig) -> int:
    update_if(r.main, lease=f"version: 2\nip: {frames.YIADDR}\n")
    return imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_REQUEST)).data).xid


async def renewing(r: Rig) -> int:
    """Bound with T1 = 1 s, then the renewal the engine's own timer sends."""
    update_if(r.main)
    disc = imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_DISCOVER)).data)
    dhcp(r.fe, base.reply(disc.xid, defs.DHCPOFFER))
    req = imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_REQUEST)).data)
    times = {51: 60, 58: 1, 59: 50}
    opts = tuple(
        (c, struct.pack("!I", times[c]) if c in times else v)
        for c, v in ACK_OPTIONS
        if c not in (26, 42)  # not what these tests are about (test_engine_mtu_ntp.py)
    )
    dhcp(r.fe, frames.frame(frames.bootp(opts, xid=req.xid)))
    await r.main.expect(ImsgType.CONFIGURE_INTERFACE)
    await r.main.expect(ImsgType.PROPOSE_RDNS)
    renew = imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_REQUEST, 5)).data)
    assert renew.dhcp_server == frames.SERVER  # unicast: a renewal
    return renew.xid


# state -> (how to get there, what the correct NAK makes the engine tell the parent)
STATES: dict[str, tuple[Callable[[Rig], Awaitable[int]], tuple[ImsgType, ...]]] = {
    "Requesting": (requesting, ()),
    "Rebooting": (
        rebooting,  # a remembered lease: its DNS and NTP may be in place from the last run
        (ImsgType.WITHDRAW_RDNS, ImsgType.WITHDRAW_NTP, ImsgType.DECONFIGURE_INTERFACE),
    ),
    "Renewing": (renewing, (ImsgType.WITHDRAW_RDNS, ImsgType.DECONFIGURE_INTERFACE)),
}


@pytest.mark.parametrize("state", list(STATES))
async def test_broken_naks_change_nothing_where_a_nak_would(rig: Rig, state: str) -> None:
    enter, to_main = STATES[state]
    xid = await enter(rig)
    machine = rig.engine.ifaces[base.IFINDEX].machine
    assert machine.state.value == state
    for name, raw in broken_naks(xid).items():
        dhcp(rig.fe, raw)
        await rig.fe.quiet(0.02)  # a NAK taken would send a DISCOVER at once
        assert machine.state.value == state, name
    await rig.main.quiet()
    assert not rig.task.done()
    dhcp(rig.fe, nak(xid))  # the correct one: the state was listening
    for t in to_main:
        await rig.main.expect(t)
    await rig.fe.expect(ImsgType.SEND_DISCOVER)
    assert machine.state.value == "Init"
