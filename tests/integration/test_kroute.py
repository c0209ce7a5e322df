"""dhcpleased.kroute against a real kernel, in the lab's client netns.

KRoute runs in a child process inside the netns (``ip netns exec``) that takes one JSON
command per line, so the test can look at ``ip -j addr/route`` between steps.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.lab import Lab
from tests.integration.xdp import cap_client_mtu, mtu

pytestmark = pytest.mark.integration

SERVER = r"""
import asyncio, json, logging, socket, sys
from ipaddress import IPv4Address as A
from dhcpleased.kroute import KRoute
from dhcpleased.packet import Route
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

async def main():
    k = KRoute()
    await k.open()
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd = json.loads(line)
        idx = cmd.get("index") or socket.if_nametoindex(cmd["ifname"])
        routes = [Route(A(d), A(m), A(g)) for d, m, g in cmd.get("routes", [])]
        try:
            result = None
            if cmd["op"] == "configure":
                await k.configure(idx, A(cmd["addr"]), A(cmd["mask"]), routes)
            elif cmd["op"] == "deconfigure":
                await k.deconfigure(idx, A(cmd["addr"]), A(cmd["mask"]), routes)
            elif cmd["op"] == "set_mtu":
                result = await k.set_mtu(idx, cmd["mtu"])
            elif cmd["op"] == "restore_mtu":
                result = await k.restore_mtu(idx)
            else:
                await k.withdraw_routes(idx, routes)
            reply = {"ok": True} if result is None else {"ok": True, "result": result}
            print(json.dumps(reply), flush=True)
        except OSError as e:
            print(json.dumps({"ok": False, "errno": e.errno, "error": str(e)}), flush=True)
    await k.close()

