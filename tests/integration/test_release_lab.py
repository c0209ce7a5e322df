"""Issue 15.2 and 15.4 against dnsmasq: DHCPRELEASE when asked or on exit, rapid commit.

Each test reads every side: the wire (tests.integration.wirelog), dnsmasq's log and lease
table, the kernel (addresses, routes), resolv.conf and the lease file, dhcpleasectl's
report and its -m stream.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Interface
from typing import Any

import pytest

from tests.integration.lab import ORIGINAL_RESOLV_CONF, Lab
from tests.integration.test_ctl import read_lines, wait_socket
from tests.integration.test_daemon import daemon_log, leased, wait_leased
from tests.integration.test_flood import WireLog

pytestmark = pytest.mark.integration


def dhcp_routes(lab: Lab) -> list[dict[str, Any]]:
    return [r for r in lab.routes() if r.get("protocol") == "dhcp"]


def settled(lab: Lab, addr: IPv4Interface) -> None:
    """Bound with everything in place: route, DNS, lease file, dnsmasq's lease."""
    lab.wait_for(lambda: dhcp_routes(lab), 5, what="route")
    lab.wait_for(lambda: "nameserver 198.18.0.53" in lab.resolv_conf.read_text(), 5, what="DNS")
    lab.wait_for(lambda: lab.lease_file().exists(), 5, what="lease file")
    lab.wait_for(lambda: has_lease(lab, addr), 5, what="dnsmasq lease")


def has_lease(lab: Lab, addr: IPv4Interface) -> bool:
    return any(e[2] == str(addr.ip) for e in lab.dnsmasq_lease_entries() if len(e) > 2)


def given_back(lab: Lab, addr: IPv4Interface, wire: WireLog) -> dict[str, Any]:
    """Everything the lease held is gone, and the RELEASE went out first, as RFC 2131 says."""
    mac = lab.mac()
    lab.wait_for(
        lambda: f"DHCPRELEASE({lab.srv_ifname}) {addr.ip} {mac}" in lab.dnsmasq_log_text(),
        10,
        what="dnsmasq logging the DHCPRELEASE",
    )
    lab.wait_for(lambda: not has_lease(lab, addr), 10, what="dnsmasq dropping the lease")
    rel = wire.wait(lambda: wire.first("out", type="release"), "DHCPRELEASE on the wire")
    # unicast from the leased address to the server, ciaddr = the address (4.4.6)
    assert (rel["src_ip"], rel["dst_ip"], rel["ciaddr"]) == (
        str(addr.ip), str(lab.server_ip), str(addr.ip)
    )  # fmt: skip
    gone = wire.wait(lambda: wire.first("kernel", event="del", addr=str(addr.ip)), "address gone")
    assert gone["t"] > rel["t"]  # the address was still there to send from
    lab.wait_for(lambda: leased(lab) is None and not dhcp_routes(lab), 5, what="deconfigured")
    lab.wait_for(lambda: lab.resolv_conf.read_text() == ORIGINAL_RESOLV_CONF, 5, what="DNS gone")
    lab.wait_for(lambda: not lab.lease_file().exists(), 5, what="lease file gone")
    return rel


def test_dhcpleasectl_release_gives_the_lease_back_and_idles_until_asked() -> None:
    with Lab() as lab:
        wire = WireLog(lab)
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        addr = wait_leased(lab, daemon)
        settled(lab, addr)
        wait_socket(lab, daemon)
        mon = lab.run_in_client(
            [sys.executable, "-m", "dhcpleasectl", "-m", lab.ifname], stdout=subprocess.PIPE
        )
        lab.wait_for(lambda: "monitors state changes" in daemon_log(lab), 15)

        r = lab.ctl("release", lab.ifname)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"{lab.ifname} [Released]\n", "")
        rel = given_back(lab, addr, wire)
        assert f"{lab.ifname}: DHCPRELEASE of {addr.ip} to {lab.server_ip}" in daemon_log(lab)

        events = read_lines(mon, lambda evs: any(e["new_state"] == "Released" for e in evs), 10)
        steps = [(e["old_state"], e["new_state"], e["reason"]) for e in events]
        assert steps[-2:] == [
            ("Bound", "Releasing", "release"),
            ("Releasing", "Released", "release sent"),
        ]
        obj = json.loads(lab.ctl("-j", "-l", lab.ifname).stdout)
        assert (obj["state"], obj["address"], obj["server"]) == ("Released", None, None)

        # the link coming back is not a request: nothing goes out
        lab.server_link(up=False)
        time.sleep(1)
        lab.server_link(up=True)
        time.sleep(3)
        assert wire.first("out", after=rel["t"]) is None, wire.events("out")
        assert lab.ctl("-l", lab.ifname).stdout == f"{lab.ifname} [Released]\n"

        r = lab.ctl("-w", "20", lab.ifname)  # a request: a full DORA, and a lease again
        assert r.returncode == 0, (r.stdout, r.stderr, daemon_log(lab))
        assert wire.first("out", after=rel["t"], type="discover") is not None
        assert wait_leased(lab, daemon).network == lab.subnet
        assert daemon.poll() is None and "fatal" not in daemon_log(lab)
        mon.send_signal(signal.SIGINT)
        mon.wait(10)


