"""The control socket server (control.py) against real clients on a real listening socket.

The frontend is replaced by recording callbacks: what matters here is that nothing a
client does (garbage, broken frames, not reading, being many) disturbs the server or
the other clients, and that answers reach the right client.
"""

from __future__ import annotations

import asyncio
import errno
import os
import pwd
import socket
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from dhcpleased import control, imsg
from dhcpleased.imsg import HEADER, MAX_IMSGSIZE, Header, ImsgType
from dhcpleased.ipc import Channel
from tests.proc.tokens import token_pair

ZERO = IPv4Address(0)
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may sit in root's home


def frontend_info() -> imsg.ProcInfo:
    return imsg.ProcInfo("frontend", 11, 995, 995, 0, True, 2, 0, 0)


def engine_info(if_index: int) -> bytes:
    return imsg.CtlEngineInfo(
        if_index, True, 6, "Bound", 1.0, ZERO, ZERO, ZERO, ZERO, (), (), 0, 0, 0, "", ()
    ).pack()


@dataclass
class Backend:
    """Records what the control server forwards; ``auto`` answers SHOW like the engine."""

    sent: list[tuple[str, ImsgType, bytes, int]] = field(default_factory=list)
    fds: dict[int, int] = field(default_factory=dict)  # index in sent -> descriptor passed
    verbose: list[int] = field(default_factory=list)
    managed: set[int] = field(default_factory=set)
    auto: bool = False
    refuse: bool = False  # as forward() does once clients have filled a sibling channel
    ctl: control.Control | None = None

    def forward(
        self, role: str, t: ImsgType, data: bytes, peerid: int, fd: int | None = None
    ) -> bool:
        if self.refuse:
            if fd is not None:
                os.close(fd)
            return False
        if fd is not None:
            self.fds[len(self.sent)] = fd
        self.sent.append((role, t, data, peerid))
        if self.auto and t is ImsgType.CTL_SHOW_INTERFACE_INFO:
            assert self.ctl is not None
            index = imsg.IfIndex.unpack(data).if_index
            asyncio.get_running_loop().call_soon(
                self.ctl.sibling_reply, peerid, t, engine_info(index)
            )
        return True

    def of(self, t: ImsgType) -> list[tuple[str, bytes, int]]:
        return [(role, data, peerid) for role, tt, data, peerid in self.sent if tt is t]


@dataclass
class Rig:
    ctl: control.Control
    backend: Backend
    path: str


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="dlt-ctl-"))
    os.chmod(d, 0o755)
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@pytest.fixture
async def rig(sockdir: Path) -> AsyncIterator[Rig]:
    path = str(sockdir / "ctl.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lsock.bind(path)
    os.chmod(path, 0o666)  # a mistaken mode: the credential check must still hold
    lsock.listen(64)
    backend = Backend()
    ctl = control.Control(
        lsock,
        to_main=lambda t, d, p, fd=None: backend.forward("main", t, d, p, fd),
        to_engine=lambda t, d, p, fd=None: backend.forward("engine", t, d, p, fd),
        is_managed=lambda i: i in backend.managed,
        set_verbose=backend.verbose.append,
        procinfo=frontend_info,
        allowed_uid=os.geteuid(),  # root in CI; the suite must also pass unprivileged
    )
    backend.ctl = ctl
    ctl.start()
    yield Rig(ctl, backend, path)
    ctl.close()


class Client:
    """A raw client: writes whatever bytes a test wants, reads whole datagrams."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.setblocking(False)
        self.path = path

    async def connect(self) -> Client:
        await asyncio.get_running_loop().sock_connect(self.sock, self.path)
        return self

    def raw(self, data: bytes) -> None:
        self.sock.send(data)

    def send(self, t: int, data: bytes = b"", pid: int = 4242) -> None:
        self.raw(Header(t, HEADER.size + len(data), 0, 0, pid).pack() + data)

    async def recv(self, timeout: float = 5.0) -> tuple[int, int, bytes]:
        """(type, peerid, payload); type -1 at EOF."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, MAX_IMSGSIZE), timeout)
        if not data:
            return -1, 0, b""
        hdr = Header.unpack(data[: HEADER.size])
        return hdr.type, hdr.peerid, data[HEADER.size :]

    async def quiet(self, wait: float = 0.1) -> None:
        with pytest.raises(TimeoutError):
            await self.recv(wait)

    def close(self) -> None:
        self.sock.close()


async def connect(r: Rig) -> Client:
    c = await Client(r.path).connect()
    await settle()
    return c


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


def show(c: Client, index: int) -> None:
    c.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(index).pack())


