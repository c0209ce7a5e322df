"""Fsm behaviour: helpers (used by test_fsm_table.py too), timers, lifetimes, hypothesis."""

from __future__ import annotations

import logging
import random
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased import defs
from dhcpleased.fsm import (
    TABLE,
    Action,
    Configure,
    Deconfigure,
    Event,
    ForgetLease,
    Fsm,
    FsmConfig,
    InvalidTransition,
    Log,
    ProposeRdns,
    SendDiscover,
    SendRelease,
    SendRequest,
    State,
    WithdrawNtp,
    WithdrawRdns,
    WithdrawRoutes,
)
from dhcpleased.packet import DhcpMessage, Route

T0 = 1000.0
ZERO = IPv4Address(0)
SERVER = IPv4Address("192.0.2.1")
ADDR = IPv4Address("192.0.2.10")
ADDR2 = IPv4Address("192.0.2.20")
MASK = IPv4Address("255.255.255.0")
NS = (IPv4Address("192.0.2.53"), IPv4Address("192.0.2.54"))
CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")
SERVER_MAC_TEXT = "02:00:00:00:00:02"
DEFAULT_ROUTE = Route(ZERO, ZERO, SERVER)
NET_ROUTE = Route(IPv4Address("198.51.100.0"), MASK, IPv4Address("192.0.2.254"))
LEASE = 3600


def msg(f: Fsm | None, message_type: int | None, **changes: Any) -> DhcpMessage:
    """A reply for ``f``'s current xid: an ACK-like lease unless ``changes`` say otherwise."""
    fields: dict[str, Any] = {
        "src_mac": SERVER_MAC,
        "dst_mac": CLIENT_MAC,
        "ip_src": SERVER,
        "ip_dst": ADDR,
        "op": defs.BOOTREPLY,
        "htype": 1,
        "hlen": 6,
        "xid": f.xid if f is not None else 0,
        "secs": 0,
        "flags": 0,
        "ciaddr": ZERO,
        "yiaddr": ADDR,
        "siaddr": IPv4Address("192.0.2.2"),
        "giaddr": ZERO,
        "chaddr": CLIENT_MAC,
        "sname": b"",
        "file": b"pxelinux.0",
        "message_type": message_type,
        "server_identifier": SERVER,
        "lease_time": LEASE,
        "renewal_time": None,
        "rebinding_time": None,
        "subnet_mask": MASK,
        "routers": (SERVER,),
        "classless_routes": None,
        "dns": NS,
        "host_name": "client1",
        "domain_name": "example.org",
        "domain_search": ("example.org", "lab.example.org"),
        "client_id": None,
        "ipv6_only_wait": None,
        "mtu": None,
        "ntp": (),
        "unknown": (),
    }
    fields.update(changes)
    return DhcpMessage(**fields)


def make(config: FsmConfig | None = None, seed: int = 1) -> Fsm:
    return Fsm(config or FsmConfig(), random.Random(seed), T0)


def to_init(f: Fsm) -> Fsm:
    f.link_update(True, None, T0)
    assert f.state is State.INIT
    return f


def to_requesting(f: Fsm) -> Fsm:
    to_init(f)
    f.receive(msg(f, defs.DHCPOFFER), T0 + 0.1)
    assert f.state is State.REQUESTING
    return f


def to_bound(f: Fsm, **ack: Any) -> Fsm:
    to_requesting(f)
    f.receive(msg(f, defs.DHCPACK, **ack), T0 + 0.2)
    assert f.state is State.BOUND
    return f


def to_renewing(f: Fsm) -> Fsm:
    to_bound(f)
    assert f.deadline is not None
    f.timeout(f.deadline)
    assert f.state is State.RENEWING
    return f


def to_rebinding(f: Fsm) -> Fsm:
    to_renewing(f)
    while f.state is State.RENEWING:
        assert f.deadline is not None
        f.timeout(f.deadline)
    assert f.state is State.REBINDING
    return f


def to_rebooting(f: Fsm) -> Fsm:
    f.link_update(True, ADDR, T0)
    assert f.state is State.REBOOTING
    return f


def to_ipv6_only(f: Fsm) -> Fsm:
    to_init(f)
    f.receive(msg(f, defs.DHCPOFFER, ipv6_only_wait=1800), T0 + 0.1)
    assert f.state is State.IPV6_ONLY
    return f


def to_down_held(f: Fsm) -> Fsm:
    to_bound(f)
    f.link_update(False, None, T0 + 10)
    assert f.state is State.DOWN and f.deadline is not None
    return f


def to_releasing(f: Fsm) -> Fsm:
    to_bound(f)
    f.release(T0 + 1)
    assert f.state is State.RELEASING and f.deadline is not None
    return f


