"""The parent's side of options 26 and 42: SET_MTU/RESTORE_MTU and PROPOSE_NTP/WITHDRAW_NTP
are checked like every engine request (a compromised engine can set no absurd MTU, touch
no other interface, hand on no multicast "NTP server"), and the config has the last word."""

from __future__ import annotations

import errno
import logging
import struct
from ipaddress import IPv4Address

import pytest

from dhcpleased import imsg
from dhcpleased.imsg import ImsgType
from dhcpleased.parse import IfaceConf
from tests.proc import test_main
from tests.proc.test_main import IFINDEX, IFNAME, Rig, failed, know_interface, send, settle

A = IPv4Address
NTP = (A("192.0.2.123"), A("192.0.2.124"))
T = ImsgType
rig = test_main.rig  # the fixture: a Main with fake children, kernel and resolver


def set_mtu(mtu: int, if_index: int = IFINDEX) -> bytes:
    """SET_MTU's bytes, whatever the value (IfMtu itself refuses to build a bad one)."""
    return struct.pack("=IH", if_index, mtu)


def ntp(*servers: IPv4Address, if_index: int = IFINDEX) -> bytes:
    return imsg.NtpServers(if_index, servers).pack()


async def known(r: Rig) -> None:
    know_interface(r)
    await settle()


async def set_propose_withdraw_restore(r: Rig) -> None:
    """A lease's MTU and NTP servers, then their undoing, as the engine sends them."""
    send(r, "engine", T.SET_MTU, set_mtu(1400))
    send(r, "engine", T.PROPOSE_NTP, ntp(*NTP))
    send(r, "engine", T.WITHDRAW_NTP, ntp())
    send(r, "engine", T.RESTORE_MTU, imsg.IfIndex(IFINDEX).pack())
    await settle()
    assert not r.m.done.done()


async def test_requests_are_served_in_order_and_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dhcpleased")
    await known(rig)
    await set_propose_withdraw_restore(rig)
    assert rig.kroute.calls == [("set_mtu", IFINDEX, 1400), ("restore_mtu", IFINDEX)]
    assert rig.resolver.calls == [("propose_ntp", IFNAME, NTP), ("withdraw_ntp", IFNAME)]
    for line in (
        "setting MTU of lo to 1400 (was 1500)",
        "adding NTP servers 192.0.2.123 192.0.2.124 on lo",
        "deleting NTP servers on lo",
        "restoring MTU of lo to 1500 (was 1400)",
    ):
        assert line in caplog.text


@pytest.mark.parametrize(
    ("t", "payload"),
    [
        (T.SET_MTU, set_mtu(575)),
        (T.SET_MTU, set_mtu(0)),
        (T.SET_MTU, set_mtu(1400, if_index=IFINDEX + 1000)),  # never told about it
        (T.SET_MTU, set_mtu(1400) + b"\0"),
        (T.RESTORE_MTU, imsg.IfIndex(IFINDEX + 1000).pack()),
        (T.PROPOSE_NTP, ntp()),
        (T.PROPOSE_NTP, ntp(NTP[0], A("224.0.1.1"))),
        (T.PROPOSE_NTP, ntp(A("127.0.0.1"))),
        (T.PROPOSE_NTP, ntp(A("255.255.255.255"))),
        (T.PROPOSE_NTP, ntp(*NTP, if_index=IFINDEX + 1000)),
        (T.WITHDRAW_NTP, ntp(*NTP)),
    ],
    ids=[
        "mtu 575",
        "mtu 0",
        "mtu other if",
        "mtu size",
        "restore other if",
        "ntp empty",
        "ntp multicast",
        "ntp loopback",
        "ntp broadcast",
        "ntp other if",
        "withdraw with servers",
    ],
)
async def test_bad_requests_end_the_daemon(rig: Rig, t: ImsgType, payload: bytes) -> None:
    await known(rig)
    send(rig, "engine", t, payload)
    await settle()
    assert failed(rig)
    assert rig.kroute.calls == [] and rig.resolver.calls == []


async def test_the_frontend_may_ask_for_none_of_it(rig: Rig) -> None:
    await known(rig)
    send(rig, "frontend", T.SET_MTU, set_mtu(1400))
    assert failed(rig)


async def test_ignore_in_the_config_wins_over_a_request_in_flight(rig: Rig) -> None:
    """A reload set "ignore mtu"/"ignore ntp": what the engine asked before it heard is not
    done; the undoing it sends once it heard is."""
    await known(rig)
    rig.m.set_managed({IFNAME: IfaceConf(IFNAME, ignore_mtu=True, ignore_ntp=True)})
    await set_propose_withdraw_restore(rig)
    assert rig.kroute.calls == [("restore_mtu", IFINDEX)]
    assert rig.resolver.calls == [("withdraw_ntp", IFNAME)]


async def test_undoing_is_carried_out_for_an_interface_a_reload_dropped(rig: Rig) -> None:
    await known(rig)
    rig.m.set_managed({})
    await set_propose_withdraw_restore(rig)
    assert rig.kroute.calls == [("restore_mtu", IFINDEX)]
    assert rig.resolver.calls == [("withdraw_ntp", IFNAME)]


async def test_what_the_kernel_refuses_is_a_log_line(
    rig: Rig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside the device's limits (the engine cannot know them), or an MTU someone else
    changed since: logged, the daemon carries on."""

    async def too_big(if_index: int, mtu: int) -> int:
        raise OSError(errno.ERANGE, "above the device's maximum 3506")

    async def changed(if_index: int) -> None:
        raise OSError(errno.EBUSY, "MTU is 1300, not the lease's 1400: left alone")

    monkeypatch.setattr(rig.kroute, "set_mtu", too_big)
    monkeypatch.setattr(rig.kroute, "restore_mtu", changed)
    await known(rig)
    send(rig, "engine", T.SET_MTU, set_mtu(9000))
    send(rig, "engine", T.RESTORE_MTU, imsg.IfIndex(IFINDEX).pack())
    await settle()
    assert not rig.m.done.done()
    assert "lo: refusing MTU 9000 from the lease: above the device's maximum 3506" in caplog.text
    assert "lo: not restoring the MTU: MTU is 1300, not the lease's 1400: left alone" in (
        caplog.text
    )


async def test_without_a_time_daemon_nothing_is_asked(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dhcpleased")
    rig.resolver.ntp_mode = "none"
    await known(rig)
    send(rig, "engine", T.PROPOSE_NTP, ntp(*NTP))
    send(rig, "engine", T.WITHDRAW_NTP, ntp())
    await settle()
    assert not rig.m.done.done() and rig.resolver.calls == []
    assert "NTP servers 192.0.2.123 192.0.2.124 on lo: no time daemon takes them" in caplog.text
