"""The lease lifecycle on bad days: servers that vanish, links that flap, configs that change.

Each test runs the real daemon against the scapy server of :mod:`hostile` (6-30 s leases,
NAKs and silence on demand; dnsmasq cannot go below 120 s) or against dnsmasq, and judges
by what the kernel and the files say: addresses (and ``ip monitor`` for gaps), routes,
resolv.conf, and the client messages the server saw on the wire.  Waits are polls with
generous time limits; nothing sleeps longer than the protocol timers it is waiting for.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.hostile import HostileServer
from tests.integration.lab import IP, ORIGINAL_RESOLV_CONF, Lab
from tests.integration.test_daemon import (
    alive,
    children,
    comm,
    daemon_log,
    leased,
    wait_leased,
)

pytestmark = pytest.mark.integration

LIMIT = 30.0  # any single wait; the protocol timers in these tests are all below 15 s


def has_addr(lab: Lab, address: str) -> bool:
    return any(a.split("/")[0] == address for a in lab.addresses())


def wait_addr(lab: Lab, daemon: subprocess.Popen[bytes], address: str) -> None:
    def check() -> bool:
        if daemon.poll() is not None:
            raise AssertionError(f"daemon exited {daemon.returncode}:\n{daemon_log(lab)}")
        return has_addr(lab, address)

    try:
        lab.wait_for(check, LIMIT, what=f"{address} configured")
    except TimeoutError:
        raise AssertionError(f"{address} never configured:\n{daemon_log(lab)}") from None


def default_route(lab: Lab) -> dict[str, Any] | None:
    return next((r for r in lab.routes() if r.get("dst") == "default"), None)


def dns_proposed(lab: Lab) -> bool:
    text = lab.resolv_conf.read_text() if lab.resolv_conf.exists() else ""
    return all(f"nameserver {ns}" in text for ns in lab.dns)


def dns_withdrawn(lab: Lab) -> bool:
    return lab.resolv_conf.exists() and lab.resolv_conf.read_text() == ORIGINAL_RESOLV_CONF


def wait_msg(h: HostileServer, pred: Any, what: str, start: int = 0) -> dict[str, Any]:
    """The first client message after index ``start`` that satisfies pred."""

    def find() -> dict[str, Any] | None:
        return next((m for m in h.messages()[start:] if pred(m)), None)

    try:
        return h.lab.wait_for(find, LIMIT, what=what)
    except TimeoutError:
        seen = "\n".join(map(str, h.messages()))
        raise AssertionError(f"no {what}; server saw:\n{seen}\n{daemon_log(h.lab)}") from None


def bound_with_dns(lab: Lab, h: HostileServer, *args: str) -> subprocess.Popen[bytes]:
    daemon = lab.start_daemon("-d", "-v", *args, lab.ifname)
    wait_addr(lab, daemon, h.address)
    lab.wait_for(lambda: default_route(lab), LIMIT, what="default route")
    lab.wait_for(lambda: dns_proposed(lab), LIMIT, what="DNS proposed")
    return daemon


@contextmanager
def address_monitor(lab: Lab) -> Iterator[Path]:
    """``ip monitor address`` in the client netns for the block; yields its output file."""
    out = lab.tmp / f"monitor-{time.monotonic_ns()}.txt"
    with open(out, "wb") as f:
        p = lab.spawn_in(lab.cli_ns, [IP, "-o", "monitor", "address"], stdout=f)
    # ip has subscribed once it reports an address of our own making: add one (on lo, left
    # there) until it does, since one added before the subscription goes unreported
    base = f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(256)}"
    markers: list[str] = []

    def subscribed() -> bool:
        if any(m in out.read_text() for m in markers):
            return True
        markers.append(f"{base}.{len(markers) + 1}/32")
        argv = [IP, "-n", lab.cli_ns, "addr", "add", markers[-1], "dev", "lo"]
        subprocess.run(argv, check=True, timeout=30)
        return False

    lab.wait_for(subscribed, LIMIT, what="ip monitor subscribed")
    try:
        yield out
    finally:
        p.terminate()
        p.wait(10)


def deletions(monitor: Path) -> list[str]:
    return [line for line in monitor.read_text().splitlines() if line.startswith("Deleted")]


# --- 1. renewal -----------------------------------------------------------------------------


def test_renew_at_t1_is_unicast_and_keeps_address_past_the_first_lease() -> None:
    """8 s lease, T1 2 s, T2 7 s: at each T1 a unicast REQUEST (ciaddr set, no 50/54) goes
    to the server, and each ACK must be taken: a client that ignored one would rebind
    (broadcast) at 7 s and lose the address at 8 s. Judged from the wire and the kernel:
    the address outlives the first lease by seconds, ``ip monitor`` sees no deletion, no
    broadcast is sent, and route and DNS stay."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, lease=8, t1=2, t2=7)
        with address_monitor(lab) as mon:
            daemon = bound_with_dns(lab, h)
            first_lease_end = time.monotonic() + 8
            n = len(h.messages())
            lab.wait_for(
                lambda: len(h.messages()[n:]) >= 4 and time.monotonic() > first_lease_end + 2,
                LIMIT, what="four renewals and the first lease's end",
            )  # fmt: skip
            assert has_addr(lab, h.address)
        renewals = h.messages()[n:]
        for renew in renewals:
            assert renew["type"] == "request" and renew["answer"] == "ack", renew
            assert renew["dst_ip"] == str(lab.server_ip), renew  # never a broadcast
            assert renew["dst_mac"] == lab.mac(lab.srv_ns, lab.srv_ifname)
            assert renew["ciaddr"] == renew["src_ip"] == h.address
            assert renew["requested"] is None and renew["server_id"] is None
        assert deletions(mon) == []
        assert default_route(lab) is not None and dns_proposed(lab)
        assert daemon.poll() is None