def to_released(f: Fsm) -> Fsm:
    to_releasing(f)
    f.release_sent(T0 + 1.01)
    assert f.state is State.RELEASED and f.deadline is None
    return f


def acts(actions: list[Action]) -> list[Action]:
    """The actions without the Log lines."""
    return [a for a in actions if not isinstance(a, Log)]


def logs(actions: list[Action]) -> list[Log]:
    return [a for a in actions if isinstance(a, Log)]


# --- creation, INIT and DISCOVER backoff ------------------------------------------------------


def test_creation_draws_jitter_then_xid_from_rng() -> None:
    rng = random.Random(7)
    jitter = rng.randrange(1_000_000) / 1_000_000
    xid = rng.getrandbits(32)
    f = make(seed=7)
    assert (f.state, f.deadline, f.jitter, f.xid) == (State.DOWN, None, jitter, xid)
    assert 0 <= f.jitter < 1
    assert f.requested_ip == ZERO and f.lease_time == 0


def test_link_up_without_lease_sends_discover() -> None:
    f = make()
    out = f.link_update(True, None, T0)
    assert f.state is State.INIT
    assert out == [
        SendDiscover(f.xid),
        Log(logging.DEBUG, "state_transition Down -> Init, timo: 1"),
    ]
    assert f.deadline == T0 + 1 + f.jitter


def test_discover_backoff_with_jitter_and_same_xid() -> None:
    f = to_init(make(seed=3))
    xid, j = f.xid, f.jitter
    gaps = []
    now = T0
    for _ in range(9):
        assert f.deadline is not None
        gaps.append(round(f.deadline - now - j, 6))
        now = f.deadline
        out = f.timeout(now)
        assert acts(out) == [SendDiscover(xid)]
    assert gaps == [1, 2, 4, 8, 16, 32, 64, 64, 64]
    assert f.xid == xid


def test_offer_moves_to_requesting_with_the_discover_xid() -> None:
    f = to_init(make())
    xid = f.xid
    out = f.receive(msg(f, defs.DHCPOFFER), T0 + 0.5)
    assert f.state is State.REQUESTING and f.xid == xid
    assert acts(out) == [SendRequest(xid, ZERO, ADDR, SERVER, None)]
    assert Log(logging.DEBUG, "state_transition Init -> Requesting, timo: 1") in out
    assert f.requested_ip == ADDR and f.server_identifier == SERVER


def test_first_offer_wins() -> None:
    f = to_requesting(make())
    out = f.receive(msg(f, defs.DHCPOFFER, yiaddr=ADDR2), T0 + 0.3)
    assert acts(out) == [] and f.requested_ip == ADDR
    assert out == [Log(logging.DEBUG, "ignoring unexpected DHCPOFFER")]


def test_offer_without_server_id_and_address_is_rejected() -> None:
    f = to_init(make())
    out = f.receive(msg(f, defs.DHCPOFFER, server_identifier=None, yiaddr=ZERO), T0)
    assert f.state is State.INIT
    assert out == [Log(logging.WARNING, "did not receive server identifier or offered IP address")]
    # Either one alone is enough.
    f.receive(msg(f, defs.DHCPOFFER, server_identifier=None), T0)
    assert f.state is State.REQUESTING
    assert acts(f.timeout(f.deadline or 0)) == [SendRequest(f.xid, ZERO, ADDR, None, None)]


def test_wrong_xid_is_dropped_silently() -> None:
    f = to_init(make())
    assert f.receive(msg(f, defs.DHCPOFFER, xid=f.xid ^ 1), T0) == []
    assert f.state is State.INIT


# --- REQUESTING ---------------------------------------------------------------------------


def test_requesting_gives_up_after_64s_timer() -> None:
    f = to_requesting(make(seed=5))
    j, xid = f.jitter, f.xid
    now = T0 + 0.1
    start = now
    gaps = []
    while f.state is State.REQUESTING:
        assert f.deadline is not None
        gaps.append(round(f.deadline - now - j, 6))
        now = f.deadline
        out = f.timeout(now)
    assert gaps == [1, 2, 4, 8, 16, 32, 64]
    assert round(now - start - 7 * j, 6) == 127
    assert f.state is State.INIT
    assert acts(out) == [SendDiscover(f.xid)]  # nothing was configured: nothing to undo
    assert f.xid != xid
    assert f.requested_ip == ZERO and f.server_identifier == ZERO


def test_nak_in_requesting_just_restarts() -> None:
    f = to_requesting(make())
    xid = f.xid
    out = f.receive(msg(f, defs.DHCPNAK), T0 + 0.3)
    assert f.state is State.INIT and acts(out) == [SendDiscover(f.xid)] and f.xid != xid
    assert f.deadline == T0 + 0.3 + 1 + f.jitter


# --- ACK acceptance -------------------------------------------------------------------------


