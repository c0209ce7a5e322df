"""Pure RFC 2131 client state machine, one `Fsm` per interface (engine.c's core, minus I/O).

Inputs are method calls that take the current time ``now`` (the engine reads CLOCK_BOOTTIME,
which keeps counting while the machine sleeps, as OpenBSD's CLOCK_MONOTONIC does); outputs
are lists of actions the engine carries out in order, plus `Fsm.deadline`, the absolute
time at which the engine must call `Fsm.timeout`. Randomness (xids, the per-interface
jitter) comes only from the `random.Random` handed in, so a seeded test replays a run
exactly (the engine hands in `random.SystemRandom`: xids an attacker cannot predict).

The transitions are data: `TABLE` maps every (`State`, `Event`) cell to its handler and to
the set of states it may enter; `Fsm` refuses (`InvalidTransition`) to enter any other, so
Bound -> IPv6-only, which the original stops with fatal(), cannot happen, and Bound -> Init
only through a T1 timer that finds the whole lease over (below).

Timers follow engine.c v1.59: backoff 1, 2, 4 ... capped at 64 s (Init resends forever,
Requesting gives up once the timer is 64 s, ~127 s), Rebooting gives up once it is 2 s
(two tries, ~3 s); Renewing retries at half the time left to T2, Rebinding at half the time
left of the lease. One random sub-second jitter, drawn when the `Fsm` is made, is added to
every timer. The lease clock starts at the ``now`` of the ACK being processed.

For the engine: call `Fsm.timeout` once `Fsm.deadline` has passed (an early call counts
as the timer firing; with no deadline it does nothing). After every call the deadline is
None or not before that call's ``now`` (an overdue one reads as ``now``: fire at once).
`Log` messages come without the interface name ("state_transition Init -> Requesting,
timo: 1"); the engine adds it. "adding/deleting A" and nameserver lines are the engine's
to log when it carries out Configure/Deconfigure/ProposeRdns/WithdrawRdns.

Deliberate deviations from the original, each because the original is wrong or unsafe:

- RFC 8925: option 108 = 0 counts as absent, and the IPv6-only wait is at least
  `defs.MIN_V6ONLY_WAIT` (300 s). When the wait ends the client restarts from INIT with a
  DISCOVER (RFC 8925 section 3.2: "restart the configuration process"); the original moves
  to REQUESTING and sends a REQUEST for no address to no server.
- Rebinding retries have the same 60 s floor (`defs.MIN_RENEW_RETRY`) as renewing ones
  (the original's halving reaches 0 s and then retransmits in a tight loop). Neither floor
  may overshoot: a renewing retry is cut to fire at T2, a rebinding one at the lease end
  (each plus the jitter). The checks are ``elapsed >= T2`` / ``elapsed >= lease`` with 1 ms
  slack (the original's ``>`` could spin on a retry cut to land exactly on the lease end),
  and a renewing timeout that finds the lease already over expires at once instead of
  sending one rebind first.
- A renewal ACK (Renewing/Rebinding) whose address, mask, routes or DNS differ re-applies
  them: WithdrawRoutes for vanished routes, Configure, ProposeRdns / WithdrawRdns. The
  original stores the new values but keeps the old ones in the kernel. Every ACK, an
  unchanged renewal too, emits Configure: the parent gives the address the lease time as
  its lifetime, so the kernel drops it when the lease ends even if the daemon is gone.
- Whenever a Configure carries an address other than the one in place (any ACK: renewal,
  a reboot request answered with a new address), the old one is Deconfigured first; the
  original would leave it on the interface forever.
- An ACK with option 108 in Renewing/Rebinding/Rebooting deconfigures the address that is
  configured, not the one in the new ACK (the original stores first, then deletes that).
- Only what is held is withdrawn: a NAK or give-up in Requesting (nothing configured yet)
  just sends a DISCOVER; the original also deconfigures the merely offered address.
  "Held" includes an address remembered from the lease file on start-up (INIT-REBOOT): it
  may still be on the interface from the previous run, so it is Deconfigured with mask
  0.0.0.0 and no routes (prefix unknown) if the server refuses it, as the original does.
- Link down outside a lease (Init, Requesting, IPv6-only) forgets the offer; the original
  keeps the offered address and later INIT-REBOOTs it. Link down while already Down is a
  no-op (the original deconfigures at once), so the lease still lasts until its end.
- request_reboot in IPv6-only restarts at INIT: there is no address to reboot with.
- request_reboot in Init, Requesting or Rebooting restarts that exchange: the packet is sent
  again and the timer goes back to 1 s (Rebooting again gets its two tries). The original
  doubles the timer on each request, so a boot script that runs ``dhcpleasectl IF`` in a
  loop during an outage silences the client for 2^n s (and ~1000 overflow it). Every
  retry timer is capped at 64 s whatever arrives.
- A T1 timer that fires late (the machine slept through T2 or the lease end: the clock
  counts suspended time) goes straight to Rebinding, or expires the lease, instead of
  first unicasting a renewal the lease no longer allows.
- An ACK must carry a usable unicast yiaddr and a contiguous mask (the original would
  configure 0.0.0.0 or a mask the kernel refuses). Routes via a gateway and nameservers
  that are not unicast (multicast, loopback, 240/4, broadcast) are dropped from it, and a
  lease file's address must be unicast too: the parent treats any of them as a
  compromised engine and exits, so one forged ACK would otherwise end the daemon.
- A renewal without a known server id is broadcast instead of being unicast to 0.0.0.0.
- `reconfigure` with "ignore routes" newly set withdraws the lease's routes and forgets
  them; with "ignore dns" it withdraws the DNS proposal (the original: the same, by imsg).

Additions the original does not have (issue 15):

- `release` (dhcpleasectl release IF, or "release on exit" at SIGTERM) gives the lease
  back. With a lease held, the server known and the link up, a DHCPRELEASE is asked for
  (RFC 2131 4.4.6: ``ciaddr`` = the address, option 54; the frontend unicasts it) and the
  machine waits in Releasing until the frontend says it left (`release_sent`; the timer,
  `defs.RELEASE_WAIT`, bounds the wait), since the address must still be there to send
  from. Then, or at once when there is nothing to send, Released: DNS, address and routes
  are withdrawn, `ForgetLease` drops the lease file (a released address is not asked for
  again by INIT-REBOOT), and the interface stays idle. Only a request (`request_reboot`:
  dhcpleasectl IF, or a reload that changes the interface's block) starts it again; the
  link coming back does not, because a release is the admin's word that this interface
  should hold no lease, and a cable replugged or an access point re-joined is not the
  admin speaking (each flap would otherwise undo the release). The link state is still
  followed, so a request finds Init (link up) or Down.
- Rapid commit (RFC 4039, ``FsmConfig.rapid_commit``): the frontend puts option 80 in the
  DISCOVER; a DHCPACK is taken in Init only then, and only if it carries option 80 (one
  without is dropped); an OFFER still leads to the four-message exchange.
- Address conflict detection (RFC 5227, ``FsmConfig.arp_probe``; the timers are
  :mod:`acd`'s, folded into `Fsm.deadline`, each firing as the ARP_TIMER event). The probe
  starts as soon as the address is known, so it runs in parallel with the exchange that
  follows: at the OFFER (beside the REQUEST), on entering Rebooting (beside INIT-REBOOT's
  REQUEST), at a rapid-commit ACK. An ACK that comes before the probe is done waits in
  Probing (nothing configured); once the probe is clear the lease is put in place and
  announced, and from then on defended (Bound, Renewing, Rebinding). A conflict in
  Probing, or one that is not defended, gives the address up: DNS, address and routes are
  withdrawn, a DHCPDECLINE (RFC 2131 4.4.4: broadcast, options 50 and 54, ``ciaddr`` 0)
  is asked for, and Declined waits `acd.Acd.decline_wait` (RFC 2131 3.1.5's 10 s, 60 s
  once RFC 5227's MAX_CONFLICTS came in a row) before starting over in Init. A conflict
  in Requesting or Rebooting waits for the server's answer, since a DHCPDECLINE declines
  an ACK (a held address is given up at once); a NAK or a give-up just restarts. In
  Declined a request waits for the end of the wait (a boot script's loop must not undo
  RFC 2131's back-off); the link going down ends it.
- MTU (option 26) and NTP servers (option 42), unless "ignore mtu" / "ignore ntp": the
  lease's MTU is applied to the interface (`SetMtu`, after Configure) and put back
  (`RestoreMtu`) when the address goes, when a renewal no longer carries it, or when
  "ignore mtu" is newly set; an MTU below `defs.MIN_MTU` is refused with a warning (the
  device's maximum is the parent's to check). NTP servers are proposed the way DNS is
  (`ProposeNtp`, unicast ones only, at most `defs.MAX_NTP_COUNT`) but, like the address
  and the MTU, kept through a link down: they are withdrawn (`WithdrawNtp`) when the
  lease ends, when a conflict takes the address (with DNS), or when "ignore ntp" is
  newly set.  A time daemon takes new servers only by a restart (timesyncd), and a
  flapping link must not restart it twice a flap.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Final, TypeAlias, assert_never

from dhcpleased import acd, defs
from dhcpleased.packet import ArpPacket, DhcpMessage, Route

_ZERO: Final = IPv4Address(0)
_CLASS_E: Final = 0xF0000000
# A timer firing this close to T2 or the lease end counts as having reached it, so float
# rounding (or an event loop firing a hair early) cannot cause a zero-length retry loop.
_SLACK: Final = 1e-3


class State(enum.Enum):
    """Interface states; the value is the name dhcpleasectl prints."""

    DOWN = "Down"
    INIT = "Init"
    REQUESTING = "Requesting"
    BOUND = "Bound"
    RENEWING = "Renewing"
    REBINDING = "Rebinding"
    REBOOTING = "Rebooting"
    IPV6_ONLY = "IPv6 only"
    RELEASING = "Releasing"
    RELEASED = "Released"
    PROBING = "Probing"  # RFC 5227: the ACK is in, the ARP probe of its address is not done
    DECLINED = "Declined"  # the address was in use: DHCPDECLINE sent, waiting to start over


class Event(enum.Enum):
    """Inputs, one column each in `TABLE`."""

    LINK_UP = "link up"
    LINK_DOWN = "link down"
    OFFER = "DHCPOFFER"
    ACK = "DHCPACK"
    NAK = "DHCPNAK"
    OTHER = "other message"
    TIMEOUT = "timeout"
    REQUEST_REBOOT = "request reboot"
    RECONFIGURE = "reconfigure"
    REMOVE = "remove"
    RELEASE = "release"
    RELEASE_SENT = "release sent"
    ARP = "ARP packet"  # about the address being probed or defended
    ARP_TIMER = "ARP timer"  # acd's deadline: the next probe or announcement, or probe done


@dataclass(frozen=True, slots=True)
class FsmConfig:
    """The per-interface settings the machine itself acts on."""

    prefer_ipv6: bool = False
    ignore_dns: bool = False
    ignore_routes: bool = False
    rapid_commit: bool = False
    arp_probe: bool = False
    ignore_mtu: bool = False
    ignore_ntp: bool = False


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendDiscover:
    xid: int


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A DHCPREQUEST; ``dhcp_server`` is set only in Renewing (unicast), else broadcast."""

    xid: int
    ciaddr: IPv4Address
    requested_ip: IPv4Address | None
    server_identifier: IPv4Address | None
    dhcp_server: IPv4Address | None


