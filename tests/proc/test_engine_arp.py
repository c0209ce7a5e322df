"""RFC 5227 in the engine process (fake parent and frontend, a boot clock that jumps):
probe from the OFFER, hold the ACK, announce, defend, decline, and what -m and the ctl
report say meanwhile."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from ipaddress import IPv4Address

import pytest

from dhcpleased import defs, imsg, packet
from dhcpleased.imsg import ImsgType
from dhcpleased.ipc import Imsg
from tests.proc.peer import Peer
from tests.proc.test_engine import (
    IFINDEX,
    IFNAME,
    Rig,
    SleepingClock,
    dhcp,
    make_rig,
    reply,
    update_if,
)
from tests.unit import frames

ZERO = IPv4Address(0)
SQUATTER_MAC = bytes.fromhex("02000000bad1")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for r in make_rig(SleepingClock()):
        r.main.send(ImsgType.RECONF_CONF)
        conf = imsg.IfaceConf(IFNAME, 0, (), False, False, arp_probe=True)
        r.main.send(ImsgType.RECONF_IFACE, conf.pack())
        r.main.send(ImsgType.RECONF_END)
        yield r


def clock(r: Rig) -> SleepingClock:
    c = r.engine.clock
    assert isinstance(c, SleepingClock)
    return c


def arp_req(msg: Imsg) -> IPv4Address:
    req = imsg.ArpReq.unpack(msg.data)
    assert req.if_index == IFINDEX
    return req.address


def claim(r: Rig, *, sha: bytes = SQUATTER_MAC, spa: IPv4Address = frames.YIADDR) -> None:
    """Another host's ARP reply from our address, as the frontend relays it."""
    raw = packet.arp_frame(
        packet.ARPOP_REPLY, sha, spa, frames.CLIENT_MAC, ZERO, dst=frames.CLIENT_MAC
    )
    r.fe.send(ImsgType.ARP, imsg.Dhcp(IFINDEX, 0, raw.ljust(60, b"\0")).pack())


STASHED: list[Imsg] = []  # monitor events read past by fe_expect


async def fe_expect(r: Rig, t: ImsgType) -> Imsg:
    """The frontend's next message of type t; -m events on the way are kept for events()."""
    while True:
        msg = await asyncio.wait_for(r.fe.queue.get(), 2)
        if msg.type != ImsgType.CTL_MONITOR_EVENT or t == ImsgType.CTL_MONITOR_EVENT:
            assert msg.type == t, imsg.type_name(msg.type)
            return msg
        STASHED.append(msg)


async def drain(peer: Peer) -> list[Imsg]:
    await asyncio.sleep(0.05)
    out = []
    while not peer.queue.empty():
        out.append(peer.queue.get_nowait())
    return out


async def run_clock(r: Rig, seconds: float) -> list[Imsg]:
    """Let ``seconds`` pass on the boot clock, a second at a time; what main got."""
    out: list[Imsg] = []
    for _ in range(round(seconds)):
        clock(r).sleep(1.0)
        out += await drain(r.main)
    return out


async def monitor(r: Rig) -> None:
    r.fe.send(ImsgType.CTL_MONITOR)
    await asyncio.sleep(0.05)


async def events(r: Rig) -> list[tuple[str, str, str, str]]:
    out = []
    got, STASHED[:] = [*STASHED, *await drain(r.fe)], []
    for m in got:
        if m.type == ImsgType.CTL_MONITOR_EVENT:
            ev = imsg.MonitorEvent.unpack(m.data)
            out.append((ev.old_state, ev.new_state, str(ev.address), ev.reason))
    return out


async def info(r: Rig) -> imsg.CtlEngineInfo:
    r.fe.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(IFINDEX).pack(), peerid=1)
    msg = await fe_expect(r, ImsgType.CTL_SHOW_INTERFACE_INFO)
    return imsg.CtlEngineInfo.unpack(msg.data)


async def offered_and_acked(r: Rig) -> None:
    """DISCOVER, OFFER: the REQUEST and the watch go out together; ACK: nothing yet."""
    update_if(r.main)
    STASHED.clear()
    disc = imsg.ReqDhcp.unpack((await fe_expect(r, ImsgType.SEND_DISCOVER)).data)
    dhcp(r.fe, reply(disc.xid, defs.DHCPOFFER))
    await fe_expect(r, ImsgType.SEND_REQUEST)
    assert arp_req(await r.main.expect(ImsgType.ARP_WATCH)) == frames.YIADDR
    dhcp(r.fe, reply(disc.xid, defs.DHCPACK))
    await r.main.quiet(0.1)  # no CONFIGURE before the probe is done


