"""The daemon's life as an init system sees it: detached start, its log, its stop.

* Without ``-d`` it detaches (double fork, new session, no terminal, stdio on /dev/null,
  cwd /) and all three processes log to syslog; a test socket stands in for /dev/log in
  the daemon's mount namespace only (an overlay on /dev there), so the host's /dev and
  syslog are never touched.  The lock still refuses a second instance.
* Under ``-d`` with ``$JOURNAL_STREAM`` set, every stderr line carries its sd-daemon
  priority, the lines of a traceback included.
* SIGTERM and SIGINT end it with status 0 and leave address, routes, resolv.conf and the
  lease file as they were, with no DHCPRELEASE: dnsmasq's log shows none, and shows the
  one this test sends afterwards, so its silence means something.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.inject import inject, require_gdb
from tests.integration.lab import IP, Lab
from tests.integration.test_daemon import alive, children, daemon_log, wait_leased

pytestmark = pytest.mark.integration

LIMIT = 20.0

# Runs as: sh -c SCRIPT sh UPPER WORK SOCKET argv...  (inside the lab's mount namespace)
WITH_DEV_LOG = """set -e
mount -t overlay dlt-dev -o "lowerdir=/dev,upperdir=$1,workdir=$2" /dev
ln -s "$3" /dev/log
shift 3
exec "$@"
"""


class Syslog:
    """An AF_UNIX datagram socket that the daemon reaches as /dev/log; one line a datagram."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.lines: list[str] = []

    def read(self) -> list[str]:
        while True:
            try:
                self.lines.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.lines

    def find(self, pattern: str) -> re.Match[str] | None:
        return next(filter(None, (re.fullmatch(pattern, line) for line in self.read())), None)


@contextmanager
def syslog(lab: Lab) -> Iterator[Syslog]:
    s = Syslog(lab.tmp / "dev-log.sock")
    try:
        yield s
    finally:
        s.sock.close()


def with_dev_log(lab: Lab, s: Syslog, argv: list[str]) -> list[str]:
    for d in ("dev-upper", "dev-work"):
        (lab.tmp / d).mkdir(exist_ok=True)
    dirs = [str(lab.tmp / "dev-upper"), str(lab.tmp / "dev-work")]
    return ["sh", "-c", WITH_DEV_LOG, "sh", *dirs, str(s.path), *argv]


def proc_stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def netns_daemons(lab: Lab) -> list[int]:
    """Parents of dhcpleased in the lab's client netns (the children have their own comm)."""
    r = subprocess.run(
        [IP, "netns", "pids", lab.cli_ns], capture_output=True, text=True, check=False
    )
    found = []
    for pid in map(int, r.stdout.split()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"dhcpleased"]:
            found.append(pid)
    return found


