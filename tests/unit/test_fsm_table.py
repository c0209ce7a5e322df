"""Every (state, event) cell of fsm.TABLE, walked: a new cell without an entry here fails."""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from dhcpleased import acd, defs
from dhcpleased.fsm import (
    TABLE,
    TRANSITIONS,
    Action,
    Configure,
    Deconfigure,
    Event,
    ForgetLease,
    Fsm,
    FsmConfig,
    Log,
    ProposeRdns,
    SendDecline,
    SendDiscover,
    SendRelease,
    SendRequest,
    State,
    WithdrawNtp,
    WithdrawRdns,
    WithdrawRoutes,
    _Ctx,
)
from tests.unit.test_fsm import (
    ADDR,
    T0,
    make,
    msg,
    to_bound,
    to_down_held,
    to_init,
    to_ipv6_only,
    to_rebinding,
    to_rebooting,
    to_released,
    to_releasing,
    to_renewing,
    to_requesting,
)
from tests.unit.test_fsm_acd import ARP_ON, bound_arp, claim

S, E = State, Event
D, IN, Q, B = S.DOWN, S.INIT, S.REQUESTING, S.BOUND
RN, RB, RR, V6 = S.RENEWING, S.REBINDING, S.REBOOTING, S.IPV6_ONLY
RING, REL = S.RELEASING, S.RELEASED
P, DEC = S.PROBING, S.DECLINED
Disc, Req, Conf, Deconf = SendDiscover, SendRequest, Configure, Deconfigure
WRoutes, Prop, WRdns = WithdrawRoutes, ProposeRdns, WithdrawRdns
WNtp = WithdrawNtp
Rel, Forget = SendRelease, ForgetLease
GONE = (WRdns, Deconf, Forget)  # entering Released with a lease: DNS, address, lease file
Watch, Probe, Announce, Decline = acd.Watch, acd.Probe, acd.Announce, SendDecline


def probing() -> Fsm:
    """Probing, the last probe sent: the next ARP timer finds the address clear."""
    f = to_requesting(make(ARP_ON))
    f.receive(msg(f, defs.DHCPACK), T0 + 0.2)
    while f.acd.probes_sent < acd.PROBE_NUM:
        assert f.deadline is not None
        f.timeout(f.deadline)
    assert f.state is P
    return f


def declined() -> Fsm:
    f = probing()
    claim(f, T0 + 5)
    assert f.state is DEC
    return f


SETUP: dict[State, Callable[[], Fsm]] = {
    D: lambda: to_down_held(make()),
    IN: lambda: to_init(make()),
    Q: lambda: to_requesting(make()),
    B: lambda: to_bound(make()),
    RN: lambda: to_renewing(make()),
    RB: lambda: to_rebinding(make()),
    RR: lambda: to_rebooting(make()),
    V6: lambda: to_ipv6_only(make(FsmConfig(prefer_ipv6=True))),
    RING: lambda: to_releasing(make()),
    REL: lambda: to_released(make()),
    P: probing,
    DEC: declined,
}


def bound_arp_in(state: State) -> Fsm:
    f = bound_arp()
    while f.state is not state:
        assert f.deadline is not None
        f.timeout(f.deadline)
    return f


# The ARP columns are walked with "arp probe" set where it changes anything (a state
# without it has nothing to probe or defend, as the rows above show for the others).
SETUP_ARP: dict[State, Callable[[], Fsm]] = {
    Q: lambda: to_requesting(make(ARP_ON)),
    RR: lambda: to_rebooting(make(ARP_ON)),
    B: bound_arp,
    RN: lambda: bound_arp_in(RN),
    RB: lambda: bound_arp_in(RB),
}

