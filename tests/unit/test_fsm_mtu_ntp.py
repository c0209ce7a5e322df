"""Options 26 and 42 in the fsm (issue 15.3): SetMtu/RestoreMtu, ProposeNtp/WithdrawNtp."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address
from typing import Any

import pytest

from dhcpleased import defs
from dhcpleased.fsm import (
    Action,
    Configure,
    Deconfigure,
    Event,
    ForgetLease,
    Fsm,
    FsmConfig,
    Log,
    ProposeNtp,
    ProposeRdns,
    RestoreMtu,
    SendDiscover,
    SetMtu,
    State,
    WithdrawNtp,
    WithdrawRdns,
)
from dhcpleased.packet import DhcpMessage
from tests.unit import test_fsm, test_fsm_table
from tests.unit.test_fsm import T0, acts, make, msg, to_bound, to_rebooting
from tests.unit.test_fsm_table import EXPECTED, SETUP, fire

A = IPv4Address
NTP = (A("192.0.2.123"), A("192.0.2.124"))
MTU_NTP = (SetMtu, RestoreMtu, ProposeNtp, WithdrawNtp)


def bound(config: FsmConfig | None = None, **ack: Any) -> Fsm:
    return to_bound(make(config), **{"mtu": 1400, "ntp": NTP, **ack})


def renew(f: Fsm, **ack: Any) -> list[Action]:
    to = f.deadline
    assert to is not None
    f.timeout(to)
    assert f.state is State.RENEWING
    return acts(f.receive(msg(f, defs.DHCPACK, **{"mtu": 1400, "ntp": NTP, **ack}), to + 1))


def test_a_new_lease_sets_the_mtu_and_proposes_ntp_after_the_address() -> None:
    f = make()
    test_fsm.to_requesting(f)
    out = acts(f.receive(msg(f, defs.DHCPACK, mtu=1400, ntp=NTP), T0 + 0.2))
    assert [type(a) for a in out] == [Configure, ProposeRdns, SetMtu, ProposeNtp]
    assert out[2:] == [SetMtu(1400), ProposeNtp(NTP)]
    assert (f.mtu, f.ntp) == (1400, NTP)


def test_renewals_change_only_what_changed() -> None:
    f = bound()
    assert [type(a) for a in renew(f)] == [Configure]  # unchanged
    assert renew(f, mtu=1380)[1:] == [SetMtu(1380)]
    assert renew(f, mtu=None)[1:] == [RestoreMtu()]  # the server stopped sending 26
    assert f.mtu == 0
    assert renew(f, mtu=None)[1:] == []  # nothing of ours on the interface any more
    assert renew(f, mtu=None, ntp=NTP[:1])[1:] == [ProposeNtp(NTP[:1])]
    assert renew(f, mtu=None, ntp=())[1:] == [WithdrawNtp()]
    assert renew(f, mtu=None, ntp=())[1:] == []
    assert renew(f)[1:] == [SetMtu(1400), ProposeNtp(NTP)]


@pytest.mark.parametrize(("mtu", "taken"), [(575, 0), (68, 0), (576, 576), (65535, 65535)])
def test_an_mtu_below_576_is_refused_with_a_warning(mtu: int, taken: int) -> None:
    f = make()
    test_fsm.to_requesting(f)
    out = f.receive(msg(f, defs.DHCPACK, mtu=mtu), T0 + 0.2)
    assert f.state is State.BOUND and f.mtu == taken
    assert [a for a in out if isinstance(a, SetMtu)] == ([SetMtu(mtu)] if taken else [])
    warning = Log(
        logging.WARNING, f"ignoring interface MTU {mtu} from 02:00:00:00:00:02: below 576"
    )
    assert (warning in out) is not taken


def test_ignored_options_change_nothing() -> None:
    f = bound(FsmConfig(ignore_mtu=True, ignore_ntp=True))
    assert (f.mtu, f.ntp) == (0, ())
    assert not any(isinstance(a, MTU_NTP) for a in renew(f, mtu=9000))


def test_ntp_servers_are_unicast_unique_and_at_most_eight() -> None:
    f = make()
    test_fsm.to_requesting(f)
    odd = (A("224.0.0.1"), NTP[0], A("127.0.0.1"), NTP[0], A("0.0.0.0"), A("240.0.0.1"))
    out = f.receive(msg(f, defs.DHCPACK, ntp=odd), T0 + 0.2)
    assert f.ntp == NTP[:1]
    assert Log(logging.WARNING, "ignoring non-unicast NTP servers from 02:00:00:00:00:02") in out
    many = tuple(A(f"192.0.2.{i}") for i in range(1, 12))
    assert bound(ntp=many).ntp == many[: defs.MAX_NTP_COUNT]


def test_reconfigure_withdraws_what_is_newly_ignored() -> None:
    f = bound()
    out = acts(f.reconfigure(FsmConfig(ignore_mtu=True), T0 + 1))
    assert out == [RestoreMtu()] and f.mtu == 0
    assert acts(f.reconfigure(FsmConfig(ignore_mtu=True), T0 + 2)) == []
    out = acts(f.reconfigure(FsmConfig(ignore_mtu=True, ignore_ntp=True), T0 + 3))
    assert out == [WithdrawNtp()] and f.ntp == ()
    # and the next ACK brings nothing back while they stay ignored
    assert not any(isinstance(a, MTU_NTP) for a in renew(f))
    # unset again: the next ACK applies both
    f.reconfigure(FsmConfig(), T0 + 4)
    assert renew(f)[1:] == [SetMtu(1400), ProposeNtp(NTP)]


def test_link_down_keeps_mtu_and_ntp_with_the_address() -> None:
    """A flapping link costs the time daemon nothing: NTP stays until the lease ends."""
    f = bound()
    out = acts(f.link_update(False, None, f.request_time + 10))
    assert out == [WithdrawRdns()]
    assert f.state is State.DOWN and f.ntp == NTP
    out = acts(f.link_update(True, None, f.request_time + 20))
    out = acts(f.receive(msg(f, defs.DHCPACK, mtu=1400, ntp=NTP), f.request_time + 21))
    # a new binding: DNS again, NTP proposed again (the helper finds it unchanged)
    assert [type(a) for a in out] == [Configure, ProposeRdns, ProposeNtp]
    # the lease running out while down: MTU and NTP go with the address
    f.link_update(False, None, f.request_time + 30)
    assert f.deadline is not None
    out = acts(f.timeout(f.deadline))
    assert [type(a) for a in out] == [WithdrawNtp, Deconfigure, RestoreMtu]


@pytest.mark.parametrize(
    ("how", "kinds"),
    [
        ("expiry", [WithdrawRdns, WithdrawNtp, Deconfigure, RestoreMtu, SendDiscover]),
        ("nak", [WithdrawRdns, WithdrawNtp, Deconfigure, RestoreMtu, SendDiscover]),
        ("remove", [WithdrawRdns, WithdrawNtp, Deconfigure, RestoreMtu]),
        ("release down", [WithdrawRdns, WithdrawNtp, Deconfigure, RestoreMtu, ForgetLease]),
        ("ipv6-only", [WithdrawRdns, WithdrawNtp, Deconfigure, RestoreMtu]),
    ],
)
def test_the_lease_ending_puts_everything_back(how: str, kinds: list[type]) -> None:
    f = bound(FsmConfig(prefer_ipv6=True))
    end = f.request_time + f.lease_time
    match how:
        case "expiry":
            out = f.timeout(end)
        case "nak":
            to_renewing_now(f)
            out = f.receive(msg(f, defs.DHCPNAK), f.request_time + 10)
        case "remove":
            out = f.remove(f.request_time + 1)
        case "release down":
            f.link_update(False, None, f.request_time + 1)
            out = f.release(f.request_time + 2)
        case "ipv6-only":
            to_renewing_now(f)
            out = f.receive(msg(f, defs.DHCPACK, ipv6_only_wait=1800), f.request_time + 10)
    assert [type(a) for a in acts(out)][: len(kinds)] == kinds


def to_renewing_now(f: Fsm) -> None:
    assert f.deadline is not None
    f.timeout(f.deadline)
    assert f.state is State.RENEWING


def test_a_remembered_lease_withdraws_stale_ntp_but_has_no_mtu_to_restore() -> None:
    """After a restart the last run's NTP file may be there; its MTU is unknown here."""
    f = to_rebooting(make())
    out = acts(f.receive(msg(f, defs.DHCPACK), T0 + 0.5))  # no 26, no 42
    assert [type(a) for a in out] == [Configure, ProposeRdns, WithdrawNtp]
    f = to_rebooting(make())
    out = acts(f.remove(T0 + 0.5))
    assert [type(a) for a in out] == [WithdrawRdns, WithdrawNtp, Deconfigure]