async def served(r: Rig, c: Client, index: int = 3) -> None:
    """The client still gets answers: the engine's reply is routed back to it."""
    r.backend.auto = True
    show(c, index)
    t, _, data = await c.recv()
    assert t == ImsgType.CTL_SHOW_INTERFACE_INFO
    assert imsg.CtlEngineInfo.unpack(data).if_index == index


async def test_replies_are_routed_by_connection_id_not_by_client_pid(rig: Rig) -> None:
    a, b = await connect(rig), await connect(rig)
    show(a, 7)
    b.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(8).pack(), pid=4242)  # same pid
    await settle()
    (_, data_a, id_a), (_, _, id_b) = rig.backend.of(ImsgType.CTL_SHOW_INTERFACE_INFO)
    assert imsg.IfIndex.unpack(data_a).if_index == 7
    assert id_a != id_b and 4242 not in (id_a, id_b)
    rig.ctl.sibling_reply(id_b, ImsgType.CTL_SHOW_INTERFACE_INFO, engine_info(8))
    t, _, data = await b.recv()
    assert (t, imsg.CtlEngineInfo.unpack(data).if_index) == (ImsgType.CTL_SHOW_INTERFACE_INFO, 8)
    await a.quiet()
    rig.ctl.sibling_reply(id_a, ImsgType.CTL_END, b"")
    assert (await a.recv())[0] == ImsgType.CTL_END
    rig.ctl.sibling_reply(99999, ImsgType.CTL_END, b"")  # a client that left: dropped
    a.close()
    b.close()


async def test_bad_messages_are_ignored_and_the_client_stays(rig: Rig) -> None:
    c = await connect(rig)
    c.send(ImsgType.CTL_SHOW_INTERFACE_INFO, b"\x01\x02")  # wrong size
    c.send(ImsgType.CTL_SHOW_INTERFACE_INFO, b"\0" * 5000)  # oversized for its type
    c.send(ImsgType.CTL_RELOAD, b"x")  # payload where none belongs
    c.send(ImsgType.CTL_LOG_VERBOSE, b"\xff\xff\xff\xff")  # negative verbosity
    c.send(9999)  # unknown type
    c.send(ImsgType.CONFIGURE_INTERFACE, b"\0" * 100)  # a daemon-only type
    c.send(ImsgType.REQUEST_REBOOT, imsg.IfIndex(3).pack())  # ditto, right size
    await settle()
    assert rig.backend.sent == []
    assert rig.backend.verbose == []
    await c.quiet()
    await served(rig, c)
    c.close()


async def test_a_passed_descriptor_is_closed_and_ignored(rig: Rig) -> None:
    c = await connect(rig)
    r, w = os.pipe()
    data = imsg.IfIndex(3).pack()
    hdr = Header(ImsgType.CTL_SHOW_INTERFACE_INFO, HEADER.size + len(data), 1, 0, 0).pack()
    c.sock.sendmsg([hdr + data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, w.to_bytes(4, "little"))])
    os.close(w)
    await settle()
    assert rig.backend.sent == []
    assert os.read(r, 1) == b""  # the frontend's copy is closed: EOF on the pipe
    os.close(r)
    await served(rig, c)
    c.close()


@pytest.mark.parametrize(
    "frame",
    [
        b"\x01\x02\x03",  # shorter than a header
        Header(ImsgType.CTL_RELOAD, HEADER.size + 4, 0, 0, 0).pack(),  # length lies
        HEADER.pack(ImsgType.CTL_RELOAD, HEADER.size, 0x80, 0, 0),  # unknown flags
        HEADER.pack(ImsgType.CTL_RELOAD, HEADER.size, 1, 0, 0),  # HASFD without a fd
        b"\0" * (MAX_IMSGSIZE + 100),  # larger than any imsg: truncated
    ],
)
async def test_a_broken_frame_closes_that_client_only(rig: Rig, frame: bytes) -> None:
    bad, good = await connect(rig), await connect(rig)
    assert len(rig.ctl.clients) == 2
    bad.raw(frame)
    assert (await bad.recv())[0] == -1  # EOF: closed by the server
    assert len(rig.ctl.clients) == 1
    await served(rig, good)
    bad.close()
    good.close()