# (state, event) -> (state afterwards, kinds of non-Log actions, in order)
EXPECTED: dict[tuple[State, Event], tuple[State, tuple[type, ...]]] = {
    (D, E.LINK_UP): (RR, (Req,)),
    (D, E.LINK_DOWN): (D, ()),
    (D, E.OFFER): (D, ()),
    (D, E.ACK): (D, ()),
    (D, E.NAK): (D, ()),
    (D, E.OTHER): (D, ()),
    (D, E.TIMEOUT): (D, (Deconf,)),
    (D, E.REQUEST_REBOOT): (D, ()),
    (D, E.RECONFIGURE): (D, (WRoutes,)),
    (D, E.REMOVE): (D, (WRdns, Deconf)),
    (IN, E.LINK_UP): (IN, (Disc,)),
    (IN, E.LINK_DOWN): (D, ()),
    (IN, E.OFFER): (Q, (Req,)),
    (IN, E.ACK): (IN, ()),
    (IN, E.NAK): (IN, ()),
    (IN, E.OTHER): (IN, ()),
    (IN, E.TIMEOUT): (IN, (Disc,)),
    (IN, E.REQUEST_REBOOT): (IN, (Disc,)),
    (IN, E.RECONFIGURE): (IN, ()),
    (IN, E.REMOVE): (D, ()),
    (Q, E.LINK_UP): (IN, (Disc,)),
    (Q, E.LINK_DOWN): (D, ()),
    (Q, E.OFFER): (Q, ()),
    (Q, E.ACK): (B, (Conf, Prop)),
    (Q, E.NAK): (IN, (Disc,)),
    (Q, E.OTHER): (Q, ()),
    (Q, E.TIMEOUT): (Q, (Req,)),
    (Q, E.REQUEST_REBOOT): (Q, (Req,)),
    (Q, E.RECONFIGURE): (Q, ()),
    (Q, E.REMOVE): (D, ()),
    (B, E.LINK_UP): (RR, (Req,)),
    (B, E.LINK_DOWN): (D, (WRdns,)),
    (B, E.OFFER): (B, ()),
    (B, E.ACK): (B, ()),
    (B, E.NAK): (B, ()),
    (B, E.OTHER): (B, ()),
    (B, E.TIMEOUT): (RN, (Req,)),
    (B, E.REQUEST_REBOOT): (RR, (Req,)),
    (B, E.RECONFIGURE): (B, (WRdns, WRoutes)),
    (B, E.REMOVE): (D, (WRdns, Deconf)),
    (RN, E.LINK_UP): (RR, (Req,)),
    (RN, E.LINK_DOWN): (D, (WRdns,)),
    (RN, E.OFFER): (RN, ()),
    (RN, E.ACK): (B, (Conf,)),  # unchanged renewal: the address's lifetime restarts
    (RN, E.NAK): (IN, (WRdns, Deconf, Disc)),
    (RN, E.OTHER): (RN, ()),
    (RN, E.TIMEOUT): (RN, (Req,)),
    (RN, E.REQUEST_REBOOT): (RR, (Req,)),
    (RN, E.RECONFIGURE): (RN, (WRdns, WRoutes)),
    (RN, E.REMOVE): (D, (WRdns, Deconf)),
    (RB, E.LINK_UP): (RR, (Req,)),
    (RB, E.LINK_DOWN): (D, (WRdns,)),
    (RB, E.OFFER): (RB, ()),
    (RB, E.ACK): (B, (Conf,)),
    (RB, E.NAK): (IN, (WRdns, Deconf, Disc)),
    (RB, E.OTHER): (RB, ()),
    (RB, E.TIMEOUT): (RB, (Req,)),
    (RB, E.REQUEST_REBOOT): (RR, (Req,)),
    (RB, E.RECONFIGURE): (RB, (WRdns, WRoutes)),
    (RB, E.REMOVE): (D, (WRdns, Deconf)),
    (RR, E.LINK_UP): (RR, (Req,)),
    (RR, E.LINK_DOWN): (D, (WRdns,)),
    (RR, E.OFFER): (RR, ()),
    (RR, E.ACK): (B, (Conf, Prop, WNtp)),  # remembered: stale NTP may be around too
    (RR, E.NAK): (IN, (WRdns, WNtp, Deconf, Disc)),
    (RR, E.OTHER): (RR, ()),
    (RR, E.TIMEOUT): (RR, (Req,)),
    (RR, E.REQUEST_REBOOT): (RR, (Req,)),
    (RR, E.RECONFIGURE): (RR, (WRdns,)),  # remembered address: stale DNS may be around
    (RR, E.REMOVE): (D, (WRdns, WNtp, Deconf)),
    (V6, E.LINK_UP): (IN, (Disc,)),
    (V6, E.LINK_DOWN): (D, ()),
    (V6, E.OFFER): (V6, ()),
    (V6, E.ACK): (V6, ()),
    (V6, E.NAK): (V6, ()),
    (V6, E.OTHER): (V6, ()),
    (V6, E.TIMEOUT): (IN, (Disc,)),
    (V6, E.REQUEST_REBOOT): (IN, (Disc,)),
    (V6, E.RECONFIGURE): (V6, ()),
    (V6, E.REMOVE): (D, ()),
    # issue 15: DHCPRELEASE when asked
    (D, E.RELEASE): (REL, GONE),  # link down: nothing can be sent, the lease goes anyway
    (IN, E.RELEASE): (REL, (Forget,)),
    (Q, E.RELEASE): (REL, (Forget,)),
    (B, E.RELEASE): (RING, (Rel,)),
    (RN, E.RELEASE): (RING, (Rel,)),
    (RB, E.RELEASE): (RING, (Rel,)),
    (RR, E.RELEASE): (REL, (WRdns, WNtp, Deconf, Forget)),  # remembered: server unknown
    (V6, E.RELEASE): (REL, (Forget,)),
    (RING, E.RELEASE): (RING, ()),
    (REL, E.RELEASE): (REL, (Forget,)),  # already done: main hears so again
    **{(st, E.RELEASE_SENT): (st, ()) for st in (D, IN, Q, B, RN, RB, RR, V6, REL)},
    (RING, E.RELEASE_SENT): (REL, GONE),
    (RING, E.LINK_UP): (RING, ()),
    (RING, E.LINK_DOWN): (RING, ()),
    (RING, E.OFFER): (RING, ()),
    (RING, E.ACK): (RING, ()),
    (RING, E.NAK): (RING, ()),
    (RING, E.OTHER): (RING, ()),
    (RING, E.TIMEOUT): (REL, GONE),  # the frontend never answered: the address goes anyway
    (RING, E.REQUEST_REBOOT): (RING, ()),
    (RING, E.RECONFIGURE): (RING, (WRdns, WRoutes)),
    (RING, E.REMOVE): (D, (WRdns, Deconf)),
    (REL, E.LINK_UP): (REL, ()),  # only a request ends Released
    (REL, E.LINK_DOWN): (REL, ()),
    (REL, E.OFFER): (REL, ()),
    (REL, E.ACK): (REL, ()),
    (REL, E.NAK): (REL, ()),
    (REL, E.OTHER): (REL, ()),
    (REL, E.TIMEOUT): (REL, ()),
    (REL, E.REQUEST_REBOOT): (IN, (Disc,)),
    (REL, E.RECONFIGURE): (REL, ()),
    (REL, E.REMOVE): (D, ()),
    # issue 15: address conflict detection (RFC 5227)
    **{(st, E.ARP): (st, ()) for st in (D, IN, V6, RING, REL, DEC)},  # nothing watched
    (Q, E.ARP): (Q, ()),  # a conflict: declined when the ACK comes
    (RR, E.ARP): (RR, (WRdns, WNtp, Deconf)),  # the held address goes at once, its NTP too
    (B, E.ARP): (B, (Announce,)),  # the first conflict in use is defended
    (RN, E.ARP): (RN, (Announce,)),
    (RB, E.ARP): (RB, (Announce,)),
    (P, E.ARP): (DEC, (Watch, Decline)),
    **{(st, E.ARP_TIMER): (st, ()) for st in (D, IN, V6, RING, REL, DEC, B, RN, RB)},
    (Q, E.ARP_TIMER): (Q, (Probe,)),
    (RR, E.ARP_TIMER): (RR, (Probe,)),
    (P, E.ARP_TIMER): (B, (Conf, Prop, Announce)),  # clear: in use, announced
    (P, E.LINK_UP): (IN, (Watch, Disc)),
    (P, E.LINK_DOWN): (D, (Watch,)),
    (P, E.OFFER): (P, ()),
    (P, E.ACK): (P, ()),
    (P, E.NAK): (P, ()),
    (P, E.OTHER): (P, ()),
    (P, E.TIMEOUT): (P, ()),  # no DHCP timer: acd's decides
    (P, E.REQUEST_REBOOT): (P, ()),
    (P, E.RECONFIGURE): (B, (Watch, Conf)),  # arp probe unset: bound at once
    (P, E.REMOVE): (D, (Watch,)),
    (P, E.RELEASE): (REL, (Watch, Forget)),
    (P, E.RELEASE_SENT): (P, ()),
    (DEC, E.LINK_UP): (DEC, ()),
    (DEC, E.LINK_DOWN): (D, ()),
    (DEC, E.OFFER): (DEC, ()),
    (DEC, E.ACK): (DEC, ()),
    (DEC, E.NAK): (DEC, ()),
    (DEC, E.OTHER): (DEC, ()),
    (DEC, E.TIMEOUT): (IN, (Disc,)),  # RFC 2131 3.1.5's wait is over
    (DEC, E.REQUEST_REBOOT): (DEC, ()),
    (DEC, E.RECONFIGURE): (DEC, ()),
    (DEC, E.REMOVE): (D, ()),
    (DEC, E.RELEASE): (REL, (Forget,)),
    (DEC, E.RELEASE_SENT): (DEC, ()),
}