def test_ack_configures_and_proposes() -> None:
    f = to_requesting(make())
    out = f.receive(msg(f, defs.DHCPACK), T0 + 0.2)
    assert acts(out) == [
        Configure(
            address=ADDR,
            mask=MASK,
            routes=(DEFAULT_ROUTE,),
            server=SERVER,
            siaddr=IPv4Address("192.0.2.2"),
            file=b"pxelinux.0",
            domain_name="example.org",
            host_name="client1",
            lease_time=LEASE,
        ),
        ProposeRdns(NS, "example.org", ("example.org", "lab.example.org")),
    ]
    assert Log(logging.DEBUG, "state_transition Requesting -> Bound, timo: 1800") in out
    assert (f.lease_time, f.renewal_time, f.rebinding_time) == (3600, 1800, 3150)
    assert f.request_time == T0 + 0.2
    assert f.deadline == T0 + 0.2 + 1800 + f.jitter
    assert (f.mask, f.routes, f.nameservers, f.domain) == (
        MASK,
        (DEFAULT_ROUTE,),
        NS,
        "example.org",
    )
    assert f.dhcp_server == SERVER
    assert f._proposed == ProposeRdns(NS, "example.org", ("example.org", "lab.example.org"))


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        (
            {"server_identifier": None, "yiaddr": ZERO},
            "did not receive server identifier or offered IP address",
        ),
        ({"lease_time": None}, f"no lease time from {SERVER_MAC_TEXT}"),
        ({"lease_time": 0}, f"no lease time from {SERVER_MAC_TEXT}"),
        ({"subnet_mask": None}, f"no subnetmask received from {SERVER_MAC_TEXT}"),
        ({"subnet_mask": ZERO}, f"no subnetmask received from {SERVER_MAC_TEXT}"),
        (
            {"subnet_mask": IPv4Address("255.0.255.0")},
            f"invalid subnetmask 255.0.255.0 from {SERVER_MAC_TEXT}",
        ),
        ({"yiaddr": ZERO}, f"invalid IP address 0.0.0.0 from {SERVER_MAC_TEXT}"),
        (
            {"yiaddr": IPv4Address("224.0.0.1")},
            f"invalid IP address 224.0.0.1 from {SERVER_MAC_TEXT}",
        ),
    ],
)
def test_bad_ack_is_dropped(changes: dict[str, Any], warning: str) -> None:
    f = to_requesting(make())
    deadline = f.deadline
    out = f.receive(msg(f, defs.DHCPACK, **changes), T0 + 0.2)
    assert out == [Log(logging.WARNING, warning)]
    assert f.state is State.REQUESTING and f.deadline == deadline


@pytest.mark.parametrize(
    ("t1", "t2", "expected", "warning"),
    [
        (None, None, (1800, 3150), None),
        (1000, None, (1000, 3150), None),
        (None, 2000, (1800, 2000), None),
        (600, 1200, (600, 1200), None),
        (3200, None, (1800, 3150), "renewal_time(3200) >= rebinding_time(3150)"),
        (1200, 1200, (1800, 3150), "renewal_time(1200) >= rebinding_time(1200)"),
        (None, 3600, (1800, 3150), "rebinding_time(3600) >= lease_time(3600)"),
        (100, 4000, (1800, 3150), "rebinding_time(4000) >= lease_time(3600)"),
    ],
)
def test_t1_t2_defaults_and_checks(
    t1: int | None, t2: int | None, expected: tuple[int, int], warning: str | None
) -> None:
    f = to_requesting(make())
    out = f.receive(msg(f, defs.DHCPACK, renewal_time=t1, rebinding_time=t2), T0 + 0.2)
    assert f.state is State.BOUND
    assert (f.renewal_time, f.rebinding_time) == expected
    warnings = [a.message for a in logs(out) if a.level == logging.WARNING]
    if warning is None:
        assert warnings == []
    else:
        assert warnings == [f"{warning} from {SERVER_MAC_TEXT}: using defaults"]
    assert f.deadline == T0 + 0.2 + expected[0] + f.jitter


def test_ignore_routes_and_dns_empty_the_lists() -> None:
    f = to_requesting(make(FsmConfig(ignore_dns=True, ignore_routes=True)))
    out = f.receive(msg(f, defs.DHCPACK), T0 + 0.2)
    kinds = acts(out)
    assert len(kinds) == 1 and isinstance(kinds[0], Configure) and kinds[0].routes == ()
    assert f.routes == () and f.nameservers == ()
    assert f._proposed is None


def test_no_nameservers_no_proposal() -> None:
    f = to_requesting(make())
    out = f.receive(msg(f, defs.DHCPACK, dns=()), T0 + 0.2)
    assert [type(a) for a in acts(out)] == [Configure]


