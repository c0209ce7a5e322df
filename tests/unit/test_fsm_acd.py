"""RFC 5227 in the state machine, on a fake clock: probe from the OFFER, announce, defend,
decline, wait, start over (fsm + acd)."""

from __future__ import annotations

import itertools
import random
from ipaddress import IPv4Address

import pytest

from dhcpleased import acd, defs
from dhcpleased.acd import Announce, Phase, Probe, RateLimit, Watch
from dhcpleased.fsm import (
    Action,
    Configure,
    Deconfigure,
    Fsm,
    FsmConfig,
    ProposeRdns,
    SendDecline,
    SendDiscover,
    SendRequest,
    State,
    WithdrawNtp,
    WithdrawRdns,
)
from dhcpleased.packet import ARPOP_REPLY, ARPOP_REQUEST, ArpPacket
from tests.unit.test_fsm import (
    ADDR,
    ADDR2,
    CLIENT_MAC,
    LEASE,
    SERVER,
    T0,
    acts,
    make,
    msg,
    to_init,
    to_rebooting,
    to_requesting,
)

ARP_ON = FsmConfig(arp_probe=True)
ZERO = IPv4Address(0)
OTHER_MAC = bytes.fromhex("02000000bad1")
SQUATTER = IPv4Address("192.0.2.99")


def pkt(
    *,
    op: int = ARPOP_REPLY,
    sha: bytes = OTHER_MAC,
    spa: IPv4Address = ADDR,
    tpa: IPv4Address = ZERO,
) -> ArpPacket:
    return ArpPacket(sha, op, sha, spa, bytes(6), tpa)


def claim(f: Fsm, now: float, **kw: object) -> list[Action]:
    """Another host's ARP packet about ``ADDR`` (a reply from it, unless told otherwise)."""
    return f.arp(pkt(**kw), CLIENT_MAC, now)  # type: ignore[arg-type]


def step(f: Fsm) -> tuple[float, list[Action]]:
    """Let the clock run to the next deadline and fire it."""
    assert f.deadline is not None
    now = f.deadline
    return now, acts(f.timeout(now))


def ack(f: Fsm, now: float, **changes: object) -> list[Action]:
    return acts(f.receive(msg(f, defs.DHCPACK, **changes), now))


def probed(f: Fsm) -> list[tuple[float, list[Action]]]:
    """Run acd's timers until the machine leaves Probing; the timeline."""
    out = []
    while f.state is State.PROBING:
        out.append(step(f))
    return out


def bound_arp(seed: int = 1) -> Fsm:
    """Bound with ``arp probe``, announced, defending."""
    f = to_requesting(make(ARP_ON, seed))
    ack(f, T0 + 0.2)
    probed(f)
    step(f)  # the second announcement
    assert f.state is State.BOUND and f.acd.phase is Phase.DEFENDING
    return f


# --- probing from the OFFER ----------------------------------------------------------------


def test_the_probe_starts_at_the_offer_beside_the_request() -> None:
    f = to_init(make(ARP_ON))
    out = acts(f.receive(msg(f, defs.DHCPOFFER), T0 + 0.1))
    assert [type(a) for a in out] == [SendRequest, Watch]
    assert out[1] == Watch(ADDR)
    assert f.acd.phase is Phase.PROBING
    assert T0 + 0.1 <= (f.deadline or 0) <= T0 + 0.1 + acd.PROBE_WAIT  # U(0, PROBE_WAIT)


@pytest.mark.parametrize("seed", range(40))
def test_an_ack_waits_in_probing_until_rfc_5227_is_satisfied(seed: int) -> None:
    f = to_requesting(make(ARP_ON, seed))
    offer_at = T0 + 0.1
    assert ack(f, T0 + 0.2) == []  # nothing configured before the probe is done
    assert f.state is State.PROBING
    timeline = probed(f)
    probes = [t for t, out in timeline if out == [Probe(ADDR)]]
    assert len(probes) == acd.PROBE_NUM
    assert offer_at <= probes[0] <= offer_at + acd.PROBE_WAIT
    for a, b in itertools.pairwise(probes):
        assert acd.PROBE_MIN <= b - a <= acd.PROBE_MAX
    bound_at, out = timeline[-1]
    assert bound_at == pytest.approx(probes[-1] + acd.ANNOUNCE_WAIT)
    assert [type(a) for a in out] == [Configure, ProposeRdns, Announce]
    assert out[-1] == Announce(ADDR)  # announced once in use, first at once...
    conf = out[0]
    assert isinstance(conf, Configure)  # the address lives as long as the lease still does
    assert conf.lease_time == LEASE - int(bound_at - (T0 + 0.2))
    assert 4.0 <= bound_at - offer_at <= 7.0  # the RFC's cost, counted from the OFFER
    t, out = step(f)
    assert out == [Announce(ADDR)] and t == pytest.approx(bound_at + acd.ANNOUNCE_INTERVAL)
    assert f.acd.phase is Phase.DEFENDING  # T1 counts from the ACK, not from Bound:
    assert f.deadline == pytest.approx(f.request_time + 1800 + f.jitter)


