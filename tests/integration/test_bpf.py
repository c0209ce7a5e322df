"""dhcpleased.bpf on a real veth pair: the locked filter, checksum status, the packet
socket that cannot send, the UDP sockets and the routing socket.  The sockets must be
opened inside the lab's client netns, so each test runs small scripts there with the
project's interpreter (``ip netns exec``)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest

from dhcpleased import defs
from tests.integration.lab import Lab

pytestmark = pytest.mark.integration

# Client side: the daemon's socket ("strict"), one bound to the interface without the
# foreign-frame prefix ("plain") and one bound to no interface without it ("anywhere"),
# read until each has seen the STOP frame.  A second veth pair in the client netns
# carries a frame that arrives on another interface.
RECEIVER = r"""
import errno, ipaddress, json, os, select, socket, struct, subprocess, sys, time
from dhcpleased import bpf, packet
idx = socket.if_nametoindex(sys.argv[1])
subprocess.run(["ip", "link", "add", "vx0", "type", "veth", "peer", "name", "vx1"], check=True)
for dev in ("vx0", "vx1"):
    subprocess.run(["ip", "link", "set", dev, "up"], check=True)
end = time.monotonic() + 10
while open("/sys/class/net/vx0/operstate").read().strip() != "up" and time.monotonic() < end:
    time.sleep(0.01)  # carrier: both ends up

def unlocked(if_index):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
    bpf._attach(s, bpf.DHCP_FILTER)
    bpf._bind_packet(s, if_index, 0x0800)
    return s

socks = {"strict": bpf.open_bpfsock(idx), "plain": unlocked(idx), "anywhere": unlocked(0)}
lock = {}
s = socks["strict"]
lock["receive_only"] = bpf.receive_only(s)
frame = b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x08\x06" + b"\0" * 28
for name, send in (("send", lambda: s.send(frame)), ("write", lambda: os.write(s.fileno(), frame))):
    try:
        send()
        lock[name] = "ok"
    except OSError as e:
        lock[name] = errno.errorcode[e.errno]
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
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
tx.bind(("vx1", 0))
ANY, BCAST = ipaddress.IPv4Address(0), ipaddress.IPv4Address("255.255.255.255")
tx.send(packet.udp_frame(b"othernic", src_mac=b"\x02" * 6, dst_mac=b"\xff" * 6,
                         ip_src=ANY, ip_dst=BCAST, sport=67, dport=68))  # arrives on vx0
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
subprocess.run(["ip", "link", "del", "vx0"], check=True)
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

    # SO_LOCK_FILTER: even root cannot detach, replace or unlock the filter; bound to no
    # interface, the socket cannot send (no destination address: ENXIO)
    assert lock == {
        "detach": "EPERM", "unlock": "EPERM", "attach": "EPERM",
        "receive_only": True, "send": "ENXIO", "write": "ENXIO",
    }  # fmt: skip

    strict = [payload for payload, _, _ in got["strict"]]
    # only whole UDP datagrams to port 68, no fragment, nothing tagged, nothing > 1500,
    # nothing from another interface although it is bound to none
    assert strict == ["raw68", "udp68", "STOP"]
    # the VLAN-tagged frame and the one for another MAC differ only by the prefix
    plain = [payload for payload, _, _ in got["plain"]]
    assert plain == ["vlan5", "otherhost", "raw68", "udp68", "STOP"]
    # ... and so does the frame that came in on the other veth
    anywhere = [payload for payload, _, _ in got["anywhere"]]
    assert anywhere == ["othernic", "vlan5", "otherhost", "raw68", "udp68", "STOP"]

    csum = {payload: flags for payload, flags, _ in got["strict"]}
    # veth passes the sender's offloaded checksum on as CHECKSUM_PARTIAL
    assert csum["udp68"] & defs.TP_STATUS_CSUMNOTREADY
    # a frame written whole by a packet socket carries its own checksum: no bits
    assert csum["raw68"] == 0
    assert all(length <= defs.MAX_PACKET for _, _, length in got["strict"])


UDP_CLIENT = r"""
import json, os, socket, subprocess, sys, time
from ipaddress import IPv4Address
from dhcpleased import bpf
ifname, addr, server = sys.argv[1:4]
idx = socket.if_nametoindex(ifname)
b = bpf.open_bcastsock(idx)
print("ready", flush=True)
sys.stdin.readline()
b.send(b"bcast-noaddr")
subprocess.run(["ip", "addr", "add", addr + "/24", "dev", ifname], check=True)
b.send(b"bcast-addr")
absorb = bpf.open_udpsock(idx, IPv4Address(addr))
u = bpf.open_udpsock(idx, IPv4Address(addr), IPv4Address(server))
u.send(b"renew")
print("sent", flush=True)
sys.stdin.readline()
socks = {"bcast": b, "absorb": absorb, "unicast": u}


def udp_table():  # /proc/net/udp: inode -> (peer, rx_queue, drops)
    with open("/proc/net/udp") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    return {int(r[9]): (r[2], int(r[4].split(":")[1], 16), int(r[-1])) for r in rows}


inodes = {name: os.fstat(s.fileno()).st_ino for name, s in socks.items()}
deadline = time.monotonic() + 10
while time.monotonic() < deadline:  # the server's 5 + 5 datagrams, dropped as they come
    table = udp_table()
    if table[inodes["unicast"]][2] >= 5 and table[inodes["absorb"]][2] >= 5:
        break
    time.sleep(0.01)
info = {}
for name, s in socks.items():
    peer, rx_queue, drops = udp_table()[inodes[name]]
    info[name] = {
        "sockname": list(s.getsockname()),
        "device": s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).split(b"\0")[0]
        .decode(),
        "nonblocking": not s.getblocking(),
        "peer": peer, "rx_queue": rx_queue, "drops": drops,
    }
    try:
        s.setsockopt(socket.SOL_SOCKET, bpf.SO_DETACH_FILTER, 0)
        info[name]["detach"] = "ok"
    except OSError as e:
        info[name]["detach"] = e.errno
print(json.dumps(info), flush=True)
"""