def test_classless_routes_win() -> None:
    f = to_bound(make(), classless_routes=(NET_ROUTE,))
    assert f.routes == (NET_ROUTE,)


# --- whole lease lifetime on a fake clock -----------------------------------------------------


def test_whole_lease_renew_rebind_expire() -> None:
    f = to_bound(make(seed=11))
    ack, j = T0 + 0.2, f.jitter
    bound_xid = f.xid
    # (seconds after the ACK, jitters included, kind of request) for each timer that fires
    expected = [
        (1800, 1, "renew"),
        (2475, 2, "renew"),
        (2812, 3, "renew"),
        (2980, 4, "renew"),
        (3064, 5, "renew"),
        (3124, 6, "renew"),
        (3150, 1, "rebind"),  # renew retries are cut to fire at T2
        (3375, 2, "rebind"),
        (3487, 3, "rebind"),
        (3547, 4, "rebind"),  # 112 // 2 = 56, raised to the 60 s floor
        (3600, 1, "expire"),  # and the last one is cut to fire at the lease end
    ]
    renew_xid = None
    for offset, jitters, kind in expected:
        assert f.deadline == pytest.approx(ack + offset + jitters * j), (offset, kind)
        out = f.timeout(f.deadline)
        if kind == "renew":
            assert f.state is State.RENEWING
            renew_xid = renew_xid or f.xid
            assert acts(out) == [SendRequest(renew_xid, ADDR, None, None, SERVER)]
        elif kind == "rebind":
            assert f.state is State.REBINDING
            assert acts(out) == [SendRequest(renew_xid, ADDR, None, None, None)]
        else:
            assert f.state is State.INIT
            assert acts(out) == [
                WithdrawRdns(),
                Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,)),
                SendDiscover(f.xid),
            ]
    assert renew_xid != bound_xid
    assert f.requested_ip == ZERO and f.nameservers == () and f.lease_time == 0


def test_renewal_ack_unchanged_refreshes_the_address_and_moves_timers() -> None:
    """Only Configure, with the whole lease again: the parent restarts the address's
    lifetime (and rewrites the lease file); routes and DNS stay as they are."""
    f = to_renewing(make())
    now = f.request_time + 1900
    out = f.receive(msg(f, defs.DHCPACK), now)
    (conf,) = acts(out)
    assert isinstance(conf, Configure)
    assert (conf.address, conf.lease_time) == (f.requested_ip, 3600)
    assert out[1:] == [Log(logging.DEBUG, "state_transition Renewing -> Bound, timo: 1800")]
    assert f.state is State.BOUND and f.request_time == now
    assert f.deadline == now + 1800 + f.jitter


def test_renewal_ack_with_new_routes_and_dns() -> None:
    f = to_rebinding(make())
    now = f.request_time + 3200
    new_ns = (IPv4Address("192.0.2.99"),)
    out = f.receive(msg(f, defs.DHCPACK, classless_routes=(NET_ROUTE,), dns=new_ns), now)
    got = acts(out)
    assert got[0] == WithdrawRoutes((DEFAULT_ROUTE,))
    assert isinstance(got[1], Configure) and got[1].routes == (NET_ROUTE,)
    assert got[2] == ProposeRdns(new_ns, "example.org", ("example.org", "lab.example.org"))
    assert len(got) == 3


def test_renewal_ack_with_new_address_deconfigures_old_first() -> None:
    f = to_renewing(make())
    out = f.receive(msg(f, defs.DHCPACK, yiaddr=ADDR2, dns=()), f.request_time + 1900)
    got = acts(out)
    assert got[0] == Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,))
    assert isinstance(got[1], Configure) and got[1].address == ADDR2
    assert got[2] == WithdrawRdns()  # the new lease has no DNS
    assert len(got) == 3 and f.requested_ip == ADDR2


def test_renewal_ack_with_new_mask_reconfigures() -> None:
    f = to_renewing(make())
    out = f.receive(
        msg(f, defs.DHCPACK, subnet_mask=IPv4Address("255.255.0.0")), f.request_time + 1900
    )
    assert [type(a) for a in acts(out)] == [Configure]


def test_rebinding_floor_never_overshoots_lease_end() -> None:
    # lease 200: T2 = 175, (200 - 175) // 2 = 12 would be raised to 60 > 25 s left.
    f = to_bound(make(), lease_time=200)
    ack = f.request_time
    while f.state is not State.REBINDING:
        assert f.deadline is not None
        f.timeout(f.deadline)
    assert f.deadline == pytest.approx(ack + 200 + f.jitter)
    out = f.timeout(f.deadline)
    assert f.state is State.INIT and Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,)) in out