MESSAGE_TYPE = {
    E.OFFER: defs.DHCPOFFER,
    E.ACK: defs.DHCPACK,
    E.NAK: defs.DHCPNAK,
    E.OTHER: defs.DHCPREQUEST,
}


def fire(f: Fsm, event: Event, now: float) -> list[Action]:
    match event:
        case E.LINK_UP:
            return f.link_update(True, None, now)
        case E.LINK_DOWN:
            return f.link_update(False, None, now)
        case E.OFFER | E.ACK | E.NAK | E.OTHER:
            return f.receive(msg(f, MESSAGE_TYPE[event]), now)
        case E.TIMEOUT if f.state is P:  # the cell itself: timeout() fires acd's timer
            return f._dispatch(event, _Ctx(now))
        case E.TIMEOUT:
            return f.timeout(f.deadline if f.deadline is not None else now)
        case E.ARP:
            return claim(f, now)
        case E.ARP_TIMER:  # the cell itself, whether acd has a timer or not
            return f._dispatch(event, _Ctx(now))
        case E.REQUEST_REBOOT:
            return f.request_reboot(now)
        case E.RECONFIGURE:
            return f.reconfigure(FsmConfig(ignore_dns=True, ignore_routes=True), now)
        case E.REMOVE:
            return f.remove(now)
        case E.RELEASE:
            return f.release(now)
        case E.RELEASE_SENT:
            return f.release_sent(now)
    raise AssertionError(event)


