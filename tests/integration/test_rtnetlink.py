"""The daemon's netlink side against the real kernel, in the lab: lifetimes, overflow, IFF_UP.

Each test runs the real three-process daemon and judges by what the kernel says
(``ip -j -d addr``, routes, links) and by the daemon's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.integration.hostile import HostileServer
from tests.integration.lab import IP, Lab
from tests.integration.test_ctl import wait_socket
from tests.integration.test_daemon import alive, daemon_log
from tests.integration.test_faults import (
    LIMIT,
    _kids,
    bound_with_dns,
    default_route,
    has_addr,
    wait_addr,
)

pytestmark = pytest.mark.integration


def addr_info(lab: Lab, address: str) -> dict[str, Any] | None:
    out = lab.exec_in(lab.cli_ns, [IP, "-j", "-d", "-4", "addr", "show", "dev", lab.ifname])
    for link in json.loads(out.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("local") == address:
                info: dict[str, Any] = a
                return info
    return None


def valid_lft(lab: Lab, address: str) -> int:
    info = addr_info(lab, address)
    assert info is not None, f"{address} is not configured"
    return int(info["valid_life_time"])


def dhcp_routes(lab: Lab) -> list[dict[str, Any]]:
    return [r for r in lab.routes() if r.get("protocol") == "dhcp"]


# --- 11.13: the address dies with the lease ---------------------------------------------------


def test_address_lifetime_follows_the_lease_and_outlives_no_daemon() -> None:
    """The address carries the lease's remaining time as its lifetime; the renewal at T1
    starts it over (no second "adding"); with every process of the daemon SIGKILLed the
    kernel removes the address, and the routes that use it as their source, at the end
    of the lease."""
    lease = 12
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, lease=lease, t1=3, t2=10)
        daemon = bound_with_dns(lab, h)
        bound_at = time.monotonic()
        info = addr_info(lab, h.address)
        assert info is not None and info.get("dynamic") is True
        assert lease - 3 <= info["valid_life_time"] <= lease
        assert info["preferred_life_time"] == info["valid_life_time"]
        assert dhcp_routes(lab)

        # the renewal at T1 (3 s): without it the lifetime could only have gone down
        n = len(h.messages("request"))
        lab.wait_for(lambda: len(h.messages("request")) > n, LIMIT, what="renewal at T1")
        lab.wait_for(
            lambda: valid_lft(lab, h.address) >= lease - 1 and time.monotonic() - bound_at >= 3,
            LIMIT,
            what="lifetime restarted by the renewal",
        )
        log = daemon_log(lab)
        assert log.count(f"adding {h.address} to {lab.ifname}") == 1, log

        kids = _kids(lab, daemon)
        for pid in (*kids.values(), daemon.pid):
            os.kill(pid, signal.SIGKILL)
        daemon.wait(LIMIT)
        for pid in kids.values():
            lab.wait_for(lambda pid=pid: not alive(pid), LIMIT, what="child gone")
        killed_at = time.monotonic()
        left = valid_lft(lab, h.address)
        assert has_addr(lab, h.address) and default_route(lab) is not None

        lab.wait_for(lambda: not has_addr(lab, h.address), lease + 5, what="address expired")
        gone_after = time.monotonic() - killed_at
        assert left - 1.5 <= gone_after <= left + 2.5, (left, gone_after)
        assert dhcp_routes(lab) == []
        assert default_route(lab) is None


# --- 11.8: an overflowing link-event socket ---------------------------------------------------


def add_veth(lab: Lab, name: str, peer: str) -> None:
    lab.exec_in(lab.cli_ns, [IP, "link", "add", name, "type", "veth", "peer", "name", peer])
    for dev in (name, peer):
        lab.exec_in(lab.cli_ns, [IP, "link", "set", dev, "up"])


def test_overflowed_link_socket_reconciles_with_the_kernel() -> None:
    """With the frontend stopped (SIGSTOP), a thousand link changes overflow its routing
    socket; then a managed interface is deleted, its RTM_DELLINK lost with the rest.
    After SIGCONT the frontend gets ENOBUFS, dumps the links again and forgets the
    interface the dump no longer lists; the bound one is kept and the daemon lives."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        add_veth(lab, "dlx", "dlxp")  # a second managed interface, no server behind it
        add_veth(lab, "fl0", "fl1")  # flapped to flood the link events
        daemon = lab.start_daemon("-d", "-v", lab.ifname, "dlx")
        wait_addr(lab, daemon, h.address)
        lab.wait_for(lambda: "managing dlx (index" in daemon_log(lab), LIMIT)
        fe = _kids(lab, daemon)["dhcp-frontend"]

        os.kill(fe, signal.SIGSTOP)
        try:
            batch = "".join(f"link set fl0 mtu {1400 + i % 2 * 100}\n" for i in range(1000))
            subprocess.run(
                [IP, "-n", lab.cli_ns, "-batch", "-"], input=batch, text=True, check=True
            )
            lab.exec_in(lab.cli_ns, [IP, "link", "del", "dlx"])
        finally:
            os.kill(fe, signal.SIGCONT)

        lab.wait_for(lambda: "no longer managing dlx" in daemon_log(lab), LIMIT)
        log = daemon_log(lab)
        assert "routing socket: No buffer space available" in log  # it did overflow
        assert "dlx (index" in log and "vanished while events were lost" in log
        assert "no longer managing dl0" not in log
        assert daemon.poll() is None and has_addr(lab, h.address)

        # the kernel and the frontend agree again: a new dlx is a new interface
        add_veth(lab, "dlx", "dlxp")
        lab.wait_for(lambda: daemon_log(lab).count("managing dlx (index") == 2, LIMIT)
        assert daemon.poll() is None


# --- 11.12: dhcpleasectl IF sets a down interface up ------------------------------------------


@pytest.mark.parametrize("managed", [False, True])
def test_dhcpleasectl_sets_a_down_interface_up(managed: bool) -> None:
    """As the original's dhcpleasectl (SIOCSIFFLAGS): the interface goes up and is leased,
    whether the daemon managed it already or is told to by this request."""
    with Lab(start_dnsmasq=False, client_up=False) as lab:
        h = HostileServer(lab)
        daemon = lab.start_daemon("-d", "-v", *([lab.ifname] if managed else []))
        wait_socket(lab, daemon)
        if managed:
            lab.wait_for(lambda: f"managing {lab.ifname} (index" in daemon_log(lab), LIMIT)
        time.sleep(0.5)
        assert not has_addr(lab, h.address)  # down: nothing happens by itself
        r = lab.ctl(lab.ifname)
        assert r.returncode == 0, (r.stdout, r.stderr)
        wait_addr(lab, daemon, h.address)
        flags = json.loads(lab.exec_in(lab.cli_ns, [IP, "-j", "link", "show", lab.ifname]).stdout)
        assert "UP" in flags[0]["flags"]
        assert f"set {lab.ifname} up, as dhcpleasectl asked" in daemon_log(lab)
        # asking again for an interface that is up changes nothing
        assert lab.ctl(lab.ifname).returncode == 0
        time.sleep(0.3)
        assert daemon_log(lab).count(f"set {lab.ifname} up") == 1
        assert daemon.poll() is None