def test_renewing_timeout_after_lease_end_expires_directly() -> None:
    f = to_renewing(make())
    out = f.timeout(f.request_time + 10 * LEASE)  # e.g. the host was suspended
    assert f.state is State.INIT
    assert [type(a) for a in acts(out)] == [WithdrawRdns, Deconfigure, SendDiscover]


def test_renewal_without_server_id_is_broadcast() -> None:
    f = to_bound(make(), server_identifier=None)
    out = f.timeout(f.deadline or 0)
    assert acts(out) == [SendRequest(f.xid, ADDR, None, None, None)]


def test_nak_while_renewing_withdraws_everything() -> None:
    f = to_renewing(make())
    out = f.receive(msg(f, defs.DHCPNAK), f.request_time + 1900)
    assert acts(out) == [
        WithdrawRdns(),
        Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,)),
        SendDiscover(f.xid),
    ]
    assert f.state is State.INIT and f.requested_ip == ZERO


# --- INIT-REBOOT, DOWN, request_reboot ------------------------------------------------------


def test_rebooting_from_remembered_address_gives_up_after_two_tries() -> None:
    f = make(seed=9)
    out = f.link_update(True, ADDR, T0)
    j = f.jitter
    assert f.state is State.REBOOTING
    assert acts(out) == [SendRequest(f.xid, ZERO, ADDR, None, None)]
    assert f.deadline == T0 + 1 + j
    out = f.timeout(f.deadline)
    assert f.state is State.REBOOTING and acts(out) == [SendRequest(f.xid, ZERO, ADDR, None, None)]
    assert f.deadline == T0 + 3 + 2 * j
    out = f.timeout(f.deadline)
    assert f.state is State.INIT
    # The remembered address may still be on the interface from the last run, and its
    # DNS and NTP servers handed on.
    assert acts(out) == [
        WithdrawRdns(), WithdrawNtp(), Deconfigure(ADDR, ZERO, ()), SendDiscover(f.xid)
    ]  # fmt: skip


def test_rebooting_ack_binds() -> None:
    f = to_rebooting(make())
    out = f.receive(msg(f, defs.DHCPACK), T0 + 0.5)
    # no option 42: NTP servers the last run may have handed on are withdrawn
    assert [type(a) for a in acts(out)] == [Configure, ProposeRdns, WithdrawNtp]
    assert f.state is State.BOUND


def test_rebooting_ack_with_other_address_deconfigures_remembered() -> None:
    f = to_rebooting(make())
    out = f.receive(msg(f, defs.DHCPACK, yiaddr=ADDR2), T0 + 0.5)
    assert acts(out)[0] == Deconfigure(ADDR, ZERO, ())
    assert isinstance(acts(out)[1], Configure)


def test_link_down_keeps_address_until_lease_end() -> None:
    f = to_bound(make())
    ack = f.request_time
    out = f.link_update(False, None, ack + 100)
    assert f.state is State.DOWN and acts(out) == [WithdrawRdns()]
    assert f.deadline == pytest.approx(ack + 3600 + f.jitter)
    assert f.requested_ip == ADDR and f._proposed is None
    assert acts(f.link_update(False, None, ack + 200)) == []  # still down: nothing new
    out = f.timeout(f.deadline or 0)
    assert acts(out) == [Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,))]
    assert f.state is State.DOWN and f.deadline is None and f.requested_ip == ZERO
    assert out[-1] == Log(logging.DEBUG, "state_transition Down -> Down, timo: -1")
    f.link_update(True, None, ack + 5000)
    assert f.state is State.INIT


def test_link_flap_reboots_with_the_lease() -> None:
    f = to_bound(make())
    ack = f.request_time
    f.link_update(False, None, ack + 100)
    xid = f.xid
    out = f.link_update(True, ADDR2, ack + 150)  # remembered address unused: one is held
    assert f.state is State.REBOOTING and f.xid != xid
    assert acts(out) == [SendRequest(f.xid, ZERO, ADDR, None, None)]
    out = f.receive(msg(f, defs.DHCPACK), ack + 151)
    assert [type(a) for a in acts(out)] == [Configure, ProposeRdns]


def test_link_down_after_lease_end_deconfigures_at_once() -> None:
    f = to_bound(make())
    f.link_update(False, None, f.request_time + 5000)
    assert f.deadline == pytest.approx(f.request_time + 5000 + f.jitter)


def test_link_down_forgets_an_offer() -> None:
    f = to_requesting(make())
    out = f.link_update(False, None, T0 + 1)
    assert acts(out) == [] and f.deadline is None and f.requested_ip == ZERO


def test_request_reboot_from_bound() -> None:
    f = to_bound(make())
    xid = f.xid
    out = f.request_reboot(T0 + 10)
    assert f.state is State.REBOOTING and f.xid != xid
    assert acts(out) == [SendRequest(f.xid, ZERO, ADDR, None, None)]
    assert f.deadline == T0 + 11 + f.jitter