UDP_SERVER = r"""
import json, socket, struct, sys
dev, client = sys.argv[1:3]
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sniff.bind((dev, 0))
sniff.setblocking(False)
l = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
l.bind(("0.0.0.0", 67))
l.settimeout(5)
print("ready", flush=True)
got = []
while len(got) < 3:
    data, peer = l.recvfrom(2048)
    got.append([data.decode(), list(peer)])
odd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
odd.bind(("0.0.0.0", 999))
for _ in range(5):
    l.sendto(b"x" * 500, (client, 68))  # from the server's port 67: the renewal socket's peer
    odd.sendto(b"y" * 500, (client, 68))  # from elsewhere: the parent's unconnected one
print("replied", flush=True)
sys.stdin.readline()  # the client has counted them all: any ICMP answer is on the wire
frames, icmp = [], 0
while True:
    try:
        f = sniff.recv(4096)
    except BlockingIOError:
        break
    if f[12:14] != b"\x08\x00":
        continue
    ihl = (f[14] & 15) * 4
    if f[23] == 1 and f[14 + ihl] == 3:  # ICMP destination unreachable
        icmp += 1
    if f[23] != 17:
        continue
    sport, dport = struct.unpack("!HH", f[14 + ihl : 18 + ihl])
    if (sport, dport) == (68, 67):
        frames.append({
            "payload": f[14 + ihl + 8:].decode(errors="replace"), "dst_mac": f[:6].hex(),
            "src": socket.inet_ntoa(f[26:30]), "dst": socket.inet_ntoa(f[30:34]),
            "tos": f[15], "ttl": f[22], "frag": f[20:22].hex(),
        })
print(json.dumps({"got": got, "frames": frames, "icmp": icmp}), flush=True)
"""


def test_udp_sockets_send_dhcp_and_never_queue() -> None:
    """The broadcast socket sends from 0.0.0.0 while the interface has no address (from
    the address once it has one: the kernel picks it), with the original's TOS and TTL
    and no DF; the renewal socket sends to its server only; none of them queues a byte
    of what arrives, and no reply draws an ICMP port unreachable."""
    with Lab(start_dnsmasq=False) as lab:
        client = str(lab.subnet.network_address + 50)
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
            [sys.executable, "-c", UDP_SERVER, lab.srv_ifname, client],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert srv.stdout is not None and srv.stdin is not None
        assert srv.stdout.readline().strip() == "ready"
        c.stdin.write("go\n")
        c.stdin.flush()
        assert c.stdout.readline().strip() == "sent"
        assert srv.stdout.readline().strip() == "replied"
        c.stdin.write("go\n")
        c.stdin.flush()
        info = json.loads(c.stdout.readline())
        srv.stdin.write("done\n")
        srv.stdin.flush()
        seen = json.loads(srv.stdout.readline())
        server_mac = lab.mac(lab.srv_ns, lab.srv_ifname).replace(":", "")
    assert seen["got"] == [
        ["bcast-noaddr", ["0.0.0.0", 68]],
        ["bcast-addr", [client, 68]],
        ["renew", [client, 68]],
    ]
    common = {"dst_mac": "f" * 12, "tos": 0x10, "ttl": 128, "frag": "0000"}
    bcast = [f for f in seen["frames"] if f["payload"].startswith("bcast")]
    assert bcast == [
        {**common, "payload": "bcast-noaddr", "src": "0.0.0.0", "dst": "255.255.255.255"},
        {**common, "payload": "bcast-addr", "src": client, "dst": "255.255.255.255"},
    ]
    (renew,) = [f for f in seen["frames"] if f["payload"] == "renew"]
    assert (renew["src"], renew["dst"], renew["dst_mac"]) == (
        client,
        str(lab.server_ip),
        server_mac,
    )
    assert seen["icmp"] == 0
    assert info["bcast"]["sockname"] == ["0.0.0.0", defs.CLIENT_PORT]
    assert info["absorb"]["sockname"] == info["unicast"]["sockname"] == [client, defs.CLIENT_PORT]
    for name in ("bcast", "absorb", "unicast"):
        sock = info[name]
        assert sock["device"] == lab.ifname and sock["nonblocking"], name
        assert sock["detach"] == errno.EPERM, name
        assert sock["rx_queue"] == 0, name
    assert info["unicast"]["drops"] == 5  # the server's replies: its connected peer
    assert info["absorb"]["drops"] == 5  # anyone else's
    assert info["bcast"]["peer"] == "FFFFFFFF:0043"  # connected to 255.255.255.255:67


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