@pytest.mark.root  # chown to root
def test_create_socket_is_0660_root_and_replaces_only_a_stale_socket(sockdir: Path) -> None:
    path = str(sockdir / "d.sock")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old.bind(path)
    old.close()  # a stale socket of an earlier run
    sock = control.create_socket(path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, 0)
    assert sock.type == socket.SOCK_SEQPACKET
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    sock.close()
    other = sockdir / "file"
    other.write_text("not a socket")
    with pytest.raises(FileExistsError):
        control.create_socket(str(other))
    assert other.read_text() == "not a socket"


@pytest.mark.root  # running a client as another user
async def test_non_root_peer_is_refused_whatever_the_mode(rig: Rig) -> None:
    try:
        user = pwd.getpwnam("_dhcp")
    except KeyError:
        pytest.fail("user _dhcp missing (run tests/integration/prepare.sh)")
    code = (
        "import socket, struct, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        "s.connect(sys.argv[1])\n"
        "try:\n"
        f"    s.send(struct.pack('=IHHII', {int(ImsgType.CTL_RELOAD)}, 16, 0, 0, 0))\n"
        "    s.settimeout(10)\n"
        "    print('EOF' if s.recv(100) == b'' else 'ANSWERED')\n"
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    print('EOF')\n"
    )
    proc = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON, "-I", "-c", code, rig.path,
        user=user.pw_uid, group=user.pw_gid, extra_groups=[],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert out.decode().strip() == "EOF", err.decode()
    assert rig.backend.sent == []  # the reload never reached the parent
    assert rig.ctl.clients == {}
    c = await connect(rig)  # root still gets in
    await served(rig, c)
    c.close()


async def test_a_client_that_does_not_read_is_dropped_without_delaying_others(
    rig: Rig,
) -> None:
    stuck, reader = await connect(rig), await connect(rig)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for c in (stuck, reader):
        c.send(ImsgType.CTL_MONITOR)
        assert (await c.recv())[0] == ImsgType.CTL_MONITOR
    assert len(rig.backend.of(ImsgType.CTL_MONITOR)) == 1  # the engine is asked once
    ev = imsg.MonitorEvent(0.0, 3, "dl0", "Init", "Requesting", ZERO, "x" * 60).pack()
    got = 0
    sent = 0
    while len(rig.ctl.clients) == 2:
        assert sent < 100_000, "the stuck client was never dropped"
        rig.ctl.monitor_event(ev)  # never blocks: each call returns at once
        sent += 1
        if sent % 32 == 0:
            while True:  # the reader keeps up
                try:
                    t, _, _ = await reader.recv(0.01)
                except TimeoutError:
                    break
                assert t == ImsgType.CTL_MONITOR_EVENT
                got += 1
    assert len(rig.ctl.clients) == 1
    rig.ctl.monitor_event(ev)
    while got < sent + 1:
        t, _, _ = await reader.recv()
        assert t == ImsgType.CTL_MONITOR_EVENT
        got += 1
    assert got == sent + 1  # the reader missed nothing
    stuck.close()
    reader.close()


async def test_fifty_concurrent_clients(rig: Rig) -> None:
    rig.backend.auto = True
    clients = [await Client(rig.path).connect() for _ in range(50)]

    async def ask(c: Client, index: int) -> int:
        results = []
        for _ in range(3):
            show(c, index)
            t, _, data = await c.recv()
            assert t == ImsgType.CTL_SHOW_INTERFACE_INFO
            results.append(imsg.CtlEngineInfo.unpack(data).if_index)
        assert results == [index] * 3
        return index

    done = await asyncio.gather(*(ask(c, i + 1) for i, c in enumerate(clients)))
    assert done == list(range(1, 51))
    assert len(rig.ctl.clients) == 50
    for c in clients:
        c.close()
    await settle()
    assert rig.ctl.clients == {}


async def test_more_than_max_clients_are_turned_away(rig: Rig) -> None:
    rig.ctl.max_clients = 3
    clients = [await connect(rig) for _ in range(4)]
    assert (await clients[3].recv())[0] == -1
    await served(rig, clients[0])
    for c in clients:
        c.close()