def test_detached_mode_daemonizes_logs_to_syslog_and_holds_the_lock(daemon_lab: Lab) -> None:
    lab = daemon_lab
    with syslog(lab) as s:
        argv = [sys.executable, "-m", "dhcpleased", "-v", lab.ifname]
        launcher = lab.run_in_client(
            with_dev_log(lab, s, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = launcher.communicate(timeout=LIMIT)
        assert (launcher.returncode, out, err) == (0, b"", b"")  # back at once, nothing said

        # one left: the double fork's middle process may still be on its way out
        [pid] = lab.wait_for(
            lambda: d if len(d := netns_daemons(lab)) == 1 else None,
            LIMIT,
            what="the detached daemon, alone",
        )
        assert pid != launcher.pid
        st = proc_stat(pid)
        ppid, pgrp, session, tty = int(st[1]), int(st[2]), int(st[3]), int(st[4])
        assert tty == 0 and session not in (pid, launcher.pid) and pgrp == session
        assert ppid != launcher.pid
        for fd in (0, 1, 2):
            assert Path(f"/proc/{pid}/fd/{fd}").readlink() == Path("/dev/null")
        assert Path(f"/proc/{pid}/cwd").readlink() == Path("/")

        stamp = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
        lab.wait_for(lambda: s.find(rf"<30>{stamp} dhcpleased\[{pid}\]: main: startup"), LIMIT)
        addr = lab.wait_for(lambda: lab.addresses() and lab.addresses()[0], LIMIT, what="lease")
        ip = addr.split("/")[0]
        lab.wait_for(lambda: s.find(rf"<30>.* dhcpleased\[{pid}\]: main: adding {ip} to .*"), LIMIT)
        kids = children(pid)
        assert len(kids) == 2
        for kid in kids:  # each child speaks for itself, at debug priority (-v)
            pattern = rf"<31>{stamp} dhcpleased\[{kid}\]: (engine|frontend): sandbox: chroot yes.*"
            lab.wait_for(lambda p=pattern: s.find(p), LIMIT, what=f"child {kid} in syslog")

        second = lab.run_in_client_wait([sys.executable, "-m", "dhcpleased", "-d", lab.ifname])
        assert second.returncode == 1 and "already running" in second.stderr
        assert alive(pid)

        os.kill(pid, signal.SIGTERM)  # by PID, as an init script would
        for p in (pid, *kids):
            lab.wait_for(lambda p=p: not alive(p), LIMIT, what=f"{p} gone")
        assert s.find(rf"<30>{stamp} dhcpleased\[{pid}\]: main: terminating")
        assert not any("fatal" in line for line in s.read()), s.read()


def test_journald_priority_prefixes(daemon_lab: Lab) -> None:
    """Info, debug, warning and a crash's traceback: each line with its own <N>."""
    lab = daemon_lab
    require_gdb()
    subprocess.run(["mkfifo", str(lab.lease_file())], check=True)  # a warning at start-up
    out = open(lab.tmp / "dhcpleased.log", "ab")  # noqa: SIM115 - closed below
    try:
        daemon = lab.run_in_client(
            [sys.executable, "-m", "dhcpleased", "-d", "-v", lab.ifname],
            env={"JOURNAL_STREAM": "8:4242"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_leased(lab, daemon)
        lab.wait_for(lambda: "<6>main: adding nameservers" in daemon_log(lab), LIMIT)
        engine = next(
            k for k in children(daemon.pid) if "engine" in Path(f"/proc/{k}/comm").read_text()
        )
        r = inject(engine, "import asyncio\nasyncio.get_running_loop().call_soon(lambda: 1 / 0)")
        assert r.alive
        assert daemon.wait(LIMIT) == 1
    finally:
        out.close()
    lines = daemon_log(lab).splitlines()
    bad = [line for line in lines if not re.match(r"<[0-7]>(main|engine|frontend): ", line)]
    assert not bad, lines
    expect = {
        "<6>main: startup",
        "<7>engine: sandbox: chroot yes",
        "<7>frontend: sandbox: chroot yes",
        "<4>main: lease file /var/lib/dhcpleased/",
        "<2>engine: fatal in engine: Exception in callback <lambda>()",
        "<2>engine: Traceback (most recent call last):",
        '<2>engine:   File "<inject>", line 2, in <lambda>',
        "<2>engine: ZeroDivisionError: division by zero",
        "<2>main: fatal in main: engine exited with status 1",
    }
    for start in expect:
        assert any(line.startswith(start) for line in lines), (start, lines)


def kernel_state(lab: Lab) -> tuple[Any, ...]:
    routes = sorted((r.get("dst"), r.get("gateway"), r.get("protocol")) for r in lab.routes())
    return lab.addresses(), routes, lab.resolv_conf.read_text(), lab.lease_file().read_text()


RELEASE = r"""
import socket, sys
from scapy.layers.dhcp import BOOTP, DHCP
ip, mac, server = sys.argv[1:4]
chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
msg = BOOTP(op=1, xid=0x5EED, ciaddr=ip, chaddr=chaddr) / DHCP(
    options=[("message-type", "release"), ("server_id", server), "end"]
)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, 68))
s.sendto(bytes(msg), (server, 67))
"""


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_keeps_address_routes_dns_and_sends_no_release(daemon_lab: Lab, signo: int) -> None:
    lab = daemon_lab
    daemon = lab.start_daemon("-d", lab.ifname)
    addr = wait_leased(lab, daemon)
    lab.wait_for(
        lambda: (
            any(r.get("protocol") == "dhcp" for r in lab.routes())
            and f"nameserver {lab.dns[0]}" in lab.resolv_conf.read_text()
            and lab.lease_file().exists()
        ),
        LIMIT,
        what="routes, DNS and lease file",
    )
    before = kernel_state(lab)
    kids = children(daemon.pid)
    daemon.send_signal(signo)
    assert daemon.wait(LIMIT) == 0, daemon_log(lab)
    for kid in kids:
        lab.wait_for(lambda kid=kid: not alive(kid), LIMIT, what=f"child {kid} gone")
    assert kernel_state(lab) == before
    assert "terminating" in daemon_log(lab)
    assert "DHCPRELEASE" not in lab.dnsmasq_log_text()
    # dnsmasq would have told: a release sent now does show up
    r = lab.python_in(lab.cli_ns, RELEASE, str(addr.ip), lab.mac(), str(lab.server_ip))
    assert r.returncode == 0, r.stderr
    lab.wait_for(lambda: "DHCPRELEASE" in lab.dnsmasq_log_text(), LIMIT, what="the oracle")
