"""The lab itself: dnsmasq really answers with what it was told, nothing leaks."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.integration import lab as lab_module
from tests.integration.lab import Lab, _udp_port_open, all_lab_namespaces

pytestmark = pytest.mark.integration

# DISCOVER built with scapy, sent through a plain packet socket, answered through
# dhcpleased.bpf's (which cannot send).
DISCOVER = r"""
import json, select, socket, sys, time
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from dhcpleased import bpf
ifname = sys.argv[1]
s = bpf.open_bpfsock(socket.if_nametoindex(ifname))
mac = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
xid = 0x5A5A1234
d = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
     / UDP(sport=68, dport=67) / BOOTP(chaddr=mac, xid=xid, flags=0x8000)
     / DHCP(options=[("message-type", "discover"),
                     ("param_req_list", [1, 3, 6, 15, 58, 59, 119, 121]), "end"]))
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
tx.bind((ifname, 0))
tx.send(bytes(d))
end = time.monotonic() + 10
while time.monotonic() < end:
    select.select([s], [], [], 0.5)
    got = bpf.recv_frame(s)
    if got is None:
        continue
    frame, csum = got
    p = Ether(frame)
    if BOOTP not in p or p[BOOTP].xid != xid:
        continue
    opts = {o[0]: [str(v) if not isinstance(v, (int, str)) else v for v in o[1:]]
            for o in p[DHCP].options if isinstance(o, tuple)}
    print(json.dumps({"yiaddr": p[BOOTP].yiaddr, "csum": csum, "opts": opts}, default=repr))
    break