def test_an_ack_after_the_probe_binds_at_once() -> None:
    f = to_requesting(make(ARP_ON))
    while f.acd.phase is Phase.PROBING:  # the server is slow: the probe finishes first
        now, out = step(f)
        assert f.state is State.REQUESTING
    assert f.acd.phase is Phase.CLEAR
    out = ack(f, now + 0.5)
    assert f.state is State.BOUND
    assert [type(a) for a in out] == [Configure, ProposeRdns, Announce]


def test_an_early_timeout_fires_only_the_earliest_timer() -> None:
    f = to_requesting(make(ARP_ON))
    arp_due = f.acd.deadline
    assert arp_due is not None and f.deadline == arp_due  # before the REQUEST's resend
    out = acts(f.timeout(arp_due - 0.3))
    assert out == [Probe(ADDR)] and f.state is State.REQUESTING  # no REQUEST resent


def test_both_timers_due_fire_both() -> None:
    f = to_requesting(make(ARP_ON))
    out = acts(f.timeout(T0 + 1.5))  # the first probe and the REQUEST's 1 s resend
    assert [type(a) for a in out] == [Probe, SendRequest]


def test_the_ack_of_another_address_probes_that_one() -> None:
    f = to_requesting(make(ARP_ON))
    step(f)
    out = ack(f, T0 + 0.5, yiaddr=ADDR2)
    assert out == [Watch(ADDR2)] and f.state is State.PROBING
    assert f.acd.probes_sent == 0  # from scratch


def test_rapid_commit_probes_from_the_ack() -> None:
    f = to_init(make(FsmConfig(arp_probe=True, rapid_commit=True)))
    out = acts(f.receive(msg(f, defs.DHCPACK, rapid_commit=True), T0 + 0.1))
    assert out == [Watch(ADDR)] and f.state is State.PROBING
    probed(f)
    assert f.state is State.BOUND and f.rapid_commit


# --- conflicts while probing ---------------------------------------------------------------


def test_a_conflict_in_probing_declines() -> None:
    f = to_requesting(make(ARP_ON))
    ack(f, T0 + 0.2)
    now, _ = step(f)  # the first probe; the squatter answers it
    old_xid = f.xid
    out = acts(claim(f, now + 0.001))
    assert f.state is State.DECLINED
    assert out == [Watch(ZERO), SendDecline(f.xid, ADDR, SERVER)]
    assert f.xid != old_xid  # the DECLINE's own xid
    assert f.requested_ip == ZERO and f.acd.last == acd.Conflict(ADDR, OTHER_MAC, now + 0.001)
    assert f.deadline == now + 0.001 + defs.DECLINE_WAIT + f.jitter  # RFC 2131 3.1.5
    assert acts(f.request_reboot(now + 1)) == []  # a request does not cut the wait short
    _, out = step(f)
    assert f.state is State.INIT and [type(a) for a in out] == [SendDiscover]


def test_a_conflict_before_the_ack_is_declined_when_it_comes() -> None:
    f = to_requesting(make(ARP_ON))
    now, _ = step(f)
    assert acts(claim(f, now)) == [] and f.state is State.REQUESTING
    assert f.acd.phase is Phase.CONFLICT
    out = ack(f, now + 0.01)
    assert f.state is State.DECLINED
    assert [type(a) for a in out] == [Watch, SendDecline]


def test_a_nak_after_a_conflict_just_restarts() -> None:
    f = to_requesting(make(ARP_ON))
    now, _ = step(f)
    claim(f, now)
    out = acts(f.receive(msg(f, defs.DHCPNAK), now + 0.01))
    assert f.state is State.INIT and out == [Watch(ZERO), SendDiscover(f.xid)]