async def test_the_ack_waits_for_the_probe_then_the_address_is_announced(rig: Rig) -> None:
    await monitor(rig)
    await offered_and_acked(rig)
    shown = await info(rig)
    assert (shown.state, shown.arp_probe, shown.arp_phase) == ("Probing", True, "probing")
    assert shown.arp_address == frames.YIADDR and shown.requested_ip == frames.YIADDR
    got = await run_clock(rig, 10)
    kinds = [ImsgType(m.type) for m in got]
    assert kinds == [
        ImsgType.ARP_PROBE, ImsgType.ARP_PROBE, ImsgType.ARP_PROBE,
        ImsgType.CONFIGURE_INTERFACE, ImsgType.PROPOSE_RDNS,
        ImsgType.ARP_ANNOUNCE, ImsgType.ARP_ANNOUNCE,
    ]  # fmt: skip
    arp_types = (ImsgType.ARP_PROBE, ImsgType.ARP_ANNOUNCE)
    assert {arp_req(m) for m in got if m.type in arp_types} == {frames.YIADDR}
    assert [e[:3] for e in await events(rig)] == [
        ("Down", "Init", "0.0.0.0"),
        ("Init", "Requesting", str(frames.YIADDR)),
        ("Requesting", "Probing", str(frames.YIADDR)),
        ("Probing", "Bound", str(frames.YIADDR)),
    ]
    assert (await info(rig)).arp_phase == "defending"


async def test_a_conflict_while_probing_declines_and_starts_over_after_10s(rig: Rig) -> None:
    await monitor(rig)
    await offered_and_acked(rig)
    await events(rig)
    claim(rig)
    assert arp_req(await rig.main.expect(ImsgType.ARP_WATCH)) == ZERO  # the socket goes
    dec = imsg.ReqDhcp.unpack((await fe_expect(rig, ImsgType.SEND_DECLINE)).data)
    assert (dec.ciaddr, dec.requested_ip) == (ZERO, frames.YIADDR)
    assert (dec.server_identifier, dec.dhcp_server) == (frames.SERVER, ZERO)  # broadcast
    assert await events(rig) == [
        ("Probing", "Declined", str(frames.YIADDR), "address conflict with 02:00:00:00:ba:d1")
    ]
    shown = await info(rig)
    assert (shown.state, shown.arp_phase, shown.arp_conflicts) == ("Declined", "idle", 1)
    assert (shown.conflict_address, shown.conflict_mac) == (frames.YIADDR, SQUATTER_MAC)
    await run_clock(rig, 9)
    assert (await info(rig)).state == "Declined"  # RFC 2131 3.1.5: ten seconds at least
    await run_clock(rig, 2)
    await fe_expect(rig, ImsgType.SEND_DISCOVER)


async def test_in_use_the_first_claim_is_defended_the_next_gives_the_address_up(rig: Rig) -> None:
    await offered_and_acked(rig)
    await run_clock(rig, 10)
    await monitor(rig)
    claim(rig)
    assert arp_req(await rig.main.expect(ImsgType.ARP_ANNOUNCE)) == frames.YIADDR
    assert await events(rig) == [
        ("Bound", "Bound", str(frames.YIADDR), "address conflict with 02:00:00:00:ba:d1")
    ]  # no state change, still an event
    clock(rig).sleep(3)
    claim(rig)  # within DEFEND_INTERVAL: lost
    kinds = [ImsgType(m.type) for m in await drain(rig.main)]
    assert kinds == [
        ImsgType.WITHDRAW_RDNS, ImsgType.DECONFIGURE_INTERFACE, ImsgType.ARP_WATCH,
    ]  # fmt: skip
    await fe_expect(rig, ImsgType.SEND_DECLINE)
    assert [e[:2] for e in await events(rig)] == [("Bound", "Declined")]
    assert (await info(rig)).arp_conflicts == 2


async def test_arp_frames_that_do_not_parse_or_are_ours_change_nothing(rig: Rig) -> None:
    await offered_and_acked(rig)
    rig.fe.send(ImsgType.ARP, imsg.Dhcp(IFINDEX, 0, b"\x01" * 30).pack())
    rig.fe.send(ImsgType.ARP, imsg.Dhcp(99, 0, b"\x01" * 60).pack())  # no such interface
    claim(rig, sha=frames.CLIENT_MAC)  # our own announcement, looped back
    await rig.main.quiet(0.1)
    await rig.fe.quiet(0.1)
    assert (await info(rig)).arp_conflicts == 0 and not rig.task.done()


async def test_an_arp_frame_with_a_descriptor_ends_the_engine(rig: Rig) -> None:
    await offered_and_acked(rig)
    r, w = os.pipe()
    os.close(w)
    rig.fe.send(ImsgType.ARP, imsg.Dhcp(IFINDEX, 0, b"").pack(), fd=r)
    assert await asyncio.wait_for(rig.task, 2) == 1
