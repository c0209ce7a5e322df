"""The engine process object against a fake parent and a fake frontend."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import pytest

from dhcpleased import boottime, defs, engine, imsg
from dhcpleased.engine import Engine
from dhcpleased.imsg import ImsgType
from tests.proc.peer import Peer, pair
from tests.unit import frames

IFINDEX = 7
IFNAME = "dl0"


@dataclass
class Rig:
    engine: Engine
    task: asyncio.Task[int]
    main: Peer
    fe: Peer


class SleepingClock(boottime.BootClock):
    """The real boot clock and timerfd, on a machine that suspends when told: `sleep` moves
    the clock on, and the timer, armed on the real CLOCK_BOOTTIME, is then as due as the
    kernel makes it at a resume."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def now(self) -> float:
        return super().now() + self.offset

    def _host(self, deadline: float) -> float:
        return deadline - self.offset

    def sleep(self, seconds: float) -> None:
        self.offset += seconds
        if self.armed is not None:
            self._settime(self._host(self.armed))


async def make_rig(clock: boottime.Clock | None = None) -> AsyncIterator[Rig]:
    main_a, main_b = pair()
    fe_a, fe_b = pair()
    engine = Engine(main_b, random.Random(7), clock)
    task = asyncio.get_running_loop().create_task(engine.run())
    main = Peer(main_a)
    main.send(ImsgType.SOCKET_IPC, fd=fe_b.detach())
    fe = Peer(fe_a)
    configure(main)
    yield Rig(engine, task, main, fe)
    main.close()
    fe.close()
    if not task.done():
        await asyncio.wait_for(task, 2)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for r in make_rig():
        yield r


@pytest.fixture
async def sleepy() -> AsyncIterator[Rig]:
    async for r in make_rig(SleepingClock()):
        yield r


def configure(
    main: Peer, *, ignore: int = 0, c_id: bytes | None = None, name: str = IFNAME
) -> None:
    main.send(ImsgType.RECONF_CONF)
    main.send(ImsgType.RECONF_IFACE, imsg.IfaceConf(name, ignore, (), False).pack())
    if c_id is not None:
        main.send(ImsgType.RECONF_C_ID, imsg.OptionBytes(61, c_id).pack())
    main.send(ImsgType.RECONF_END)


def update_if(main: Peer, *, running: bool = True, lease: str = "") -> None:
    info = imsg.IfInfo(IFINDEX, IFNAME, 0, running, 6, frames.CLIENT_MAC, lease)
    main.send(ImsgType.UPDATE_IF, info.pack())


def reply(xid: int, mtype: int, extra: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """An OFFER/ACK of ACK_OPTIONS, less MTU and NTP (test_engine_mtu_ntp.py adds them)."""
    if mtype == defs.DHCPACK:
        opts = tuple(o for o in frames.ACK_OPTIONS if o[0] not in (53, 26, 42))
    else:
        opts = ((54, frames.SERVER.packed),)
    opts = ((53, bytes([mtype])), *opts, *extra)
    return frames.frame(frames.bootp(opts, xid=xid))


def dhcp(fe: Peer, raw: bytes, csum: int = 0) -> None:
    fe.send(ImsgType.DHCP, imsg.Dhcp(IFINDEX, csum, raw).pack())


async def bind(r: Rig) -> imsg.ConfigureInterface:
    update_if(r.main)
    disc = imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_DISCOVER)).data)
    assert disc.if_index == IFINDEX
    dhcp(r.fe, reply(disc.xid, defs.DHCPOFFER))
    req = imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_REQUEST)).data)
    assert req.xid == disc.xid
    assert req.requested_ip == frames.YIADDR
    assert req.server_identifier == frames.SERVER
    assert req.dhcp_server == IPv4Address(0)
    dhcp(r.fe, reply(req.xid, defs.DHCPACK))
    ci = imsg.ConfigureInterface.unpack((await r.main.expect(ImsgType.CONFIGURE_INTERFACE)).data)
    return ci


async def test_dora_configures_and_proposes_dns(rig: Rig) -> None:
    ci = await bind(rig)
    assert (ci.if_index, ci.addr, ci.mask) == (IFINDEX, frames.YIADDR, IPv4Address("255.255.255.0"))
    routes = [(str(r.dst), r.prefixlen, str(r.gw)) for r in ci.routes]
    assert ("0.0.0.0", 0, str(frames.SERVER)) in routes  # ACK_OPTIONS carries 121 too
    assert ("10.1.2.0", 24, str(frames.SERVER)) in routes
    assert ci.server == frames.SERVER
    rdns = imsg.ProposeRdns.unpack((await rig.main.expect(ImsgType.PROPOSE_RDNS)).data)
    assert [str(a) for a in rdns.rdns] == ["192.0.2.53", "192.0.2.54"]


