"""sd_notify without libsystemd: what lands on the socket systemd would be listening on."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhcpleased.sdnotify import Notifier


def listener(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def fields(s: socket.socket) -> dict[str, str]:
    data = s.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    address = str(tmp_path / "notify")
    s = listener(address)
    yield address, s
    s.close()


def test_path_socket_ready_status_stopping(path_socket: tuple[str, socket.socket]) -> None:
    address, s = path_socket
    n = Notifier(address)
    assert n.ready("no lease yet")
    assert fields(s) == {"READY": "1", "STATUS": "no lease yet"}
    assert n.status("dl0: 10.0.0.5/24")
    assert fields(s) == {"STATUS": "dl0: 10.0.0.5/24"}
    assert n.stopping()
    assert fields(s) == {"STOPPING": "1"}
    n.close()
    assert not n.ready()


def test_reloading_carries_monotonic_usec(path_socket: tuple[str, socket.socket]) -> None:
    address, s = path_socket
    n = Notifier(address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    got = fields(s)
    assert got["RELOADING"] == "1"
    assert before <= int(got["MONOTONIC_USEC"]) <= after
    n.close()


def test_abstract_socket() -> None:
    name = f"dhcpleased-test-{secrets.token_hex(6)}"
    s = listener("\0" + name)
    try:
        n = Notifier("@" + name)
        assert n.ready()
        assert fields(s) == {"READY": "1"}
        n.close()
    finally:
        s.close()


def test_environment_is_the_default(
    path_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, s = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    n = Notifier()
    assert n.stopping()
    assert fields(s) == {"STOPPING": "1"}
    n.close()


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_noop_without_a_usable_socket(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    n = Notifier()
    assert n.sock is None
    assert not n.ready()
    assert not n.reloading()


def test_missing_socket_is_not_fatal(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "nobody-listens"))
    assert n.sock is None
    assert not n.ready()


def test_listener_gone_later_is_not_fatal(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    s = listener(address)
    n = Notifier(address)
    s.close()
    os.unlink(address)
    assert not n.ready()  # ECONNREFUSED: dropped, the daemon goes on
    n.close()


def test_socket_is_close_on_exec(path_socket: tuple[str, socket.socket]) -> None:
    """The children are re-executed: they must not inherit the parent's notify socket."""
    address, _ = path_socket
    n = Notifier(address)
    assert n.sock is not None
    assert not os.get_inheritable(n.sock.fileno())
    n.close()
