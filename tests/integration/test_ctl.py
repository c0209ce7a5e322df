"""dhcpleasectl against the real three-process daemon in the lab.

Each test looks at both sides: what dhcpleasectl prints, and what the kernel, the daemon
and dnsmasq say (addresses, process liveness, the daemon's log).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from ipaddress import IPv4Interface
from typing import Any

import pytest

from tests.integration.lab import DHCP_USER, Lab
from tests.integration.test_daemon import children, daemon_log, wait_leased

pytestmark = pytest.mark.integration

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by _dhcp, unlike a venv under /root


def ctl_socket(lab: Lab) -> str:
    return str(lab.run_dir / "dhcpleased" / "dhcpleased.sock")  # /run/dhcpleased/... inside


def wait_socket(lab: Lab, daemon: subprocess.Popen[bytes]) -> None:
    def ready() -> bool:
        assert daemon.poll() is None, daemon_log(lab)
        return os.path.exists(ctl_socket(lab)) and "startup" in daemon_log(lab)

    lab.wait_for(ready, 15, what="control socket")


def test_report_json_procinfo_and_commands() -> None:
    with Lab() as lab:
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        addr = wait_leased(lab, daemon)
        lab.wait_for(lambda: lab.lease_file().exists(), 5)

        st = os.stat(ctl_socket(lab))
        assert stat.S_ISSOCK(st.st_mode)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, 0)

        # the original's report
        r = lab.ctl("-l", lab.ifname)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == f"{lab.ifname} [Bound]"
        assert lines[1] == f"\tinet {addr.ip} netmask {addr.netmask}"
        assert lines[2] == f"\tdefault gateway {lab.server_ip}"
        assert lines[3] == "\tnameservers " + " ".join(lab.dns)
        assert re.fullmatch(r"\tlease (\d+ seconds?|[12] minutes?)", lines[4]), lines[4]
        assert lines[5] == f"\tdhcp server {lab.server_ip}"
        assert len(lines) == 6

        # the same facts as JSON
        r = lab.ctl("-j", "-l", lab.ifname)
        assert r.returncode == 0, r.stderr
        obj = json.loads(r.stdout)
        assert obj["version"] == 1
        assert (obj["ifname"], obj["state"], obj["address"]) == (lab.ifname, "Bound", str(addr.ip))
        assert IPv4Interface(f"{obj['address']}/{obj['prefixlen']}") == addr
        assert obj["routes"] == [{"dst": "0.0.0.0/0", "gateway": str(lab.server_ip)}]
        assert obj["nameservers"] == list(lab.dns)
        assert (obj["domain"], obj["search"]) == (lab.domain, list(lab.search))
        assert obj["server"] == str(lab.server_ip)
        assert obj["lease_time"] == lab.lease_time
        assert 0 < obj["lease_expires_in"] <= lab.lease_time
        assert 0 < obj["renewal_time"] < obj["rebinding_time"] < obj["lease_time"]

        # without -l: a new request, then the report once Bound again
        requests = lab.dnsmasq_log_text().count("DHCPREQUEST")
        r = lab.ctl("-w", "20", lab.ifname)
        assert r.returncode == 0, r.stderr
        report = [line for line in r.stdout.splitlines() if line.strip(".")]
        assert report[0] == f"{lab.ifname} [Bound]", r.stdout
        assert lab.dnsmasq_log_text().count("DHCPREQUEST") > requests

        # -p: what each process says of itself
        r = lab.ctl("-j", "-p")
        assert r.returncode == 0, r.stderr
        procs = {p["name"]: p for p in json.loads(r.stdout)["processes"]}
        assert list(procs) == ["main", "frontend", "engine"]
        assert procs["main"]["pid"] == daemon.pid
        assert {procs["frontend"]["pid"], procs["engine"]["pid"]} == set(children(daemon.pid))
        dhcp = pwd.getpwnam(DHCP_USER)
        assert (procs["main"]["uid"], procs["main"]["gid"]) == (0, 0)
        for name in ("frontend", "engine"):
            p = procs[name]
            assert (p["uid"], p["gid"]) == (dhcp.pw_uid, dhcp.pw_gid), p
            assert p["no_new_privs"] is True
            assert p["capabilities"] == []
        text = lab.ctl("-p")
        assert text.returncode == 0 and text.stdout.split()[:8] == [
            "process", "pid", "uid", "gid", "no_new_privs", "seccomp", "landlock", "capabilities",
        ]  # fmt: skip

        # the 2021 command syntax
        r = lab.ctl("log", "brief")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        r = lab.ctl("reload")
        assert r.returncode == 0, r.stderr
        lab.wait_for(lambda: "configuration reloaded" in daemon_log(lab), 10)
        assert daemon.poll() is None


def test_non_root_user_is_refused_by_the_socket_permissions() -> None:
    with Lab() as lab:
        daemon = lab.start_daemon("-d", lab.ifname)
        wait_leased(lab, daemon)
        wait_socket(lab, daemon)
        dhcp = pwd.getpwnam(DHCP_USER)
        as_dhcp = ["setpriv", f"--reuid={dhcp.pw_uid}", f"--regid={dhcp.pw_gid}", "--clear-groups"]
        r = lab.run_in_client_wait(
            [*as_dhcp, SYSTEM_PYTHON, "-m", "dhcpleasectl", "-l", lab.ifname]
        )
        assert r.returncode == 1
        assert r.stdout == ""
        assert r.stderr.strip() == (
            "dhcpleasectl: cannot connect to /run/dhcpleased/dhcpleased.sock: Permission denied"
        )
        assert daemon.poll() is None


def garbage_frames() -> list[bytes]:
    hdr = struct.Struct("=IHHII")
    return [
        b"",  # an empty datagram
        b"\x01",
        hdr.pack(2, 16, 0, 0, 0),  # CTL_SHOW_INTERFACE_INFO without its index
        hdr.pack(2, 16 + 4000, 0, 0, 0) + b"\xff" * 4000,  # oversized for its type
        hdr.pack(2, 99, 0, 0, 0) + b"\0" * 4,  # length field lies
        hdr.pack(9999, 16, 0, 0, 0),  # unknown type
        hdr.pack(25, 16 + 100, 0, 0, 0) + os.urandom(100),  # a daemon-only type
        hdr.pack(3, 20, 0, 0, 0) + struct.pack("=I", 0xFFFFFFFF),  # request: no such index
        hdr.pack(1, 20, 0, 0, 0) + struct.pack("=i", -5),  # negative verbosity
        hdr.pack(4, 16, 0x80, 0, 0),  # unknown flags
        os.urandom(16384 + 50),  # larger than any imsg
    ]


def test_garbage_on_the_socket_leaves_daemon_and_lease_alone() -> None:
    with Lab() as lab:
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        addr = wait_leased(lab, daemon)
        wait_socket(lab, daemon)
        before = lab.ctl("-j", "-l", lab.ifname)
        frames = garbage_frames() * 20 + [os.urandom(n) for n in range(1, 400, 7)]
        for frame in frames:  # each on its own connection: a broken one is closed
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                s.connect(ctl_socket(lab))
                try:
                    s.send(frame)
                except OSError:
                    pass
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:  # all on one too
            s.connect(ctl_socket(lab))
            s.settimeout(5)
            for frame in garbage_frames()[2:-1]:  # ignored ones first, then a broken one
                try:
                    s.send(frame)
                except OSError:
                    break
        # answered after everything sent before it: the garbage has been dealt with
        after = lab.ctl("-j", "-l", lab.ifname)
        assert after.returncode == 0, after.stderr
        assert daemon.poll() is None, daemon_log(lab)
        assert "fatal" not in daemon_log(lab)
        old, new = json.loads(before.stdout), json.loads(after.stdout)
        assert new["state"] == "Bound"
        assert (new["address"], new["requested_at"]) == (old["address"], old["requested_at"])
        assert lab.addresses() == [str(addr)]


def read_lines(p: subprocess.Popen[bytes], until: Any, timeout: float) -> list[dict[str, Any]]:
    """JSON lines from p's stdout until ``until(events)`` holds."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    buf, events = b"", []
    deadline = time.monotonic() + timeout
    while not until(events):
        left = deadline - time.monotonic()
        if left <= 0 or p.poll() is not None:
            raise AssertionError(f"monitor stopped or timed out; saw {events}")
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            events.extend(json.loads(line) for line in lines if line)
    return events