asyncio.run(main())
"""

ANY = "0.0.0.0"
M24 = "255.255.255.0"


class KRouteChild:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.proc = lab.spawn_in(
            lab.cli_ns,
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, op: str, ifname: str | None = None, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        cmd = {"op": op, "ifname": ifname or self.lab.ifname, **kw}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else "child died"
        reply: dict[str, Any] = json.loads(line)
        return reply


@pytest.fixture
def kr() -> Iterator[KRouteChild]:
    with Lab(start_dnsmasq=False) as lab:
        yield KRouteChild(lab)


def dhcp_routes(lab: Lab) -> dict[str, dict[str, Any]]:
    return {r["dst"]: r for r in lab.routes() if r.get("protocol") == "dhcp"}


def net(lab: Lab, host: int) -> str:
    return str(lab.subnet.network_address + host)


def test_configure_routes_of_every_kind(kr: KRouteChild) -> None:
    lab = kr.lab
    addr, gw, gw2 = net(lab, 50), net(lab, 1), net(lab, 2)
    routes = [
        [ANY, ANY, gw],  # option 3: default via an on-subnet router
        ["198.18.5.0", M24, ANY],  # 121 with gateway 0: on-link
        ["198.18.6.0", M24, gw2],
        ["198.18.7.0", M24, "198.18.99.1"],  # gateway off the subnet: /32 helper first
    ]
    assert kr("configure", addr=addr, mask=M24, routes=routes) == {"ok": True}
    assert lab.addresses() == [f"{addr}/24"]
    info = lab.exec_in(lab.cli_ns, ["ip", "-j", "-4", "addr", "show", "dev", lab.ifname])
    assert json.loads(info.stdout)[0]["addr_info"][0]["broadcast"] == net(lab, 255)

    got = dhcp_routes(lab)
    assert set(got) == {"default", "198.18.5.0/24", "198.18.6.0/24", "198.18.7.0/24", "198.18.99.1"}
    assert got["default"]["gateway"] == gw
    assert got["198.18.5.0/24"]["scope"] == "link" and "gateway" not in got["198.18.5.0/24"]
    assert got["198.18.6.0/24"]["gateway"] == gw2
    assert got["198.18.7.0/24"]["gateway"] == "198.18.99.1"
    assert got["198.18.99.1"]["scope"] == "link"
    for r in got.values():
        assert r["dev"] == lab.ifname
        assert r["prefsrc"] == addr
        assert r["metric"] == got["default"]["metric"] >= 1000

    # a renewal configures the same again: no error, nothing doubled
    before = lab.routes()
    assert kr("configure", addr=addr, mask=M24, routes=routes) == {"ok": True}
    assert lab.routes() == before
    assert lab.addresses() == [f"{addr}/24"]

    # ignore routes: withdrawn with their helper, the address and kernel route stay
    assert kr("withdraw", routes=routes) == {"ok": True}
    assert dhcp_routes(lab) == {}
    assert lab.addresses() == [f"{addr}/24"]
    assert [r["protocol"] for r in lab.routes()] == ["kernel"]
    assert kr("withdraw", routes=routes) == {"ok": True}  # already gone: fine


def test_off_subnet_default_gateway_and_own_address_gateway(kr: KRouteChild) -> None:
    lab = kr.lab
    addr, gw = net(lab, 60), net(lab, 1)
    # a /32 lease (cloud style): the router is outside the "subnet"
    assert kr("configure", addr=addr, mask="255.255.255.255", routes=[[ANY, ANY, gw]]) == {
        "ok": True
    }
    assert lab.addresses() == [f"{addr}/32"]
    got = dhcp_routes(lab)
    assert set(got) == {gw, "default"}
    assert got[gw]["scope"] == "link"
    assert got["default"]["gateway"] == gw
    assert kr("deconfigure", addr=addr, mask="255.255.255.255", routes=[[ANY, ANY, gw]]) == {
        "ok": True
    }
    assert lab.addresses() == []
    assert dhcp_routes(lab) == {}

    # router == our own address: an on-link default route
    assert kr("configure", addr=addr, mask=M24, routes=[[ANY, ANY, addr]]) == {"ok": True}
    got = dhcp_routes(lab)
    assert set(got) == {"default"}
    assert got["default"]["scope"] == "link"
    assert "gateway" not in got["default"]


def test_prefix_change_replaces_the_address(kr: KRouteChild) -> None:
    lab = kr.lab
    addr = net(lab, 70)
    routes = [[ANY, ANY, net(lab, 1)]]
    assert kr("configure", addr=addr, mask=M24, routes=routes) == {"ok": True}
    assert kr("configure", addr=addr, mask="255.255.0.0", routes=routes) == {"ok": True}
    assert lab.addresses() == [f"{addr}/16"]
    assert "default" in dhcp_routes(lab)


def test_deconfigure_leaves_other_routes_alone(kr: KRouteChild) -> None:
    lab = kr.lab
    addr, gw = net(lab, 80), net(lab, 1)
    routes = [[ANY, ANY, gw], ["198.18.5.0", M24, ANY]]
    assert kr("configure", addr=addr, mask=M24, routes=routes) == {"ok": True}
    # somebody else's address and routes on the same interface, one of them proto dhcp
    # too (the kernel flushes every route of a link that loses its last IPv4 address)
    lab.exec_in(lab.cli_ns, ["ip", "addr", "add", "198.18.40.1/24", "dev", lab.ifname])
    lab.exec_in(lab.cli_ns, ["ip", "route", "add", "198.18.42.0/24", "dev", lab.ifname])
    lab.exec_in(
        lab.cli_ns,
        ["ip", "route", "add", "198.18.41.0/24", "dev", lab.ifname, "proto", "dhcp"],
    )
    assert kr("deconfigure", addr=addr, mask=M24, routes=routes) == {"ok": True}
    assert lab.addresses() == ["198.18.40.1/24"]
    left = {r["dst"]: r.get("protocol", "boot") for r in lab.routes()}  # -j omits boot
    assert left == {"198.18.40.0/24": "kernel", "198.18.41.0/24": "dhcp", "198.18.42.0/24": "boot"}
    # deconfiguring twice (address already gone) is not an error
    assert kr("deconfigure", addr=addr, mask=M24, routes=routes) == {"ok": True}


def test_two_interfaces_keep_a_default_route_each(kr: KRouteChild) -> None:
    lab = kr.lab
    lab.exec_in(lab.cli_ns, ["ip", "link", "add", "dl1", "type", "veth", "peer", "name", "dl1p"])
    for dev in ("dl1", "dl1p"):
        lab.exec_in(lab.cli_ns, ["ip", "link", "set", dev, "up"])
    a0, g0 = net(lab, 90), net(lab, 1)
    a1, g1 = "198.18.20.90", "198.18.20.1"
    assert kr("configure", addr=a0, mask=M24, routes=[[ANY, ANY, g0]]) == {"ok": True}
    assert kr("configure", "dl1", addr=a1, mask=M24, routes=[[ANY, ANY, g1]]) == {"ok": True}
    defaults = {r["dev"]: r for r in lab.routes() if r["dst"] == "default"}
    assert set(defaults) == {lab.ifname, "dl1"}
    assert defaults[lab.ifname]["gateway"] == g0 and defaults["dl1"]["gateway"] == g1
    assert defaults[lab.ifname]["metric"] != defaults["dl1"]["metric"]
    assert kr("deconfigure", addr=a0, mask=M24, routes=[[ANY, ANY, g0]]) == {"ok": True}
    defaults = {r["dev"]: r for r in lab.routes() if r["dst"] == "default"}
    assert set(defaults) == {"dl1"}


def test_errors_come_back_as_oserror(kr: KRouteChild) -> None:
    r = kr("configure", addr=net(kr.lab, 5), mask="255.0.255.0", routes=[])
    assert r["ok"] is False and "not contiguous" in r["error"]
    r = kr("configure", addr=net(kr.lab, 5), mask=M24, routes=[], index=9999)
    assert r["ok"] is False and r["errno"] == errno.ENODEV


def test_deconfigure_with_unknown_prefix_removes_the_address(kr: KRouteChild) -> None:
    """Mask 0: an address remembered from a lease file, its prefix unknown."""
    lab = kr.lab
    addr, gw = net(lab, 85), net(lab, 1)
    routes = [[ANY, ANY, gw]]
    assert kr("configure", addr=addr, mask=M24, routes=routes) == {"ok": True}
    lab.exec_in(lab.cli_ns, ["ip", "addr", "add", "198.18.40.1/24", "dev", lab.ifname])
    assert kr("deconfigure", addr=addr, mask=ANY, routes=routes) == {"ok": True}
    assert lab.addresses() == ["198.18.40.1/24"]
    assert dhcp_routes(lab) == {}
    assert kr("deconfigure", addr=addr, mask=ANY, routes=routes) == {"ok": True}  # gone: fine


def test_a_refused_route_does_not_stop_the_others(kr: KRouteChild) -> None:
    """The kernel refuses a gateway that is the subnet's broadcast address (EINVAL): that
    route is logged and skipped, the others go in, tagged proto dhcp."""
    lab = kr.lab
    addr = net(lab, 95)
    routes = [
        ["198.18.8.0", M24, ANY],
        ["198.18.9.0", M24, net(lab, 255)],
        ["198.18.10.0", M24, net(lab, 2)],
    ]
    assert kr("configure", addr=addr, mask=M24, routes=routes) == {"ok": True}
    got = dhcp_routes(lab)
    assert set(got) == {"198.18.8.0/24", "198.18.10.0/24"}
    assert all(r["protocol"] == "dhcp" and r["prefsrc"] == addr for r in got.values())


# --- the interface's MTU (option 26) ----------------------------------------------------------


def test_mtu_is_set_and_the_first_one_replaced_is_restored(kr: KRouteChild) -> None:
    lab = kr.lab
    assert mtu(lab) == 1500
    assert kr("set_mtu", mtu=1400) == {"ok": True, "result": 1500}
    assert mtu(lab) == 1400
    assert kr("set_mtu", mtu=1380) == {"ok": True, "result": 1400}  # a renewal's new one
    assert kr("set_mtu", mtu=1380) == {"ok": True, "result": 1380}  # unchanged: no change
    assert kr("restore_mtu") == {"ok": True, "result": [1380, 1500]}
    assert mtu(lab) == 1500
    assert kr("restore_mtu") == {"ok": True}  # nothing of ours any more: nothing to do


def test_an_mtu_above_the_devices_maximum_changes_nothing(kr: KRouteChild) -> None:
    lab = kr.lab
    limit = cap_client_mtu(lab)
    r = kr("set_mtu", mtu=9000)
    assert r["ok"] is False and r["errno"] == errno.ERANGE
    assert r["error"].endswith(f"above the device's maximum {limit}")
    assert mtu(lab) == 1500
    assert kr("restore_mtu") == {"ok": True}  # refused: nothing to restore
    assert kr("set_mtu", mtu=limit) == {"ok": True, "result": 1500}  # the maximum itself: fine
    assert mtu(lab) == limit


def test_an_mtu_someone_else_changed_is_left_alone(kr: KRouteChild) -> None:
    lab = kr.lab
    assert kr("set_mtu", mtu=1400)["ok"]
    lab.exec_in(lab.cli_ns, ["ip", "link", "set", "dev", lab.ifname, "mtu", "1300"])
    r = kr("restore_mtu")
    assert r["ok"] is False and r["errno"] == errno.EBUSY
    assert "MTU is 1300, not the lease's 1400: left alone" in r["error"]
    assert mtu(lab) == 1300


def test_restoring_on_an_interface_that_is_gone_is_no_error(kr: KRouteChild) -> None:
    lab = kr.lab
    lab.exec_in(lab.cli_ns, ["ip", "link", "add", "dl9", "type", "veth", "peer", "name", "dl8"])
    index = int(lab.exec_in(lab.cli_ns, ["cat", "/sys/class/net/dl9/ifindex"]).stdout)
    assert kr("set_mtu", ifname="dl9", mtu=1400) == {"ok": True, "result": 1500}
    lab.exec_in(lab.cli_ns, ["ip", "link", "del", "dl9"])
    assert kr("restore_mtu", index=index) == {"ok": True}