def test_renewals_against_dnsmasq_are_answered_and_taken() -> None:
    """The same against a real server: dnsmasq (120 s lease at least) with T1 2 s, T2 4 s,
    and a sniffer beside it. Every renewal is unicast and ACKed by dnsmasq; a client that
    ignored an ACK would broadcast at T2, which the sniffer would see."""
    with Lab(t1=2, t2=4) as lab:
        sniffer = HostileServer(lab, name="sniffer", sniff=True)
        with address_monitor(lab) as mon:
            daemon = lab.start_daemon("-d", lab.ifname)
            addr = wait_leased(lab, daemon)
            n = len(sniffer.messages())
            lab.wait_for(lambda: len(sniffer.messages()[n:]) >= 4, LIMIT, what="renewals")
            acks = f"DHCPACK(dls0) {addr.ip}"
            lab.wait_for(lambda: lab.dnsmasq_log_text().count(acks) >= 5, LIMIT, what="ACKs")
        for renew in sniffer.messages()[n:]:
            assert renew["type"] == "request", renew
            assert renew["dst_ip"] == str(lab.server_ip) and renew["ciaddr"] == str(addr.ip)
        assert deletions(mon) == [] and leased(lab) == addr
        assert daemon.poll() is None


# --- 2. server gone -------------------------------------------------------------------------