async def test_outstanding_requests_per_client_are_bounded(rig: Rig) -> None:
    c = await connect(rig)
    for _ in range(10):
        show(c, 3)
    await settle()
    assert len(rig.backend.of(ImsgType.CTL_SHOW_INTERFACE_INFO)) == control.MAX_INFLIGHT
    (_, _, cid), *_ = rig.backend.of(ImsgType.CTL_SHOW_INTERFACE_INFO)
    rig.ctl.sibling_reply(cid, ImsgType.CTL_END, b"")
    assert (await c.recv())[0] == ImsgType.CTL_END
    show(c, 3)
    await settle()
    assert len(rig.backend.of(ImsgType.CTL_SHOW_INTERFACE_INFO)) == control.MAX_INFLIGHT + 1
    c.close()


def test_clients_may_fill_a_sibling_channel_only_up_to_the_headroom() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ch = Channel(a, lambda m: None, lambda r: None, max_queue=1024)  # not started: only queues
    results = [control.forward(ch, ImsgType.CTL_RELOAD, b"", 0) for _ in range(300)]
    assert results.count(True) == control.SIBLING_HEADROOM
    assert not ch.closed
    assert not control.forward(None, ImsgType.CTL_RELOAD, b"", 0)
    ch.close()
    b.close()


def send_with_token(c: Client, index: int, token: socket.socket) -> None:
    data = imsg.IfIndex(index).pack()
    hdr = Header(ImsgType.CTL_SEND_REQUEST, HEADER.size + len(data), 1, 0, 0).pack()
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, token.fileno().to_bytes(4, "little"))]
    c.sock.sendmsg([hdr + data], rights)
    token.close()  # the frontend's copy is now the only one


def closed_by_frontend(mine: socket.socket) -> bool:
    """EOF (or a reset, if it went unread) at the client's end: no copy of the token is
    left open anywhere."""
    try:
        return mine.recv(64) == b""
    except ConnectionResetError:
        return True
    except BlockingIOError:
        return False


async def test_send_request_reboots_or_asks_the_parent_to_manage(rig: Rig) -> None:
    """Managed: REQUEST_REBOOT to the engine. With root's token, MANAGE_IF to the parent
    carrying it (the only proof of root the parent accepts): the parent manages a new
    interface and sets a down one up (IFF_UP). Without a token nothing is asked of it."""
    rig.backend.managed.add(3)
    c = await connect(rig)
    tokens = {index: token_pair(index) for index in (3, 4, 0)}
    for index, (_, token) in tokens.items():
        send_with_token(c, index, token)
    c.send(ImsgType.CTL_SEND_REQUEST, imsg.IfIndex(5).pack())  # unmanaged, no token
    c.send(ImsgType.CTL_SEND_REQUEST, imsg.IfIndex(3).pack())  # managed, no token: fine
    await settle()
    assert [(role, t, imsg.IfIndex.unpack(d).if_index) for role, t, d, _ in rig.backend.sent] == [
        ("engine", ImsgType.REQUEST_REBOOT, 3),
        ("main", ImsgType.MANAGE_IF, 3),
        ("main", ImsgType.MANAGE_IF, 4),
        ("engine", ImsgType.REQUEST_REBOOT, 3),
    ]
    assert list(rig.backend.fds) == [1, 2]
    for at, index in ((1, 3), (2, 4)):
        with socket.socket(fileno=rig.backend.fds[at]) as passed:  # the client's own token
            got = passed.recv(64)
        assert Header.unpack(got[: HEADER.size]).type == ImsgType.CTL_SEND_REQUEST
        assert imsg.IfIndex.unpack(got[HEADER.size :]).if_index == index
    for index in (3, 0, 4):
        assert closed_by_frontend(tokens[index][0]), index
    await c.quiet()  # no answer, as the original
    c.close()


async def test_release_goes_to_the_engine_for_a_managed_interface_only(rig: Rig) -> None:
    rig.backend.managed.add(3)
    c = await connect(rig)
    for index in (3, 4, 0):
        c.send(ImsgType.CTL_RELEASE, imsg.IfIndex(index).pack())
    c.send(ImsgType.CTL_RELEASE, b"\0" * 3)  # wrong size: ignored
    await settle()
    assert [(role, t, imsg.IfIndex.unpack(d).if_index) for role, t, d, _ in rig.backend.sent] == [
        ("engine", ImsgType.REQUEST_RELEASE, 3),
    ]
    await c.quiet()  # no answer: dhcpleasectl polls for Released
    c.close()


def test_a_token_that_cannot_be_forwarded_is_closed() -> None:
    mine, token = token_pair(4)
    assert not control.forward(None, ImsgType.MANAGE_IF, imsg.IfIndex(4).pack(), 0, token.detach())
    assert closed_by_frontend(mine)


