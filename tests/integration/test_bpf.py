"""dhcpleased.bpf on a real veth pair: the locked filter, checksum status, the UDP and
routing sockets.  The sockets must be opened inside the lab's client netns, so each test
runs small scripts there with the project's interpreter (``ip netns exec``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dhcpleased import defs
from tests.integration.lab import Lab

pytestmark = pytest.mark.integration

# Client side: the daemon's socket ("strict") and one without the foreign-frame prefix
# ("plain"), read until each has seen the STOP frame.
RECEIVER = r"""
import errno, json, select, socket, struct, sys, time
from dhcpleased import bpf
idx = socket.if_nametoindex(sys.argv[1])
socks = {"strict": bpf.open_bpfsock(idx), "plain": bpf.open_bpfsock(idx, drop_foreign=False)}
lock = {}
s = socks["strict"]
for name, level, opt, val in [
    ("detach", socket.SOL_SOCKET, bpf.SO_DETACH_FILTER, 0),
    ("unlock", socket.SOL_SOCKET, bpf.SO_LOCK_FILTER, 0),
]:
    try:
        s.setsockopt(level, opt, val)
        lock[name] = "ok"
    except OSError as e:
        lock[name] = errno.errorcode[e.errno]
try:
    bpf._attach(s, bpf.DHCP_FILTER[-1:])
    lock["attach"] = "ok"
except OSError as e:
    lock["attach"] = errno.errorcode[e.errno]
print(json.dumps({"lock": lock}), flush=True)
out = {k: [] for k in socks}
done = set()
end = time.monotonic() + 10
while len(done) < len(socks) and time.monotonic() < end:
    ready, _, _ = select.select(list(socks.values()), [], [], 0.5)
    for name, sock in socks.items():
        if sock not in ready:
            continue
        while (got := bpf.recv_frame(sock)) is not None:
            frame, csum = got
            ihl = (frame[14] & 15) * 4
            payload = frame[14 + ihl + 8:].split(b"\0")[0].decode(errors="replace")
            out[name].append([payload, csum, len(frame)])
            if payload == "STOP":
                done.add(name)
print(json.dumps(out), flush=True)
"""

# Server side: decoys and real ones, raw frames first, then kernel-built UDP datagrams
# (which veth hands over with a partial checksum), then STOP.
SENDER = r"""
import logging, socket, sys
logging.getLogger("scapy").setLevel(logging.ERROR)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
dev = sys.argv[1]
E = Ether(src="02:00:00:00:00:02", dst="ff:ff:ff:ff:ff:ff")
OTHER = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:99")
A = {"src": "198.18.0.1", "dst": "255.255.255.255"}
I = IP(**A)
frames = [
    E / I / UDP(sport=67, dport=67) / b"to67",
    E / I / UDP(sport=67, dport=9999) / b"to9999",
    E / IP(**A, flags="MF") / UDP(sport=67, dport=68) / b"firstfrag",
    E / IP(**A, frag=3) / UDP(sport=67, dport=68) / b"laterfrag",
    E / I / TCP(sport=67, dport=68) / b"tcp",
    E / IPv6() / UDP(sport=67, dport=68) / b"ipv6",
    E / Dot1Q(vlan=5) / I / UDP(sport=67, dport=68) / b"vlan5",
    E / I / UDP(sport=67, dport=68) / (b"big\0" + b"x" * 1500),
    OTHER / I / UDP(sport=67, dport=68) / b"otherhost",
    E / I / UDP(sport=67, dport=68) / b"raw68",
]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((dev, 0))
for f in frames:
    s.send(bytes(f))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
u.sendto(b"udp9999", ("255.255.255.255", 9999))
u.sendto(b"udp68", ("255.255.255.255", 68))
s.send(bytes(E / I / UDP(sport=67, dport=68) / b"STOP"))
"""


def exchange(lab: Lab) -> tuple[dict[str, str], dict[str, list[list[object]]]]:
    for ns, dev in ((lab.srv_ns, lab.srv_ifname), (lab.cli_ns, lab.ifname)):
        lab.exec_in(ns, ["ip", "link", "set", dev, "mtu", "2000"])  # lets "big" through
    rx = lab.spawn_in(
        lab.cli_ns,
        [sys.executable, "-c", RECEIVER, lab.ifname],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert rx.stdout is not None
    first = rx.stdout.readline()
    assert first, rx.stderr.read() if rx.stderr else ""
    tx = lab.python_in(lab.srv_ns, SENDER, lab.srv_ifname)
    assert tx.returncode == 0, tx.stderr
    out, err = rx.communicate(timeout=20)
    assert rx.returncode == 0, err
    return json.loads(first)["lock"], json.loads(out)


def test_filter_lock_and_checksum_status() -> None:
    with Lab(start_dnsmasq=False) as lab:
        lock, got = exchange(lab)

    # SO_LOCK_FILTER: even root cannot detach, replace or unlock the filter
    assert lock == {"detach": "EPERM", "unlock": "EPERM", "attach": "EPERM"}

    strict = [payload for payload, _, _ in got["strict"]]
    # only whole UDP datagrams to port 68, no fragment, nothing tagged, nothing > 1500
    assert strict == ["raw68", "udp68", "STOP"]
    # the VLAN-tagged frame and the one for another MAC differ only by the prefix
    plain = [payload for payload, _, _ in got["plain"]]
    assert plain == ["vlan5", "otherhost", "raw68", "udp68", "STOP"]

    csum = {payload: flags for payload, flags, _ in got["strict"]}
    # veth passes the sender's offloaded checksum on as CHECKSUM_PARTIAL
    assert csum["udp68"] & defs.TP_STATUS_CSUMNOTREADY
    # a frame written whole by a packet socket carries its own checksum: no bits
    assert csum["raw68"] == 0
    assert all(length <= defs.MAX_PACKET for _, _, length in got["strict"])


UDP_CLIENT = r"""
import errno, json, os, socket, sys, time
from ipaddress import IPv4Address
from dhcpleased import bpf
ifname, addr, server = sys.argv[1:4]
s = bpf.open_udpsock(ifname, IPv4Address(addr))
info = {
    "sockname": list(s.getsockname()),
    "device": s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).split(b"\0")[0].decode(),
    "nonblocking": not s.getblocking(),
}
try:
    s.setsockopt(socket.SOL_SOCKET, bpf.SO_DETACH_FILTER, 0)
    info["detach"] = "ok"
