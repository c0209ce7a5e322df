"""Issue 15 in the engine process: DHCPRELEASE when asked, rapid commit (fake siblings)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from ipaddress import IPv4Address

import pytest

from dhcpleased import defs, imsg
from dhcpleased.imsg import ImsgType
from tests.proc.peer import Peer
from tests.proc.test_engine import IFINDEX, IFNAME, Rig, bind, dhcp, make_rig, reply, update_if
from tests.unit import frames

ZERO = IPv4Address(0)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for r in make_rig():
        yield r


async def monitor(r: Rig) -> None:
    r.fe.send(ImsgType.CTL_MONITOR)
    await asyncio.sleep(0.05)


async def events(r: Rig, n: int) -> list[tuple[str, str, str]]:
    out = []
    for _ in range(n):
        ev = imsg.MonitorEvent.unpack((await r.fe.expect(ImsgType.CTL_MONITOR_EVENT)).data)
        out.append((ev.old_state, ev.new_state, ev.reason))
    return out


async def state(r: Rig) -> imsg.CtlEngineInfo:
    r.fe.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(IFINDEX).pack(), peerid=1)
    return imsg.CtlEngineInfo.unpack((await r.fe.expect(ImsgType.CTL_SHOW_INTERFACE_INFO)).data)


@pytest.mark.parametrize(("sender", "reason"), [("fe", "release"), ("main", "exit")])
async def test_release_waits_for_the_frontend_before_the_address_goes(
    rig: Rig, sender: str, reason: str
) -> None:
    await bind(rig)
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    await monitor(rig)
    peer = rig.fe if sender == "fe" else rig.main
    peer.send(ImsgType.REQUEST_RELEASE, imsg.IfIndex(IFINDEX).pack())
    rel = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_RELEASE)).data)
    assert (rel.if_index, rel.ciaddr, rel.requested_ip) == (IFINDEX, frames.YIADDR, ZERO)
    assert (rel.server_identifier, rel.dhcp_server) == (frames.SERVER, frames.SERVER)
    assert await events(rig, 1) == [("Bound", "Releasing", reason)]
    await rig.main.quiet(0.2)  # the address is the RELEASE's source: it stays for now
    assert (await state(rig)).state == "Releasing"
    rig.fe.send(ImsgType.RELEASE_SENT, imsg.IfIndex(IFINDEX).pack())
    await rig.main.expect(ImsgType.WITHDRAW_RDNS)
    ci = imsg.ConfigureInterface.unpack(
        (await rig.main.expect(ImsgType.DECONFIGURE_INTERFACE)).data
    )
    assert ci.addr == frames.YIADDR
    assert imsg.IfIndex.unpack((await rig.main.expect(ImsgType.RELEASED)).data).if_index == IFINDEX
    assert await events(rig, 1) == [("Releasing", "Released", "release sent")]
    info = await state(rig)
    assert (info.state, info.requested_ip, info.server_identifier) == ("Released", ZERO, ZERO)


async def test_released_stays_idle_through_link_flaps_until_a_request(rig: Rig) -> None:
    await bind(rig)
    rig.fe.send(ImsgType.REQUEST_RELEASE, imsg.IfIndex(IFINDEX).pack())
    await rig.fe.expect(ImsgType.SEND_RELEASE)
    rig.fe.send(ImsgType.RELEASE_SENT, imsg.IfIndex(IFINDEX).pack())
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    for t in (ImsgType.WITHDRAW_RDNS, ImsgType.DECONFIGURE_INTERFACE, ImsgType.RELEASED):
        await rig.main.expect(t)
    update_if(rig.main, running=False)
    update_if(rig.main, running=True)
    await rig.fe.quiet(0.2)  # no DISCOVER: the link is not a request
    rig.fe.send(ImsgType.REQUEST_REBOOT, imsg.IfIndex(IFINDEX).pack())
    await rig.fe.expect(ImsgType.SEND_DISCOVER)


async def test_release_of_an_unbound_interface_still_reports_released(rig: Rig) -> None:
    update_if(rig.main)
    await rig.fe.expect(ImsgType.SEND_DISCOVER)
    rig.main.send(ImsgType.REQUEST_RELEASE, imsg.IfIndex(IFINDEX).pack())
    await rig.main.expect(ImsgType.RELEASED)  # the parent's exit wait ends with it
    await rig.fe.quiet()
    rig.main.send(ImsgType.REQUEST_RELEASE, imsg.IfIndex(IFINDEX).pack())
    await rig.main.expect(ImsgType.RELEASED)  # and again, once Released
    rig.main.send(ImsgType.REQUEST_RELEASE, imsg.IfIndex(99).pack())  # unknown: ignored
    await rig.main.quiet()
    assert not rig.task.done()


async def test_the_frontend_never_answering_costs_only_the_wait(rig: Rig) -> None:
    await bind(rig)
    rig.fe.send(ImsgType.REQUEST_RELEASE, imsg.IfIndex(IFINDEX).pack())
    await rig.fe.expect(ImsgType.SEND_RELEASE)
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    await rig.main.expect(ImsgType.WITHDRAW_RDNS, defs.RELEASE_WAIT + 1.5)
    await rig.main.expect(ImsgType.DECONFIGURE_INTERFACE)
    await rig.main.expect(ImsgType.RELEASED)


# --- rapid commit ---------------------------------------------------------------------------


def configure_rapid(main: Peer, rapid: bool) -> None:
    main.send(ImsgType.RECONF_CONF)
    main.send(ImsgType.RECONF_IFACE, imsg.IfaceConf(IFNAME, 0, (), False, rapid).pack())
    main.send(ImsgType.RECONF_END)


RAPID = ((80, b""),)


async def test_rapid_commit_ack_answers_the_discover(rig: Rig) -> None:
    configure_rapid(rig.main, True)
    await monitor(rig)
    update_if(rig.main)
    disc = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_DISCOVER)).data)
    dhcp(rig.fe, reply(disc.xid, defs.DHCPACK, RAPID))
    ci = imsg.ConfigureInterface.unpack((await rig.main.expect(ImsgType.CONFIGURE_INTERFACE)).data)
    assert ci.addr == frames.YIADDR
    assert (await events(rig, 2))[-1] == ("Init", "Bound", "rapid commit")
    info = await state(rig)
    assert (info.state, info.rapid_commit) == ("Bound", True)
    await rig.fe.quiet()  # no REQUEST: two messages in all


@pytest.mark.parametrize(("rapid", "extra"), [(True, ()), (False, RAPID)])
async def test_an_ack_in_init_needs_both_our_option_80_and_its(
    rig: Rig, rapid: bool, extra: tuple[tuple[int, bytes], ...]
) -> None:
    configure_rapid(rig.main, rapid)
    update_if(rig.main)
    disc = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_DISCOVER)).data)
    dhcp(rig.fe, reply(disc.xid, defs.DHCPACK, extra))
    await rig.main.quiet(0.2)
    dhcp(rig.fe, reply(disc.xid, defs.DHCPOFFER))  # an OFFER still works either way
    await rig.fe.expect(ImsgType.SEND_REQUEST)