def test_server_gone_rebinds_then_expires_then_rediscovers() -> None:
    """Silent server: unicast at T1, broadcast at T2, at expiry address, routes and DNS
    go and DISCOVERs start; when the server is back a new lease is bound."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, lease=6, t1=2, t2=4)
        daemon = bound_with_dns(lab, h)
        h.set(mode="silent")
        n = len(h.messages())
        renew = wait_msg(h, lambda m: m["type"] == "request", "renewing", n)
        assert renew["dst_ip"] == str(lab.server_ip) and renew["ciaddr"] == h.address
        rebind = wait_msg(
            h, lambda m: m["dst_ip"] == "255.255.255.255", "rebinding", h.messages().index(renew)
        )
        assert rebind["type"] == "request" and rebind["ciaddr"] == h.address
        assert rebind["requested"] is None and rebind["server_id"] is None
        lab.wait_for(lambda: not has_addr(lab, h.address), LIMIT, what="expiry")
        lab.wait_for(lambda: default_route(lab) is None, LIMIT, what="routes removed")
        lab.wait_for(lambda: dns_withdrawn(lab), LIMIT, what="DNS withdrawn")
        wait_msg(h, lambda m: m["type"] == "discover", "discovery", n)
        before = h.messages()
        first_discover = next(i for i, m in enumerate(before) if i >= n and m["type"] == "discover")
        # no DISCOVER before the lease ran out: only the renewal and rebinding REQUESTs
        assert {m["type"] for m in before[n:first_discover]} == {"request"}
        assert "Rebinding -> Init" in daemon_log(lab)

        new = str(lab.subnet.network_address + 51)
        h.set(mode="serve", address=new, lease=3600, t1=None, t2=None)
        wait_addr(lab, daemon, new)
        lab.wait_for(lambda: default_route(lab), LIMIT, what="default route again")
        lab.wait_for(lambda: dns_proposed(lab), LIMIT, what="DNS again")
        assert not has_addr(lab, h.address)


# --- 3. NAK on renew ------------------------------------------------------------------------


def test_nak_on_renew_deconfigures_and_discovers_at_once() -> None:
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, lease=60, t1=2, t2=50)
        daemon = bound_with_dns(lab, h)
        new = str(lab.subnet.network_address + 52)
        h.set(nak_requests=1, address=new)
        n = len(h.messages())
        naked = wait_msg(h, lambda m: m["answer"] == "nak", "NAKed renewal", n)
        assert naked["ciaddr"] == h.address and naked["dst_ip"] == str(lab.server_ip)
        wait_addr(lab, daemon, new)
        after = h.messages()[h.messages().index(naked) + 1 :]
        # straight to DISCOVER: no retry of the REQUEST, no wait for a timer
        assert after[0]["type"] == "discover"
        assert not has_addr(lab, h.address)
        assert "Renewing -> Init" in daemon_log(lab)
        assert f"deleting {h.address} from {lab.ifname}" in daemon_log(lab)
        lab.wait_for(lambda: dns_proposed(lab), LIMIT, what="DNS of the new lease")


# --- 4. carrier loss ------------------------------------------------------------------------


def test_link_down_withdraws_dns_keeps_address_then_init_reboots() -> None:
    """Carrier lost while bound: DNS withdrawn, address kept; carrier back: INIT-REBOOT with
    the remembered address and no DISCOVER.  Down again: the address goes at lease end."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, lease=8, t1=6, t2=7)
        daemon = bound_with_dns(lab, h)
        discovers = len(h.messages("discover"))
        n = len(h.messages())
        with address_monitor(lab) as mon:
            lab.server_link(up=False)
            lab.wait_for(lambda: dns_withdrawn(lab), LIMIT, what="DNS withdrawn on link down")
            assert has_addr(lab, h.address)
            lab.server_link(up=True)
            reboot = wait_msg(h, lambda m: m["type"] == "request", "INIT-REBOOT", n)
            lab.wait_for(lambda: dns_proposed(lab), LIMIT, what="DNS back")
        assert reboot["requested"] == h.address and reboot["ciaddr"] == "0.0.0.0"
        assert reboot["dst_ip"] == "255.255.255.255" and reboot["server_id"] is None
        assert len(h.messages("discover")) == discovers
        assert deletions(mon) == []
        assert "Down -> Rebooting" in daemon_log(lab)

        lab.server_link(up=False)
        lab.wait_for(lambda: dns_withdrawn(lab), LIMIT, what="DNS withdrawn")
        lab.wait_for(lambda: not has_addr(lab, h.address), LIMIT, what="address gone at expiry")
        assert default_route(lab) is None
        assert daemon.poll() is None


# --- 5. restart -----------------------------------------------------------------------------