def test_request_reboot_restarts_requesting_with_the_initial_timer() -> None:
    f = to_requesting(make())
    xid = f.xid
    f.timeout(T0 + 2)  # the timer is 2 s now
    out = f.request_reboot(T0 + 2.5)
    assert f.state is State.REQUESTING and f.xid == xid
    assert f.deadline == T0 + 2.5 + 1 + f.jitter
    assert acts(out) == [SendRequest(xid, ZERO, ADDR, SERVER, None)]


@pytest.mark.parametrize("start", [to_init, to_requesting, to_rebooting])
def test_repeated_requests_never_stretch_the_timer(start: Any) -> None:
    """A boot script retrying ``dhcpleasectl IF`` during an outage (issue 11, item 9)."""
    f = start(make(seed=4))
    state, xid = f.state, f.xid
    now = T0 + 0.5
    for _ in range(2000):  # the original doubles each time: 2**2000 s overflows the float
        out = f.request_reboot(now)
        assert f.state is state and f.xid == xid
        assert len(acts(out)) == 1  # the packet goes out again
        assert f.deadline == now + 1 + f.jitter
        now += 0.01


def test_rebooting_after_requests_still_gets_two_tries_then_discovers() -> None:
    f = to_rebooting(make(seed=6))
    for k in range(10):
        f.request_reboot(T0 + k)
    assert f.deadline is not None
    f.timeout(f.deadline)  # second try, 2 s
    assert f.state is State.REBOOTING and f.deadline == pytest.approx(T0 + 9 + 3 + 2 * f.jitter)
    out = f.timeout(f.deadline)
    assert f.state is State.INIT and SendDiscover(f.xid) in out


def test_t1_after_a_suspend_catches_up_with_the_lease() -> None:
    """The boot clock ran on while the machine slept past T2 / the lease end."""
    for slept, state in ((2000, State.RENEWING), (3300, State.REBINDING), (9000, State.INIT)):
        f = to_bound(make(seed=2))
        ack = f.request_time
        out = f.timeout(ack + slept)
        assert f.state is state, slept
        if state is State.REBINDING:
            assert acts(out) == [SendRequest(f.xid, ADDR, None, None, None)]  # broadcast
            # the first rebinding retry as usual: (lease - T2) / 2, never past the lease end
            assert f.deadline == pytest.approx(ack + slept + 225 + f.jitter)
        elif state is State.INIT:
            assert acts(out) == [
                WithdrawRdns(),
                Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,)),
                SendDiscover(f.xid),
            ]


# --- IPv6-only (RFC 8925) --------------------------------------------------------------------


@pytest.mark.parametrize(("wait", "expected"), [(1, 300), (299, 300), (300, 300), (1800, 1800)])
def test_ipv6_only_wait_has_a_floor(wait: int, expected: int) -> None:
    f = to_init(make(FsmConfig(prefer_ipv6=True)))
    out = f.receive(msg(f, defs.DHCPOFFER, ipv6_only_wait=wait), T0 + 0.5)
    assert f.state is State.IPV6_ONLY and acts(out) == []
    assert f.ipv6_only_time == expected
    assert f.deadline == T0 + 0.5 + expected + f.jitter
    xid = f.xid
    out = f.timeout(f.deadline)
    assert f.state is State.INIT and f.xid != xid and acts(out) == [SendDiscover(f.xid)]


def test_option_108_zero_or_not_preferred_is_ignored() -> None:
    f = to_init(make(FsmConfig(prefer_ipv6=True)))
    f.receive(msg(f, defs.DHCPOFFER, ipv6_only_wait=0), T0)
    assert f.state is State.REQUESTING
    g = to_init(make())
    g.receive(msg(g, defs.DHCPOFFER, ipv6_only_wait=1800), T0)
    assert g.state is State.REQUESTING


def test_ack_with_108_while_renewing_drops_the_old_lease() -> None:
    f = to_renewing(make())
    f.reconfigure(FsmConfig(prefer_ipv6=True), f.request_time + 1850)
    out = f.receive(msg(f, defs.DHCPACK, yiaddr=ADDR2, ipv6_only_wait=600), f.request_time + 1900)
    assert f.state is State.IPV6_ONLY
    assert acts(out) == [WithdrawRdns(), Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,))]
    assert f.requested_ip == ZERO and f.ipv6_only_time == 600


# --- reconfigure, remove, misc -----------------------------------------------------------------


