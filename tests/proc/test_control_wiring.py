"""The control socket's paths through the three processes, one process at a time.

Frontend: a real listening socket arrives with CONTROLFD; clients' requests reach the
fake engine/parent with the connection id in peerid, and their answers come back.
Engine: CTL_PROCINFO and the state-change stream. Parent: MANAGE_IF and CTL_PROCINFO.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace

import pytest

from dhcpleased import defs, imsg, main
from dhcpleased.engine import Engine
from dhcpleased.frontend import Frontend
from dhcpleased.imsg import ImsgType
from dhcpleased.ipc import Imsg
from dhcpleased.parse import Config
from tests.proc import test_engine
from tests.proc.peer import Peer, fake_children, pair
from tests.proc.test_control import Client, engine_info, send_with_token
from tests.proc.tokens import foreign_token, token_pair

# The frontend's control socket serves root only (SO_PEERCRED); CI runs these as root.
ROOT_CLIENT = pytest.mark.root  # the control socket serves root only
ZERO = IPv4Address(0)


@dataclass
class FeRig:
    fe: Frontend
    task: asyncio.Task[int]
    main: Peer
    engine: Peer
    path: str


@pytest.fixture
async def fe_rig() -> AsyncIterator[FeRig]:
    d = Path(tempfile.mkdtemp(prefix="dlt-ctlw-"))
    path = str(d / "ctl.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lsock.bind(path)
    lsock.listen(8)
    main_a, main_b = pair()
    eng_a, eng_b = pair()
    nl_test, nl_fe = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    fe = Frontend(main_b, lambda: "testhost")
    task = asyncio.get_running_loop().create_task(fe.run())
    mainp = Peer(main_a)
    mainp.send(ImsgType.SOCKET_IPC, fd=eng_b.detach())
    engine = Peer(eng_a)
    mainp.send(ImsgType.ROUTESOCK, fd=nl_fe.detach())
    mainp.send(ImsgType.CONTROLFD, fd=lsock.detach())
    mainp.send(ImsgType.RECONF_CONF)
    mainp.send(ImsgType.RECONF_END)
    mainp.send(ImsgType.STARTUP)
    await asyncio.sleep(0.05)
    yield FeRig(fe, task, mainp, engine, path)
    mainp.close()
    engine.close()
    nl_test.close()
    if not task.done():
        await asyncio.wait_for(task, 2)
    os.unlink(path)
    d.rmdir()


@ROOT_CLIENT
async def test_frontend_relays_interface_info_by_connection_id(fe_rig: FeRig) -> None:
    c = await Client(fe_rig.path).connect()
    c.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(5).pack(), pid=1)
    req = await fe_rig.engine.expect(ImsgType.CTL_SHOW_INTERFACE_INFO)
    assert imsg.IfIndex.unpack(req.data).if_index == 5
    assert req.peerid != 0
    fe_rig.engine.send(ImsgType.CTL_SHOW_INTERFACE_INFO, engine_info(5), peerid=req.peerid)
    t, _, data = await c.recv()
    assert (t, imsg.CtlEngineInfo.unpack(data).if_index) == (ImsgType.CTL_SHOW_INTERFACE_INFO, 5)
    # an unmanaged interface: the parent is asked to manage it, with the client's token
    mine, token = token_pair(5)
    send_with_token(c, 5, token)
    msg = await fe_rig.main.expect(ImsgType.MANAGE_IF)
    assert imsg.IfIndex.unpack(msg.data).if_index == 5
    assert msg.fd is not None
    with socket.socket(fileno=msg.fd) as passed:  # it is the client's, request and all
        assert passed.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12) == (
            mine.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        )
        assert passed.recv(64)[-4:] == imsg.IfIndex(5).pack()
    mine.close()
    c.close()


@ROOT_CLIENT
async def test_frontend_gathers_procinfo_from_both_siblings(fe_rig: FeRig) -> None:
    c = await Client(fe_rig.path).connect()
    c.send(ImsgType.CTL_PROCINFO)
    t, _, data = await c.recv()
    own = imsg.ProcInfo.unpack(data)
    assert (t, own.name, own.pid) == (ImsgType.CTL_PROCINFO, "frontend", os.getpid())
    for peer, name in ((fe_rig.main, "main"), (fe_rig.engine, "engine")):
        ask = await peer.expect(ImsgType.CTL_PROCINFO)
        info = imsg.ProcInfo(name, 1, 0, 0, 0, False, 0, 0, 0)
        peer.send(ImsgType.PROCINFO, info.pack(), peerid=ask.peerid)
    got = [imsg.ProcInfo.unpack((await c.recv())[2]).name for _ in range(2)]
    assert sorted(got) == ["engine", "main"]
    assert (await c.recv())[0] == ImsgType.CTL_END
    c.close()


@ROOT_CLIENT
async def test_frontend_fans_out_state_changes(fe_rig: FeRig) -> None:
    c = await Client(fe_rig.path).connect()
    c.send(ImsgType.CTL_MONITOR)
    assert (await c.recv())[0] == ImsgType.CTL_MONITOR
    await fe_rig.engine.expect(ImsgType.CTL_MONITOR)
    ev = imsg.MonitorEvent(1.0, 5, "dl0", "Init", "Requesting", ZERO, "offer")
    fe_rig.engine.send(ImsgType.CTL_MONITOR_EVENT, ev.pack())
    t, _, data = await c.recv()
    assert (t, imsg.MonitorEvent.unpack(data)) == (ImsgType.CTL_MONITOR_EVENT, ev)
    c.close()


@ROOT_CLIENT
async def test_frontend_relays_the_reload_verdict_to_the_asker(fe_rig: FeRig) -> None:
    c = await Client(fe_rig.path).connect()
    c.send(ImsgType.CTL_RELOAD)
    ask = await fe_rig.main.expect(ImsgType.CTL_RELOAD)
    assert ask.peerid != 0  # 0 would be a SIGHUP's, answered to nobody
    verdict = imsg.ReloadResult(False, "/etc/dhcpleased.conf:1: syntax error")
    fe_rig.main.send(ImsgType.CTL_RELOAD_RESULT, verdict.pack(), peerid=ask.peerid)
    t, _, data = await c.recv()
    assert (t, imsg.ReloadResult.unpack(data)) == (ImsgType.CTL_RELOAD_RESULT, verdict)
    c.close()


async def test_garbage_reload_verdict_from_the_parent_is_fatal(fe_rig: FeRig) -> None:
    fe_rig.main.send(ImsgType.CTL_RELOAD_RESULT, b"\x02" + b"\0" * 4096, peerid=1)
    assert await asyncio.wait_for(fe_rig.task, 2) == 1


async def test_a_sibling_lying_about_procinfo_is_fatal(fe_rig: FeRig) -> None:
    fe_rig.engine.send(ImsgType.PROCINFO, imsg.ProcInfo("main", 1, 0, 0, 0, False, 0, 0, 0).pack())
    assert await asyncio.wait_for(fe_rig.task, 2) == 1


async def test_garbage_reply_from_the_engine_is_fatal(fe_rig: FeRig) -> None:
    fe_rig.engine.send(ImsgType.CTL_SHOW_INTERFACE_INFO, b"\0" * 10, peerid=1)
    assert await asyncio.wait_for(fe_rig.task, 2) == 1


# --- engine ---------------------------------------------------------------------------------


async def test_engine_answers_procinfo_and_streams_state_changes() -> None:
    main_a, main_b = pair()
    fe_a, fe_b = pair()
    engine = Engine(main_b, random.Random(7))
    task = asyncio.get_running_loop().create_task(engine.run())
    mainp = Peer(main_a)
    mainp.send(ImsgType.SOCKET_IPC, fd=fe_b.detach())
    fe = Peer(fe_a)
    test_engine.configure(mainp)
    rig = test_engine.Rig(engine, task, mainp, fe)
    fe.send(ImsgType.CTL_PROCINFO, peerid=77)
    msg = await fe.expect(ImsgType.PROCINFO)
    info = imsg.ProcInfo.unpack(msg.data)
    assert (msg.peerid, info.name, info.pid, info.uid) == (77, "engine", os.getpid(), os.geteuid())
    fe.send(ImsgType.CTL_MONITOR)
    await asyncio.sleep(0.05)
    test_engine.update_if(mainp)
    events = []
    while len(events) < 3:
        m = await fe.queue.get()
        if m.type == ImsgType.CTL_MONITOR_EVENT:
            events.append(imsg.MonitorEvent.unpack(m.data))
        elif m.type == ImsgType.SEND_DISCOVER:
            xid = imsg.ReqDhcp.unpack(m.data).xid
            test_engine.dhcp(fe, test_engine.reply(xid, defs.DHCPOFFER))
        elif m.type == ImsgType.SEND_REQUEST:
            xid = imsg.ReqDhcp.unpack(m.data).xid
            test_engine.dhcp(fe, test_engine.reply(xid, defs.DHCPACK))
    got = [(e.old_state, e.new_state, e.reason, e.if_name) for e in events]
    assert got == [
        ("Down", "Init", "link up", "dl0"),
        ("Init", "Requesting", "offer", "dl0"),
        ("Requesting", "Bound", "ack", "dl0"),
    ]
    assert events[0].address == ZERO and events[2].address != ZERO
    mainp.close()
    fe.close()
    assert await asyncio.wait_for(rig.task, 2) == 0


# --- parent ---------------------------------------------------------------------------------


@pytest.fixture
async def parent() -> AsyncIterator[tuple[main.Main, Peer, Peer]]:
    m = main.Main(
        opts=main.Options(),
        conf=Config(ifaces=()),
        kroute=SimpleNamespace(set_up=lambda i: asyncio.sleep(0, False)),  # type: ignore[arg-type]
        resolver=SimpleNamespace(),  # type: ignore[arg-type]
        load_config=Config,
        open_bpfsock=lambda i: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_bcastsock=lambda i: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_udpsock=lambda i, a, s: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_routesock=lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
    )
    m.ctl_uid = os.geteuid()  # root in CI: the suite must also pass unprivileged
    peers, chans = fake_children(m.children, m.dispatch)
    worker = asyncio.get_running_loop().create_task(m.worker())  # reloads finish there
    yield m, peers[0], peers[1]
    worker.cancel()
    for ch in chans:
        ch.close()
    for p in peers:
        p.close()


async def test_parent_manages_an_interface_when_dhcpleasectl_asks(
    parent: tuple[main.Main, Peer, Peer],
) -> None:
    """A fake frontend over the real parent's channel: MANAGE_IF with the token a root
    dhcpleasectl made (in another process) is served."""
    m, fe, en = parent
    lo = socket.if_nametoindex("lo")
    fe.send(ImsgType.MANAGE_IF, imsg.IfIndex(lo).pack(), fd=foreign_token(lo))
    for peer in (fe, en):
        await peer.expect(ImsgType.RECONF_CONF)
        ic = imsg.IfaceConf.unpack((await peer.expect(ImsgType.RECONF_IFACE)).data)
        assert ic.name == "lo"
        await peer.expect(ImsgType.RECONF_END)
    assert "lo" in m.managed
    # asking again changes nothing; a reload keeps it; a vanished index is ignored
    fe.send(ImsgType.MANAGE_IF, imsg.IfIndex(lo).pack(), fd=foreign_token(lo))
    fe.send(ImsgType.MANAGE_IF, imsg.IfIndex(99999).pack(), fd=foreign_token(99999))
    await fe.quiet(0.3)
    m.reload()
    assert "lo" in m.managed
    assert not m.done.done()


def listening_socket() -> int:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(f"\0dlt-listen-{os.getpid()}-{random.random()}")
    s.listen(1)
    return s.detach()


def read_already(index: int) -> int:
    fd = foreign_token(index)
    with socket.socket(fileno=os.dup(fd)) as s:
        s.recv(64)  # what a compromised frontend would do: consume it, pass it on
    return fd


def own_token(index: int) -> int:
    """A well-formed token, made by this process: the one playing the daemon's parent."""
    mine, token = token_pair(index)
    mine.close()
    return token.detach()