def test_table_is_complete() -> None:
    assert set(TABLE) == {(s, e) for s in State for e in Event}
    assert set(TRANSITIONS) == set(TABLE)
    assert set(EXPECTED) == set(TABLE)


def test_bound_never_goes_to_ipv6_only_and_to_init_only_when_the_lease_is_over() -> None:
    for event in Event:
        assert V6 not in TRANSITIONS[(B, event)], event
        assert IN not in TRANSITIONS[(B, event)] or event is E.TIMEOUT, event
    f = to_bound(make())
    assert f.deadline is not None
    f.timeout(f.request_time + f.lease_time - 1)  # T1, late: only Rebinding is left
    assert f.state is RB
    f = to_bound(make())
    f.timeout(f.request_time + f.lease_time)  # T1 fired after the lease end (suspend)
    assert f.state is IN


def test_expected_states_are_allowed_by_the_table() -> None:
    for cell, (after, _kinds) in EXPECTED.items():
        targets = TRANSITIONS[cell]
        # a cell may also stay put without a transition: Init drops an ACK unless it is
        # a rapid commit one
        assert after in targets or after is cell[0], cell


@pytest.mark.parametrize(
    "cell",
    sorted(TABLE, key=lambda c: (c[0].value, c[1].value)),
    ids=lambda c: f"{c[0].name}-{c[1].name}",
)
def test_cell(cell: tuple[State, Event]) -> None:
    state, event = cell
    after, kinds = EXPECTED[cell]
    arp = event in (E.ARP, E.ARP_TIMER) and state in SETUP_ARP
    f = SETUP_ARP[state]() if arp else SETUP[state]()
    assert f.state is state
    assert (f.deadline is None) is (state is REL)  # every other set-up has a timer pending
    pending = f.deadline if f.deadline is not None else T0 + 100
    now = pending if event is E.TIMEOUT else pending - 0.5
    actions = fire(f, event, now)
    assert f.state is after
    assert tuple(type(a) for a in actions if not isinstance(a, Log)) == kinds
    assert f.deadline is None or f.deadline >= now
    targets = TRANSITIONS[cell]
    transitions = [a for a in actions if isinstance(a, Log) and "state_transition" in a.message]
    if not targets:
        assert not transitions  # in-place cells never run a state transition
    if event in (E.OFFER, E.ACK, E.NAK) and (not targets or cell == (IN, E.ACK)):
        assert Log(logging.DEBUG, f"ignoring unexpected DHCP{event.name}") in actions
    if event is E.OTHER:
        assert Log(logging.WARNING, "unimplemented message type 3") in actions
    if after in (B, RN, RB):
        assert f.requested_ip == ADDR


def test_down_without_lease() -> None:
    f = make()
    assert f.state is D and f.deadline is None
    assert f.timeout(T0) == []  # no timer pending: nothing to do
    assert [a for a in f.link_update(False, None, T0) if not isinstance(a, Log)] == []
    assert f.deadline is None
    assert f.request_reboot(T0) == []
    out = f.link_update(True, IPv4Address(0), T0)  # 0.0.0.0 remembered = none
    assert f.state is IN and isinstance(out[0], SendDiscover)
