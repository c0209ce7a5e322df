"""dhcpleasectl's commands judged by what they change, not by their exit status.

``log brief``/``log verbose``: debug lines of all three processes stop and come back;
``-p -j``: each process's report against ``/proc/PID/status`` and the kernel's Landlock
ABI; ``reload``: a changed configuration changes what the daemon does.
"""

from __future__ import annotations

import array
import json
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from dhcpleasectl.main import request_token
from dhcpleased import imsg, landlock
from dhcpleased.imsg import ImsgType
from tests.integration.lab import ORIGINAL_RESOLV_CONF, Lab
from tests.integration.test_ctl import ctl_socket, wait_socket
from tests.integration.test_daemon import children, comm, daemon_log, wait_leased
from tests.integration.test_faults import LIMIT, dns_proposed, dns_withdrawn

pytestmark = pytest.mark.integration


def request_for_index(lab: Lab, if_index: int) -> None:
    """CTL_SEND_REQUEST for an interface index that does not exist: the frontend passes
    it to the parent (MANAGE_IF), whose only answer is a debug line naming the index."""
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s,
        request_token(if_index) as token,
    ):
        s.connect(ctl_socket(lab))
        data = imsg.IfIndex(if_index).pack()
        header = struct.pack("=IHHII", ImsgType.CTL_SEND_REQUEST, 16 + len(data), 1, 0, 0)
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [token.fileno()]))]
        s.sendmsg([header + data], rights)  # with root's request token, as dhcpleasectl


def debug_lines(lab: Lab, daemon: subprocess.Popen[bytes], marker: int) -> dict[str, list[str]]:
    """Make each process log one debug line, wait until all of it is done, and return the
    triggered lines by process: the engine's state_transition (a reboot request, Bound
    again when dhcpleasectl returns), the frontend's "client connected", the parent's
    line about index ``marker`` (``-p`` afterwards: the parent has answered, in order)."""
    start = len(daemon_log(lab))
    r = lab.ctl("-w", "20", lab.ifname)
    assert r.returncode == 0, r.stderr
    request_for_index(lab, marker)
    assert lab.ctl("-p").returncode == 0
    text = daemon_log(lab)[start:]
    found: dict[str, list[str]] = {"main": [], "frontend": [], "engine": []}
    for line in text.splitlines():
        proc, _, msg = line.partition(": ")
        if (
            (proc == "engine" and "state_transition" in msg)
            or (proc == "frontend" and msg.startswith("control: client"))
            or (proc == "main" and f"index {marker}, which is gone" in msg)
        ):
            found[proc].append(msg)
    assert daemon.poll() is None, daemon_log(lab)
    return found


def test_log_brief_and_verbose_reach_all_three_processes() -> None:
    with Lab() as lab:
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        wait_leased(lab, daemon)
        wait_socket(lab, daemon)
        r = lab.ctl("log", "brief")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert debug_lines(lab, daemon, 9001) == {"main": [], "frontend": [], "engine": []}
        r = lab.ctl("log", "verbose")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        found = debug_lines(lab, daemon, 9002)
        assert all(found.values()), found
        assert "dl0: state_transition Bound -> Rebooting" in " ".join(found["engine"])


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_procinfo_matches_the_kernel() -> None:
    """Each process's uid, gid, capabilities, no_new_privs and seccomp in ``-p -j`` are
    what /proc/PID/status says of that very process; Landlock (which /proc does not show)
    is enforced at the kernel's ABI in all three."""
    with Lab() as lab:
        daemon = lab.start_daemon("-d", lab.ifname)
        wait_leased(lab, daemon)
        wait_socket(lab, daemon)
        kids = {comm(k).removeprefix("dhcp-"): k for k in children(daemon.pid)}
        pids = {"main": daemon.pid, **kids}
        r = lab.ctl("-j", "-p")
        assert r.returncode == 0, r.stderr
        reported = {p["name"]: p for p in json.loads(r.stdout)["processes"]}
        assert {name: p["pid"] for name, p in reported.items()} == pids
        abi = landlock.abi_version()
        for name, p in reported.items():
            st = status(pids[name])
            assert (p["uid"], p["gid"]) == (int(st["Uid"].split()[1]), int(st["Gid"].split()[1]))
            cap_eff = int(st["CapEff"], 16)
            assert int(p["cap_eff"], 16) == cap_eff, name
            assert len(p["capabilities"]) == bin(cap_eff).count("1"), name
            assert p["no_new_privs"] == (st["NoNewPrivs"] == "1"), name
            assert p["seccomp"] == {"0": "off", "1": "strict", "2": "filter"}[st["Seccomp"]]
            assert (p["landlock_abi"], p["landlock_status"]) == (abi, 1), name
        assert reported["main"]["capabilities"] == [
            "cap_net_bind_service", "cap_net_admin", "cap_net_raw",
        ]  # fmt: skip


def test_reload_through_dhcpleasectl_changes_behaviour() -> None:
    """``dhcpleasectl reload`` after the configuration gained ``ignore dns``: the DNS the
    lease brought is withdrawn (resolv.conf is the original again), the address stays."""
    with Lab() as lab:
        conf = lab.tmp / "dhcpleased.conf"
        conf.write_text(f"interface {lab.ifname} {{\n\tsend host name reload\n}}\n")
        daemon = lab.start_daemon("-d", "-f", str(conf), lab.ifname)
        addr = wait_leased(lab, daemon)
        lab.wait_for(lambda: dns_proposed(lab), LIMIT, what="DNS")
        wait_socket(lab, daemon)
        conf.write_text(f"interface {lab.ifname} {{\n\tsend host name reload\n\tignore dns\n}}\n")
        r = lab.ctl("reload")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        lab.wait_for(lambda: dns_withdrawn(lab), LIMIT, what="DNS withdrawn after reload")
        assert lab.resolv_conf.read_text() == ORIGINAL_RESOLV_CONF
        assert str(addr) in lab.addresses() and daemon.poll() is None
