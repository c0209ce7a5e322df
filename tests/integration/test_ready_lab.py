"""READY=1 from the real daemon only once its three sandboxes are up (issue 16, item 3).

The parent's sandbox is made to fail for real, with no hook in the daemon: started with
CAP_NET_BIND_SERVICE missing from its bounding set (``setpriv --bounding-set``), the
parent cannot keep the capabilities it needs (sandbox.PARENT_CAPS) and its sandbox step
fails, while the children, which keep no capability, lock themselves down as usual and
report SANDBOX_UP.  The notify socket is a datagram socket the test binds, as systemd's.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.lab import Lab, require_dhcp_user
from tests.integration.test_daemon import daemon_log

pytestmark = pytest.mark.integration

SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
LIMIT = 20.0


def notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(LIMIT)
    return sock


def start(lab: Lab, notify: Path, *, drop: str | None) -> tuple[subprocess.Popen[bytes], Path]:
    require_dhcp_user()
    log = lab.tmp / f"dhcpleased-{drop or 'all'}.log"
    out = open(log, "ab")  # noqa: SIM115 - closed by the caller through the lab
    lab._logs.append(out)
    argv = [sys.executable, "-m", "dhcpleased", "-d", "-v", lab.ifname]
    if drop is not None:
        argv = [SETPRIV, "--bounding-set", f"-{drop}", *argv]
    daemon = lab.run_in_client(argv, env={"NOTIFY_SOCKET": str(notify)}, stdout=out, stderr=out)
    return daemon, log


def test_ready_comes_once_all_three_sandboxes_are_up(tmp_path: Path) -> None:
    """The control: the same start with every capability reports READY=1."""
    with Lab() as lab:
        notify = notify_socket(tmp_path / "notify")
        daemon, _ = start(lab, tmp_path / "notify", drop=None)
        first = notify.recv(4096).decode()
        assert first.startswith("READY=1\n"), first
        assert daemon.poll() is None, daemon_log(lab)


def test_a_parent_whose_sandbox_fails_never_reports_ready(tmp_path: Path) -> None:
    with Lab() as lab:
        notify = notify_socket(tmp_path / "notify")
        daemon, log = start(lab, tmp_path / "notify", drop="net_bind_service")
        assert daemon.wait(LIMIT) == 1, log.read_text()
        text = log.read_text()
        assert "fatal in main: sandbox: capabilities" in text, text
        # the children did lock themselves down: only the parent's step failed
        for role in ("engine", "frontend"):
            assert f"{role}: sandbox: chroot yes" in text, text
        notify.setblocking(False)
        said = []
        while True:
            try:
                said.append(notify.recv(4096).decode())
            except BlockingIOError:
                break
        assert not any("READY=1" in s for s in said), said