def test_restart_init_reboots_without_gap() -> None:
    """test_daemon covers the address coming back; here: the REQUEST is INIT-REBOOT shaped
    (broadcast, ciaddr 0, option 50, no 54) and the address never leaves the interface."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        daemon = bound_with_dns(lab, h)
        lab.wait_for(lambda: f"ip: {h.address}" in lab.lease_file().read_text(), LIMIT)
        with address_monitor(lab) as mon:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(LIMIT) == 0
            n = len(h.messages())
            daemon = lab.start_daemon("-d", "-v", lab.ifname, log="second.log")
            first = wait_msg(h, lambda m: True, "first message after restart", n)
            lab.wait_for(lambda: "Rebooting -> Bound" in daemon_log(lab, "second.log"), LIMIT)
        assert first["type"] == "request"
        assert first["requested"] == h.address and first["ciaddr"] == "0.0.0.0"
        assert first["server_id"] is None and first["dst_ip"] == "255.255.255.255"
        assert deletions(mon) == []
        assert has_addr(lab, h.address) and daemon.poll() is None


# --- 6. interface deleted and re-created ----------------------------------------------------


def recreate_veth(lab: Lab) -> None:
    """The pair as Lab.start makes it (deleting one end deleted both)."""
    for argv in (
        ["-n", lab.srv_ns, "link", "add", lab.srv_ifname, "type", "veth",
         "peer", "name", lab.ifname, "netns", lab.cli_ns],
        ["-n", lab.srv_ns, "addr", "add", f"{lab.server_ip}/{lab.subnet.prefixlen}",
         "dev", lab.srv_ifname],
        ["-n", lab.srv_ns, "link", "set", lab.srv_ifname, "up"],
        ["-n", lab.cli_ns, "link", "set", lab.ifname, "up"],
    ):  # fmt: skip
        subprocess.run([IP, *argv], check=True, capture_output=True, timeout=30)


def test_interface_down_at_start_is_picked_up_when_it_comes_up() -> None:
    """The packet socket cannot be opened on a down interface (ENETDOWN): the frontend
    asks again when the link comes up (found by the re-creation test below)."""
    with Lab(start_dnsmasq=False, client_up=False) as lab:
        h = HostileServer(lab)
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        lab.wait_for(lambda: f"managing {lab.ifname}" in daemon_log(lab), LIMIT)
        lab.client_link(up=True)
        wait_addr(lab, daemon, h.address)


def test_interface_deleted_and_recreated_is_managed_again() -> None:
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        daemon = bound_with_dns(lab, h)
        subprocess.run([IP, "-n", lab.cli_ns, "link", "del", lab.ifname], check=True, timeout=30)
        lab.wait_for(lambda: "no longer managing dl0" in daemon_log(lab), LIMIT)
        h.stop()
        recreate_veth(lab)
        h2 = HostileServer(lab, name="hostile2")
        wait_addr(lab, daemon, h2.address)
        lab.wait_for(lambda: default_route(lab), LIMIT, what="default route on the new link")
        log = daemon_log(lab)
        assert log.count(f"managing {lab.ifname} (index") == 2
        # picked up with the address remembered in the lease file: INIT-REBOOT
        assert h2.messages()[0]["type"] == "request"
        assert h2.messages()[0]["requested"] == h.address
        assert daemon.poll() is None


# --- 7. SIGHUP ------------------------------------------------------------------------------


def test_sighup_ignore_dns_withdraws_and_new_client_id_rerequests() -> None:
    with Lab(start_dnsmasq=False) as lab:
        conf = lab.tmp / "dhcpleased.conf"
        conf.write_text(f"interface {lab.ifname} {{\n\tsend host name faults\n}}\n")
        h = HostileServer(lab)
        daemon = bound_with_dns(lab, h, "-f", str(conf))
        default_id = h.messages()[-1]["client_id"]

        conf.write_text(f"interface {lab.ifname} {{\n\tsend host name faults\n\tignore dns\n}}\n")
        daemon.send_signal(signal.SIGHUP)
        lab.wait_for(lambda: dns_withdrawn(lab), LIMIT, what="DNS withdrawn after SIGHUP")
        assert has_addr(lab, h.address)

        n = len(h.messages())
        conf.write_text(
            f"interface {lab.ifname} {{\n\tsend host name faults\n\tignore dns\n"
            '\tsend client id "ff:00:11:22:33:44:55"\n}\n'
        )
        daemon.send_signal(signal.SIGHUP)
        req = wait_msg(h, lambda m: m["client_id"] == "ff001122334455", "new client id", n)
        assert req["type"] == "request" and req["requested"] == h.address
        assert default_id != req["client_id"]
        lab.wait_for(lambda: daemon_log(lab).count("configuration reloaded") == 2, LIMIT)
        lab.wait_for(lambda: "Rebooting -> Bound" in daemon_log(lab), LIMIT)
        # the re-requested lease keeps the address and, with ignore dns, proposes no DNS
        assert has_addr(lab, h.address) and dns_withdrawn(lab)
        assert daemon.poll() is None


# --- 8. option 108 --------------------------------------------------------------------------


def test_ipv6_only_preferred_takes_no_address_and_outwaits_the_server() -> None:
    """RFC 8925: prefer ipv6 + option 108 = 1 s in the OFFER -> IPv6-only, no REQUEST, no
    address, and no new DISCOVER once the server's 1 s has passed. That the wait is at
    least 300 s is checked on a fake clock (tests/unit/test_engine_clock.py)."""
    with Lab(start_dnsmasq=False) as lab:
        conf = lab.tmp / "dhcpleased.conf"
        conf.write_text(f"interface {lab.ifname} {{ prefer ipv6 }}\n")
        h = HostileServer(lab, v6only=1)
        daemon = lab.start_daemon("-d", "-v", "-f", str(conf), lab.ifname)
        offer = wait_msg(h, lambda m: m["answer"] == "offer", "OFFER with option 108")
        assert 108 in offer["params"]
        lab.wait_for(lambda: "Init -> IPv6 only" in daemon_log(lab), LIMIT)
        seen = len(h.messages())
        time.sleep(3)  # three times the server's wait: a client honouring 1 s would be back
        assert len(h.messages()) == seen
        assert not has_addr(lab, h.address) and leased(lab) is None
        assert "IPv6 only ->" not in daemon_log(lab)
        assert daemon.poll() is None


def test_option_108_ignored_without_prefer_ipv6() -> None:
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, v6only=1)
        bound_with_dns(lab, h)
        assert 108 not in h.messages()[0]["params"]


# --- 10. a process killed -------------------------------------------------------------------


def _kids(lab: Lab, daemon: subprocess.Popen[bytes]) -> dict[str, int]:
    kids = lab.wait_for(lambda: len(children(daemon.pid)) == 2 and children(daemon.pid), LIMIT)
    return {comm(k): k for k in kids}


def test_frontend_killed_ends_daemon_and_keeps_address() -> None:
    """test_daemon kills the engine; the frontend's death is just as fatal, and the parent
    leaves the address, route and DNS in place (as on any exit)."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        daemon = bound_with_dns(lab, h)
        kids = _kids(lab, daemon)
        os.kill(kids["dhcp-frontend"], signal.SIGKILL)
        assert daemon.wait(LIMIT) == 1
        lab.wait_for(lambda: not alive(kids["dhcp-engine"]), LIMIT, what="engine gone")
        assert "frontend terminated by signal 9" in daemon_log(lab)
        assert has_addr(lab, h.address) and default_route(lab) is not None
        assert dns_proposed(lab)


def test_parent_killed_children_exit() -> None:
    """SIGKILL on the parent: both children see EOF on their channel and exit: no orphan."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        daemon = bound_with_dns(lab, h)
        kids = _kids(lab, daemon)
        daemon.kill()
        daemon.wait(LIMIT)
        for name, pid in kids.items():
            lab.wait_for(lambda pid=pid: not alive(pid), LIMIT, what=f"{name} gone")
        assert has_addr(lab, h.address)
