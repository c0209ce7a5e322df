"""Issue 15 in the state machine: DHCPRELEASE when asked (15.2), rapid commit (15.4)."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address

from dhcpleased import defs
from dhcpleased.fsm import (
    Configure,
    Deconfigure,
    ForgetLease,
    FsmConfig,
    Log,
    ProposeRdns,
    SendDiscover,
    SendRelease,
    SendRequest,
    State,
    WithdrawNtp,
    WithdrawRdns,
)
from tests.unit.test_fsm import (
    ADDR,
    DEFAULT_ROUTE,
    MASK,
    SERVER,
    T0,
    acts,
    make,
    msg,
    to_bound,
    to_down_held,
    to_init,
    to_rebooting,
    to_released,
    to_releasing,
    to_renewing,
)

RAPID = FsmConfig(rapid_commit=True)
ZERO = IPv4Address(0)


# --- 15.2 DHCPRELEASE ------------------------------------------------------------------------


def test_release_from_bound_sends_then_waits_for_the_frontend() -> None:
    f = to_bound(make())
    old_xid = f.xid
    out = f.release(T0 + 5)
    assert f.state is State.RELEASING
    assert f.xid != old_xid  # RFC 2131 table 5: the client picks the RELEASE's xid
    # RFC 2131 4.4.6: ciaddr = the address, option 54 = the server; unicast to it
    assert acts(out) == [SendRelease(f.xid, ADDR, SERVER, SERVER)]
    assert Log(logging.INFO, f"DHCPRELEASE of {ADDR} to {SERVER}") in out
    # the address stays until the DHCPRELEASE left: it is the source address of the packet
    assert f.deadline == T0 + 5 + defs.RELEASE_WAIT + f.jitter
    out = f.release_sent(T0 + 5.01)
    assert f.state is State.RELEASED and f.deadline is None
    assert acts(out) == [WithdrawRdns(), Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,)), ForgetLease()]
    assert f.requested_ip == f.server_identifier == f.mask == ZERO


def test_release_wait_is_bounded_by_the_timer() -> None:
    f = to_releasing(make())
    assert f.deadline is not None
    out = f.timeout(f.deadline)
    assert f.state is State.RELEASED
    assert [type(a) for a in acts(out)] == [WithdrawRdns, Deconfigure, ForgetLease]


def test_release_while_renewing_targets_the_server_that_leased() -> None:
    f = to_renewing(make())
    out = acts(f.release(T0 + 2000))
    assert out == [SendRelease(f.xid, ADDR, SERVER, SERVER)]


def test_replies_to_the_old_exchange_are_stale_once_releasing() -> None:
    f = to_bound(make())
    late = msg(f, defs.DHCPACK)
    f.release(T0 + 5)
    assert f.receive(late, T0 + 5.1) == []
    assert f.state is State.RELEASING


def test_release_with_the_link_down_only_lets_go() -> None:
    f = to_down_held(make())
    out = f.release(T0 + 20)
    assert f.state is State.RELEASED
    assert not any(isinstance(a, SendRelease) for a in out)
    assert Log(logging.WARNING, "link down: no DHCPRELEASE sent") in out
    assert [type(a) for a in acts(out)] == [WithdrawRdns, Deconfigure, ForgetLease]


def test_release_of_a_remembered_address_sends_nothing() -> None:
    """INIT-REBOOT from the lease file: no server identifier, so no RFC-valid RELEASE."""
    f = to_rebooting(make())
    out = acts(f.release(T0 + 1))
    assert f.state is State.RELEASED
    assert out == [WithdrawRdns(), WithdrawNtp(), Deconfigure(ADDR, ZERO, ()), ForgetLease()]


def test_release_without_a_lease_just_stops() -> None:
    f = to_init(make())
    assert acts(f.release(T0 + 1)) == [ForgetLease()]
    assert f.state is State.RELEASED and f.deadline is None
    assert acts(f.release(T0 + 2)) == [ForgetLease()]  # again: the parent hears it again


def test_released_ignores_the_link_until_a_request() -> None:
    f = to_released(make())
    for up in (False, True, False, True):
        assert acts(f.link_update(up, ADDR, T0 + 10)) == []
        assert f.state is State.RELEASED and f.deadline is None
    out = acts(f.request_reboot(T0 + 20))
    assert f.state is State.INIT
    assert out == [SendDiscover(f.xid)]  # a full DORA: the released address is not asked for


def test_request_after_release_with_the_link_down_waits_for_the_link() -> None:
    f = to_released(make())
    f.link_update(False, None, T0 + 10)
    assert acts(f.request_reboot(T0 + 11)) == []
    assert f.state is State.DOWN
    out = acts(f.link_update(True, None, T0 + 12))
    assert f.state is State.INIT and out == [SendDiscover(f.xid)]


def test_a_stray_release_sent_changes_nothing() -> None:
    f = to_bound(make())
    assert acts(f.release_sent(T0 + 1)) == []
    assert f.state is State.BOUND


# --- 15.4 rapid commit ----------------------------------------------------------------------


def test_rapid_commit_ack_in_init_binds_at_once() -> None:
    f = to_init(make(RAPID))
    out = acts(f.receive(msg(f, defs.DHCPACK, rapid_commit=True), T0 + 0.05))
    assert f.state is State.BOUND and f.rapid_commit
    assert [type(a) for a in out] == [Configure, ProposeRdns]
    assert f.request_time == T0 + 0.05  # the lease clock starts at this ACK


def test_ack_without_option_80_in_init_is_dropped() -> None:
    f = to_init(make(RAPID))
    out = f.receive(msg(f, defs.DHCPACK), T0 + 0.05)
    assert f.state is State.INIT and acts(out) == []
    assert Log(logging.DEBUG, "ignoring DHCPACK without rapid commit in Init") in out


def test_rapid_ack_is_refused_when_rapid_commit_is_not_configured() -> None:
    f = to_init(make())
    out = f.receive(msg(f, defs.DHCPACK, rapid_commit=True), T0 + 0.05)
    assert f.state is State.INIT and acts(out) == []
    assert Log(logging.DEBUG, "ignoring unexpected DHCPACK") in out


def test_an_offer_still_leads_to_the_four_message_exchange() -> None:
    f = to_init(make(RAPID))
    out = acts(f.receive(msg(f, defs.DHCPOFFER), T0 + 0.05))
    assert f.state is State.REQUESTING and isinstance(out[0], SendRequest)
    f.receive(msg(f, defs.DHCPACK), T0 + 0.1)  # an ordinary ACK, no 80 needed
    assert f.state is State.BOUND and not f.rapid_commit


def test_rapid_commit_flag_lasts_the_binding_and_goes_with_it() -> None:
    f = to_init(make(RAPID))
    f.receive(msg(f, defs.DHCPACK, rapid_commit=True), T0 + 0.05)
    assert f.deadline is not None
    f.timeout(f.deadline)  # T1
    f.receive(msg(f, defs.DHCPACK), f.deadline)  # renewed: the same binding
    assert f.state is State.BOUND and f.rapid_commit
    f.receive(msg(f, defs.DHCPNAK), T0 + 9000)  # ignored in Bound
    assert f.deadline is not None
    f.timeout(f.deadline)
    f.receive(msg(f, defs.DHCPNAK), f.deadline)  # the lease is lost
    assert f.state is State.INIT and not f.rapid_commit


def test_rapid_ack_with_option_108_goes_ipv6_only() -> None:
    f = to_init(make(FsmConfig(rapid_commit=True, prefer_ipv6=True)))
    f.receive(msg(f, defs.DHCPACK, rapid_commit=True, ipv6_only_wait=1800), T0 + 0.05)
    assert f.state is State.IPV6_ONLY and not f.rapid_commit