@pytest.mark.parametrize(
    ("packet", "conflict"),
    [
        (pkt(), True),  # a reply from the address
        (pkt(op=ARPOP_REQUEST, tpa=SQUATTER), True),  # a request from it
        (pkt(op=ARPOP_REQUEST, spa=ZERO, tpa=ADDR), True),  # someone else probes for it
        (pkt(op=ARPOP_REQUEST, spa=ZERO, tpa=ADDR, sha=CLIENT_MAC), False),  # our own probe
        (pkt(sha=CLIENT_MAC), False),  # our own announcement, looped back
        (pkt(spa=SQUATTER, tpa=ADDR, op=ARPOP_REQUEST), False),  # someone asks for it
        (pkt(op=ARPOP_REPLY, spa=ZERO, tpa=ADDR), False),  # a "probe" that is a reply
        (pkt(spa=ADDR2), False),  # another address
    ],
)
def test_what_counts_as_a_conflict_while_probing(packet: ArpPacket, conflict: bool) -> None:
    f = to_requesting(make(ARP_ON))
    now, _ = step(f)
    f.arp(packet, CLIENT_MAC, now)
    assert (f.acd.phase is Phase.CONFLICT) is conflict
    assert f.acd.total_conflicts == int(conflict)


def test_an_ethernet_source_of_ours_is_never_a_conflict() -> None:
    f = to_requesting(make(ARP_ON))
    now, _ = step(f)
    f.arp(ArpPacket(CLIENT_MAC, ARPOP_REPLY, OTHER_MAC, ADDR, bytes(6), ZERO), CLIENT_MAC, now)
    assert f.acd.phase is Phase.PROBING


def test_rebooting_probes_and_gives_a_held_address_up_at_a_conflict() -> None:
    f = to_rebooting(make(ARP_ON))  # the lease file's address, maybe still configured
    assert f.acd.watching(ADDR)
    now, _ = step(f)
    out = acts(claim(f, now))
    # at once (RFC 5227 2.4); NTP too: a previous run may have left the lease's servers
    assert out == [WithdrawRdns(), WithdrawNtp(), Deconfigure(ADDR, ZERO, ())]
    assert f.state is State.REBOOTING
    out = ack(f, now + 0.01)  # INIT-REBOOT's answer names the server to decline to
    assert out == [Watch(ZERO), SendDecline(f.xid, ADDR, SERVER)]


def test_after_max_conflicts_the_wait_is_the_rate_limit() -> None:
    f = to_init(make(ARP_ON))
    for n in range(1, acd.MAX_CONFLICTS + 2):
        f.receive(msg(f, defs.DHCPOFFER), f.deadline or T0)
        ack(f, f.acd.deadline or T0)
        now, _ = step(f)
        claim(f, now)
        assert f.state is State.DECLINED and f.acd.conflicts == n
        wait = acd.RATE_LIMIT_INTERVAL if n >= acd.MAX_CONFLICTS else defs.DECLINE_WAIT
        assert f.deadline == pytest.approx(now + wait + f.jitter)
        step(f)
    f.receive(msg(f, defs.DHCPOFFER), f.deadline or T0)
    ack(f, T0)
    probed(f)  # an address that survives the probe starts the count over
    assert f.state is State.BOUND and f.acd.conflicts == 0
    assert f.acd.total_conflicts == acd.MAX_CONFLICTS + 1


# --- in use: announce, defend, give up -----------------------------------------------------


def test_the_first_conflict_in_use_is_defended_the_second_within_10s_loses() -> None:
    f = bound_arp()
    t = f.request_time + 100
    out = acts(claim(f, t, op=ARPOP_REQUEST, tpa=ADDR))  # a gratuitous ARP for our address
    assert out == [Announce(ADDR, defend=True)] and f.state is State.BOUND
    out = acts(claim(f, t + acd.DEFEND_INTERVAL + 0.5))  # long enough after: defended again
    assert out == [Announce(ADDR, defend=True)] and f.state is State.BOUND
    out = acts(claim(f, t + acd.DEFEND_INTERVAL + 5))  # within DEFEND_INTERVAL: lost
    assert f.state is State.DECLINED
    assert [type(a) for a in out] == [WithdrawRdns, Deconfigure, Watch, SendDecline]
    assert out[-1] == SendDecline(f.xid, ADDR, SERVER)
    assert f.acd.total_conflicts == 3 and f.acd.conflicts == 1


def test_in_use_a_probe_for_our_address_is_no_conflict() -> None:
    f = bound_arp()  # the kernel answers it, as it owns the address
    claim(f, f.request_time + 5, op=ARPOP_REQUEST, spa=ZERO, tpa=ADDR)
    assert f.acd.total_conflicts == 0


def test_renewal_keeps_defending_without_a_new_probe() -> None:
    f = bound_arp()
    now, out = step(f)  # T1
    assert f.state is State.RENEWING
    out = ack(f, now + 0.1)
    assert f.state is State.BOUND and [type(a) for a in out] == [Configure]
    claim(f, now + 1)  # still defended in Renewing's wake
    assert f.state is State.BOUND and f.acd.phase is Phase.DEFENDING


