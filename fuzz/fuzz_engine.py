"""Fuzz target for the engine's dispatch: a real `Engine` fed sequences of events.

Steps are replies from the network (built around the interface's current xid, with
hostile field values: 0.0.0.0/broadcast/multicast addresses, absurd lease times,
non-contiguous masks, option-level garbage from fuzz_packet), link changes with random
lease-file text, timer expiries, reboot requests, reconfigurations, and, last in a
sequence, one random imsg from the parent or the frontend.

Properties:

* nothing escapes as an exception (the fsm's own InvalidTransition included);
* events a healthy sibling could send never make the engine fatal: a packet from the
  network must not be able to end the daemon;
* every message the engine sends to the parent passes the parent's own dispatch
  (``main.Main.dispatch``, run on a stand-in: unicast address, non-empty contiguous mask,
  no host bits in routes, unicast nameservers, a managed interface, a size that decodes);
* the fsm's deadline is never in the past after an event;
* a random imsg either is handled or makes the engine fatal, nothing else.

The engine runs on a fake clock (in place of its CLOCK_BOOTTIME timerfd) whose timer
fires only when a step says so, so a sequence replays exactly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhcpleased import defs, imsg, main
from dhcpleased.engine import Engine, EngineIface
from dhcpleased.imsg import ImsgType
from dhcpleased.ipc import Imsg
from dhcpleased.log import log
from fuzz.fuzz_packet import CLIENT_MAC, SERVER_MAC, ip_udp, option

IFINDEX = 7
IFNAME = "dl0"
SERVER = IPv4Address("192.0.2.1")
GOOD = IPv4Address("192.0.2.10")
COOKIE = b"\x63\x82\x53\x63"


class Finding(AssertionError):
    """A property violation (as opposed to an exception escaping the engine)."""


# --- fake clock and channels ----------------------------------------------------------------


class FakeClock:
    """Stands in for boottime.BootClock: time moves, and the timer fires, only when told."""

    def __init__(self) -> None:
        self.now_ = 1000.0
        self.armed: float | None = None
        self.wake: Callable[[], None] | None = None

    def now(self) -> float:
        return self.now_

    def arm(self, deadline: float | None) -> None:
        self.armed = deadline

    def start(self, loop: Any, wake: Callable[[], None]) -> None:
        self.wake = wake

    def stop(self) -> None:
        pass

    def fire_due(self, limit: int = 64) -> None:
        for _ in range(limit):
            if self.armed is None or self.armed > self.now_ or self.wake is None:
                break
            self.armed = None  # one-shot, like the timerfd
            self.wake()


class Recorder:
    """Stands in for a Channel; checks each message as its receiver would."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.sent: list[tuple[ImsgType, bytes]] = []

    def compose(
        self, type: int, data: bytes = b"", *, fd: int | None = None, peerid: int = 0, pid: int = 0
    ) -> None:
        t = ImsgType(type)
        if fd is not None:
            raise Finding(f"engine sent a descriptor with {t.name}")
        if self.role == "main":
            check_for_parent(t, data)
        elif t in (ImsgType.SEND_DISCOVER, ImsgType.SEND_REQUEST):
            req = imsg.ReqDhcp.unpack(data)
            if req.if_index != IFINDEX:
                raise Finding(f"{t.name} for interface {req.if_index}")
        self.sent.append((t, data))

    def close(self) -> None:
        pass


