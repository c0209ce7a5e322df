"""Issue 15.1 against dnsmasq: address conflict detection (RFC 5227) with ``arp probe``.

Judged from every side: the wire (ARP and DHCP, tests.integration.wirelog), the kernel's
address events (rtnetlink, as ``ip monitor`` shows them), dnsmasq's log, dhcpleasectl's
report and its -m stream. The lab's dnsmasq runs with --no-ping, so the ARP probe is
what finds a squatter, not dnsmasq's own check.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from tests.integration.lab import Lab
from tests.integration.test_ctl import wait_socket
from tests.integration.test_daemon import daemon_log, leased
from tests.integration.test_flood import WireLog

pytestmark = pytest.mark.integration

CLAIMANT_MAC = "02:de:ad:00:be:ef"
# RFC 5227's probe takes 4-7 s; after a DHCPDECLINE, RFC 2131's 10 s; then another probe
LIMIT = 60.0

# Server side: another host claims the address, as a gratuitous ARP (an announcement).
CLAIM = r"""
import socket, sys
from ipaddress import IPv4Address
from dhcpleased import packet
dev, mac, addr = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), IPv4Address(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((dev, 0))
s.send(packet.arp_announcement(mac, addr))
"""


def conf(lab: Lab) -> None:
    (lab.etc_dir / "dhcpleased.conf").write_text(f"interface {lab.ifname} {{\n\tarp probe\n}}\n")


def wait(lab: Lab, wire: WireLog, predicate: Any, what: str) -> Any:
    try:
        return lab.wait_for(predicate, LIMIT, what=what)
    except TimeoutError:
        seen = "\n".join(map(str, wire.events()))
        raise AssertionError(
            f"no {what}:\n{seen}\n{daemon_log(lab)}\n{lab.dnsmasq_log_text()}"
        ) from None


def bound_to(lab: Lab, wire: WireLog, after: float) -> IPv4Interface:
    """The next address the kernel got after ``after`` (and still has)."""
    ev = wait(lab, wire, lambda: wire.first("kernel", after, event="new"), "an address")
    addr = IPv4Interface(f"{ev['addr']}/{lab.subnet.prefixlen}")
    assert str(addr) in lab.addresses()
    return addr


def arp(wire: WireLog, direction: str, after: float = 0.0, **match: Any) -> list[dict[str, Any]]:
    return [e for e in wire.events(direction, **match) if e["t"] > after]


def announced(lab: Lab, wire: WireLog, addr: IPv4Address) -> None:
    """Both RFC 5227 announcements (sender and target IP the address) are on the wire."""
    a = str(addr)
    wait(lab, wire, lambda: len(arp(wire, "arp-out", spa=a, tpa=a)) >= 2, "two announcements")


def claim(lab: Lab, addr: IPv4Address) -> float:
    at = time.monotonic()
    r = lab.python_in(lab.srv_ns, CLAIM, lab.srv_ifname, CLAIMANT_MAC, str(addr))
    assert r.returncode == 0, r.stderr
    return at


def monitor(lab: Lab) -> subprocess.Popen[str]:
    mon = lab.run_in_client(
        [sys.executable, "-m", "dhcpleasectl", "-m", lab.ifname], stdout=subprocess.PIPE, text=True
    )
    lab.wait_for(lambda: "monitors state changes" in daemon_log(lab), 15)
    return mon


def events(mon: subprocess.Popen[str], n: int) -> list[tuple[str, str, str | None, str]]:
    assert mon.stdout is not None
    out = []
    for _ in range(n):
        ev = json.loads(mon.stdout.readline())
        out.append((ev["old_state"], ev["new_state"], ev["address"], ev["reason"]))
    return out


def test_an_address_in_use_is_declined_and_another_one_taken() -> None:
    """dnsmasq reserves .50 for the client's MAC, and a host on the link already has it:
    the probes from the OFFER find it, nothing is configured, dnsmasq gets a DHCPDECLINE
    with 50 and 54 (it logs none without them), and after RFC 2131's 10 s the client
    asks again and ends with an address from the pool."""
    with Lab(start_dnsmasq=False) as lab:
        mac = lab.mac()
        squat = lab.subnet.network_address + 50
        lab.dnsmasq_args = (f"--dhcp-host={mac},{squat}",)
        lab.start_dnsmasq()
        squatter_mac = lab.mac(*lab.add_neighbour(f"{squat}/{lab.subnet.prefixlen}"))
        conf(lab)
        wire = WireLog(lab, arp=True)
        daemon = lab.start_daemon("-d", "-v")
        decline = wait(lab, wire, lambda: wire.first("out", type="decline"), "a DHCPDECLINE")
        addr = bound_to(lab, wire, decline["t"])
        assert addr.ip != squat and lab.range_start <= addr.ip <= lab.range_end
        assert f"DHCPDECLINE({lab.srv_ifname}) {squat} {mac}" in lab.dnsmasq_log_text()
        # the kernel never had the squatted address
        assert not wire.events("kernel", addr=str(squat))
        # on the wire: probes for it from 0.0.0.0 and our MAC, the squatter's answer, the
        # DECLINE broadcast from 0.0.0.0, the next DISCOVER 10 s later at the earliest
        offer = wire.first("in", type="offer")
        assert offer is not None
        probes = arp(wire, "arp-out", tpa=str(squat), spa="0.0.0.0", sha=mac)
        assert probes and probes[0]["t"] >= offer["t"]  # started at the OFFER
        assert arp(wire, "arp-in", spa=str(squat), sha=squatter_mac)  # the squatter's answer
        assert decline["t"] > probes[0]["t"]  # (the log's two sockets order only roughly)
        assert (decline["src_ip"], decline["dst_ip"], decline["ciaddr"]) == (
            "0.0.0.0", "255.255.255.255", "0.0.0.0",
        )  # fmt: skip
        again = wire.first("out", decline["t"], type="discover")
        assert again is not None and again["t"] - decline["t"] >= 10.0
        # the new address was probed and announced, and is defended
        assert arp(wire, "arp-out", again["t"], spa="0.0.0.0", tpa=str(addr.ip))
        announced(lab, wire, addr.ip)
        wait_socket(lab, daemon)
        report = lab.ctl("-l", lab.ifname).stdout
        assert f"\tarp probe: defending {addr.ip}\n" in report
        assert f"\tarp conflicts: 1, last {squat} claimed by {squatter_mac} " in report
        obj = json.loads(lab.ctl("-j", "-l", lab.ifname).stdout)["arp"]
        assert (obj["phase"], obj["conflicts"]) == ("defending", 1)
        assert obj["last_conflict"]["mac"] == squatter_mac
        assert f"address conflict: {squat} is claimed by {squatter_mac}" in daemon_log(lab)
        assert daemon.poll() is None


def test_a_host_claiming_our_address_is_defended_then_the_address_given_up() -> None:
    """Bound with ``arp probe``: a gratuitous ARP for our address from another MAC is
    answered by one announcement and the address kept; a second within DEFEND_INTERVAL
    (10 s) takes it away: removed, declined (dnsmasq logs it), and another one bound."""
    with Lab() as lab:
        mac = lab.mac()
        conf(lab)
        wire = WireLog(lab, arp=True)
        daemon = lab.start_daemon("-d", "-v")
        first = bound_to(lab, wire, 0.0)
        announced(lab, wire, first.ip)
        wait_socket(lab, daemon)
        mon = monitor(lab)

        t1 = claim(lab, first.ip)
        a = str(first.ip)
        wait(lab, wire, lambda: arp(wire, "arp-out", t1, spa=a, tpa=a, sha=mac), "the defence")
        assert events(mon, 1) == [
            ("Bound", "Bound", str(first.ip), f"address conflict with {CLAIMANT_MAC}")
        ]
        time.sleep(0.5)
        assert leased(lab) == first and not wire.events("kernel", event="del")

        t2 = claim(lab, first.ip)  # 10 s have not passed: the address goes
        gone = wait(lab, wire, lambda: wire.first("kernel", t2, event="del"), "the removal")
        assert gone["addr"] == str(first.ip)
        wait(lab, wire, lambda: wire.first("out", t2, type="decline"), "a DHCPDECLINE")
        lab.wait_for(
            lambda: f"DHCPDECLINE({lab.srv_ifname}) {first.ip} {mac}" in lab.dnsmasq_log_text(),
            10,
            what="dnsmasq logging the DECLINE",
        )
        assert len(arp(wire, "arp-out", t2, spa=a, tpa=a)) == 0  # no second defence
        second = bound_to(lab, wire, gone["t"])
        assert second.ip != first.ip
        seen = events(mon, 5)
        assert [e[:2] for e in seen] == [
            ("Bound", "Declined"), ("Declined", "Init"), ("Init", "Requesting"),
            ("Requesting", "Probing"), ("Probing", "Bound"),
        ]  # fmt: skip
        assert seen[0][2:] == (str(first.ip), f"address conflict with {CLAIMANT_MAC}")
        assert seen[1][3] == "decline wait over"
        assert seen[-1][2:] == (str(second.ip), "no address conflict")
        report = lab.ctl("-l", lab.ifname).stdout
        assert f"\tarp conflicts: 2, last {first.ip} claimed by {CLAIMANT_MAC} " in report
        assert daemon.poll() is None