def test_a_conflict_on_a_held_address_withdraws_its_ntp_servers_with_its_dns() -> None:
    """Once the address is given up, no later step withdraws them: the ACK declines."""
    f = to_requesting(make(ARP_ON))
    ack(f, T0 + 0.2, ntp=(SERVER,))
    probed(f)
    step(f)
    f.link_update(False, None, T0 + 50)
    f.link_update(True, None, T0 + 60)
    assert f.state is State.REBOOTING
    now, _ = step(f)
    out = acts(claim(f, now))
    assert [type(a) for a in out] == [WithdrawRdns, WithdrawNtp, Deconfigure]
    assert [type(a) for a in ack(f, now + 0.01)] == [Watch, SendDecline]  # no WithdrawNtp
    assert f.state is State.DECLINED


def test_a_conflict_while_renewing_gives_the_address_up() -> None:
    f = bound_arp()
    now, _ = step(f)
    claim(f, now + 1)
    claim(f, now + 2)
    assert f.state is State.DECLINED


def test_link_down_stops_watching_and_link_up_probes_again() -> None:
    f = bound_arp()
    out = acts(f.link_update(False, None, T0 + 50))
    assert Watch(ZERO) in out and f.state is State.DOWN
    out = acts(f.link_update(True, None, T0 + 60))
    assert f.state is State.REBOOTING and out[-1] == Watch(ADDR)  # RFC 5227 2.1: link up


def test_a_request_while_bound_does_not_probe_the_address_in_use() -> None:
    f = bound_arp()
    out = acts(f.request_reboot(T0 + 50))
    assert [type(a) for a in out] == [SendRequest] and f.acd.phase is Phase.DEFENDING
    assert [type(a) for a in ack(f, T0 + 50.1)] == [Configure, ProposeRdns]


# --- arp probe set and unset by a reload ---------------------------------------------------


def test_unsetting_arp_probe_in_probing_binds_at_once() -> None:
    f = to_requesting(make(ARP_ON))
    ack(f, T0 + 0.2)
    out = acts(f.reconfigure(FsmConfig(), T0 + 0.5))
    assert f.state is State.BOUND
    assert [type(a) for a in out] == [Watch, Configure, ProposeRdns]


def test_setting_arp_probe_while_bound_defends_without_probing() -> None:
    f = to_requesting(make())
    ack(f, T0 + 0.2)
    out = acts(f.reconfigure(ARP_ON, T0 + 1))
    assert out == [Watch(ADDR)] and f.acd.phase is Phase.DEFENDING
    assert acts(claim(f, T0 + 2)) == [Announce(ADDR, defend=True)]


def test_setting_arp_probe_while_requesting_probes() -> None:
    f = to_requesting(make())
    assert acts(f.reconfigure(ARP_ON, T0 + 0.15)) == [Watch(ADDR)]
    assert f.acd.phase is Phase.PROBING


def test_without_arp_probe_nothing_is_watched() -> None:
    f = to_requesting(make())
    out = ack(f, T0 + 0.2)
    assert f.state is State.BOUND and not any(isinstance(a, Watch) for a in out)
    assert acts(claim(f, T0 + 1)) == [] and f.acd.phase is Phase.IDLE


# --- the parent's rate limit -----------------------------------------------------------------


def test_rate_limit_burst_then_one_a_second() -> None:
    r = RateLimit(burst=3, rate=1)
    assert [r.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not r.take(0.5)
    assert r.take(1.0) and not r.take(1.0)
    assert [r.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more


def test_rfc_schedules_stay_within_the_parent_rate_limit() -> None:
    """Every frame the fsm asks for, over many seeded runs with conflicts, passes the
    parent's bucket: a legitimate engine is never throttled."""
    for seed in range(30):
        rng = random.Random(seed)
        f = to_init(make(ARP_ON, seed))
        bucket = RateLimit()
        now = T0
        for _ in range(60):
            if f.state is State.INIT:
                out = acts(f.receive(msg(f, defs.DHCPOFFER), now))
            elif f.state is State.REQUESTING and rng.random() < 0.5:
                out = ack(f, now)
            elif f.state in (State.PROBING, State.BOUND) and rng.random() < 0.2:
                out = acts(claim(f, now))
            else:
                assert f.deadline is not None
                now = max(now, f.deadline)
                out = acts(f.timeout(now))
            for a in out:
                if isinstance(a, Probe | Announce):
                    assert bucket.take(now), (seed, now, a)
            now += rng.choice((0.0, 0.001, 0.3))