async def test_show_interface_info_replies_to_the_asker(rig: Rig) -> None:
    await bind(rig)
    rig.fe.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(IFINDEX).pack(), peerid=3, pid=42)
    msg = await rig.fe.expect(ImsgType.CTL_SHOW_INTERFACE_INFO)
    assert (msg.peerid, msg.pid) == (3, 42)
    info = imsg.CtlEngineInfo.unpack(msg.data)
    assert info.state == "Bound"
    assert info.requested_ip == frames.YIADDR
    rig.fe.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(99).pack(), peerid=3, pid=42)
    await rig.fe.expect(ImsgType.CTL_END)


async def test_init_reboot_from_lease_text(rig: Rig) -> None:
    update_if(rig.main, lease="version: 2\nip: 192.0.2.10\n")
    req = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_REQUEST)).data)
    assert req.requested_ip == frames.YIADDR
    assert req.server_identifier == IPv4Address(0)
    assert req.ciaddr == IPv4Address(0)


async def test_nak_restarts_discovery(rig: Rig) -> None:
    update_if(rig.main, lease="version: 2\nip: 192.0.2.10\n")
    req = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_REQUEST)).data)
    dhcp(rig.fe, reply(req.xid, defs.DHCPNAK))
    await rig.fe.expect(ImsgType.SEND_DISCOVER)


async def test_link_down_withdraws_dns_and_remove_deconfigures(rig: Rig) -> None:
    await bind(rig)
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    update_if(rig.main, running=False)
    await rig.main.expect(ImsgType.WITHDRAW_RDNS)
    await rig.main.quiet()
    rig.fe.send(ImsgType.REMOVE_IF, imsg.IfIndex(IFINDEX).pack())
    seen = {(await rig.main.expect(t)).type for t in (ImsgType.WITHDRAW_RDNS,)}
    msg = await asyncio.wait_for(rig.main.queue.get(), 2)
    seen.add(msg.type)
    assert ImsgType.DECONFIGURE_INTERFACE in seen


async def test_reload_without_the_interface_deconfigures_and_forgets_it(rig: Rig) -> None:
    """The engine drops an interface a reload removed on the reload itself (RECONF_END),
    in order with the parent's UPDATE_IFs: withdraw DNS, deconfigure, no timer left."""
    ci = await bind(rig)
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    configure(rig.main, name="other9")
    await rig.main.expect(ImsgType.WITHDRAW_RDNS)
    gone = imsg.ConfigureInterface.unpack(
        (await rig.main.expect(ImsgType.DECONFIGURE_INTERFACE)).data
    )
    assert (gone.if_index, gone.addr, gone.routes) == (IFINDEX, ci.addr, ci.routes)
    assert IFINDEX not in rig.engine.ifaces
    # the frontend's REMOVE_IF of a link change, or any frame in flight: nothing to do
    rig.fe.send(ImsgType.REMOVE_IF, imsg.IfIndex(IFINDEX).pack())
    dhcp(rig.fe, reply(0, defs.DHCPNAK))
    await rig.main.quiet()
    await rig.fe.quiet()
    # named again: picked up afresh at the next UPDATE_IF
    configure(rig.main)
    update_if(rig.main)
    await rig.fe.expect(ImsgType.SEND_DISCOVER)
    assert not rig.task.done()


async def test_network_garbage_is_dropped(rig: Rig) -> None:
    ci = await bind(rig)
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    good = reply(0, defs.DHCPNAK)
    for raw in (b"", b"\xff" * 40, good[:50], good[:-200], bytes(1500)):
        dhcp(rig.fe, raw)
    await rig.main.quiet()
    await rig.fe.quiet()
    assert not rig.task.done()
    assert rig.engine.ifaces[IFINDEX].machine.state.value == "Bound"
    assert ci.addr == rig.engine.ifaces[IFINDEX].machine.requested_ip


async def test_a_servers_small_mistakes_cost_the_option_not_the_lease(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    update_if(rig.main)
    disc = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_DISCOVER)).data)
    dhcp(rig.fe, reply(disc.xid, defs.DHCPOFFER))
    req = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_REQUEST)).data)
    bad = ((26, b"\x05"), (42, b"\xc0\x00\x02"), (119, b"\xc0\x00"))
    opts = tuple(o for o in frames.ACK_OPTIONS if o[0] not in (26, 42, 119)) + bad
    caplog.set_level("DEBUG", logger="dhcpleased")
    dhcp(rig.fe, frames.frame(frames.bootp(opts, xid=req.xid)))
    ci = imsg.ConfigureInterface.unpack((await rig.main.expect(ImsgType.CONFIGURE_INTERFACE)).data)
    assert ci.addr == frames.YIADDR
    rdns = imsg.ProposeRdns.unpack((await rig.main.expect(ImsgType.PROPOSE_RDNS)).data)
    assert rdns.search == ()  # the broken 119 is all that was lost
    assert f"{IFNAME}: ignoring option 26 with wrong length 1" in caplog.text
    assert f"{IFNAME}: ignoring option 119 with a pointer loop" in caplog.text


