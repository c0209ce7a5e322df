"""Each configuration option end to end: what goes on the wire (dnsmasq's log and lease
database, or the scapy server's record of every client message) and what the kernel and
resolv.conf end up with. Also a renewal ACK that changes the lease, and ``-vv``'s dumps.
"""

from __future__ import annotations

import re
import signal
from ipaddress import IPv4Interface

import pytest

from tests.integration.hostile import HostileServer
from tests.integration.lab import ORIGINAL_RESOLV_CONF, Lab, in_range
from tests.integration.test_daemon import daemon_log, leased, wait_leased
from tests.integration.test_faults import (
    LIMIT,
    address_monitor,
    default_route,
    deletions,
    dns_proposed,
    has_addr,
    wait_addr,
    wait_msg,
)

pytestmark = pytest.mark.integration


def config(lab: Lab, *lines: str) -> str:
    conf = lab.tmp / "dhcpleased.conf"
    conf.write_text(f"interface {lab.ifname} {{\n" + "".join(f"\t{x}\n" for x in lines) + "}\n")
    return str(conf)


def acks(lab: Lab, addr: IPv4Interface) -> int:
    return lab.dnsmasq_log_text().count(f"DHCPACK(dls0) {addr.ip}")


def dhcp_routes(lab: Lab) -> list[dict[str, object]]:
    return [r for r in lab.routes() if r.get("protocol") == "dhcp"]


def test_ignore_server_takes_none_of_its_offers() -> None:
    with Lab(start_dnsmasq=False) as lab:
        conf = config(lab, f"ignore {lab.server_ip}")
        h = HostileServer(lab)
        daemon = lab.start_daemon("-d", "-f", conf, lab.ifname)
        # each DISCOVER is offered a lease; a client taking one would REQUEST at once
        lab.wait_for(lambda: len(h.messages("discover")) >= 3, LIMIT, what="3 DISCOVERs")
        assert h.messages("request") == []
        assert {m["answer"] for m in h.messages()} == {"offer"}
        assert not has_addr(lab, h.address)
        config(lab, "send host name unignored")  # the same offers, no longer ignored
        daemon.send_signal(signal.SIGHUP)
        wait_addr(lab, daemon, h.address)


def test_ignore_routes_takes_address_and_dns_but_no_route() -> None:
    lab = Lab(start_dnsmasq=False, t1=2, t2=4)
    lab.classless_routes = (("198.51.100.0/24", str(lab.server_ip)),)
    with lab:
        lab.start_dnsmasq()
        daemon = lab.start_daemon("-d", "-f", config(lab, "ignore routes"), lab.ifname)
        addr = wait_leased(lab, daemon)
        lab.wait_for(lambda: acks(lab, addr) >= 2, LIMIT, what="a renewal")  # all applied
        assert dns_proposed(lab)
        assert dhcp_routes(lab) == [] and default_route(lab) is None
        log = lab.dnsmasq_log_text()
        assert re.search(r"option:\s*3 router", log) and re.search(r"option:121", log)


def test_ignore_dns_takes_address_and_routes_but_no_dns() -> None:
    with Lab(t1=2, t2=4) as lab:
        daemon = lab.start_daemon("-d", "-f", config(lab, "ignore dns"), lab.ifname)
        addr = wait_leased(lab, daemon)
        lab.wait_for(lambda: acks(lab, addr) >= 2, LIMIT, what="a renewal")  # all applied
        route = default_route(lab)
        assert route is not None and route["protocol"] == "dhcp"
        assert lab.resolv_conf.read_text() == ORIGINAL_RESOLV_CONF
        log = lab.dnsmasq_log_text()
        assert re.search(r"option:\s*6 dns-server", log) and re.search(r"option:119", log)


def test_send_vendor_class_client_id_and_no_host_name() -> None:
    with Lab() as lab:
        conf = config(
            lab,
            'send vendor class id "dhcpleased-e2e"',
            'send client id "01:00:53:FF:AA:BB:CC"',
            "send no host name",
        )
        daemon = lab.start_daemon("-d", "-f", conf, lab.ifname)
        addr = wait_leased(lab, daemon)
        assert in_range(lab, str(addr))
        log = lab.dnsmasq_log_text()
        assert "vendor class: dhcpleased-e2e" in log
        assert "client provides name" not in log
        (entry,) = lab.wait_for(lab.dnsmasq_lease_entries, LIMIT)
        _expiry, mac, ip, hostname, client_id = entry
        assert (ip, hostname, client_id) == (str(addr.ip), "*", "01:00:53:ff:aa:bb:cc")
        assert mac == lab.mac()


