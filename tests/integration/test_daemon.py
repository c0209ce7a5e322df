"""The three-process daemon against dnsmasq, checked from the kernel's side.

Each test builds its own lab (two network namespaces, a veth pair, dnsmasq) and looks at
what the kernel and the files say: addresses, routes with their protocol, resolv.conf,
the lease file; never at the daemon's own word alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from tests.integration.lab import Lab

pytestmark = pytest.mark.integration

BOUND_TIMEOUT = 20.0


def leased(lab: Lab) -> IPv4Interface | None:
    for cidr in lab.addresses():
        iface = IPv4Interface(cidr)
        if lab.range_start <= iface.ip <= lab.range_end:
            return iface
    return None


def wait_leased(lab: Lab, daemon: subprocess.Popen[bytes]) -> IPv4Interface:
    def check() -> IPv4Interface | None:
        if daemon.poll() is not None:
            raise AssertionError(f"daemon exited {daemon.returncode}:\n{daemon_log(lab)}")
        return leased(lab)

    try:
        return lab.wait_for(check, BOUND_TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"no lease:\n{daemon_log(lab)}\n{lab.dnsmasq_log_text()}") from None


def daemon_log(lab: Lab, name: str = "dhcpleased.log") -> str:
    path = lab.tmp / name
    return path.read_text(errors="replace") if path.exists() else ""


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(x) for x in path.read_text().split()]
    except OSError:
        return []


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_lease_routes_dns_and_lease_file() -> None:
    """DORA against dnsmasq: address, default route (proto dhcp), DNS, lease file."""
    with Lab() as lab:
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        addr = wait_leased(lab, daemon)
        assert addr.network == lab.subnet

        def default_route() -> dict[str, object] | None:
            return next((r for r in lab.routes() if r.get("dst") == "default"), None)

        route = lab.wait_for(default_route, 5)
        assert route["gateway"] == str(lab.server_ip)
        assert route["protocol"] == "dhcp"
        assert route["dev"] == lab.ifname

        text = lab.wait_for(
            lambda: (
                lab.resolv_conf.exists()
                and "nameserver" in lab.resolv_conf.read_text()
                and lab.resolv_conf.read_text()
            ),
            5,
        )
        for ns in lab.dns:
            assert f"nameserver {ns}" in text
        assert "search" in text
        for domain in lab.search:
            assert domain in text

        lease = lab.wait_for(lambda: lab.lease_file().exists() and lab.lease_file().read_text(), 5)
        assert lease.splitlines()[0] == "version: 2"
        assert f"ip: {addr.ip}" in lease.splitlines()
        assert oct(lab.lease_file().stat().st_mode & 0o777) == oct(0o644)

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        # the original leaves address, routes and DNS in place on exit
        assert leased(lab) == addr
        assert "terminating" in daemon_log(lab)


def test_classless_routes_override_routers() -> None:
    """RFC 3442: with option 121 the routers option is ignored; routes are proto dhcp."""
    lab = Lab(start_dnsmasq=False)
    gw = str(lab.server_ip + 1)  # option 3 still names .1: a route via .2 proves 121 won
    lab.classless_routes = (("198.51.100.0/24", gw), ("0.0.0.0/0", gw))
    with lab:
        lab.start_dnsmasq()
        _check_classless(lab, gw)


def _check_classless(lab: Lab, gw: str) -> None:
    daemon = lab.start_daemon("-d", lab.ifname)
    wait_leased(lab, daemon)

    def both() -> list[dict[str, object]] | None:
        found = [r for r in lab.routes() if r.get("protocol") == "dhcp"]
        dsts = {r["dst"] for r in found}
        return found if {"198.51.100.0/24", "default"} <= dsts else None

    found = lab.wait_for(both, 5)
    for r in found:
        assert r["gateway"] == gw, found
    assert not any(r.get("gateway") == str(lab.server_ip) for r in lab.routes())


def test_nak_restarts_discovery() -> None:
    """A remembered address on another subnet is NAKed; the daemon discovers a new one."""
    with Lab() as lab:
        lab.lease_file().write_text(
            "version: 2\nip: 10.99.0.5\nnext-server: \nfilename: \nhost-name: \ndomain-name: \n"
        )
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        addr = wait_leased(lab, daemon)
        assert addr.ip != IPv4Address("10.99.0.5")
        log = lab.dnsmasq_log_text()
        assert "DHCPNAK" in log
        assert "DHCPDISCOVER" in log
        lab.wait_for(lambda: f"ip: {addr.ip}" in lab.lease_file().read_text(), 5)


def test_init_reboot_from_lease_file() -> None:
    """Restarted with a valid lease file: INIT-REBOOT gets the same address, no DISCOVER."""
    with Lab() as lab:
        daemon = lab.start_daemon("-d", lab.ifname)
        addr = wait_leased(lab, daemon)
        lab.wait_for(lambda: f"ip: {addr.ip}" in lab.lease_file().read_text(), 5)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        discovers = lab.dnsmasq_log_text().count("DHCPDISCOVER")
        # drop the address so that a new lease is visible as it comes back
        lab.exec_in(lab.cli_ns, ["ip", "addr", "flush", "dev", lab.ifname])
        daemon = lab.start_daemon("-d", lab.ifname, log="second.log")
        assert wait_leased(lab, daemon) == addr
        assert lab.dnsmasq_log_text().count("DHCPDISCOVER") == discovers


def test_killed_child_ends_daemon_without_orphans() -> None:
    with Lab() as lab:
        daemon = lab.start_daemon("-d", lab.ifname)
        wait_leased(lab, daemon)
        kids = lab.wait_for(lambda: len(children(daemon.pid)) == 2 and children(daemon.pid), 5)
        names = {comm(k): k for k in kids}
        assert set(names) == {"dhcp-engine", "dhcp-frontend"}
        os.kill(names["dhcp-engine"], signal.SIGKILL)
        assert daemon.wait(10) == 1
        lab.wait_for(lambda: not alive(names["dhcp-frontend"]), 5)
        fatal = [line for line in daemon_log(lab).splitlines() if "fatal" in line]
        assert fatal == ["main: fatal in main: engine terminated by signal 9"]


def test_second_instance_refused() -> None:
    with Lab() as lab:
        daemon = lab.start_daemon("-d", lab.ifname)
        wait_leased(lab, daemon)
        second = lab.run_in_client_wait([sys.executable, "-m", "dhcpleased", "-d", lab.ifname])
        assert second.returncode == 1
        assert "already running" in second.stderr
        assert daemon.poll() is None


def test_startup_errors_are_one_line() -> None:
    with Lab(start_dnsmasq=False) as lab:
        missing_if = lab.run_in_client_wait([sys.executable, "-m", "dhcpleased", "-d", "nosuch0"])
        assert missing_if.returncode == 1
        assert missing_if.stderr.strip() == "dhcpleased: unknown interface nosuch0"
        missing_conf = lab.run_in_client_wait(
            [sys.executable, "-m", "dhcpleased", "-d", "-f", "/nonexistent.conf", lab.ifname]
        )
        assert missing_conf.returncode == 1
        assert len(missing_conf.stderr.strip().splitlines()) == 1
        assert "/nonexistent.conf" in missing_conf.stderr


def test_interface_from_config_is_picked_up_when_it_appears() -> None:
    """No interface on the command line: config blocks name them, even ones not there yet."""
    with Lab() as lab:
        conf = lab.tmp / "dhcpleased.conf"
        conf.write_text('interface late0 {\n\tsend host name "late"\n}\n')
        daemon = lab.start_daemon("-d", "-v", "-f", str(conf))
        lab.wait_for(lambda: "startup" in daemon_log(lab), 10)
        assert leased(lab) is None
        lab.exec_in(lab.cli_ns, ["ip", "link", "set", lab.ifname, "down", "name", "late0"])
        lab.exec_in(lab.cli_ns, ["ip", "link", "set", "late0", "up"])

        def late_lease() -> list[str]:
            assert daemon.poll() is None, daemon_log(lab)
            return [a for a in lab.addresses("late0") if a.startswith(str(lab.subnet)[:-4])]

        lab.wait_for(late_lease, BOUND_TIMEOUT)
        assert "client provides name: late" in lab.dnsmasq_log_text()
