"""The engine process with options 26 and 42: what it tells the parent, and dhcpleasectl."""

from __future__ import annotations

import logging
import struct
from ipaddress import IPv4Address

import pytest

from dhcpleased import defs, imsg
from dhcpleased.imsg import ImsgType
from tests.proc import test_engine
from tests.proc.test_engine import IFINDEX, Rig, configure, dhcp, reply, update_if

A = IPv4Address
NTP = (A("192.0.2.123"), A("192.0.2.124"))
MTU_NTP = ((26, struct.pack("!H", 1400)), (42, b"".join(a.packed for a in NTP)))
T = ImsgType
rig = test_engine.rig  # the fixture: an engine between a fake parent and a fake frontend


async def bind(r: Rig, extra: tuple[tuple[int, bytes], ...] = MTU_NTP) -> None:
    update_if(r.main)
    disc = imsg.ReqDhcp.unpack((await r.fe.expect(T.SEND_DISCOVER)).data)
    dhcp(r.fe, reply(disc.xid, defs.DHCPOFFER))
    req = imsg.ReqDhcp.unpack((await r.fe.expect(T.SEND_REQUEST)).data)
    dhcp(r.fe, reply(req.xid, defs.DHCPACK, extra))
    await r.main.expect(T.CONFIGURE_INTERFACE)
    await r.main.expect(T.PROPOSE_RDNS)


async def test_a_lease_with_mtu_and_ntp_reaches_the_parent_and_dhcpleasectl(rig: Rig) -> None:
    await bind(rig)
    assert imsg.IfMtu.unpack((await rig.main.expect(T.SET_MTU)).data) == imsg.IfMtu(IFINDEX, 1400)
    got = imsg.NtpServers.unpack((await rig.main.expect(T.PROPOSE_NTP)).data)
    assert got == imsg.NtpServers(IFINDEX, NTP)
    await rig.main.quiet()
    rig.fe.send(T.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(IFINDEX).pack(), peerid=3)
    info = imsg.CtlEngineInfo.unpack((await rig.fe.expect(T.CTL_SHOW_INTERFACE_INFO)).data)
    assert (info.mtu, info.ntp) == (1400, NTP)


async def test_link_down_keeps_them_and_removal_takes_them_back(rig: Rig) -> None:
    await bind(rig)
    await rig.main.expect(T.SET_MTU)
    await rig.main.expect(T.PROPOSE_NTP)
    update_if(rig.main, running=False)
    await rig.main.expect(T.WITHDRAW_RDNS)
    await rig.main.quiet()  # MTU and NTP stay with the address
    rig.fe.send(T.REMOVE_IF, imsg.IfIndex(IFINDEX).pack())
    await rig.main.expect(T.WITHDRAW_RDNS)
    assert imsg.NtpServers.unpack((await rig.main.expect(T.WITHDRAW_NTP)).data).servers == ()
    await rig.main.expect(T.DECONFIGURE_INTERFACE)
    msg = await rig.main.expect(T.RESTORE_MTU)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX
    await rig.main.quiet()


async def test_a_reload_that_ignores_them_takes_them_back(rig: Rig) -> None:
    await bind(rig)
    await rig.main.expect(T.SET_MTU)
    await rig.main.expect(T.PROPOSE_NTP)
    configure(rig.main, ignore=defs.IGN_MTU)
    await rig.main.expect(T.RESTORE_MTU)
    await rig.main.quiet()
    configure(rig.main, ignore=defs.IGN_MTU | defs.IGN_NTP)
    await rig.main.expect(T.WITHDRAW_NTP)
    await rig.main.quiet()
    rig.fe.send(T.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(IFINDEX).pack())
    info = imsg.CtlEngineInfo.unpack((await rig.fe.expect(T.CTL_SHOW_INTERFACE_INFO)).data)
    assert (info.mtu, info.ntp) == (0, ())


async def test_ignored_from_the_start_a_server_sending_them_anyway_changes_nothing(
    rig: Rig,
) -> None:
    configure(rig.main, ignore=defs.IGN_MTU | defs.IGN_NTP)
    await bind(rig)
    await rig.main.quiet()


async def test_an_mtu_below_576_is_refused_in_the_engine(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await bind(rig, ((26, struct.pack("!H", 500)),))
    await rig.main.quiet()
    assert "dl0: ignoring interface MTU 500 from 02:00:00:00:00:02: below 576" in caplog.text
