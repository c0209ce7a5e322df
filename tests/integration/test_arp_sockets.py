"""bpf's ARP sockets on a real veth pair: the frontend's locked receive-only socket sees ARP
about its address only (not the host's own, not from another interface, not tagged), and
the parent's send socket receives nothing and puts exactly the frames it builds on the
wire, from the interface's MAC."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.lab import Lab

pytestmark = pytest.mark.integration

WATCHED = "10.213.250.5"

# Client side: the two sockets, the lock tries, then what arrives until STOP; meanwhile
# the parent's socket announces the address once (an outgoing frame, which must not be
# taken for another host's).  A second veth pair carries a frame from another interface.
CLIENT = r"""
import errno, json, os, select, socket, subprocess, sys, time
from ipaddress import IPv4Address
from dhcpleased import bpf, packet
ifname, watched = sys.argv[1], IPv4Address(sys.argv[2])
idx = socket.if_nametoindex(ifname)
subprocess.run(["ip", "link", "add", "vx0", "type", "veth", "peer", "name", "vx1"], check=True)
for dev in ("vx0", "vx1"):
    subprocess.run(["ip", "link", "set", dev, "up"], check=True)
end = time.monotonic() + 10
while open("/sys/class/net/vx0/operstate").read().strip() != "up" and time.monotonic() < end:
    time.sleep(0.01)
rx = bpf.open_arpsock(idx, watched)
tx = bpf.open_arp_sender(idx)
mac = bpf.hw_address(tx)
out = {"mac": mac.hex(), "sysfs": open(f"/sys/class/net/{ifname}/address").read().strip()}
out["receive_only"] = bpf.receive_only(rx)
probe = packet.arp_probe(mac, watched)
tries = {
    "send": lambda: rx.send(probe),
    "write": lambda: os.write(rx.fileno(), probe),
    "detach": lambda: rx.setsockopt(socket.SOL_SOCKET, bpf.SO_DETACH_FILTER, 0),
    "unlock": lambda: rx.setsockopt(socket.SOL_SOCKET, bpf.SO_LOCK_FILTER, 0),
}
for name, call in tries.items():
    try:
        call()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
bpf.send_arp(tx, packet.arp_announcement(mac, watched))  # the host's own: not a claim
other = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
other.bind(("vx1", 0))
other.send(packet.arp_frame(2, b"\x02" * 6, watched, bytes(6), watched, dst=b"\xff" * 6))
print(json.dumps(out), flush=True)
seen, stop = [], False
end = time.monotonic() + 10
while not stop and time.monotonic() < end:
    if select.select([rx], [], [], 0.5)[0]:
        while (got := bpf.recv_frame(rx)) is not None:
            arp = packet.parse_arp(got[0])
            seen.append([arp.op, arp.sha.hex(), str(arp.spa), str(arp.tpa)])
            stop |= arp.sha == b"\x02\xff\xff\xff\xff\xff"
try:
    tx.recv(100)
    out_tx = "received"
except BlockingIOError:
    out_tx = "nothing"
print(json.dumps({"seen": seen, "tx": out_tx}), flush=True)
subprocess.run(["ip", "link", "del", "vx0"], check=True)
"""

# Server side: a sniffer for what the client emits, then decoys and claims, then STOP
# (a claim from the STOP MAC).
SERVER = r"""
import json, socket, sys, time
from ipaddress import IPv4Address
from scapy.layers.l2 import ARP, Dot1Q, Ether
dev, watched = sys.argv[1], sys.argv[2]
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
sniff.bind((dev, 0x0806))
sniff.settimeout(10)
print("ready", flush=True)
got = sniff.recv(100)  # the client's announcement
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((dev, 0))
B = "ff:ff:ff:ff:ff:ff"
def arp(src, **kw):
    return Ether(src=src, dst=B) / ARP(hwsrc=src, **kw)
frames = [
    arp("02:00:00:00:00:01", op=2, psrc=watched, pdst="10.213.250.1"),  # a reply from it
    arp("02:00:00:00:00:02", op=1, psrc="0.0.0.0", pdst=watched),  # a probe for it
    arp("02:00:00:00:00:03", op=1, psrc="10.213.250.9", pdst="10.213.250.1"),  # not about it
    arp("02:00:00:00:00:04", op=1, psrc="10.213.250.9", pdst=watched),  # asks for it
    Ether(src="02:00:00:00:00:05", dst=B) / Dot1Q(vlan=5) / ARP(psrc=watched),  # tagged
    Ether(src="02:00:00:00:00:06", dst="02:00:00:00:00:99") / ARP(psrc=watched),  # other host
    Ether(src="02:00:00:00:00:07", dst=B) / ARP(hwtype=6, hwlen=6, psrc=watched),  # not Ethernet
    arp("02:ff:ff:ff:ff:ff", op=2, psrc=watched, pdst=watched),  # STOP
]
for f in frames:
    s.send(bytes(f))
print(json.dumps({"got": got.hex()}), flush=True)
"""


def python(lab: Lab, ns: str, code: str, dev: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", code, dev, WATCHED]
    return lab.spawn_in(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_arp_sockets_on_a_veth() -> None:
    with Lab(start_dnsmasq=False) as lab:
        srv = python(lab, lab.srv_ns, SERVER, lab.srv_ifname)
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        cli = python(lab, lab.cli_ns, CLIENT, lab.ifname)
        assert cli.stdout is not None
        first = cli.stdout.readline()
        assert first, cli.stderr.read() if cli.stderr else ""
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 0, err
        s_out, s_err = srv.communicate(timeout=30)
        assert srv.returncode == 0, s_err
    head, tail, wire = json.loads(first), json.loads(out), json.loads(s_out)
    # the parent's view of the MAC is the kernel's
    assert head["mac"] == head["sysfs"].replace(":", "")
    # locked and receive only, as the DHCP socket
    assert {k: head[k] for k in ("receive_only", "send", "write", "detach", "unlock")} == {
        "receive_only": True, "send": "ENXIO", "write": "ENXIO",
        "detach": "EPERM", "unlock": "EPERM",
    }  # fmt: skip
    # ARP from or for the address (the engine judges: a request for it is no conflict),
    # then STOP: not the host's own announcement, not unrelated ARP, not tagged, not for
    # another MAC, not another hardware type, not from vx1
    assert tail["seen"] == [
        [2, "020000000001", WATCHED, "10.213.250.1"],
        [1, "020000000002", "0.0.0.0", WATCHED],
        [1, "020000000004", "10.213.250.9", WATCHED],
        [2, "02ffffffffff", WATCHED, WATCHED],
    ]
    assert tail["tx"] == "nothing"
    # on the wire: the announcement as packet.arp_announcement builds it
    mac = bytes.fromhex(head["mac"])
    got = bytes.fromhex(wire["got"])
    assert got[:42] == (
        b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
        + mac + bytes(map(int, WATCHED.split("."))) + bytes(6) + bytes(map(int, WATCHED.split(".")))
    )  # fmt: skip
