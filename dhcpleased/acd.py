"""Pure IPv4 address conflict detection (RFC 5227) for one interface: probe, announce, defend.

No I/O and no clock: every input takes ``now`` (CLOCK_BOOTTIME seconds, as the fsm's) and
the random source the fsm was given, and answers with actions the engine carries out (the
parent builds and sends the frames, opens the receive socket; ``packet`` parses what
arrives).  `Acd.deadline` is when `Acd.timer` wants to be called; the fsm folds it into its
own deadline and decides what each outcome means for the lease (`fsm` module doc).

The timeline of one address, with RFC 5227 section 1.1's constants:

* `Acd.start`: watch the address (`Watch`), wait U(0, PROBE_WAIT), then send PROBE_NUM
  probes (`Probe`) U(PROBE_MIN, PROBE_MAX) apart; ANNOUNCE_WAIT after the last one the
  address is `Phase.CLEAR`: 4 to 7 s in all, 5.5 s on average.  Meanwhile any ARP packet
  whose sender IP is the address, or any probe for it from another MAC, is a conflict
  (section 2.1.1): `Phase.CONFLICT`, and the fsm declines the address.
* `Acd.use`, once the address is configured: ANNOUNCE_NUM announcements (`Announce`)
  ANNOUNCE_INTERVAL apart (section 2.3), the first at once, then `Phase.DEFENDING`.
* From the first announcement on (section 2.4), a packet from another MAC with the address
  as sender IP is a conflict: the first is answered with one announcement (option (b),
  `Verdict.DEFENDED`); another within DEFEND_INTERVAL of the previous conflicting packet
  means the address is lost (`Verdict.LOST`) and the fsm gives it up.

A frame whose sender MAC is the interface's own is never a conflict: the receive filter
drops outgoing frames, and this catches another of our sockets or a looped copy.  After
MAX_CONFLICTS conflicts without an address surviving a probe, the fsm waits
RATE_LIMIT_INTERVAL instead of RFC 2131's 10 s before asking for the next one
(`Acd.decline_wait`).  `RateLimit` is the parent's bound on the frames any engine, however
compromised, can make it send.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final, TypeAlias

from dhcpleased import defs
from dhcpleased.packet import ARPOP_REQUEST, ArpPacket

# RFC 5227 section 1.1, seconds
PROBE_WAIT: Final = 1.0
PROBE_NUM: Final = 3
PROBE_MIN: Final = 1.0
PROBE_MAX: Final = 2.0
ANNOUNCE_WAIT: Final = 2.0
ANNOUNCE_NUM: Final = 2
ANNOUNCE_INTERVAL: Final = 2.0
MAX_CONFLICTS: Final = 10
RATE_LIMIT_INTERVAL: Final = 60.0
DEFEND_INTERVAL: Final = 10.0

_ZERO: Final = IPv4Address(0)


class Phase(enum.Enum):
    """Where the address stands; the value is what dhcpleasectl prints."""

    IDLE = "idle"  # nothing watched
    PROBING = "probing"  # waiting to probe, probing, or the ANNOUNCE_WAIT after it
    CLEAR = "clear"  # probed without conflict, not in use yet
    CONFLICT = "conflict"  # someone else has it: to be declined
    ANNOUNCING = "announcing"  # in use, announcements still to send
    DEFENDING = "defending"  # in use, announced


class Verdict(enum.Enum):
    """What a received ARP packet meant."""

    NONE = "none"  # not about our address, or ours
    CONFLICT = "conflict"  # while probing: the address is taken
    DEFENDED = "defended"  # while in use: answered with an announcement, kept
    LOST = "lost"  # while in use, a second conflict within DEFEND_INTERVAL: give it up


@dataclass(frozen=True, slots=True)
class Watch:
    """Open the receive socket for ARP about ``address`` (0.0.0.0: close it)."""

    address: IPv4Address


@dataclass(frozen=True, slots=True)
class Probe:
    """Send one ARP probe for ``address``."""

    address: IPv4Address


@dataclass(frozen=True, slots=True)
class Announce:
    """Send one ARP announcement of ``address``; ``defend``: answering a conflict."""

    address: IPv4Address
    defend: bool = False


AcdAction: TypeAlias = Watch | Probe | Announce


@dataclass(frozen=True, slots=True)
class Conflict:
    """The last conflicting packet: which address, claimed by which MAC, when (boot clock)."""

    address: IPv4Address
    mac: bytes
    time: float


class Acd:
    """One interface's conflict detection; the fsm owns one and feeds it."""

    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self.address = _ZERO  # the watched address (0.0.0.0 when idle)
        self.deadline: float | None = None
        self.probes_sent = 0
        self.announced = 0
        self.conflicts = 0  # since an address last survived a probe (the rate limit)
        self.total_conflicts = 0  # ever, for dhcpleasectl
        self.last: Conflict | None = None
        self._last_in_use: float | None = None  # previous conflict while in use (2.4 (b))

    @property
    def clear(self) -> bool:
        """The probe found no one: the address may be put in use (or already is)."""
        return self.phase in (Phase.CLEAR, Phase.ANNOUNCING, Phase.DEFENDING)

    @property
    def decline_wait(self) -> float:
        """How long to wait after a DHCPDECLINE before asking again (RFC 2131 3.1.5,
        RFC 5227 2.1.1's rate limit once MAX_CONFLICTS conflicts came in a row)."""
        if self.conflicts >= MAX_CONFLICTS:
            return RATE_LIMIT_INTERVAL
        return float(defs.DECLINE_WAIT)

    def watching(self, address: IPv4Address) -> bool:
        return self.phase is not Phase.IDLE and self.address == address

    def start(self, address: IPv4Address, now: float, rng: random.Random) -> list[AcdAction]:
        """Probe ``address`` from scratch (section 2.1.1)."""
        out = self._watch(address)
        self.phase = Phase.PROBING
        self.probes_sent = self.announced = 0
        self._last_in_use = None
        self.deadline = now + rng.uniform(0.0, PROBE_WAIT)
        return out

    def defend(self, address: IPv4Address) -> list[AcdAction]:
        """Watch an address already in use without probing it (``arp probe`` just set)."""
        out = self._watch(address)
        self.phase = Phase.DEFENDING
        self.deadline = None
        self._last_in_use = None
        return out

    def stop(self) -> list[AcdAction]:
        """Watch nothing any more; the conflict record stays for dhcpleasectl."""
        out: list[AcdAction] = [Watch(_ZERO)] if self.phase is not Phase.IDLE else []
        self.phase, self.address, self.deadline = Phase.IDLE, _ZERO, None
        return out

    def use(self, now: float) -> list[AcdAction]:
        """The clear address is configured now: announce it (section 2.3)."""
        if self.phase is not Phase.CLEAR:
            return []
        self.phase = Phase.ANNOUNCING
        return self._announce(now)

    def timer(self, now: float, rng: random.Random) -> list[AcdAction]:
        """The deadline passed (an early call counts): the next probe or announcement."""
        if self.deadline is None:
            return []
        self.deadline = None
        if self.phase is Phase.PROBING and self.probes_sent < PROBE_NUM:
            self.probes_sent += 1
            last = self.probes_sent == PROBE_NUM
            self.deadline = now + (ANNOUNCE_WAIT if last else rng.uniform(PROBE_MIN, PROBE_MAX))
            return [Probe(self.address)]
        if self.phase is Phase.PROBING:  # ANNOUNCE_WAIT after the last probe: nobody
            self.phase = Phase.CLEAR
            self.conflicts = 0
            return []
        if self.phase is Phase.ANNOUNCING:
            return self._announce(now)
        return []

    def clamp(self, now: float) -> None:
        if self.deadline is not None and self.deadline < now:
            self.deadline = now

    def frame(self, pkt: ArpPacket, our_mac: bytes, now: float) -> tuple[Verdict, list[AcdAction]]:
        """Judge a received ARP packet (section 2.1.1 while probing, 2.4 once in use)."""
        if self.phase is Phase.IDLE or our_mac in (pkt.sha, pkt.src_mac):
            return Verdict.NONE, []
        address = self.address
        if self.phase in (Phase.ANNOUNCING, Phase.DEFENDING):
            if pkt.spa != address:
                return Verdict.NONE, []
            self._record(pkt, now)
            previous, self._last_in_use = self._last_in_use, now
            if previous is None or now - previous >= DEFEND_INTERVAL:
                return Verdict.DEFENDED, [Announce(address, defend=True)]
            self._conflict()
            return Verdict.LOST, []
        probe_for_it = pkt.op == ARPOP_REQUEST and pkt.spa == _ZERO and pkt.tpa == address
        if pkt.spa != address and not probe_for_it:
            return Verdict.NONE, []
        if self.phase is Phase.CONFLICT:  # already being declined: noted, not counted again
            self.last = Conflict(address, pkt.sha, now)
            return Verdict.NONE, []
        self._record(pkt, now)
        self._conflict()
        return Verdict.CONFLICT, []

    # --- helpers ---------------------------------------------------------------------------
    def _watch(self, address: IPv4Address) -> list[AcdAction]:
        fresh = self.phase is Phase.IDLE or self.address != address
        self.address = address
        return [Watch(address)] if fresh else []

    def _announce(self, now: float) -> list[AcdAction]:
        self.announced += 1
        if self.announced < ANNOUNCE_NUM:
            self.deadline = now + ANNOUNCE_INTERVAL
        else:
            self.phase, self.deadline = Phase.DEFENDING, None
        return [Announce(self.address)]

    def _record(self, pkt: ArpPacket, now: float) -> None:
        self.last = Conflict(self.address, pkt.sha, now)
        self.total_conflicts += 1

    def _conflict(self) -> None:
        self.phase, self.deadline = Phase.CONFLICT, None
        self.conflicts += 1


class RateLimit:
    """A token bucket: at most ``burst`` events at once, then ``rate`` per second.

    The parent's bound on the ARP frames an engine can make it send per interface.  The
    RFC's own schedule never exceeds one frame a second for long (probes at least
    PROBE_MIN apart, announcements ANNOUNCE_INTERVAL, a defence per DEFEND_INTERVAL), and
    its tightest bursts (a probe right after an announcement, a new probe sequence just
    after the last) stay within the burst.
    """

    def __init__(self, burst: float = 3.0, rate: float = 1.0) -> None:
        self.burst, self.rate = burst, rate
        self.tokens = burst
        self.at: float | None = None

    def take(self, now: float) -> bool:
        """One event now, if the bucket allows it."""
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