async def test_client_id_length_mismatch_drops_reply(rig: Rig) -> None:
    update_if(rig.main)
    disc = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_DISCOVER)).data)
    dhcp(rig.fe, reply(disc.xid, defs.DHCPOFFER, ((61, b"\x01\x02\x03"),)))
    await rig.fe.quiet()
    dhcp(rig.fe, reply(disc.xid, defs.DHCPOFFER, ((61, b"\x01" + frames.CLIENT_MAC),)))
    await rig.fe.expect(ImsgType.SEND_REQUEST)


@pytest.mark.parametrize(
    "sender, mtype, data",
    [
        ("main", ImsgType.UPDATE_IF, b"\0" * 10),  # wrong size
        ("main", ImsgType.SEND_DISCOVER, bytes(24)),  # not main's to send
        ("main", 9999, b""),  # unknown type
        ("fe", ImsgType.DHCP, struct.pack("=IH", IFINDEX, 0)),  # wrong size
        ("fe", ImsgType.CONFIGURE_INTERFACE, b""),  # not the frontend's to send
        ("fe", ImsgType.REPROPOSE_RDNS, b""),  # no longer part of the protocol (11.12)
        ("main", ImsgType.RECONF_END, b""),  # RECONF_END without RECONF_CONF
    ],
)
async def test_bad_message_from_a_sibling_is_fatal(
    rig: Rig, sender: str, mtype: int, data: bytes
) -> None:
    await asyncio.sleep(0.05)  # let the configuration land first
    peer = rig.main if sender == "main" else rig.fe
    peer.send(mtype, data)
    assert await asyncio.wait_for(rig.task, 2) == 1


async def test_parent_eof_is_a_clean_exit(rig: Rig) -> None:
    rig.main.close()
    assert await asyncio.wait_for(rig.task, 2) == 0


# --- the boot clock: suspend and resume (issue 14, item 5) ------------------------------------
# frames.ACK_OPTIONS: lease 3600 s, T1 1800 s, T2 3150 s.


async def bound_and_proposed(r: Rig) -> tuple[SleepingClock, float]:
    await bind(r)
    await r.main.expect(ImsgType.PROPOSE_RDNS)
    clock = r.engine.clock
    assert isinstance(clock, SleepingClock)
    return clock, r.engine.ifaces[IFINDEX].machine.request_time


async def test_resume_before_t1_changes_nothing(sleepy: Rig) -> None:
    clock, ack = await bound_and_proposed(sleepy)
    clock.sleep(1000)
    await sleepy.fe.quiet(0.2)
    await sleepy.main.quiet(0)
    assert clock.armed == pytest.approx(ack + 1800 + sleepy.engine.ifaces[IFINDEX].machine.jitter)


async def test_resume_past_t1_renews_at_once(sleepy: Rig) -> None:
    clock, _ = await bound_and_proposed(sleepy)
    clock.sleep(2000)  # nothing but the timerfd wakes the engine
    req = imsg.ReqDhcp.unpack((await sleepy.fe.expect(ImsgType.SEND_REQUEST, 1)).data)
    assert (req.ciaddr, req.dhcp_server) == (frames.YIADDR, frames.SERVER)  # unicast renewal
    assert sleepy.engine.ifaces[IFINDEX].machine.state.value == "Renewing"


async def test_resume_past_t2_rebinds_at_once(sleepy: Rig) -> None:
    clock, _ = await bound_and_proposed(sleepy)
    clock.sleep(3300)
    req = imsg.ReqDhcp.unpack((await sleepy.fe.expect(ImsgType.SEND_REQUEST, 1)).data)
    assert (req.ciaddr, req.dhcp_server) == (frames.YIADDR, IPv4Address(0))  # broadcast
    assert sleepy.engine.ifaces[IFINDEX].machine.state.value == "Rebinding"
    await sleepy.fe.quiet(0.2)  # one request, not a unicast renewal first


