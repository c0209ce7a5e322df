"""systemd's side of Type=notify: the real daemon, its notify socket, the order of events.

The test binds the datagram socket systemd would listen on, starts the daemon in the lab
with ``NOTIFY_SOCKET`` pointing at it, and reads what arrives: READY=1 once the three
processes are up (no lease needed), RELOADING=1 then READY=1 around SIGHUP, STOPPING=1
on SIGTERM, and STATUS= naming the address once there is one.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.lab import Lab, require_dhcp_user

pytestmark = pytest.mark.integration

WAIT = 30.0  # generous: a shared 2-core machine


class NotifySocket:
    """The listening end systemd owns; every datagram is kept, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self, pred: Callable[[dict[str, str]], bool], daemon: subprocess.Popen[bytes], log: Path
    ) -> dict[str, str]:
        """The next message matching pred (earlier non-matching ones are kept too)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            self.sock.settimeout(0.5)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                if daemon.poll() is not None:
                    break
                continue
            msg = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append(msg)
            if pred(msg):
                return msg
        raise AssertionError(
            f"no matching notification; got {self.messages}\n"
            f"daemon {daemon.poll()}:\n{log.read_text(errors='replace')}"
        )

    def close(self) -> None:
        self.sock.close()


def start(lab: Lab, notify: NotifySocket, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """start_daemon with NOTIFY_SOCKET in the environment, as systemd would set it."""
    require_dhcp_user()
    log = lab.tmp / "dhcpleased.log"
    out = open(log, "ab")  # noqa: SIM115 - the lab's process owns it until teardown
    try:
        p = lab.run_in_client(
            [sys.executable, "-m", "dhcpleased", *args],
            env={"NOTIFY_SOCKET": str(notify.path)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()
    return p, log


def kinds(messages: list[dict[str, str]]) -> list[str]:
    """The lifecycle events in order (STATUS-only messages left out)."""
    return [k for m in messages for k in ("READY", "RELOADING", "STOPPING") if k in m]


def test_ready_reload_stopping_in_order_without_a_server() -> None:
    """READY does not wait for a lease: there is no DHCP server at all here."""
    with Lab(start_dnsmasq=False) as lab:
        notify = NotifySocket(lab.tmp / "notify")
        try:
            daemon, log = start(lab, notify, "-d", lab.ifname)
            ready = notify.wait_for(lambda m: "READY" in m, daemon, log)
            assert ready["READY"] == "1"
            assert ready["STATUS"] == "no lease yet"

            daemon.send_signal(signal.SIGHUP)
            reloading = notify.wait_for(lambda m: "RELOADING" in m, daemon, log)
            assert reloading["RELOADING"] == "1"
            assert int(reloading["MONOTONIC_USEC"]) > 0
            notify.wait_for(lambda m: "READY" in m, daemon, log)

            daemon.send_signal(signal.SIGTERM)
            notify.wait_for(lambda m: "STOPPING" in m, daemon, log)
            assert daemon.wait(WAIT) == 0
            assert kinds(notify.messages) == ["READY", "RELOADING", "READY", "STOPPING"]
        finally:
            notify.close()


def test_status_names_the_bound_address(daemon_lab: Lab) -> None:
    lab = daemon_lab
    notify = NotifySocket(lab.tmp / "notify")
    try:
        daemon, log = start(lab, notify, "-d", lab.ifname)
        notify.wait_for(lambda m: "READY" in m, daemon, log)
        status = notify.wait_for(lambda m: m.get("STATUS", "").startswith("dl0: "), daemon, log)
        assert status["STATUS"] == f"{lab.ifname}: {lab.addresses()[0]}"
        daemon.send_signal(signal.SIGTERM)
        notify.wait_for(lambda m: "STOPPING" in m, daemon, log)
        assert daemon.wait(WAIT) == 0
        assert kinds(notify.messages) == ["READY", "STOPPING"]
    finally:
        notify.close()


def test_children_do_not_see_notify_socket(daemon_lab: Lab) -> None:
    """Only the parent may speak for the service (NotifyAccess=main in the unit)."""
    lab = daemon_lab
    notify = NotifySocket(lab.tmp / "notify")
    try:
        daemon, log = start(lab, notify, "-d", lab.ifname)
        notify.wait_for(lambda m: "READY" in m, daemon, log)
        kids = Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children").read_text().split()
        assert len(kids) == 2
        for pid in kids:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert not any(e.startswith(b"NOTIFY_SOCKET=") for e in env)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(WAIT) == 0
    finally:
        notify.close()