def _mtu_ntp_msg(f: Fsm | None, message_type: int | None, **changes: Any) -> DhcpMessage:
    return msg(f, message_type, **{"mtu": 1400, "ntp": NTP, **changes})


def _with_mtu_ntp(cell: tuple[State, Event], kinds: tuple[type, ...]) -> list[type]:
    """The base table's actions when the lease carries 26 and 42 (the rules of fsm's doc)."""
    state, event = cell
    held = state in (State.BOUND, State.RENEWING, State.REBINDING, State.RELEASING)
    out: list[type] = []
    for k in kinds:
        if k is WithdrawNtp:  # a remembered lease's: the new one proposes instead
            continue
        if k is Deconfigure and (state, event) == (State.DOWN, Event.TIMEOUT):
            out.append(WithdrawNtp)  # kept through the link down, gone with the lease
        out.append(k)
        if k is Deconfigure and (held or state is State.DOWN):
            out.append(RestoreMtu)
        down_held = state is State.DOWN and event in (Event.REMOVE, Event.RELEASE)
        if (
            k is WithdrawRdns
            and event not in (Event.RECONFIGURE, Event.LINK_DOWN)
            and (held or down_held)
        ):
            out.append(WithdrawNtp)
        if k is ProposeRdns:  # a new binding
            out += [SetMtu, ProposeNtp]
        elif k is Configure and (state, event) == (State.PROBING, Event.RECONFIGURE):
            out += [SetMtu, ProposeNtp]  # "arp probe" turned off: the lease goes in place now
    if state is State.REBOOTING and event in (Event.NAK, Event.REMOVE, Event.RELEASE, Event.ARP):
        out.insert(out.index(WithdrawRdns) + 1, WithdrawNtp)  # stale, as without 26/42
    return out


@pytest.mark.parametrize(
    "cell",
    sorted(EXPECTED, key=lambda c: (c[0].value, c[1].value)),
    ids=lambda c: f"{c[0].name}-{c[1].name}",
)
def test_every_cell_with_a_lease_that_carries_mtu_and_ntp(
    cell: tuple[State, Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_fsm, "msg", _mtu_ntp_msg)
    monkeypatch.setattr(test_fsm_table, "msg", _mtu_ntp_msg)
    state, event = cell
    after, kinds = EXPECTED[cell]
    arp = event in (Event.ARP, Event.ARP_TIMER) and state in test_fsm_table.SETUP_ARP
    f = test_fsm_table.SETUP_ARP[state]() if arp else SETUP[state]()
    pending = f.deadline if f.deadline is not None else T0 + 100
    now = pending if event is Event.TIMEOUT else pending - 0.5
    out = fire(f, event, now)
    assert f.state is after
    assert [type(a) for a in acts(out)] == _with_mtu_ntp(cell, kinds)