@dataclass(frozen=True, slots=True)
class SendRelease:
    """A DHCPRELEASE of ``ciaddr`` to ``server`` (option 54), unicast to ``dhcp_server``."""

    xid: int
    ciaddr: IPv4Address
    server_identifier: IPv4Address
    dhcp_server: IPv4Address


@dataclass(frozen=True, slots=True)
class SendDecline:
    """A DHCPDECLINE of ``address`` to ``server`` (options 50, 54), broadcast."""

    xid: int
    address: IPv4Address
    server: IPv4Address


@dataclass(frozen=True, slots=True)
class ForgetLease:
    """The lease was given back: the lease file goes too (no INIT-REBOOT for it)."""


@dataclass(frozen=True, slots=True)
class Configure:
    address: IPv4Address
    mask: IPv4Address
    routes: tuple[Route, ...]
    server: IPv4Address
    siaddr: IPv4Address
    file: bytes
    domain_name: str
    host_name: str
    lease_time: int


@dataclass(frozen=True, slots=True)
class Deconfigure:
    """Remove address and routes; mask 0.0.0.0 = a remembered address, prefix unknown."""

    address: IPv4Address
    mask: IPv4Address
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class WithdrawRoutes:
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class ProposeRdns:
    nameservers: tuple[IPv4Address, ...]
    domain: str
    search: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WithdrawRdns:
    pass


@dataclass(frozen=True, slots=True)
class SetMtu:
    """Give the interface the lease's MTU (the parent remembers the one it replaces)."""

    mtu: int


@dataclass(frozen=True, slots=True)
class RestoreMtu:
    """Put back the MTU the interface had before `SetMtu`."""


@dataclass(frozen=True, slots=True)
class ProposeNtp:
    servers: tuple[IPv4Address, ...]