async def test_log_verbose_and_reload_are_forwarded_and_acknowledged(rig: Rig) -> None:
    c = await connect(rig)
    c.send(ImsgType.CTL_LOG_VERBOSE, imsg.Verbose(1).pack())
    assert (await c.recv())[0] == ImsgType.CTL_END
    assert rig.backend.verbose == [1]
    assert [r for r, *_ in rig.backend.of(ImsgType.CTL_LOG_VERBOSE)] == ["main", "engine"]
    c.close()


async def test_reload_answer_goes_back_to_the_asker(rig: Rig) -> None:
    """The parent's verdict, routed by the client's id; none of our own until it comes."""
    a, b = await connect(rig), await connect(rig)
    a.send(ImsgType.CTL_RELOAD)
    b.send(ImsgType.CTL_RELOAD)
    await settle()
    asked = rig.backend.of(ImsgType.CTL_RELOAD)
    assert [role for role, _, _ in asked] == ["main", "main"]
    id_a, id_b = (peerid for _, _, peerid in asked)
    assert id_a != id_b and 0 not in (id_a, id_b)  # peerid 0 is SIGHUP's: nobody to answer
    await a.quiet()
    failed = imsg.ReloadResult(False, "/etc/dhcpleased.conf:3: syntax error")
    rig.ctl.sibling_reply(id_b, ImsgType.CTL_RELOAD_RESULT, failed.pack())
    rig.ctl.sibling_reply(id_a, ImsgType.CTL_RELOAD_RESULT, imsg.ReloadResult(True, "").pack())
    t, _, data = await b.recv()
    assert (t, imsg.ReloadResult.unpack(data)) == (ImsgType.CTL_RELOAD_RESULT, failed)
    t, _, data = await a.recv()
    assert imsg.ReloadResult.unpack(data).ok
    a.close()
    b.close()


async def test_reload_that_cannot_be_forwarded_is_answered_busy(rig: Rig) -> None:
    rig.backend.refuse = True
    c = await connect(rig)
    c.send(ImsgType.CTL_RELOAD)
    t, _, data = await c.recv()
    result = imsg.ReloadResult.unpack(data)
    assert t == ImsgType.CTL_RELOAD_RESULT and not result.ok and "busy" in result.message
    c.close()


async def test_procinfo_gathers_three_processes_then_ends(rig: Rig) -> None:
    c = await connect(rig)
    c.send(ImsgType.CTL_PROCINFO)
    t, _, data = await c.recv()
    assert (t, imsg.ProcInfo.unpack(data).name) == (ImsgType.CTL_PROCINFO, "frontend")
    asked = rig.backend.of(ImsgType.CTL_PROCINFO)
    assert [role for role, _, _ in asked] == ["main", "engine"]
    cid = asked[0][2]
    c.send(ImsgType.CTL_PROCINFO)  # a second one while the first is pending: ignored
    await settle()
    assert len(rig.backend.of(ImsgType.CTL_PROCINFO)) == 2
    engine = imsg.ProcInfo("engine", 12, 995, 995, 0, True, 2, 0, 0).pack()
    main = imsg.ProcInfo("main", 10, 0, 0, 0x3000, False, 0, 0, 0).pack()
    rig.ctl.procinfo_reply("engine", cid, engine)
    rig.ctl.procinfo_reply("engine", cid, engine)  # a duplicate is not relayed
    rig.ctl.procinfo_reply("main", cid, main)
    names = []
    for _ in range(2):
        t, _, data = await c.recv()
        assert t == ImsgType.CTL_PROCINFO
        names.append(imsg.ProcInfo.unpack(data).name)
    assert names == ["engine", "main"]
    assert (await c.recv())[0] == ImsgType.CTL_END
    await c.quiet()
    c.close()


async def test_emfile_pauses_accepting(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    class Full:
        def __init__(self, real: socket.socket) -> None:
            self.real = real

        def accept(self) -> Any:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    real = rig.ctl._sock
    monkeypatch.setattr(rig.ctl, "_sock", Full(real))
    monkeypatch.setattr(control, "ACCEPT_PAUSE", 0.2)
    pending = Client(rig.path)
    await pending.connect()  # queued in the backlog
    await settle()
    assert rig.ctl._paused is not None and not rig.ctl._listening
    monkeypatch.setattr(rig.ctl, "_sock", real)
    await asyncio.sleep(0.4)
    assert rig.ctl._listening
    await settle()
    await served(rig, pending)
    pending.close()