except OSError as e:
    info["detach"] = errno.errorcode[e.errno]
print("ready", flush=True)
sys.stdin.readline()
s.sendto(b"renew", (server, 67))
time.sleep(0.3)
inode = os.fstat(s.fileno()).st_ino
with open("/proc/net/udp") as f:
    for line in f.read().splitlines()[1:]:
        fields = line.split()
        if int(fields[9]) == inode:
            info["rx_queue"] = int(fields[4].split(":")[1], 16)
            info["drops"] = int(fields[-1])
print(json.dumps(info), flush=True)
"""

UDP_SERVER = r"""
import json, socket, sys
client = sys.argv[1]
l = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
l.bind(("0.0.0.0", 67))
l.settimeout(5)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    u.sendto(b"x" * 500, (client, 68))
print("listening", flush=True)
data, peer = l.recvfrom(2048)
print(json.dumps({"data": data.decode(), "peer": list(peer)}), flush=True)
"""


def test_udpsock_sends_but_never_queues() -> None:
    with Lab(start_dnsmasq=False) as lab:
        client = str(lab.subnet.network_address + 50)
        lab.exec_in(lab.cli_ns, ["ip", "addr", "add", f"{client}/24", "dev", lab.ifname])
        c = lab.spawn_in(
            lab.cli_ns,
            [sys.executable, "-c", UDP_CLIENT, lab.ifname, client, str(lab.server_ip)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert c.stdout is not None and c.stdin is not None
        assert c.stdout.readline().strip() == "ready"
        srv = lab.spawn_in(
            lab.srv_ns,
            [sys.executable, "-c", UDP_SERVER, client],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert srv.stdout is not None
        assert srv.stdout.readline().strip() == "listening"
        c.stdin.write("go\n")
        c.stdin.flush()
        info = json.loads(c.stdout.readline())
        got = json.loads(srv.stdout.readline())
    assert info["sockname"] == [client, defs.CLIENT_PORT]
    assert info["device"] == lab.ifname
    assert info["nonblocking"]
    assert info["detach"] == "EPERM"
    assert info["rx_queue"] == 0
    assert info["drops"] >= 5
    assert got == {"data": "renew", "peer": [client, defs.CLIENT_PORT]}


ROUTESOCK = r"""
import json, select, socket, subprocess, sys
from dhcpleased import bpf, netlink
ifname = sys.argv[1]
s = bpf.open_routesock()

def drain(timeout=1.0):
    events = []
    while select.select([s], [], [], timeout)[0]:
        events += filter(None, map(netlink.link_event, netlink.parse(s.recv(65536))))
        timeout = 0.2
    return [[e.deleted, e.if_index, e.if_name, e.hw_address.hex(), e.up, e.link_state, e.arphrd]
            for e in events]

out = {"index": socket.if_nametoindex(ifname)}
s.send(netlink.link_dump_request(1))
out["dump"] = drain()
subprocess.run(["ip", "link", "set", ifname, "down"], check=True)
out["down"] = drain()
subprocess.run(["ip", "link", "add", "vt0", "type", "veth", "peer", "name", "vt1"], check=True)
out["add"] = drain()
out["vt0"] = socket.if_nametoindex("vt0")
subprocess.run(["ip", "link", "del", "vt0"], check=True)
out["del"] = drain()
print(json.dumps(out))
"""


def test_routesock_link_events() -> None:
    with Lab(start_dnsmasq=False) as lab:
        mac = lab.mac().replace(":", "")
        r = lab.python_in(lab.cli_ns, ROUTESOCK, lab.ifname)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    idx, vt0 = out["index"], out["vt0"]
    names = {e[2] for e in out["dump"]}
    assert names == {"lo", lab.ifname}
    (dl0,) = [e for e in out["dump"] if e[2] == lab.ifname]
    assert dl0 == [False, idx, lab.ifname, mac, True, defs.IF_OPER_UP, 1]
    assert [False, idx, lab.ifname, mac, False, defs.IF_OPER_DOWN, 1] in out["down"]
    assert any(e[:3] == [False, vt0, "vt0"] for e in out["add"])
    assert any(e[:3] == [True, vt0, "vt0"] for e in out["del"])
    assert any(e[0] and e[2] == "vt1" for e in out["del"])