async def test_resume_after_a_night_drops_the_lease_at_once(sleepy: Rig) -> None:
    clock, _ = await bound_and_proposed(sleepy)
    sleepy.fe.send(ImsgType.CTL_MONITOR)
    await asyncio.sleep(0.05)
    clock.sleep(8 * 3600)
    await sleepy.main.expect(ImsgType.WITHDRAW_RDNS, 1)
    ci = imsg.ConfigureInterface.unpack(
        (await sleepy.main.expect(ImsgType.DECONFIGURE_INTERFACE)).data
    )
    assert ci.addr == frames.YIADDR
    await sleepy.fe.expect(ImsgType.SEND_DISCOVER)  # and nothing unicast to the old server
    ev = imsg.MonitorEvent.unpack((await sleepy.fe.expect(ImsgType.CTL_MONITOR_EVENT)).data)
    assert (ev.old_state, ev.new_state, ev.reason) == ("Bound", "Init", "expired")


async def test_resume_with_the_link_down_past_the_lease_end_deconfigures(sleepy: Rig) -> None:
    clock, _ = await bound_and_proposed(sleepy)
    update_if(sleepy.main, running=False)
    await sleepy.main.expect(ImsgType.WITHDRAW_RDNS)
    clock.sleep(3601)
    await sleepy.main.expect(ImsgType.DECONFIGURE_INTERFACE, 1)


async def test_lease_report_runs_on_the_boot_clock(sleepy: Rig) -> None:
    clock, ack = await bound_and_proposed(sleepy)
    assert ack == pytest.approx(clock.now(), abs=1)
    clock.sleep(600)
    sleepy.fe.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(IFINDEX).pack())
    info = imsg.CtlEngineInfo.unpack(
        (await sleepy.fe.expect(ImsgType.CTL_SHOW_INTERFACE_INFO)).data
    )
    assert clock.now() - info.request_time == pytest.approx(600, abs=1)


async def test_the_real_clock_is_boottime() -> None:
    clock = boottime.BootClock()
    try:
        assert clock.now() == pytest.approx(time.clock_gettime(time.CLOCK_BOOTTIME), abs=0.1)
        loop = asyncio.get_running_loop()
        woke: asyncio.Future[float] = loop.create_future()

        def wake() -> None:
            if not woke.done():
                woke.set_result(clock.now())

        clock.start(loop, wake)
        due = clock.now() + 0.05
        clock.arm(due)
        assert await asyncio.wait_for(woke, 2) >= due  # never early
        assert clock.armed is None
        clock.arm(clock.now() - 10)  # already past: at once
        await asyncio.sleep(0.05)
        clock.arm(None)  # disarmed: no wake-up
    finally:
        clock.close()


# --- randomness an attacker cannot predict (issue 11, item 5) ---------------------------------


def _untemper(y: int) -> int:
    """Invert MT19937's output tempering: one output word gives one state word back."""
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(5):
        x = y ^ ((x << 7) & 0x9D2C5680)
    y = x & 0xFFFFFFFF
    x = y
    for _ in range(3):
        x = y ^ (x >> 11)
    return x & 0xFFFFFFFF


def predicts_next_xid(rng: random.Random) -> bool:
    """The attack: 624 observed 32-bit xids rebuild a Mersenne Twister's state."""
    seen = [rng.getrandbits(32) for _ in range(624)]
    clone = random.Random()
    clone.setstate((3, (*(_untemper(x) for x in seen), 624), None))
    return all(clone.getrandbits(32) == rng.getrandbits(32) for _ in range(8))


def engine_main_args(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run engine_main with the process machinery stubbed: what does it hand the Engine?"""
    got: dict[str, Any] = {}

    class Spy:
        def __init__(self, sock: socket.socket, rng: random.Random, clock: Any) -> None:
            got.update(rng=rng, clock=clock)

        async def run(self) -> int:
            return 0

    def child_main(
        role: str, debug: bool, verbose: int, serve: Callable[[socket.socket], Awaitable[int]]
    ) -> int:
        a, b = pair()
        with a, b:
            return asyncio.run(serve(b))  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "Engine", Spy)
    monkeypatch.setattr(engine, "child_main", child_main)
    assert engine.engine_main(False, 0) == 0
    return got


def test_the_attack_works_on_a_mersenne_twister() -> None:
    assert predicts_next_xid(random.Random(12345))


def test_engine_main_hands_the_fsm_the_kernel_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    got = engine_main_args(monkeypatch)
    rng = got["rng"]
    assert isinstance(rng, random.SystemRandom)
    with pytest.raises(NotImplementedError):
        rng.getstate()  # no state in this process to leak or rebuild
    assert not predicts_next_xid(rng)
    assert isinstance(got["clock"], boottime.BootClock)
    got["clock"].close()