def test_reconfigure_withdraws_newly_ignored() -> None:
    f = to_bound(make())
    out = f.reconfigure(FsmConfig(ignore_dns=True), T0 + 5)
    assert acts(out) == [WithdrawRdns()] and f.nameservers == ()
    out = f.reconfigure(FsmConfig(ignore_dns=True, ignore_routes=True), T0 + 6)
    assert acts(out) == [WithdrawRoutes((DEFAULT_ROUTE,))] and f.routes == ()
    assert acts(f.reconfigure(FsmConfig(ignore_dns=True, ignore_routes=True), T0 + 7)) == []
    # The next address removal no longer names the withdrawn routes.
    assert acts(f.remove(T0 + 8))[-1] == Deconfigure(ADDR, MASK, ())
    assert f.state is State.DOWN and f.deadline is None


def test_reconfigure_stores_prefer_ipv6() -> None:
    f = to_init(make())
    assert acts(f.reconfigure(FsmConfig(prefer_ipv6=True), T0)) == []
    assert f.config == FsmConfig(prefer_ipv6=True)
    f.receive(msg(f, defs.DHCPOFFER, ipv6_only_wait=400), T0)
    assert f.state is State.IPV6_ONLY


def test_remove_from_bound() -> None:
    f = to_bound(make())
    out = f.remove(T0 + 5)
    assert acts(out) == [WithdrawRdns(), Deconfigure(ADDR, MASK, (DEFAULT_ROUTE,))]
    assert f.state is State.DOWN and f.deadline is None and f.requested_ip == ZERO


def test_remove_without_lease_does_nothing_but_stop() -> None:
    f = to_init(make())
    assert acts(f.remove(T0 + 5)) == [] and f.deadline is None


def test_overdue_deadline_is_clamped_to_now() -> None:
    f = to_init(make())
    f.receive(msg(f, defs.DHCPACK), T0 + 100)  # ignored, long after the timer was due
    assert f.deadline == T0 + 100


def test_invalid_transition_is_refused() -> None:
    f = to_bound(make())
    f._cell = TABLE[(State.BOUND, Event.TIMEOUT)]
    with pytest.raises(InvalidTransition):
        f._enter(State.IPV6_ONLY)


# --- hypothesis: random event sequences against a model of the interface ----------------------

_ACK_VARIANTS = st.fixed_dictionaries(
    {
        "yiaddr": st.sampled_from([ADDR, ADDR2, ZERO]),
        "server_identifier": st.sampled_from([SERVER, None]),
        "lease_time": st.sampled_from([None, 0, 1, 60, 200, LEASE, 0xFFFFFFFF]),
        "renewal_time": st.one_of(st.none(), st.integers(0, 5000)),
        "rebinding_time": st.one_of(st.none(), st.integers(0, 5000)),
        "subnet_mask": st.sampled_from(
            [MASK, None, IPv4Address("255.255.0.0"), IPv4Address("255.0.255.0")]
        ),
        "classless_routes": st.sampled_from([None, (), (NET_ROUTE,), (NET_ROUTE, DEFAULT_ROUTE)]),
        "dns": st.sampled_from([(), NS, NS[:1], (ZERO, NS[0])]),
        "domain_name": st.sampled_from([None, "example.org", "other.example"]),
        "ipv6_only_wait": st.sampled_from([None, 0, 1, 1800]),
        "rapid_commit": st.booleans(),
    }
)
_ACKS = st.one_of(st.just({}), st.just({}), st.just({}), _ACK_VARIANTS)  # mostly a sound lease
# "auto" = the reply the state waits for (OFFER in Init, ACK in the lease states)
_MESSAGE_TYPES = st.sampled_from(
    ["auto", "auto", "auto", defs.DHCPOFFER, defs.DHCPACK, defs.DHCPNAK, defs.DHCPREQUEST, None]
)
_CONFIGS = st.builds(FsmConfig, st.booleans(), st.booleans(), st.booleans(), st.booleans())
_RARE_STEPS = st.one_of(
    st.tuples(st.just("up"), st.sampled_from([None, ADDR, ADDR2, ZERO])),
    st.tuples(st.just("down")),
    st.tuples(st.just("msg"), _MESSAGE_TYPES, _ACKS, st.booleans()),
    st.tuples(st.just("timeout"), st.booleans()),
    st.tuples(st.just("reboot")),
    st.tuples(st.just("reconf"), _CONFIGS),
    st.tuples(st.just("remove")),
    st.tuples(st.just("release")),
    st.tuples(st.just("release_sent")),
)
# Mostly the expected reply or the timer firing, so runs get deep into a lease.
_STEPS = st.one_of(
    st.tuples(st.just("msg"), st.just("auto"), _ACKS, st.just(True)),
    st.tuples(st.just("timeout"), st.just(True)),
    st.tuples(st.just("silence"), st.integers(1, 12)),  # a server that stops answering
    _RARE_STEPS,
)
_DT = st.one_of(st.floats(0, 5, allow_nan=False), st.floats(0, 5000, allow_nan=False))