def test_unmanaged_interface_is_taken_on_and_monitor_sees_it_bind() -> None:
    """dhcpleasectl IF on an interface the daemon ignores: it manages it from then on."""
    with Lab(start_dnsmasq=False) as lab:
        daemon = lab.start_daemon("-d", "-v")  # no interface, empty config: manages none
        wait_socket(lab, daemon)
        r = lab.ctl("-l", lab.ifname)
        assert r.returncode == 1
        assert r.stderr.strip() == f"dhcpleasectl: dhcpleased does not manage {lab.ifname}"

        mon = lab.run_in_client(
            [sys.executable, "-m", "dhcpleasectl", "-m", lab.ifname], stdout=subprocess.PIPE
        )
        lab.wait_for(lambda: "monitors state changes" in daemon_log(lab), 15)
        lab.start_dnsmasq()
        r = lab.ctl("-w", "30", lab.ifname, timeout=60)
        assert r.returncode == 0, (r.stdout, r.stderr, daemon_log(lab))
        assert f"{lab.ifname} [Bound]" in r.stdout
        assert f"managing {lab.ifname}, as dhcpleasectl asked" in daemon_log(lab)

        def bound(evs: list[dict[str, Any]]) -> bool:
            return any(e["new_state"] == "Bound" for e in evs)

        events = read_lines(mon, bound, 30)
        steps = [(e["old_state"], e["new_state"]) for e in events]
        assert steps[-2:] == [("Init", "Requesting"), ("Requesting", "Bound")], steps
        assert events[-1]["reason"] == "ack"
        assert events[-1]["interface"] == lab.ifname
        assert events[-1]["address"] == str(IPv4Interface(lab.addresses()[0]).ip)
        assert all(e["version"] == 1 for e in events)
        mon.send_signal(signal.SIGINT)
        mon.wait(10)
        assert daemon.poll() is None


def test_wait_runs_out_against_a_silent_server() -> None:
    with Lab(start_dnsmasq=False) as lab:
        r = lab.ctl("-l", lab.ifname)
        assert r.returncode == 1
        assert r.stderr.strip() == (
            "dhcpleasectl: cannot connect to /run/dhcpleased/dhcpleased.sock:"
            " No such file or directory"
        )
        daemon = lab.start_daemon("-d", lab.ifname)
        wait_socket(lab, daemon)
        r = lab.ctl("-w", "2", lab.ifname)
        assert r.returncode == 1
        assert re.fullmatch(rf"\.+\n{lab.ifname} \[(Init|Down)\]\n", r.stdout), r.stdout
        r = lab.ctl("-j", "-w", "1", lab.ifname)
        assert r.returncode == 1
        assert json.loads(r.stdout)["address"] is None
        r = lab.ctl("-l", lab.ifname)  # only showing is not waiting: success
        assert r.returncode == 0
        assert daemon.poll() is None
