"""Replies that lie, from the scapy server of :mod:`hostile`: the daemon stays up, takes
the right lease (never the "evil" .66 that every malformed reply offers) and keeps it.

Two phases of the lifecycle, each under the same barrage: while discovering (the server
sends the whole malformed catalogue with the client's own xid before each real answer,
plus a 10,000-frame flood of OFFERs/ACKs/NAKs with other xids) and while bound (the
catalogue, well-formed replies the state must ignore, the flood, then a renewal that must
still work).  CPU use of each daemon process is printed (run with -s) and only checked
against a ceiling no healthy run can reach: timing is for bench/, not for tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.hostile import EVIL_LAST_OCTET, HostileServer
from tests.integration.lab import Lab
from tests.integration.test_daemon import children, daemon_log
from tests.integration.test_faults import (
    LIMIT,
    address_monitor,
    deletions,
    dns_proposed,
    has_addr,
    wait_addr,
    wait_msg,
)

pytestmark = pytest.mark.integration

FLOOD = 10_000
CPU_CEILING = 60.0  # seconds for the whole flood, all processes: pathological only


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_pids(daemon: subprocess.Popen[bytes]) -> dict[str, int]:
    pids = {"main": daemon.pid}
    for k in children(daemon.pid):
        pids[Path(f"/proc/{k}/comm").read_text().strip()] = k
    return pids


def huge_search_option() -> str:
    """Option 119 with 800 bytes of valid names (four instances; the frame stays < MTU)."""
    wire = b""
    for i in range(40):
        for label in (f"sub{i:02d}".encode(), b"example", b"test"):
            wire += bytes([len(label)]) + label
        wire += b"\0"
    return wire.hex()


def evil_seen(lab: Lab, monitor: Path) -> bool:
    evil = f"{lab.subnet.network_address + EVIL_LAST_OCTET}/"
    return evil in monitor.read_text() or any(a.startswith(evil) for a in lab.addresses())


def flood(h: HostileServer, evil: str, **extra: str) -> str:
    args = ["--count", str(FLOOD), "--address", evil]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", v]
    return h.tool("flood", *args)


def report_cpu(what: str, before: dict[str, float], after: dict[str, float]) -> float:
    used = {k: after[k] - before[k] for k in after}
    total = sum(used.values())
    per = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(used.items()))
    print(f"\n{what}: {FLOOD} forged frames: CPU {per}; total {total:.2f} s")
    return total


def test_hostile_replies_during_discovery() -> None:
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(
            lab, mode="silent", garbage_first=True, extra=[[119, huge_search_option()]]
        )
        evil = str(lab.subnet.network_address + EVIL_LAST_OCTET)
        with address_monitor(lab) as mon:
            daemon = lab.start_daemon("-d", "-v", lab.ifname)
            wait_msg(h, lambda m: m["type"] == "discover", "first DISCOVER")
            pids = daemon_pids(daemon)
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            assert flood(h, evil).strip() == str(FLOOD)
            after = {k: cpu_seconds(p) for k, p in pids.items()}
            assert report_cpu("discovering", before, after) < CPU_CEILING
            assert daemon.poll() is None
            assert "Bound" not in daemon_log(lab)  # nothing forged was taken

            h.set(mode="serve")  # the real answers, each after the malformed catalogue
            wait_addr(lab, daemon, h.address)
            lab.wait_for(lambda: dns_proposed(lab), LIMIT, what="DNS")
        assert not evil_seen(lab, mon)
        assert daemon_pids(daemon) == pids  # no process died or was replaced
        # the huge option 119 was taken, within the search-list bound
        search = next(
            line for line in lab.resolv_conf.read_text().splitlines() if line.startswith("search")
        )
        assert "sub00.example.test" in search and len(search) <= 1024
        log = daemon_log(lab)
        for reason in ("bad IP checksum", "bad UDP checksum", "bad magic cookie",
                       "option 121 with invalid prefixlen",
                       "received option 53 with wrong length", "overruns the packet"):  # fmt: skip
            assert reason in log, reason


def test_hostile_replies_while_bound() -> None:
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, lease=60, t1=5, t2=50)
        evil = str(lab.subnet.network_address + EVIL_LAST_OCTET)
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        wait_addr(lab, daemon, h.address)
        lab.wait_for(lambda: dns_proposed(lab), LIMIT, what="DNS")
        xid = str(h.messages()[-1]["xid"])
        pids = daemon_pids(daemon)
        n = len(h.messages())
        with address_monitor(lab) as mon:
            for x in (xid, "0"):
                names = h.tool("garbage", "--address", evil, "--xid", x, "--with-good")
                assert "good ack" in names and "option 121 prefix 33" in names
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            flood(h, evil, avoid_xid=xid)
            after = {k: cpu_seconds(p) for k, p in pids.items()}
            assert report_cpu("bound", before, after) < CPU_CEILING
            # the lease still works: the renewal at T1 (5 s) is sent and its ACK taken
            renew = wait_msg(h, lambda m: m["type"] == "request", "renewal", n)
            lab.wait_for(lambda: "Renewing -> Bound" in daemon_log(lab), LIMIT)
        assert renew["ciaddr"] == h.address
        assert deletions(mon) == [] and not evil_seen(lab, mon)
        assert has_addr(lab, h.address) and dns_proposed(lab)
        assert daemon.poll() is None and daemon_pids(daemon) == pids
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(LIMIT) == 0


def test_non_unicast_gateways_and_nameservers_do_not_end_the_daemon() -> None:
    """Fuzzing found it: an ACK with a multicast router, a 121 route via 240.0.0.1 and DNS
    127.0.0.1 made the engine ask for them and the parent exit (compromised engine).
    Now they are dropped from the lease and the rest of it is applied."""
    with Lab(start_dnsmasq=False) as lab:
        routes121 = bytes([24, 198, 51, 100, 240, 0, 0, 1, 0, 10, 0, 0, 1])  # 2nd: default
        routes121 = routes121[:8] + bytes([0]) + lab.server_ip.packed
        h = HostileServer(
            lab,
            routers=["224.0.0.1"],
            dns=["127.0.0.1", "198.18.0.53", "240.1.2.3"],
            extra=[[121, routes121.hex()]],
        )
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        wait_addr(lab, daemon, h.address)
        lab.wait_for(
            lambda: "nameserver 198.18.0.53" in lab.resolv_conf.read_text(), LIMIT, what="DNS"
        )
        text = lab.resolv_conf.read_text()
        assert "127.0.0.1" not in text and "240.1.2.3" not in text
        routes = lab.routes()
        assert any(r["dst"] == "default" and r["gateway"] == str(lab.server_ip) for r in routes)
        assert not any(r.get("gateway") in ("240.0.0.1", "224.0.0.1") for r in routes)
        log = daemon_log(lab)
        assert "ignoring routes via non-unicast gateways" in log
        assert "ignoring non-unicast nameservers" in log
        assert daemon.poll() is None


def test_broken_naks_where_a_nak_would_act() -> None:
    """Before every ACK the server sends NAKs with the client's own xid that each break
    one header check (wrong xid, checksums, lengths, cookie, op, fragment...). In
    Requesting, Renewing and Rebooting a NAK taken would restart discovery (and drop the
    address): the server must see no second DISCOVER, ``ip monitor`` no deletion. Then a
    correct NAK among them still acts, so the client was listening."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab, lease=60, t1=2, t2=50, broken_naks=True)
        with address_monitor(lab) as mon:
            daemon = lab.start_daemon("-d", "-v", lab.ifname)  # Requesting
            wait_addr(lab, daemon, h.address)
            n = len(h.messages())
            wait_msg(h, lambda m: m["type"] == "request", "renewal", n)  # Renewing
            renewed = len(h.messages())
            wait_msg(h, lambda m: m["type"] == "request", "second renewal", renewed)
            lab.wait_for(lambda: f"ip: {h.address}" in lab.lease_file().read_text(), LIMIT)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(LIMIT) == 0
            n = len(h.messages())
            daemon = lab.start_daemon("-d", "-v", lab.ifname, log="second.log")  # Rebooting
            reboot = wait_msg(h, lambda m: m["type"] == "request", "INIT-REBOOT", n)
            assert reboot["requested"] == h.address and reboot["ciaddr"] == "0.0.0.0"
            n = len(h.messages())
            wait_msg(h, lambda m: m["type"] == "request", "renewal after reboot", n)
            assert [m["answer"] for m in h.messages()] == ["offer"] + ["ack"] * (
                len(h.messages()) - 1
            )
            assert len(h.messages("discover")) == 1
            assert deletions(mon) == [] and has_addr(lab, h.address)
        n = len(h.messages())
        h.set(nak_requests=1)  # a correct NAK after the broken ones: the client acts
        wait_msg(h, lambda m: m["type"] == "discover", "DISCOVER after the real NAK", n)
        assert daemon.poll() is None
