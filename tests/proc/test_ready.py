"""READY=1 waits for all three sandboxes: the parent's own, and each child's SANDBOX_UP.

The parent's dispatch over socketpairs, its notifications read from the datagram socket
systemd would own.  The real processes under systemd: tests/system/test_systemd.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from dhcpleased import main
from dhcpleased.imsg import ImsgType
from dhcpleased.ipc import Imsg
from dhcpleased.parse import Config
from tests.proc.test_main import FakeKRoute, FakeResolver


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    yield sock
    sock.close()


def parent() -> main.Main:
    m = main.Main(
        opts=main.Options(),
        conf=Config(),
        kroute=FakeKRoute(),  # type: ignore[arg-type]
        resolver=FakeResolver(),  # type: ignore[arg-type]
        load_config=Config,
        open_bpfsock=lambda i: socket.socket(),
        open_bcastsock=lambda i: socket.socket(),
        open_udpsock=lambda i, a, s: socket.socket(),
        open_routesock=socket.socket,
    )
    for role in ("frontend", "engine"):
        m.children[role] = SimpleNamespace(channel=None)  # type: ignore[assignment]
    return m


def up(m: main.Main, role: str, data: bytes = b"") -> None:
    m.dispatch(role, Imsg(ImsgType.SANDBOX_UP, 0, 0, data, None))


def sent(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.mark.parametrize(
    "order",
    [
        ("main", "frontend", "engine"),
        ("frontend", "engine", "main"),
        ("engine", "main", "frontend"),
    ],
)
async def test_ready_only_once_all_three_are_up(
    notify: socket.socket, order: tuple[str, ...]
) -> None:
    m = parent()
    for i, role in enumerate(order):
        assert sent(notify) == [], f"READY before {order[i:]}"
        if role == "main":
            m.sandbox_up("main")  # what run() does once enter_parent() returned
        else:
            up(m, role)
    assert sent(notify) == ["READY=1\nSTATUS=no lease yet"]
    assert not m.done.done()


@pytest.mark.parametrize(
    "first, second, data",
    [("engine", "engine", b""), ("frontend", "frontend", b""), ("engine", None, b"\0")],
)
async def test_a_second_report_or_a_payload_is_fatal(
    notify: socket.socket, first: str, second: str | None, data: bytes
) -> None:
    m = parent()
    m.sandbox_up("main")
    up(m, first, data)
    if second is not None:
        up(m, second)
    assert m.done.done() and m.done.result() == 1
    up(m, "frontend" if first == "engine" else "engine")
    assert sent(notify) == []  # a dying daemon never says READY


async def test_a_parent_that_failed_never_says_ready(notify: socket.socket) -> None:
    m = parent()
    m.fail("sandbox: refused")  # run() when enter_parent() raised
    up(m, "frontend")
    up(m, "engine")
    assert sent(notify) == []