"""


def test_dnsmasq_offers_what_it_was_told() -> None:
    with Lab(t1=30, t2=50, classless_routes=[("198.18.7.0/24", "10.213.0.9")]) as lab:
        r = lab.python_in(lab.cli_ns, DISCOVER, lab.ifname)
        assert r.returncode == 0, r.stderr
        assert r.stdout, f"no OFFER\n{r.stderr}\n{lab.dnsmasq_log_text()}"
        offer = json.loads(r.stdout)
        opts = offer["opts"]
        assert opts["message-type"] == [2]
        assert lab.range_start <= IPv4Address(offer["yiaddr"]) <= lab.range_end
        assert opts["router"] == [str(lab.server_ip)]
        assert opts["name_server"] == list(lab.dns)
        assert opts["server_id"] == [str(lab.server_ip)]
        assert opts["lease_time"] == [lab.lease_time]
        assert opts["renewal_time"] == [30]
        assert opts["rebinding_time"] == [50]
        assert opts["domain"] == [repr(lab.domain.encode())]
        assert "119" in opts  # scapy has no name for domain search
        assert "198.18.7.0/24:10.213.0.9" in opts["classless_static_routes"][0]
        assert "DHCPOFFER(dls0)" in lab.dnsmasq_log_text()


def test_run_in_client_writes_only_lab_files() -> None:
    host_files = {p: _content(p) for p in ("/etc/resolv.conf", "/etc/dhcpleased.conf")}
    with Lab(start_dnsmasq=False) as lab:
        script = (
            "set -e; cat /etc/resolv.conf; echo changed > /etc/resolv.conf;"
            " echo lease > /var/lib/dhcpleased/dl0; echo sock > /run/dhcpleased.sock;"
            " echo conf > /etc/dhcpleased.conf; ip -o link show dl0 >/dev/null; echo ok"
        )
        r = lab.run_in_client_wait(["sh", "-c", script])
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("# lab resolv.conf")
        assert lab.resolv_conf.read_text() == "changed\n"
        assert lab.lease_file().read_text() == "lease\n"
        assert (lab.run_dir / "dhcpleased.sock").read_text() == "sock\n"
        assert (lab.etc_dir / "dhcpleased.conf").read_text() == "conf\n"
        # each process gets its own mount namespace over the same lab directories
        r = lab.run_in_client_wait(["cat", "/etc/resolv.conf", "/run/dhcpleased.sock"])
        assert r.stdout == "changed\nsock\n"
    assert {p: _content(p) for p in host_files} == host_files
    assert not Path("/run/dhcpleased.sock").exists()
    assert not Path("/var/lib/dhcpleased/dl0").exists()


def _content(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def test_teardown_kills_by_pid_and_removes_everything() -> None:
    with Lab() as lab:
        names = {lab.srv_ns, lab.cli_ns}
        assert names <= set(all_lab_namespaces())
        sleeper = lab.run_in_client(["sleep", "300"])
        # a grandchild the lab never saw: found in the lab's netns at teardown
        orphan = lab.exec_in(lab.cli_ns, ["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"])
        orphan_pid = int(orphan.stdout)
        dnsmasq_pid = lab.dnsmasq.pid if lab.dnsmasq else 0
        tmp = lab.tmp
    assert not names & set(all_lab_namespaces())
    for pid in (sleeper.pid, orphan_pid, dnsmasq_pid):
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    assert not tmp.exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_stop_and_restart_dnsmasq() -> None:
    with Lab() as lab:
        assert lab.dnsmasq is not None
        first = lab.dnsmasq.pid
        lab.stop_dnsmasq()
        assert lab.dnsmasq is None
        assert not Path(f"/proc/{first}").exists()
        lab.start_dnsmasq()
        assert lab.dnsmasq is not None and lab.dnsmasq.pid != first
        assert _udp_port_open(lab.dnsmasq.pid, 67)
        lab.restart_dnsmasq()
        assert lab.dnsmasq is not None and _udp_port_open(lab.dnsmasq.pid, 67)
        assert lab.dnsmasq_log_text().count("started, version") == 3


def test_kernel_state_helpers() -> None:
    with Lab(start_dnsmasq=False) as lab:
        assert lab.addresses() == []
        lab.exec_in(lab.cli_ns, ["ip", "addr", "add", "198.18.3.4/24", "dev", lab.ifname])
        assert lab.addresses() == ["198.18.3.4/24"]
        routes = lab.routes()
        assert {"dst": "198.18.3.0/24", "protocol": "kernel"}.items() <= routes[0].items()
        lab.server_link(up=False)
        lab.wait_for(lambda: "NO-CARRIER" in _link(lab), 5, what="carrier loss")
        lab.server_link(up=True)
        lab.wait_for(lambda: "NO-CARRIER" not in _link(lab), 5, what="carrier")
        with pytest.raises(TimeoutError, match="never"):
            lab.wait_for(lambda: False, 0.1, what="never")


def _link(lab: Lab) -> str:
    return lab.exec_in(lab.cli_ns, ["ip", "-o", "link", "show", lab.ifname]).stdout


def test_skip_or_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DHCPLEASED_REQUIRE_INTEGRATION", raising=False)
    with pytest.raises(pytest.skip.Exception):
        lab_module.skip_or_fail("nope")
    monkeypatch.setenv("DHCPLEASED_REQUIRE_INTEGRATION", "1")
    with pytest.raises(pytest.fail.Exception, match="nope"):
        lab_module.skip_or_fail("nope")


def test_requirements_reported_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_module.os, "geteuid", lambda: 1000)
    assert lab_module.missing_requirements() == "integration tests need root"


def test_missing_dhcp_user_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def nobody(name: str) -> None:
        raise KeyError(name)

    monkeypatch.setattr(lab_module.pwd, "getpwnam", nobody)
    monkeypatch.delenv("DHCPLEASED_REQUIRE_INTEGRATION", raising=False)
    with pytest.raises(pytest.skip.Exception, match="_dhcp"):
        lab_module.require_dhcp_user()
    monkeypatch.setenv("DHCPLEASED_REQUIRE_INTEGRATION", "1")
    with pytest.raises(pytest.fail.Exception, match="_dhcp"):
        Lab(start_dnsmasq=False).start_daemon("-d")