class _Model:
    """What the engine would have put on the interface, judged from the actions alone."""

    def __init__(self) -> None:
        self.configured: IPv4Address | None = None
        self.remembered: set[IPv4Address] = set()
        self.proposed = False

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            match a:
                case Configure():
                    assert self.configured in (None, a.address), "Configure over another address"
                    assert a.mask != ZERO and a.lease_time > 0
                    self.configured = a.address
                case Deconfigure():
                    if a.address == self.configured:
                        self.configured = None
                    else:  # only an address remembered from the lease file, prefix unknown
                        assert a.mask == ZERO and a.address in self.remembered, a
                case WithdrawRoutes():
                    assert self.configured is not None and a.routes
                case ProposeRdns():
                    assert self.configured is not None and a.nameservers
                    self.proposed = True
                case WithdrawRdns():
                    self.proposed = False
                case SendRelease():
                    assert a.ciaddr == self.configured and a.server_identifier != ZERO, a
                case ForgetLease():
                    assert self.configured is None and not self.proposed
                case SendDiscover() | SendRequest() | Log():
                    pass

    def check(self, f: Fsm, now: float) -> None:
        assert isinstance(f.state, State)
        assert f.deadline is None or f.deadline >= now
        if f.state in (State.INIT, State.REQUESTING, State.REBOOTING):
            assert f.deadline is not None
            assert f.deadline - now <= defs.MAX_EXP_BACKOFF_SLOW + f.jitter + 1e-6  # bounded
        if f.state in (State.BOUND, State.RENEWING, State.REBINDING):
            assert self.configured == f.requested_ip != ZERO
            assert f.deadline is not None
        if f.state in (State.INIT, State.REQUESTING, State.IPV6_ONLY):
            assert self.configured is None and not self.proposed
            assert f.deadline is not None
        if f.state is State.DOWN:
            assert not self.proposed
            if f.deadline is None:
                assert self.configured is None
        if f.state is State.REBOOTING:
            assert f.requested_ip != ZERO
        if f.state is State.RELEASING:  # the address stays until the DHCPRELEASE left
            assert self.configured is not None and f.deadline is not None
        if f.state is State.RELEASED:
            assert self.configured is None and not self.proposed and f.deadline is None


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    config=_CONFIGS,
    first=st.sampled_from([None, ADDR]),
    steps=st.lists(st.tuples(_DT, _STEPS), max_size=60),
)
def test_random_sequences_keep_the_invariants(
    seed: int, config: FsmConfig, first: IPv4Address | None, steps: list[tuple[float, Any]]
) -> None:
    f = Fsm(config, random.Random(seed), T0)
    model = _Model()
    now = T0
    steps = [(0.0, ("up", first)), *steps]  # start with the link up, or most runs stay Down
    for dt, step in steps:
        now += dt
        match step:
            case ("up", remembered):
                if remembered is not None:
                    model.remembered.add(remembered)
                out = f.link_update(True, remembered, now)
            case ("down",):
                out = f.link_update(False, None, now)
            case ("msg", mtype, fields, good_xid):
                if mtype == "auto":
                    mtype = defs.DHCPOFFER if f.state is State.INIT else defs.DHCPACK
                m = msg(f, mtype, **fields)
                if not good_xid:
                    m = msg(f, mtype, xid=f.xid ^ 0x5A5A, **fields)
                out = f.receive(m, now)
            case ("timeout", at_deadline):
                if at_deadline and f.deadline is not None:
                    now = max(now, f.deadline)
                out = f.timeout(now)
            case ("silence", count):
                out = []
                for _ in range(count):
                    if f.deadline is None:
                        break
                    now = max(now, f.deadline)
                    step_out = f.timeout(now)
                    model.apply(step_out)
                    model.check(f, now)
            case ("reboot",):
                out = f.request_reboot(now)
            case ("reconf", config):
                out = f.reconfigure(config, now)
            case ("remove",):
                out = f.remove(now)
            case ("release",):
                out = f.release(now)
            case ("release_sent",):
                out = f.release_sent(now)
            case _:
                raise AssertionError(step)
        model.apply(out)
        model.check(f, now)
        assert all(isinstance(a.message, str) for a in logs(out))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), lease=st.integers(1, 100_000))
def test_unanswered_lease_always_expires_at_lease_end(seed: int, lease: int) -> None:
    f = Fsm(FsmConfig(), random.Random(seed), T0)
    to_bound(f, lease_time=lease)
    ack = f.request_time
    for _ in range(200):
        assert f.deadline is not None
        f.timeout(f.deadline)
        if f.state is State.INIT:
            break
    assert f.state is State.INIT
    # The expiry fires by the lease end plus one jitter, never a whole retry later.
    assert f.deadline is not None
    expired_at = f.deadline - 1 - f.jitter
    assert ack + lease - 2e-3 <= expired_at <= ack + lease + f.jitter + 1e-6