def test_release_of_an_unmanaged_interface_fails_at_once() -> None:
    with Lab(start_dnsmasq=False) as lab:
        daemon = lab.start_daemon("-d")
        wait_socket(lab, daemon)
        started = time.monotonic()
        r = lab.ctl("release", lab.ifname)
        assert r.returncode == 1
        assert r.stderr == f"dhcpleasectl: dhcpleased does not manage {lab.ifname}\n"
        assert time.monotonic() - started < 5  # no waiting: a release manages nothing
        assert "managing" not in daemon_log(lab)


def test_release_on_exit_sends_the_release_before_the_processes_end() -> None:
    with Lab() as lab:
        conf = lab.tmp / "dhcpleased.conf"
        conf.write_text(f"interface {lab.ifname} {{\n\trelease on exit\n}}\n")
        wire = WireLog(lab)
        daemon = lab.start_daemon("-d", "-v", "-f", str(conf))
        addr = wait_leased(lab, daemon)
        settled(lab, addr)
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        took = time.monotonic() - started
        given_back(lab, addr, wire)
        log = daemon_log(lab)
        order = [
            f"releasing the leases of {lab.ifname} before exiting",
            f"deleting {addr.ip} from {lab.ifname}",
            f"lease on {lab.ifname} released",
            "terminating",
        ]
        where = [log.find(line) for line in order]
        assert -1 not in where and where == sorted(where), log
        assert took < 5.0, took  # main.RELEASE_EXIT_WAIT is the bound; dnsmasq is quick


def test_without_release_on_exit_the_lease_stays() -> None:
    with Lab() as lab:
        daemon = lab.start_daemon("-d", lab.ifname)
        addr = wait_leased(lab, daemon)
        settled(lab, addr)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        assert leased(lab) == addr and lab.lease_file().exists() and has_lease(lab, addr)
        assert "DHCPRELEASE" not in lab.dnsmasq_log_text()


@pytest.mark.parametrize(
    ("client", "server"), [(True, True), (True, False), (False, True)], ids=str
)
def test_rapid_commit_needs_both_sides(client: bool, server: bool) -> None:
    """Two messages only when both ask for it; otherwise the four-message exchange."""
    args = ("--dhcp-rapid-commit",) if server else ()
    with Lab(dnsmasq_args=args) as lab:
        conf = lab.tmp / "dhcpleased.conf"
        conf.write_text(f"interface {lab.ifname} {{\n\tsend host name rc\n}}\n")
        if client:
            conf.write_text(f"interface {lab.ifname} {{\n\tsend rapid commit\n}}\n")
        wire = WireLog(lab)
        daemon = lab.start_daemon("-d", "-v", "-f", str(conf))
        addr = wait_leased(lab, daemon)
        settled(lab, addr)
        kinds = [(e["dir"], e["type"]) for e in wire.events() if e["dir"] in ("in", "out")]
        dnsmasq = lab.dnsmasq_log_text()
        report = lab.ctl("-l", lab.ifname).stdout.splitlines()
        rapid = json.loads(lab.ctl("-j", "-l", lab.ifname).stdout)["rapid_commit"]
        if client and server:
            assert kinds == [("out", "discover"), ("in", "ack")], kinds
            assert "DHCPOFFER" not in dnsmasq and "DHCPREQUEST" not in dnsmasq
            assert "\trapid commit" in report and rapid is True
            assert "Init -> Bound" in daemon_log(lab)
        else:
            assert kinds == [("out", "discover"), ("in", "offer"), ("out", "request"),
                             ("in", "ack")], kinds  # fmt: skip
            assert "\trapid commit" not in report and rapid is False
        assert daemon.poll() is None