class _ParentStandIn:
    """Just the state ``main.Main.dispatch`` reads, so that the parent's own code judges.

    The methods are the parent's, looked up on ``main.Main``; only ``fail`` differs: it
    records the verdict instead of ending a daemon. Nothing is copied, so the oracle cannot
    drift from the parent (tests/unit/test_fuzz_engine.py compares it with a real Main)."""

    dispatch = main.Main.dispatch
    dispatch_engine = main.Main.dispatch_engine
    known_ifname = main.Main.known_ifname
    was_managed = main.Main.was_managed
    serve = main.Main.serve
    sandbox_up = main.Main.sandbox_up
    close_fd = staticmethod(main.Main.close_fd)

    def __init__(self) -> None:
        self.ifnames = {IFINDEX: IFNAME}
        self.managed = {IFNAME: None}
        self.ever_managed = {IFNAME}
        self.sandboxed: set[str] = set()
        self.done = SimpleNamespace(done=lambda: False)
        self.work = SimpleNamespace(put_nowait=lambda job: None)  # the job is not run
        # what an accepted message would be queued to do (never run)
        self.configure = self.deconfigure = self.propose_rdns = self.withdraw_rdns = print
        self.set_mtu = self.restore_mtu = self.propose_ntp = self.withdraw_ntp = print
        self.kroute = SimpleNamespace(withdraw_routes=print)
        self.failed: str | None = None

    def fail(self, message: str) -> None:
        if self.failed is None:
            self.failed = message


def check_for_parent(t: int, data: bytes) -> None:
    """The parent's dispatch of one engine message; a check that fails would end the daemon."""
    parent = _ParentStandIn()
    parent.dispatch("engine", Imsg(t, 0, 0, data, None))
    if parent.failed is not None:
        raise Finding(parent.failed)


# --- the harness ----------------------------------------------------------------------------

log.addHandler(logging.NullHandler())  # the engine logs every drop: keep runs quiet
log.propagate = False
_LOOP = asyncio.new_event_loop()
_SOCKS = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


async def _make(clock: FakeClock) -> Engine:
    return Engine(_SOCKS[0], random.Random(0), clock)


class Harness:
    def __init__(self, seed: int) -> None:
        self.clock = FakeClock()
        self.engine = _LOOP.run_until_complete(_make(self.clock))
        self.engine.rng.seed(seed)
        self.clock.start(None, self.engine.wake)
        self.main = Recorder("main")
        self.fe = Recorder("frontend")
        self.engine.main = self.main  # type: ignore[assignment]
        self.engine.frontend = self.fe  # type: ignore[assignment]

    @property
    def iface(self) -> EngineIface | None:
        return self.engine.ifaces.get(IFINDEX)

    def from_main(self, t: ImsgType, data: bytes = b"") -> None:
        self.engine.dispatch_main(Imsg(t, 0, 0, data, None))

    def from_fe(self, t: ImsgType, data: bytes = b"") -> None:
        self.engine.dispatch_frontend(Imsg(t, 0, 0, data, None))

    def alive(self, what: str) -> None:
        if self.engine.done.done():
            raise Finding(f"engine went fatal after {what}")
        iface = self.iface
        if iface is not None:
            deadline = iface.machine.deadline
            if deadline is not None and deadline < self.clock.now_ - 1e-9:
                raise Finding(f"deadline {deadline} before now {self.clock.now_} after {what}")
            if deadline is not None and (self.clock.armed is None or self.clock.armed > deadline):
                raise Finding(f"timer {self.clock.armed} not armed for deadline {deadline}")

    def step(self, s: tuple[Any, ...]) -> None:
        kind = s[0]
        if kind == "conf":
            _, ignore, prefer, c_id = s
            self.from_main(ImsgType.RECONF_CONF)
            self.from_main(ImsgType.RECONF_IFACE, imsg.IfaceConf(IFNAME, ignore, (), prefer).pack())
            if c_id is not None:
                self.from_main(ImsgType.RECONF_C_ID, imsg.OptionBytes(61, c_id).pack())
            self.from_main(ImsgType.RECONF_END)
        elif kind == "link":
            _, running, state, lease = s
            info = imsg.IfInfo(IFINDEX, IFNAME, 0, running, state, CLIENT_MAC, lease)
            self.from_main(ImsgType.UPDATE_IF, info.pack())
        elif kind == "frame":
            _, use_xid, build = s
            iface = self.iface
            xid = iface.machine.xid if (use_xid and iface is not None) else 0x5A5A5A5A
            state = iface.machine.state.value if iface is not None else "Down"
            frame = build(xid, state)[: defs.MAX_PACKET]
            self.from_fe(ImsgType.DHCP, imsg.Dhcp(IFINDEX, 0, frame).pack())
        elif kind == "advance":
            target = self.clock.armed if s[1] is None else self.clock.now_ + s[1]
            if target is not None:
                self.clock.now_ = max(self.clock.now_, target)
            self.clock.fire_due()
        elif kind == "reboot":
            self.from_fe(ImsgType.REQUEST_REBOOT, imsg.IfIndex(IFINDEX).pack())
        elif kind == "remove":
            self.from_fe(ImsgType.REMOVE_IF, imsg.IfIndex(IFINDEX).pack())
        else:
            raise AssertionError(kind)
        self.alive(kind)

    def random_imsg(self, from_main: bool, t: int, data: bytes) -> None:
        """Anything at all from a sibling: handled, or fatal; never an escaping exception."""
        msg = Imsg(t, 0, 0, data, None)
        (self.engine.dispatch_main if from_main else self.engine.dispatch_frontend)(msg)