@dataclass(frozen=True, slots=True)
class WithdrawNtp:
    pass


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the engine to log (it prefixes the interface name)."""

    level: int
    message: str


Action: TypeAlias = (
    SendDiscover
    | SendRequest
    | SendRelease
    | SendDecline
    | ForgetLease
    | Configure
    | Deconfigure
    | WithdrawRoutes
    | ProposeRdns
    | WithdrawRdns
    | SetMtu
    | RestoreMtu
    | ProposeNtp
    | WithdrawNtp
    | Log
    | acd.Watch
    | acd.Probe
    | acd.Announce
)


class InvalidTransition(RuntimeError):
    """A handler tried to enter a state its `TABLE` cell does not allow: a bug, not input."""


@dataclass(frozen=True, slots=True)
class _Applied:
    """What this machine put on the interface (or, mask 0, may find there from last run)."""

    address: IPv4Address
    mask: IPv4Address
    routes: tuple[Route, ...]

    @property
    def stale(self) -> bool:
        return self.mask == _ZERO


@dataclass(frozen=True, slots=True)
class _Ctx:
    now: float
    msg: DhcpMessage | None = None
    remembered: IPv4Address | None = None
    config: FsmConfig | None = None
    arp: tuple[ArpPacket, bytes] | None = None  # a received packet, the interface's MAC


def _mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _fmt_timo(timo: float | None) -> str:
    if timo is None:
        return "-1"
    return str(int(timo)) if float(timo).is_integer() else f"{timo:.3f}"


def _contiguous(mask: IPv4Address) -> bool:
    inv = int(mask) ^ 0xFFFFFFFF
    return inv & (inv + 1) == 0


_MSG_NAMES: Final = {defs.DHCPOFFER: "DHCPOFFER", defs.DHCPACK: "DHCPACK", defs.DHCPNAK: "DHCPNAK"}
_LEASE_STATES: Final = frozenset(
    {State.REQUESTING, State.RENEWING, State.REBINDING, State.REBOOTING}
)
_ACK_TARGETS: Final = (State.BOUND, State.IPV6_ONLY, State.PROBING, State.DECLINED)
_IN_USE: Final = frozenset({State.BOUND, State.RENEWING, State.REBINDING})


class Fsm:
    """One interface's DHCP client: feed it inputs, carry out the actions it returns."""

    def __init__(self, config: FsmConfig, rng: random.Random, now: float) -> None:
        self._config = config
        self._rng = rng
        self._jitter = rng.randrange(1_000_000) / 1_000_000
        self._xid = rng.getrandbits(32)
        self._state = State.DOWN
        self._timo: float | None = None
        self._deadline: float | None = None
        self._now = now
        self._out: list[Action] = []
        self._cell: Cell | None = None
        self._applied: _Applied | None = None
        self._proposed: ProposeRdns | None = None
        self._routes: tuple[Route, ...] = ()
        self._nameservers: tuple[IPv4Address, ...] = ()
        self._search: tuple[str, ...] = ()
        self._ntp: tuple[IPv4Address, ...] = ()
        self._mtu_set = 0  # the MTU SetMtu put on the interface, 0 = none
        self._ntp_proposed: ProposeNtp | None = None
        self._link_up = False
        self._acd = acd.Acd()
        self._entries = 0  # states entered so far: a handler that re-arms the DHCP timer
        self._clear_lease()

    # --- read-only views (ctl report, lease file, engine) -----------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def config(self) -> FsmConfig:
        return self._config

    @property
    def xid(self) -> int:
        return self._xid

    @property
    def deadline(self) -> float | None:
        """Absolute time at which to call `timeout`; None = no timer."""
        arp = self._acd.deadline
        if arp is None or self._deadline is None:
            return self._deadline if arp is None else arp
        return min(arp, self._deadline)

    @property
    def acd(self) -> acd.Acd:
        """Conflict detection's state, for dhcpleasectl (read it, do not drive it)."""
        return self._acd

    @property
    def jitter(self) -> float:
        return self._jitter

    @property
    def requested_ip(self) -> IPv4Address:
        return self._requested_ip

    @property
    def server_identifier(self) -> IPv4Address:
        return self._server_identifier

    @property
    def dhcp_server(self) -> IPv4Address:
        return self._dhcp_server

    @property
    def mask(self) -> IPv4Address:
        return self._mask

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes

    @property
    def nameservers(self) -> tuple[IPv4Address, ...]:
        return self._nameservers

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def search(self) -> tuple[str, ...]:
        return self._search

    @property
    def host_name(self) -> str:
        return self._host_name

    @property
    def siaddr(self) -> IPv4Address:
        return self._siaddr

    @property
    def file(self) -> bytes:
        return self._file

    @property
    def lease_time(self) -> int:
        return self._lease_time

    @property
    def renewal_time(self) -> int:
        return self._renewal_time

    @property
    def rebinding_time(self) -> int:
        return self._rebinding_time

    @property
    def request_time(self) -> float:
        return self._request_time

    @property
    def ipv6_only_time(self) -> int:
        return self._ipv6_only_time

    @property
    def mtu(self) -> int:
        """The lease's MTU as taken (0: none, ignored or refused)."""
        return self._mtu

    @property
    def ntp(self) -> tuple[IPv4Address, ...]:
        return self._ntp

    @property
    def rapid_commit(self) -> bool:
        """The lease came from a two-message exchange: DISCOVER answered by a DHCPACK."""
        return self._rapid_commit

    # --- inputs ------------------------------------------------------------------------------

    def link_update(self, up: bool, remembered_ip: IPv4Address | None, now: float) -> list[Action]:
        """The link changed (the engine calls this on any change of MAC/running/link state).

        ``remembered_ip`` is the lease file's address; it is used only when no address is held.
        """
        event = Event.LINK_UP if up else Event.LINK_DOWN
        self._link_up = up
        return self._dispatch(event, _Ctx(now, remembered=remembered_ip))

    def receive(self, msg: DhcpMessage, now: float) -> list[Action]:
        """A parsed reply; one with a stale xid is dropped silently, as parse_dhcp does."""
        if msg.xid != self._xid:
            self._clamp(now)
            return []
        event = {
            defs.DHCPOFFER: Event.OFFER,
            defs.DHCPACK: Event.ACK,
            defs.DHCPNAK: Event.NAK,
        }.get(msg.message_type or 0, Event.OTHER)
        return self._dispatch(event, _Ctx(now, msg=msg))

    def timeout(self, now: float) -> list[Action]:
        """The deadline passed (an early call acts as if it had); no timer = nothing to do.

        Two timers may be due: acd's fires first (ARP_TIMER), then the DHCP one (TIMEOUT)
        unless the first moved the machine to another state, which set a new one.
        """
        first = self.deadline
        if first is None:
            return []
        due = max(first, now)
        out: list[Action] = []
        arp, dhcp, entries = self._acd.deadline, self._deadline, self._entries
        if arp is not None and arp <= due:
            out += self._dispatch(Event.ARP_TIMER, _Ctx(now))
        if dhcp is not None and dhcp <= due and self._entries == entries:
            out += self._dispatch(Event.TIMEOUT, _Ctx(now))
        return out

    def arp(self, pkt: ArpPacket, our_mac: bytes, now: float) -> list[Action]:
        """A parsed ARP packet about the address being probed or defended (RFC 5227)."""
        return self._dispatch(Event.ARP, _Ctx(now, arp=(pkt, our_mac)))

    def request_reboot(self, now: float) -> list[Action]:
        """dhcpleasectl or a config change asks to verify or get a lease now."""
        return self._dispatch(Event.REQUEST_REBOOT, _Ctx(now))

    def reconfigure(self, config: FsmConfig, now: float) -> list[Action]:
        """New settings; newly set "ignore dns"/"ignore routes" withdraw what is in place."""
        return self._dispatch(Event.RECONFIGURE, _Ctx(now, config=config))

    def remove(self, now: float) -> list[Action]:
        """The interface is gone or no longer managed: withdraw DNS and deconfigure."""
        return self._dispatch(Event.REMOVE, _Ctx(now))

    def release(self, now: float) -> list[Action]:
        """Give the lease back (DHCPRELEASE when one can go) and stay idle until a request."""
        return self._dispatch(Event.RELEASE, _Ctx(now))

    def release_sent(self, now: float) -> list[Action]:
        """The frontend is done with the DHCPRELEASE: now the address may go."""
        return self._dispatch(Event.RELEASE_SENT, _Ctx(now))

    # --- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, event: Event, ctx: _Ctx) -> list[Action]:
        self._now = ctx.now
        self._out = []
        cell = TABLE[(self._state, event)]
        self._cell = cell
        try:
            cell.handler(self, ctx)
        finally:
            self._cell = None
        self._clamp(ctx.now)
        out, self._out = self._out, []
        return out

    def _clamp(self, now: float) -> None:
        """An overdue deadline reads as "now", never as a time in the past."""
        if self._deadline is not None and self._deadline < now:
            self._deadline = now
        self._acd.clamp(now)

    def _log(self, level: int, message: str) -> None:
        self._out.append(Log(level, message))

    # --- handlers (one per TABLE cell kind) ---------------------------------------------------

    def _h_nothing(self, ctx: _Ctx) -> None:
        pass

    def _h_unexpected(self, ctx: _Ctx) -> None:
        assert ctx.msg is not None
        name = _MSG_NAMES.get(ctx.msg.message_type or 0, "message")
        self._log(logging.DEBUG, f"ignoring unexpected {name}")

    def _h_unimplemented(self, ctx: _Ctx) -> None:
        assert ctx.msg is not None
        mtype = ctx.msg.message_type or 0
        self._log(logging.WARNING, f"unimplemented message type {mtype}")

    def _h_link_up(self, ctx: _Ctx) -> None:
        remembered = ctx.remembered
        if self._applied is not None:
            self._enter(State.REBOOTING)
        elif remembered is not None and self._usable(remembered):
            self._clear_lease()
            self._requested_ip = remembered
            self._applied = _Applied(remembered, _ZERO, ())
            self._enter(State.REBOOTING)
        else:
            self._enter(State.INIT)

    def _h_to_down(self, ctx: _Ctx) -> None:
        self._enter(State.DOWN)

    def _h_reenter(self, ctx: _Ctx) -> None:
        self._enter(self._state)

    def _h_to_rebooting(self, ctx: _Ctx) -> None:
        self._enter(State.REBOOTING)

    def _h_restart(self, ctx: _Ctx) -> None:
        """A request in Init/Requesting/Rebooting: resend now, timer back to 1 s."""
        self._enter(self._state, restart=True)

    def _h_to_init(self, ctx: _Ctx) -> None:
        self._enter(State.INIT)

    def _h_to_released(self, ctx: _Ctx) -> None:
        self._enter(State.RELEASED)

    def _h_requesting_timeout(self, ctx: _Ctx) -> None:
        assert self._timo is not None
        slow = self._timo >= defs.MAX_EXP_BACKOFF_SLOW
        self._enter(State.INIT if slow else State.REQUESTING)

    def _h_rebooting_timeout(self, ctx: _Ctx) -> None:
        assert self._timo is not None
        fast = self._timo >= defs.MAX_EXP_BACKOFF_FAST
        self._enter(State.INIT if fast else State.REBOOTING)

    def _h_bound_timeout(self, ctx: _Ctx) -> None:
        """T1, normally; after a suspend the lease may be past T2 or over: catch up at once."""
        elapsed = ctx.now - self._request_time
        if elapsed + _SLACK >= self._lease_time:
            self._log(logging.DEBUG, f"lease ran out while the timer slept (elapsed {elapsed:.0f})")
            self._enter(State.INIT)
        elif elapsed + _SLACK >= self._rebinding_time:
            self._enter(State.REBINDING)
        else:
            self._enter(State.RENEWING)

    def _h_renewing_timeout(self, ctx: _Ctx) -> None:
        elapsed = ctx.now - self._request_time
        self._log(
            logging.DEBUG,
            f"iface_timeout: elapsed: {elapsed:.0f}, rebinding_time: {self._rebinding_time}",
        )
        if elapsed + _SLACK >= self._lease_time:
            self._enter(State.INIT)
        elif elapsed + _SLACK >= self._rebinding_time:
            self._enter(State.REBINDING)
        else:
            self._enter(State.RENEWING)

    def _h_rebinding_timeout(self, ctx: _Ctx) -> None:
        elapsed = ctx.now - self._request_time
        self._log(
            logging.DEBUG, f"iface_timeout: elapsed: {elapsed:.0f}, lease_time: {self._lease_time}"
        )
        expired = elapsed + _SLACK >= self._lease_time
        self._enter(State.INIT if expired else State.REBINDING)

    def _h_release(self, ctx: _Ctx) -> None:
        """Send a DHCPRELEASE if one can be sent to the RFC's letter, else just let go."""
        applied, server = self._applied, self._server_identifier
        if applied is None or applied.stale:
            self._enter(State.RELEASED)
        elif server == _ZERO:
            self._log(logging.WARNING, "no server identifier known: no DHCPRELEASE sent")
            self._enter(State.RELEASED)
        elif self._state is State.DOWN:
            self._log(logging.WARNING, "link down: no DHCPRELEASE sent")
            self._enter(State.RELEASED)
        else:
            self._enter(State.RELEASING)

    def _h_forget(self, ctx: _Ctx) -> None:
        self._out.append(ForgetLease())

    def _h_released_request(self, ctx: _Ctx) -> None:
        self._enter(State.INIT if self._link_up else State.DOWN)

    def _h_rapid_ack(self, ctx: _Ctx) -> None:
        """A DHCPACK in Init: the answer to our DISCOVER's option 80, or nothing (RFC 4039)."""
        msg = ctx.msg
        assert msg is not None
        if not self._config.rapid_commit:
            self._h_unexpected(ctx)
        elif not msg.rapid_commit:
            self._log(logging.DEBUG, "ignoring DHCPACK without rapid commit in Init")
        else:
            self._h_ack(ctx)
            self._rapid_commit = self._state in (State.BOUND, State.PROBING)

    def _h_offer(self, ctx: _Ctx) -> None:
        msg = ctx.msg
        assert msg is not None
        server = msg.server_identifier or _ZERO
        if server == _ZERO and msg.yiaddr == _ZERO:
            self._log(logging.WARNING, "did not receive server identifier or offered IP address")
            return
        if self._v6only(msg):
            return
        self._server_identifier = server
        self._dhcp_server = server
        self._requested_ip = msg.yiaddr
        self._enter(State.REQUESTING)

    def _h_ack(self, ctx: _Ctx) -> None:
        msg = ctx.msg
        assert msg is not None
        src = _mac(msg.src_mac)
        server = msg.server_identifier or _ZERO
        if server == _ZERO and msg.yiaddr == _ZERO:
            self._log(logging.WARNING, "did not receive server identifier or offered IP address")
            return
        lease = msg.lease_time or 0
        if lease == 0:
            self._log(logging.WARNING, f"no lease time from {src}")
            return
        mask = msg.subnet_mask or _ZERO
        if mask == _ZERO:
            self._log(logging.WARNING, f"no subnetmask received from {src}")
            return
        if not _contiguous(mask):
            self._log(logging.WARNING, f"invalid subnetmask {mask} from {src}")
            return
        if not self._usable(msg.yiaddr):
            self._log(logging.WARNING, f"invalid IP address {msg.yiaddr} from {src}")
            return
        t1, t2 = self._lease_timers(msg, lease, src)
        if self._v6only(msg):
            return
        self._request_time = ctx.now
        self._server_identifier = server
        self._dhcp_server = server
        self._requested_ip = msg.yiaddr
        self._mask = mask
        routes = () if self._config.ignore_routes else msg.routes()
        if any(not r.gw.is_unspecified and not self._usable(r.gw) for r in routes):
            self._log(logging.WARNING, f"ignoring routes via non-unicast gateways from {src}")
            routes = tuple(r for r in routes if r.gw.is_unspecified or self._usable(r.gw))
        self._routes = routes
        self._lease_time, self._renewal_time, self._rebinding_time = lease, t1, t2
        ns = () if self._config.ignore_dns else msg.dns
        if _ZERO in ns:  # the original's list ends at the first 0.0.0.0
            ns = ns[: ns.index(_ZERO)]
        self._nameservers = self._unicast_only(ns, "nameservers", src)[: defs.MAX_RDNS_COUNT]
        self._take_mtu_ntp(msg, src)
        self._domain = msg.domain_name or ""
        self._search = msg.domain_search
        self._host_name = msg.host_name or ""
        self._siaddr = msg.siaddr
        self._file = msg.file.split(b"\0", 1)[0]
        self._bind()

    def _bind(self) -> None:
        """The ACK is in: Bound, or Probing until the ARP probe is done, or Declined if it
        found the address taken (RFC 5227; with ``arp probe`` off, always Bound)."""
        a, addr = self._acd, self._requested_ip
        if not self._config.arp_probe:
            self._enter(State.BOUND)
        elif a.watching(addr) and a.phase is acd.Phase.CONFLICT:
            self._enter(State.DECLINED)
        elif a.watching(addr) and a.clear:
            self._enter(State.BOUND)
        else:
            self._enter(State.PROBING)

    def _h_arp(self, ctx: _Ctx) -> None:
        """A conflict is declined once the server has answered; the first one met while
        the address is in use is defended (acd.Verdict)."""
        assert ctx.arp is not None
        pkt, mac = ctx.arp
        verdict, actions = self._acd.frame(pkt, mac, ctx.now)
        if verdict is acd.Verdict.NONE:
            return
        claim = f"address conflict: {self._acd.address} is claimed by {_mac(pkt.sha)}"
        if verdict is acd.Verdict.DEFENDED:
            self._log(logging.WARNING, f"{claim}, defending it")
            self._out += actions
        elif self._state in (State.REQUESTING, State.REBOOTING):
            self._log(logging.WARNING, f"{claim}, declining it when the server answers")
            self._cease()
        else:
            self._log(logging.WARNING, claim)
            self._enter(State.DECLINED)

    def _h_arp_timer(self, ctx: _Ctx) -> None:
        self._out += self._acd.timer(ctx.now, self._rng)
        if self._acd.phase is acd.Phase.CLEAR:
            self._log(logging.DEBUG, f"ARP probe: no one else has {self._acd.address}")
            if self._state is State.PROBING:
                self._enter(State.BOUND)

    def _watch(self) -> None:
        """Probe the address about to be asked for, unless that is under way already (or
        it is the one in use, being defended): Requesting, Rebooting, Probing."""
        addr = self._requested_ip
        if self._config.arp_probe and addr != _ZERO and not self._acd.watching(addr):
            self._out += self._acd.start(addr, self._now, self._rng)

    def _cease(self) -> None:
        """Stop using a held address at once (RFC 5227 2.4), keeping the lease's values."""
        applied = self._applied
        if applied is not None:
            self._withdraw_rdns()
            self._withdraw_ntp(stale=applied.stale)  # as _drop_lease: _applied is None after
            self._out.append(Deconfigure(applied.address, applied.mask, applied.routes))
            self._applied = None

    def _h_reconfigure(self, ctx: _Ctx) -> None:
        new = ctx.config
        assert new is not None
        old, self._config = self._config, new
        if new.ignore_dns and not old.ignore_dns:
            stale = self._applied is not None and self._applied.stale
            if self._proposed is not None or stale:
                self._withdraw_rdns()
            self._nameservers = ()
        if new.ignore_routes and not old.ignore_routes:
            if self._applied is not None and self._applied.routes:
                self._out.append(WithdrawRoutes(self._applied.routes))
                self._applied = replace(self._applied, routes=())
            self._routes = ()
        if old.arp_probe and not new.arp_probe:
            self._out += self._acd.stop()
            if self._state is State.PROBING:
                self._enter(State.BOUND)
        elif new.arp_probe and not old.arp_probe:
            held = self._applied
            if self._state in _IN_USE and held is not None:
                self._out += self._acd.defend(held.address)
            elif self._state in (State.REQUESTING, State.REBOOTING):
                self._watch()
        if new.ignore_mtu and not old.ignore_mtu:
            self._restore_mtu()
            self._mtu = 0
        if new.ignore_ntp and not old.ignore_ntp:
            self._withdraw_ntp()

    def _h_remove(self, ctx: _Ctx) -> None:
        self._drop_lease()
        self._enter(State.DOWN)

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _usable(addr: IPv4Address) -> bool:
        """Unicast as the parent checks it (main.is_unicast): anything else would be fatal."""
        return not (
            addr.is_unspecified
            or addr.is_multicast
            or addr.is_loopback
            or int(addr) >= _CLASS_E  # 240.0.0.0/4, the limited broadcast included
        )

    def _v6only(self, msg: DhcpMessage) -> bool:
        """prefer ipv6 + option 108 > 0: go IPv6-only for at least MIN_V6ONLY_WAIT."""
        wait = msg.ipv6_only_wait or 0
        if not (self._config.prefer_ipv6 and wait > 0):
            return False
        if wait < defs.MIN_V6ONLY_WAIT:
            self._log(
                logging.DEBUG,
                f"IPv6-only wait {wait} raised to {defs.MIN_V6ONLY_WAIT} (RFC 8925)",
            )
        self._enter(State.IPV6_ONLY, ipv6_only_time=max(wait, defs.MIN_V6ONLY_WAIT))
        return True

    def _lease_timers(self, msg: DhcpMessage, lease: int, src: str) -> tuple[int, int]:
        """T1/T2 with RFC 2131 4.4.5 defaults; inconsistent ones are replaced by both defaults."""
        t1_def, t2_def = lease // 2, lease - lease // 8
        t1 = msg.renewal_time or t1_def
        t2 = msg.rebinding_time or t2_def
        if t1 >= t2:
            self._log(
                logging.WARNING,
                f"renewal_time({t1}) >= rebinding_time({t2}) from {src}: using defaults",
            )
            return t1_def, t2_def
        if t2 >= lease:
            self._log(
                logging.WARNING,
                f"rebinding_time({t2}) >= lease_time({lease}) from {src}: using defaults",
            )
            return t1_def, t2_def
        return t1, t2

    def _take_mtu_ntp(self, msg: DhcpMessage, src: str) -> None:
        """Options 26 and 42 of an ACK, as far as the config and the checks let them in."""
        mtu = 0 if self._config.ignore_mtu else msg.mtu or 0
        if 0 < mtu < defs.MIN_MTU:
            self._log(
                logging.WARNING, f"ignoring interface MTU {mtu} from {src}: below {defs.MIN_MTU}"
            )
            mtu = 0
        self._mtu = mtu
        ntp = () if self._config.ignore_ntp else msg.ntp
        self._ntp = tuple(dict.fromkeys(self._unicast_only(ntp, "NTP servers", src)))[
            : defs.MAX_NTP_COUNT
        ]

    def _unicast_only(
        self, addrs: tuple[IPv4Address, ...], what: str, src: str
    ) -> tuple[IPv4Address, ...]:
        """The usable addresses of a server list, with a warning when some are not."""
        if all(self._usable(a) for a in addrs):
            return addrs
        self._log(logging.WARNING, f"ignoring non-unicast {what} from {src}")
        return tuple(a for a in addrs if self._usable(a))

    def _clear_lease(self) -> None:
        self._requested_ip = _ZERO
        self._server_identifier = _ZERO
        self._dhcp_server = _ZERO
        self._mask = _ZERO
        self._routes = ()
        self._nameservers = ()
        self._domain = ""
        self._search = ()
        self._host_name = ""
        self._siaddr = _ZERO
        self._file = b""
        self._lease_time = 0
        self._renewal_time = 0
        self._rebinding_time = 0
        self._request_time = 0.0
        self._ipv6_only_time = 0
        self._rapid_commit = False
        self._mtu = 0
        self._ntp = ()

    def _proposal(self) -> ProposeRdns | None:
        if self._config.ignore_dns or not self._nameservers:
            return None
        return ProposeRdns(self._nameservers, self._domain, self._search)

    def _withdraw_rdns(self) -> None:
        self._out.append(WithdrawRdns())
        self._proposed = None
        self._nameservers = ()

    def _withdraw_ntp(self, stale: bool = False) -> None:
        """Withdraw what was proposed (``stale``: or what a previous run may have left)."""
        if self._ntp_proposed is not None or stale:
            self._out.append(WithdrawNtp())
            self._ntp_proposed = None
        self._ntp = ()

    def _restore_mtu(self) -> None:
        if self._mtu_set:
            self._out.append(RestoreMtu())
            self._mtu_set = 0

    def _deconfigure(self) -> None:
        applied = self._applied
        if applied is not None:
            self._out.append(Deconfigure(applied.address, applied.mask, applied.routes))
            self._applied = None
        self._restore_mtu()
        self._clear_lease()

    def _drop_lease(self) -> None:
        """Lease gone (expiry, NAK, give-up, IPv6-only, removal): DNS and NTP, then address."""
        if self._applied is not None:
            self._withdraw_rdns()
            self._withdraw_ntp(stale=self._applied.stale)
        self._deconfigure()

    def _apply(self, renewal: bool) -> None:
        """Put the stored lease in place: Configure always (the address's lifetime starts
        over), on a renewal the rest only if it changed."""
        new = _Applied(self._requested_ip, self._mask, self._routes)
        old = self._applied
        if not renewal or new != old:
            if old is not None and old.address != new.address:
                self._out.append(Deconfigure(old.address, old.mask, old.routes))
            elif old is not None:
                gone = tuple(r for r in old.routes if r not in new.routes)
                if gone:
                    self._out.append(WithdrawRoutes(gone))
        self._out.append(
            Configure(
                address=new.address,
                mask=new.mask,
                routes=new.routes,
                server=self._server_identifier,
                siaddr=self._siaddr,
                file=self._file,
                domain_name=self._domain,
                host_name=self._host_name,
                lease_time=max(self._lease_time - int(self._now - self._request_time), 1),
            )
        )
        self._applied = new  # equal to the old one when not changed
        proposal = self._proposal()
        if proposal is not None and (not renewal or proposal != self._proposed):
            self._out.append(proposal)
            self._proposed = proposal
        elif proposal is None and (self._proposed is not None or (old is not None and old.stale)):
            self._out.append(WithdrawRdns())
            self._proposed = None
        self._apply_mtu_ntp(renewal, old is not None and old.stale)

    def _apply_mtu_ntp(self, renewal: bool, stale: bool) -> None:
        """After the address: the lease's MTU and NTP servers, each only when it changed
        (NTP on a new binding always, as DNS)."""
        if self._mtu != self._mtu_set:
            if self._mtu:
                self._out.append(SetMtu(self._mtu))
                self._mtu_set = self._mtu
            else:
                self._restore_mtu()
        ntp = ProposeNtp(self._ntp) if self._ntp else None
        if ntp is not None and (not renewal or ntp != self._ntp_proposed):
            self._out.append(ntp)
            self._ntp_proposed = ntp
        elif ntp is None:
            self._withdraw_ntp(stale=stale)

    def _request(self) -> None:
        """A DHCPREQUEST shaped per RFC 2131 4.3.6 table 4 for the current state."""
        ip = self._requested_ip
        opt_ip = ip if ip != _ZERO else None
        match self._state:
            case State.REBOOTING:
                req = SendRequest(self._xid, _ZERO, opt_ip, None, None)
            case State.REQUESTING:
                server = self._server_identifier if self._server_identifier != _ZERO else None
                req = SendRequest(self._xid, _ZERO, opt_ip, server, None)
            case State.RENEWING:
                target = self._dhcp_server if self._dhcp_server != _ZERO else None
                req = SendRequest(self._xid, ip, None, None, target)
            case State.REBINDING:
                req = SendRequest(self._xid, ip, None, None, None)
            case (
                State.DOWN
                | State.INIT
                | State.BOUND
                | State.IPV6_ONLY
                | State.RELEASING
                | State.RELEASED
                | State.PROBING
                | State.DECLINED
            ):
                raise InvalidTransition(f"no DHCPREQUEST in {self._state.value}")
            case _:
                assert_never(self._state)
        self._out.append(req)

    def _capped(self, timo: int, limit: int) -> float:
        """Retry time with the 60 s floor, but due (before jitter) ``limit`` s after the ACK."""
        left = self._request_time + limit - self._now
        return max(min(float(max(timo, defs.MIN_RENEW_RETRY)), left), 0.0)

    def _backoff(self, old: State, new: State, restart: bool) -> float:
        """Retry timer: doubled on a resend in the same state, never past 64 s; 1 s else."""
        if old is new and not restart and self._timo is not None:
            return min(self._timo * 2, defs.MAX_EXP_BACKOFF_SLOW)
        return defs.START_EXP_BACKOFF

    def _enter(self, new: State, *, ipv6_only_time: int = 0, restart: bool = False) -> None:
        """state_transition(): entry actions and the new timer (``restart``: a request)."""
        cell = self._cell
        if cell is None or new not in cell.targets:
            raise InvalidTransition(f"{self._state.value} -> {new.value}")
        old, self._state = self._state, new
        self._entries += 1
        if new in (State.DOWN, State.INIT, State.IPV6_ONLY, State.RELEASING, State.RELEASED):
            self._out += self._acd.stop()  # nothing to probe or defend there
        timo: float | None
        match new:
            case State.DOWN:
                if self._applied is None:
                    self._clear_lease()
                    timo = None
                elif old is State.DOWN:  # lease ran out while the link was down
                    self._withdraw_ntp()
                    self._deconfigure()
                    timo = None
                else:  # keep address, routes, MTU and NTP until the lease ends
                    self._withdraw_rdns()
                    left = self._lease_time - (self._now - self._request_time)
                    timo = max(left, 0.0)
            case State.INIT:
                if old is not State.INIT:
                    self._drop_lease()
                    self._xid = self._rng.getrandbits(32)
                timo = self._backoff(old, new, restart)
                self._out.append(SendDiscover(self._xid))
            case State.REBOOTING:
                if old is not State.REBOOTING:
                    self._xid = self._rng.getrandbits(32)
                timo = self._backoff(old, new, restart)
                self._request()
                self._watch()
            case State.REQUESTING:
                timo = self._backoff(old, new, restart)
                self._request()
                self._watch()
            case State.BOUND:  # T1 counts from the ACK, which Probing may have held
                held_for = self._now - self._request_time
                timo = max(self._renewal_time - held_for, 0.0) if held_for else self._renewal_time
                self._apply(renewal=old in (State.RENEWING, State.REBINDING))
                self._out += self._acd.use(self._now)
            case State.PROBING:
                self._watch()
                timo = None  # acd's timer decides
            case State.DECLINED:
                address, server = self._requested_ip, self._server_identifier
                self._drop_lease()
                self._out += self._acd.stop()
                self._xid = self._rng.getrandbits(32)
                if server == _ZERO:
                    self._log(logging.WARNING, "no server identifier known: no DHCPDECLINE sent")
                else:
                    self._log(logging.INFO, f"DHCPDECLINE of {address} to {server}")
                    self._out.append(SendDecline(self._xid, address, server))
                timo = self._acd.decline_wait
            case State.RENEWING:
                if old is State.BOUND:
                    half = (self._rebinding_time - self._renewal_time) // 2
                    self._xid = self._rng.getrandbits(32)
                else:
                    half = int(self._timo or 0) // 2
                timo = self._capped(half, self._rebinding_time)
                self._request()
            case State.REBINDING:
                if old is not State.REBINDING:
                    half = (self._lease_time - self._rebinding_time) // 2
                else:
                    half = int(self._timo or 0) // 2
                timo = self._capped(half, self._lease_time)
                self._request()
            case State.IPV6_ONLY:
                self._drop_lease()
                self._ipv6_only_time = ipv6_only_time
                timo = ipv6_only_time
            case State.RELEASING:
                self._xid = self._rng.getrandbits(32)  # Table 5: a new xid, the client's
                applied = self._applied
                assert applied is not None
                self._log(
                    logging.INFO, f"DHCPRELEASE of {applied.address} to {self._server_identifier}"
                )
                self._out.append(
                    SendRelease(
                        self._xid,
                        applied.address,
                        self._server_identifier,
                        self._dhcp_server
                        if self._dhcp_server != _ZERO
                        else self._server_identifier,
                    )
                )
                timo = defs.RELEASE_WAIT
            case State.RELEASED:
                self._drop_lease()
                self._xid = self._rng.getrandbits(32)  # whatever was in flight is stale now
                self._out.append(ForgetLease())
                timo = None
            case _:
                assert_never(new)
        self._timo = timo
        self._deadline = None if timo is None else self._now + timo + self._jitter
        self._log(
            logging.DEBUG,
            f"state_transition {old.value} -> {new.value}, timo: {_fmt_timo(timo)}",
        )