def pipe() -> int:
    r, w = os.pipe()
    os.write(w, b"\0" * 20)
    os.close(w)
    return r


LO = socket.if_nametoindex("lo")
NOT_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="making a token as nobody needs root")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: None, id="no-token"),
        pytest.param(lambda: own_token(LO), id="made-by-the-daemon"),
        pytest.param(lambda: foreign_token(LO + 99), id="another-interface"),
        pytest.param(lambda: read_already(LO), id="read-already"),
        pytest.param(
            lambda: foreign_token(LO, mtype=ImsgType.CTL_SHOW_INTERFACE_INFO), id="another-request"
        ),
        pytest.param(lambda: foreign_token(LO, kind=socket.SOCK_STREAM), id="stream-socket"),
        pytest.param(lambda: foreign_token(LO, user=65534), id="not-root", marks=NOT_ROOT),
        pytest.param(listening_socket, id="listening-socket"),
        pytest.param(pipe, id="not-a-socket"),
    ],
)
async def test_manage_if_without_root_behind_it_is_fatal(
    parent: tuple[main.Main, Peer, Peer], token: Callable[[], int | None]
) -> None:
    """The frontend cannot grow its own reach: whatever it passes that does not carry a
    root client's own request for that very interface ends the daemon, and nothing is
    managed."""
    m, fe, en = parent
    fe.send(ImsgType.MANAGE_IF, imsg.IfIndex(LO).pack(), fd=token())
    await asyncio.wait_for(m.done, 2)
    assert m.done.result() == 1
    assert "lo" not in m.managed
    await en.quiet()


async def test_parent_answers_procinfo_and_refuses_manage_if_from_the_engine(
    parent: tuple[main.Main, Peer, Peer],
) -> None:
    m, fe, _ = parent
    m.dispatch("frontend", Imsg(ImsgType.CTL_PROCINFO, 31, 0, b"", None))
    msg = await fe.expect(ImsgType.PROCINFO)
    info = imsg.ProcInfo.unpack(msg.data)
    assert (msg.peerid, info.name, info.pid) == (31, "main", os.getpid())
    m.dispatch("engine", Imsg(ImsgType.MANAGE_IF, 0, 0, imsg.IfIndex(1).pack(), None))
    assert m.done.done() and m.done.result() == 1
