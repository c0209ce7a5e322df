"""The parent across reloads: stale messages, failed reloads, big configs.

The parent runs with no interface on its command line, so the config's blocks are what
it manages; the children are fake peers over real channels.  A message about an
interface a reload has dropped may still arrive from either child (it was in flight):
it is stale, not hostile, and only the engine's undoing of what it did is carried out.
A message about an interface never managed is still fatal.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from dhcpleased import defs, imsg, main
from dhcpleased.imsg import HEADER, MAX_IMSGSIZE, Header, ImsgType
from dhcpleased.ipc import Channel, Imsg
from dhcpleased.parse import Config, ConfigError, IfaceConf, load_config
from tests.odd_values import CASES, EXPECTED, Refused, config, iface_name
from tests.proc import test_main
from tests.proc.peer import Peer, fake_children, pair
from tests.proc.test_main import (
    ADDR,
    IFINDEX,
    IFNAME,
    FakeKRoute,
    FakeResolver,
    ci,
    settle,
)

WITH_LO = Config((IfaceConf(IFNAME, h_name="lo-host"),))
# what the engine may send about an interface (SANDBOX_UP names none)
ENGINE_CAN_SEND = sorted(main.ALLOWED["engine"] - {ImsgType.SANDBOX_UP})


@dataclass
class Notes:
    """Stands in for sdnotify.Notifier: what systemd would have been told."""

    sent: list[str] = field(default_factory=list)

    def reloading(self) -> bool:
        self.sent.append("RELOADING")
        return True

    def ready(self, status: str | None = None) -> bool:
        self.sent.append("READY")
        return True

    def status(self, text: str) -> bool:
        return True


@dataclass
class Rig(test_main.Rig):
    notes: Notes
    conf: list[Config | BaseException]  # what the next reload reads (last one stays)


def _load(rig_conf: list[Config | BaseException]) -> Config:
    got = rig_conf[0] if len(rig_conf) == 1 else rig_conf.pop(0)
    if isinstance(got, BaseException):
        raise got
    return got


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setattr(defs, "LEASE_DIR", str(tmp_path))
    kroute, resolver, notes = FakeKRoute(), FakeResolver(), Notes()
    conf: list[Config | BaseException] = [WITH_LO]
    m = main.Main(
        opts=main.Options(),  # no interface named: the config's blocks are managed
        conf=WITH_LO,
        kroute=kroute,  # type: ignore[arg-type]
        resolver=resolver,  # type: ignore[arg-type]
        load_config=lambda: _load(conf),
        open_bpfsock=lambda i: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_bcastsock=lambda i: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_udpsock=lambda i, a, s: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_routesock=lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
    )
    m.notifier = notes  # type: ignore[assignment]
    peers, chans = fake_children(m.children)
    worker = asyncio.get_running_loop().create_task(m.worker())
    yield Rig(m, kroute, resolver, peers[0], peers[1], worker, notes, conf)
    worker.cancel()
    for ch in chans:
        ch.close()
    for p in peers:
        p.close()


def send(r: Rig, role: str, t: int, data: bytes = b"", peerid: int = 0) -> None:
    r.m.dispatch(role, Imsg(t, peerid, 0, data, None))


def update_if(r: Rig, name: str = IFNAME) -> None:
    info = imsg.IfInfo(IFINDEX, name, 0, True, 6, b"\x02" * 6, "")
    send(r, "frontend", ImsgType.UPDATE_IF, info.pack())


async def reconf(peer: Peer) -> list[str]:
    """One RECONF stream as the child receives it: the interface names in it."""
    await peer.expect(ImsgType.RECONF_CONF)
    names = []
    while (msg := await asyncio.wait_for(peer.queue.get(), 2)).type != ImsgType.RECONF_END:
        if msg.type == ImsgType.RECONF_IFACE:
            names.append(imsg.IfaceConf.unpack(msg.data).name)
    return names


def alive(r: Rig) -> bool:
    return not r.m.done.done()


async def bound(r: Rig) -> None:
    """lo known to the engine, configured, its DNS proposed."""
    update_if(r)
    await r.engine.expect(ImsgType.UPDATE_IF)
    send(r, "engine", ImsgType.CONFIGURE_INTERFACE, ci())
    rd = imsg.ProposeRdns(IFINDEX, 0, (ADDR,), "", ())
    send(r, "engine", ImsgType.PROPOSE_RDNS, rd.pack())
    await r.fe.expect(ImsgType.UDPSOCK)
    await settle()
    assert [c[0] for c in r.kroute.calls] == ["configure"]
    assert [c[0] for c in r.resolver.calls] == ["propose"]


async def test_removal_and_stale_messages_after_a_reload(rig: Rig) -> None:
    await bound(rig)
    rig.conf[:] = [Config()]
    rig.m.reload()
    assert [await reconf(rig.fe), await reconf(rig.engine)] == [[], []]
    # in flight from the frontend: dropped, nothing opened or forwarded
    update_if(rig)
    send(rig, "frontend", ImsgType.OPEN_BPFSOCK, imsg.IfIndex(IFINDEX).pack())
    # in flight from the engine: a renewal's CONFIGURE and PROPOSE_RDNS are dropped...
    send(rig, "engine", ImsgType.CONFIGURE_INTERFACE, ci())
    send(rig, "engine", ImsgType.PROPOSE_RDNS, imsg.ProposeRdns(IFINDEX, 0, (ADDR,), "", ()).pack())
    # ...and its undoing (what it sends as it forgets the interface) is carried out
    send(rig, "engine", ImsgType.WITHDRAW_RDNS, imsg.ProposeRdns(IFINDEX, 0, (), "", ()).pack())
    send(rig, "engine", ImsgType.WITHDRAW_ROUTES, ci())
    send(rig, "engine", ImsgType.DECONFIGURE_INTERFACE, ci())
    await settle()
    assert alive(rig)
    await rig.fe.expect(ImsgType.CLOSE_UDPSOCK)
    await rig.fe.quiet()
    await rig.engine.quiet()
    assert [c[0] for c in rig.kroute.calls] == ["configure", "withdraw_routes", "deconfigure"]
    assert rig.resolver.calls[1:] == [("withdraw", IFNAME)]
    # named again: served again
    rig.conf[:] = [WITH_LO]
    rig.m.reload()
    assert await reconf(rig.engine) == [IFNAME]
    update_if(rig)
    await rig.engine.expect(ImsgType.UPDATE_IF)
    assert alive(rig)


async def test_work_queued_before_a_reload_is_checked_when_it_runs(rig: Rig) -> None:
    """UPDATE_IF accepted, then a reload drops the interface before the job's turn: the
    engine must not hear of it after its new config (it would manage a ghost)."""
    rig.m.work.put_nowait(lambda: asyncio.sleep(0.1))  # the worker is busy for a while
    update_if(rig)
    rig.conf[:] = [Config()]
    rig.m.reload()
    assert await reconf(rig.engine) == []
    await rig.engine.quiet(0.3)
    assert alive(rig)


async def test_names_never_managed_are_still_fatal(rig: Rig) -> None:
    rig.conf[:] = [Config()]
    rig.m.reload()
    await settle()
    update_if(rig, "eth9")  # was never in any config
    assert rig.m.done.done() and rig.m.done.result() == 1


@pytest.mark.parametrize("mtype", ENGINE_CAN_SEND, ids=lambda t: t.name)
async def test_engine_messages_about_an_unknown_index_are_fatal(rig: Rig, mtype: ImsgType) -> None:
    """Even the undoing kind: the engine only knows interfaces it was told about."""
    payload = ci() if "INTERFACE" in mtype.name or "ROUTES" in mtype.name else b""
    if "RDNS" in mtype.name:
        payload = imsg.ProposeRdns(IFINDEX, 0, (), "", ()).pack()
    if mtype is ImsgType.RELEASED:
        payload = imsg.IfIndex(IFINDEX).pack()
    send(rig, "engine", mtype, payload)
    assert rig.m.done.done() and rig.m.done.result() == 1


@pytest.mark.parametrize(
    "problem",
    [
        ConfigError(["/etc/dhcpleased.conf:2: syntax error", "/etc/dhcpleased.conf:5: x\x1b[2J"]),
        OSError(13, "Permission denied"),
        RuntimeError("a bug"),
        # a value no imsg carries, had the parser let it through: nothing is half-sent
        Config((IfaceConf("em0"), IfaceConf("a b"))),
        Config((IfaceConf("em0", h_name="h" * 256),)),
    ],
    ids=["parser", "oserror", "bug", "ifname", "hostname"],
)
async def test_a_failed_reload_sends_nothing_and_says_why(
    rig: Rig, problem: Config | BaseException
) -> None:
    rig.conf[:] = [problem]
    send(rig, "frontend", ImsgType.CTL_RELOAD, peerid=42)
    msg = await rig.fe.expect(ImsgType.CTL_RELOAD_RESULT)
    result = imsg.ReloadResult.unpack(msg.data)
    assert msg.peerid == 42 and not result.ok and result.message
    if isinstance(problem, ConfigError):  # the parser's lines, made safe for a terminal
        assert result.message.splitlines() == [
            "/etc/dhcpleased.conf:2: syntax error",
            "/etc/dhcpleased.conf:5: x\\x1b[2J",
        ]
    await rig.fe.quiet()
    await rig.engine.quiet()
    assert alive(rig)
    assert list(rig.m.managed) == [IFNAME] and rig.m.conf is WITH_LO
    assert rig.notes.sent == ["RELOADING", "READY"]
    # and the next reload goes through whole
    rig.conf[:] = [WITH_LO]
    send(rig, "frontend", ImsgType.CTL_RELOAD, peerid=43)
    assert await reconf(rig.fe) == [IFNAME]
    assert await reconf(rig.engine) == [IFNAME]
    msg = await rig.fe.expect(ImsgType.CTL_RELOAD_RESULT)
    assert msg.peerid == 43 and imsg.ReloadResult.unpack(msg.data).ok
    assert rig.notes.sent == ["RELOADING", "READY"] * 2


async def test_sighup_reload_answers_nobody(rig: Rig) -> None:
    rig.m.reload()
    await reconf(rig.fe)
    await rig.fe.quiet()
    assert rig.notes.sent == ["RELOADING", "READY"]


def test_many_errors_are_cut_to_fit_the_answer() -> None:
    errors = [f"/etc/dhcpleased.conf:{i}: syntax error" for i in range(1, 1000)]
    result = main.reload_report(errors)
    lines = result.message.splitlines()
    assert lines[0] == errors[0] and lines[-1] == f"... and {1000 - len(lines)} more"
    assert len(result.message.encode()) < imsg.RELOAD_TEXT_SIZE


async def test_a_config_of_thousands_of_interfaces_is_paced_not_fatal(rig: Rig) -> None:
    """More RECONF messages than a channel queues (1024): sent as the child reads them,
    never a full queue, which would end the daemon."""
    slow, theirs = pair()  # a frontend that reads nothing for a while
    ch = Channel(theirs, lambda _m: None, lambda _r: None, name="frontend")
    ch.start()
    rig.m.children["frontend"] = SimpleNamespace(channel=ch)  # type: ignore[assignment]
    n = 3000
    rig.conf[:] = [Config(tuple(IfaceConf(f"x{i}", ignore_dns=True) for i in range(n)))]
    rig.m.reload()
    await asyncio.sleep(0.3)
    assert not ch.closed and ch.pending <= main.CONFIG_HEADROOM
    got: list[int] = []
    slow.setblocking(False)
    loop = asyncio.get_running_loop()
    while not got or got[-1] != ImsgType.RECONF_END:
        data = await asyncio.wait_for(loop.sock_recv(slow, MAX_IMSGSIZE), 5)
        got.append(Header.unpack(data[: HEADER.size]).type)
    assert got.count(ImsgType.RECONF_IFACE) == n == len(await reconf(rig.engine))
    assert alive(rig) and not ch.closed
    ch.close()
    slow.close()


@pytest.mark.parametrize(("slot", "name"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
async def test_odd_value_through_a_real_reload(
    rig: Rig, tmp_path: Path, slot: str, name: str
) -> None:
    """Each odd value, in a real file read by the parser, through Main.reload: the config
    goes out whole, or the client gets the parser's message and nothing goes out."""
    path = tmp_path / "dhcpleased.conf"
    text, lines = config(slot, [name])
    path.write_bytes(text)
    rig.m.load_config = lambda: load_config(str(path), default=False, regular=True)
    send(rig, "frontend", ImsgType.CTL_RELOAD, peerid=7)
    expected = EXPECTED[slot][name]
    if isinstance(expected, Refused):
        msg = await rig.fe.expect(ImsgType.CTL_RELOAD_RESULT)
        (line,) = lines
        want = main.printable(f"{path}:{line}: {expected.message}")
        assert imsg.ReloadResult.unpack(msg.data) == imsg.ReloadResult(False, want)
        await rig.engine.quiet(0.05)
    else:
        assert await reconf(rig.fe) == await reconf(rig.engine) == [iface_name(slot, 1, name)]
        msg = await rig.fe.expect(ImsgType.CTL_RELOAD_RESULT)
        assert imsg.ReloadResult.unpack(msg.data).ok
    assert alive(rig) and rig.notes.sent == ["RELOADING", "READY"]