def test_prefer_ipv6_with_dnsmasq_offering_option_108() -> None:
    """dnsmasq sends option 108 only to a client that asks for it: with prefer ipv6 the
    client asks, is offered 1800 s, requests nothing and takes no address; reloaded
    without prefer ipv6, it asks again and takes the lease from the same server."""
    with Lab(dnsmasq_args=["--dhcp-option=108,00:00:07:08"]) as lab:
        daemon = lab.start_daemon("-d", "-f", config(lab, "prefer ipv6"), lab.ifname)
        lab.wait_for(lambda: re.search(r"option:108", lab.dnsmasq_log_text()), LIMIT)
        assert re.search(r"requested options:.*108", lab.dnsmasq_log_text())
        r = lab.wait_for(lambda: (x := lab.ctl("-l", lab.ifname)).returncode == 0 and x, LIMIT)
        assert r.stdout.startswith(f"{lab.ifname} [IPv6 only]"), r.stdout
        assert "DHCPREQUEST" not in lab.dnsmasq_log_text() and leased(lab) is None
        config(lab, "send host name v4again")
        daemon.send_signal(signal.SIGHUP)  # a changed interface is asked again
        assert in_range(lab, str(wait_leased(lab, daemon)))


def test_renewal_ack_that_changes_the_lease_is_applied() -> None:
    """The server answers a renewal with another address, router and nameserver: the old
    address goes, the new one, its default route and its DNS are in the kernel and
    resolv.conf; the renewal was a unicast REQUEST, not a new discovery."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, lease=60, t1=2, t2=50)
        daemon = lab.start_daemon("-d", lab.ifname)
        wait_addr(lab, daemon, h.address)
        lab.wait_for(lambda: dns_proposed(lab), LIMIT, what="DNS")
        old, new = h.address, str(lab.subnet.network_address + 51)
        router, ns = str(lab.server_ip + 1), "198.18.7.53"
        n = len(h.messages())
        with address_monitor(lab) as mon:
            h.set(address=new, routers=[router], dns=[ns])
            renew = wait_msg(h, lambda m: m["type"] == "request", "renewal", n)
            wait_addr(lab, daemon, new)
            lab.wait_for(lambda: f"nameserver {ns}" in lab.resolv_conf.read_text(), LIMIT)
            lab.wait_for(lambda: (default_route(lab) or {}).get("gateway") == router, LIMIT)
        assert renew["ciaddr"] == old and renew["dst_ip"] == str(lab.server_ip)
        assert h.messages("discover") == h.messages("discover")[:1]
        assert not has_addr(lab, old) and [d for d in deletions(mon) if old in d]
        assert not any(f"nameserver {x}" in lab.resolv_conf.read_text() for x in lab.dns)
        assert [r["gateway"] for r in lab.routes() if r.get("dst") == "default"] == [router]
        assert daemon.poll() is None


def test_vv_dumps_each_packet_and_v_does_not() -> None:
    """``-vv``: the engine logs every reply it parsed, fields as the server sent them (the
    xid and address dnsmasq logged); after ``dhcpleasectl log verbose`` (level 1) the next
    ACK is no longer dumped."""
    with Lab() as lab:
        daemon = lab.start_daemon("-d", "-vv", lab.ifname)
        addr = wait_leased(lab, daemon)
        xids = re.findall(rf"(\d+) DHCPACK\(dls0\) {addr.ip}", lab.dnsmasq_log_text())
        dumps = [line for line in daemon_log(lab).splitlines() if "DhcpMessage(" in line]
        assert any(
            f"xid={xids[0]}," in d and f"yiaddr=IPv4Address('{addr.ip}')" in d for d in dumps
        ), dumps
        assert all(d.startswith(f"engine: {lab.ifname}: DhcpMessage(") for d in dumps)
        assert lab.ctl("log", "verbose").returncode == 0
        assert lab.ctl("-w", "20", lab.ifname).returncode == 0  # another ACK
        lab.wait_for(lambda: acks(lab, addr) >= 2, LIMIT)
        assert [line for line in daemon_log(lab).splitlines() if "DhcpMessage(" in line] == dumps