# --- strategies -----------------------------------------------------------------------------

ADDRS = st.sampled_from(
    [GOOD, SERVER, IPv4Address(0), IPv4Address("255.255.255.255"), IPv4Address("127.0.0.1"),
     IPv4Address("224.0.0.1"), IPv4Address("240.0.0.1"), IPv4Address("192.0.2.255"),
     IPv4Address("192.0.2.0")]
) | st.integers(0, 2**32 - 1).map(IPv4Address)  # fmt: skip
MASKS = st.sampled_from(
    [b"\xff\xff\xff\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\x00\xff\x00",
     b"\x80\x00\x00\x00", b"\xff\xff\xff\xfe"]
)  # fmt: skip
TIMES = st.sampled_from([0, 1, 2, 59, 60, 3600, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1)


@st.composite
def reply_builder(draw: st.DrawFn) -> Any:
    """A reply: sane (the lease the state expects, with hostile extras) two times in three."""
    sane = draw(st.integers(0, 2)) > 0
    # None: an OFFER in Init, an ACK otherwise (decided when the step runs)
    mtype = None if sane else draw(st.sampled_from([2, 5, 6, 3, 0]))
    yiaddr = GOOD if sane else draw(ADDRS)
    opts: list[bytes] = []
    if sane or draw(st.integers(0, 4)):
        opts.append(bytes([54, 4]) + (SERVER if sane else draw(ADDRS)).packed)
    if sane or draw(st.integers(0, 4)):
        opts.append(bytes([1, 4]) + (b"\xff\xff\xff\x00" if sane else draw(MASKS)))
    for code in (51, 58, 59):
        if (sane and code == 51) or draw(st.integers(0, 2)) == 0:
            value = draw(st.sampled_from([3600, 60, 2**32 - 1]) if sane and code == 51 else TIMES)
            opts.append(bytes([code, 4]) + struct.pack("!I", value))
    for code in (3, 6):
        if draw(st.booleans()):
            addrs = draw(st.lists(ADDRS, min_size=1, max_size=9))
            opts.append(bytes([code, 4 * len(addrs)]) + b"".join(a.packed for a in addrs))
    if draw(st.integers(0, 3)) == 0:
        routes = b""
        for _ in range(draw(st.integers(1, 4))):
            plen = draw(st.integers(0, 32))
            dst = draw(ADDRS).packed[: (plen + 7) // 8]
            routes += bytes([plen]) + dst + draw(ADDRS).packed
        opts.append(bytes([121, len(routes)]) + routes)
    if draw(st.integers(0, 3)) == 0:
        opts.append(bytes([108, 4]) + struct.pack("!I", draw(TIMES)))
    if draw(st.integers(0, 2)) == 0:  # option 26: MTUs the parent must never see (< 576)
        mtu = draw(st.sampled_from([0, 68, 575, 576, 1400, 9000, 65535]) | st.integers(0, 65535))
        opts.append(bytes([26, 2]) + struct.pack("!H", mtu))
    if draw(st.integers(0, 2)) == 0:  # option 42: multicast, loopback, 0.0.0.0, too many
        addrs = draw(st.lists(ADDRS, min_size=1, max_size=12))
        opts.append(bytes([42, 4 * len(addrs)]) + b"".join(a.packed for a in addrs))
    if draw(st.integers(0, 3)) == 0:
        opts.append(bytes([61, 7, 1]) + draw(st.sampled_from([CLIENT_MAC, SERVER_MAC])))
    if draw(st.integers(0, 3)) == 0:
        opts.extend(draw(st.lists(option(), max_size=4)))
    opts = draw(st.permutations(opts))
    src = SERVER if sane else draw(ADDRS)
    dst_mac = CLIENT_MAC if draw(st.integers(0, 9)) else b"\xff" * 6

    def build(xid: int, state: str) -> bytes:
        t = mtype if mtype is not None else (2 if state == "Init" else 5)
        hdr = bytearray(236)
        hdr[0:3] = b"\x02\x01\x06"
        struct.pack_into("!I", hdr, 4, xid)
        hdr[16:20] = yiaddr.packed
        hdr[28:34] = CLIENT_MAC
        payload = bytes(hdr) + COOKIE + bytes([53, 1, t]) + b"".join(opts) + b"\xff"
        return ip_udp(payload, src=src, dst_mac=dst_mac)

    return build


LEASES = st.sampled_from(
    ["", "version: 2\nip: 192.0.2.10\n", "ip: 0.0.0.0\n", "ip: 255.255.255.255\n",
     "ip: 224.0.0.1\n", "ip: 127.0.0.1\n", "ip: 240.1.2.3\n", "ip: 192.0.2.10", "ip: \n",
     "ip: 1.2.3.4.5\n", "version: 1\nip: 10.0.0.1\n", "ip: 010.1.1.1\n"]
) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)  # fmt: skip

STEPS = st.one_of(
    st.tuples(st.just("frame"), st.integers(0, 9).map(bool), reply_builder()),
    st.tuples(st.just("frame"), st.just(True), reply_builder()),
    st.tuples(st.just("frame"), st.just(True), reply_builder()),
    st.tuples(st.just("advance"), st.none() | st.floats(0, 5000, allow_nan=False)),
    st.tuples(st.just("link"), st.integers(0, 3).map(bool), st.sampled_from([0, 2, 6, 6]), LEASES),
    st.tuples(
        st.just("conf"),
        st.integers(0, 3),
        st.booleans(),
        st.none() | st.binary(min_size=1, max_size=20),
    ),
    st.tuples(st.just("reboot")),
    st.tuples(st.just("remove")),
)
START = [("conf", 0, False, None), ("link", True, 6, "")]
RANDOM_IMSG = st.none() | st.tuples(
    st.booleans(),
    st.sampled_from([int(t) for t in ImsgType]) | st.integers(0, 2**32 - 1),
    st.binary(max_size=300),
)


@settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1), st.lists(STEPS, max_size=25), RANDOM_IMSG)
def fuzz_engine(
    seed: int, steps: list[tuple[Any, ...]], last: tuple[bool, int, bytes] | None
) -> None:
    run_case(seed, steps, last)


def run_case(seed: int, steps: list[tuple[Any, ...]], last: tuple[bool, int, bytes] | None) -> None:
    """One input: a configured, linked-up interface, then the steps, then a stray imsg."""
    h = Harness(seed)
    for s in [*START, *steps]:
        h.step(s)
    if last is not None:
        h.random_imsg(*last)


if __name__ == "__main__":
    import sys

    from fuzz.runner import run

    sys.exit(run(fuzz_engine, "engine"))