Handler: TypeAlias = Callable[[Fsm, _Ctx], None]


@dataclass(frozen=True, slots=True)
class Cell:
    """One (state, event) cell: who handles it and which states it may enter.

    An empty ``targets`` means the event never changes the state there (it is ignored or
    handled in place); a cell listing its own state re-enters it (resend, new timer).
    """

    handler: Handler
    targets: frozenset[State]


def _cell(handler: Handler, *targets: State) -> Cell:
    return Cell(handler, frozenset(targets))


def _build_table() -> dict[tuple[State, Event], Cell]:
    s, e, f = State, Event, Fsm
    table: dict[tuple[State, Event], Cell] = {}
    for st in State:
        # Columns that look the same in every state.
        table[(st, e.LINK_DOWN)] = _cell(f._h_to_down, s.DOWN)
        table[(st, e.OFFER)] = _cell(f._h_unexpected)
        table[(st, e.ACK)] = _cell(f._h_unexpected)
        table[(st, e.NAK)] = _cell(f._h_unexpected)
        table[(st, e.OTHER)] = _cell(f._h_unimplemented)
        table[(st, e.RECONFIGURE)] = _cell(f._h_reconfigure)
        table[(st, e.REMOVE)] = _cell(f._h_remove, s.DOWN)
        table[(st, e.RELEASE)] = _cell(f._h_release, s.RELEASING, s.RELEASED)
        table[(st, e.RELEASE_SENT)] = _cell(f._h_nothing)  # a late or stray word: no-op
        table[(st, e.ARP)] = _cell(f._h_arp)  # acd is idle in most states: nothing happens
        table[(st, e.ARP_TIMER)] = _cell(f._h_arp_timer)
        if st in (s.BOUND, s.RENEWING, s.REBINDING, s.REBOOTING):  # an address is held
            table[(st, e.LINK_UP)] = _cell(f._h_link_up, s.REBOOTING)
            table[(st, e.REQUEST_REBOOT)] = _cell(f._h_to_rebooting, s.REBOOTING)
        else:
            table[(st, e.LINK_UP)] = _cell(f._h_link_up, s.REBOOTING, s.INIT)
    for st in _LEASE_STATES:
        table[(st, e.ACK)] = _cell(f._h_ack, *_ACK_TARGETS)
        table[(st, e.NAK)] = _cell(f._h_to_init, s.INIT)
    table[(s.DOWN, e.LINK_DOWN)] = _cell(f._h_nothing)
    table[(s.DOWN, e.TIMEOUT)] = _cell(f._h_to_down, s.DOWN)
    table[(s.DOWN, e.REQUEST_REBOOT)] = _cell(f._h_nothing)
    table[(s.INIT, e.OFFER)] = _cell(f._h_offer, s.REQUESTING, s.IPV6_ONLY)
    table[(s.INIT, e.TIMEOUT)] = _cell(f._h_reenter, s.INIT)
    table[(s.INIT, e.REQUEST_REBOOT)] = _cell(f._h_restart, s.INIT)
    table[(s.REQUESTING, e.TIMEOUT)] = _cell(f._h_requesting_timeout, s.REQUESTING, s.INIT)
    table[(s.REQUESTING, e.REQUEST_REBOOT)] = _cell(f._h_restart, s.REQUESTING)
    table[(s.BOUND, e.TIMEOUT)] = _cell(f._h_bound_timeout, s.RENEWING, s.REBINDING, s.INIT)
    table[(s.RENEWING, e.TIMEOUT)] = _cell(f._h_renewing_timeout, s.RENEWING, s.REBINDING, s.INIT)
    table[(s.REBINDING, e.TIMEOUT)] = _cell(f._h_rebinding_timeout, s.REBINDING, s.INIT)
    table[(s.REBOOTING, e.TIMEOUT)] = _cell(f._h_rebooting_timeout, s.REBOOTING, s.INIT)
    table[(s.REBOOTING, e.REQUEST_REBOOT)] = _cell(f._h_restart, s.REBOOTING)
    table[(s.IPV6_ONLY, e.TIMEOUT)] = _cell(f._h_to_init, s.INIT)
    table[(s.IPV6_ONLY, e.REQUEST_REBOOT)] = _cell(f._h_to_init, s.INIT)
    table[(s.INIT, e.ACK)] = _cell(f._h_rapid_ack, *_ACK_TARGETS)
    # Releasing: the address stays until the DHCPRELEASE left, then Released; everything
    # else waits (a request is not lost: dhcpleasectl release returns once Released).
    for ev in (e.LINK_UP, e.LINK_DOWN, e.REQUEST_REBOOT, e.RELEASE):
        table[(s.RELEASING, ev)] = _cell(f._h_nothing)
        table[(s.RELEASED, ev)] = _cell(f._h_nothing)
    table[(s.RELEASING, e.RELEASE_SENT)] = _cell(f._h_to_released, s.RELEASED)
    table[(s.RELEASING, e.TIMEOUT)] = _cell(f._h_to_released, s.RELEASED)
    table[(s.RELEASED, e.TIMEOUT)] = _cell(f._h_nothing)
    table[(s.RELEASED, e.REQUEST_REBOOT)] = _cell(f._h_released_request, s.INIT, s.DOWN)
    table[(s.RELEASED, e.RELEASE)] = _cell(f._h_forget)  # done already: say so again
    # RFC 5227: Probing holds an ACK until acd's probe is done; Declined waits to start over
    for st in (s.PROBING, *_IN_USE):
        table[(st, e.ARP)] = _cell(f._h_arp, s.DECLINED)
    table[(s.PROBING, e.ARP_TIMER)] = _cell(f._h_arp_timer, s.BOUND)
    table[(s.PROBING, e.RECONFIGURE)] = _cell(f._h_reconfigure, s.BOUND)  # arp probe unset
    table[(s.PROBING, e.TIMEOUT)] = _cell(f._h_nothing)  # no DHCP timer there
    table[(s.PROBING, e.REQUEST_REBOOT)] = _cell(f._h_nothing)  # done within seconds
    table[(s.DECLINED, e.TIMEOUT)] = _cell(f._h_to_init, s.INIT)
    table[(s.DECLINED, e.REQUEST_REBOOT)] = _cell(f._h_nothing)  # RFC 2131's wait first
    table[(s.DECLINED, e.LINK_UP)] = _cell(f._h_nothing)  # still up: the wait goes on
    return table


TABLE: Final[Mapping[tuple[State, Event], Cell]] = _build_table()
"""Every (state, event) cell; `Fsm` dispatches through it."""

TRANSITIONS: Final[Mapping[tuple[State, Event], frozenset[State]]] = {
    cell: entry.targets for cell, entry in TABLE.items()
}
"""The states each cell may enter (empty: stays put); tests walk this."""
