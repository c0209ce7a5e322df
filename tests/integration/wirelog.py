"""The real DHCP conversation on the client's interface, timed, whatever floods it.

``python -m tests.integration.wirelog --iface IF --server-ip A --out FILE`` runs in the
lab's client netns and appends one JSON line per event, with ``time.monotonic()`` (the
same clock in every namespace):

* every DHCP message the client sends (``"dir": "out"``: its requests are the frames
  with UDP destination port 67) and every reply that really comes from the server
  (``"dir": "in"``: IPv4 source ``A``, UDP source port 67), with type, xid, ciaddr and
  destination address;
* ``"dir": "kernel"`` for each IPv4 address the kernel adds or deletes in the netns
  (rtnetlink), i.e. the moment the daemon's lease took effect;
* with ``--arp``, every ARP frame either way (``"arp-out"``, ``"arp-in"``): operation,
  sender MAC and IP, target IP (RFC 5227's probes, announcements and claims).

The socket's classic BPF filter keeps forged replies (another source address) out in the
kernel, so a flood at any rate cannot make this log lose a real message.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import select
import socket
import struct
import sys
import time

from dhcpleased import bpf

ETH_P_ALL = 0x0003  # a socket bound to one protocol does not see outgoing frames
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFA_LOCAL = 2
TYPES = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak", 7: "release"}


def program(server_ip: str) -> tuple[bpf.Insn, ...]:
    """IPv4 + UDP, then: from the server's address, or to port 67; everything else out."""
    ld, jeq = bpf.BPF_LD, bpf.BPF_JMP | bpf.BPF_JEQ | bpf.BPF_K
    server = int(ipaddress.IPv4Address(server_ip))
    return (
        (ld | bpf.BPF_H | bpf.BPF_ABS, 0, 0, 12),  # 0: ethertype
        (jeq, 0, 8, ETH_P_IP),  # 1: not IPv4 -> 10 drop
        (ld | bpf.BPF_B | bpf.BPF_ABS, 0, 0, 23),  # 2: protocol
        (jeq, 0, 6, bpf.IPPROTO_UDP),  # 3: not UDP -> 10 drop
        (ld | bpf.BPF_W | bpf.BPF_ABS, 0, 0, 26),  # 4: IPv4 source
        (jeq, 3, 0, server),  # 5: from the server -> 9 accept
        (bpf.BPF_LDX | bpf.BPF_B | bpf.BPF_MSH, 0, 0, 14),  # 6: X = IP header length
        (ld | bpf.BPF_H | bpf.BPF_IND, 0, 0, 16),  # 7: UDP destination port
        (jeq, 0, 1, 67),  # 8: not 67 -> 10 drop
        (bpf.BPF_RET | bpf.BPF_K, 0, 0, 0xFFFF),  # 9: accept
        (bpf.BPF_RET | bpf.BPF_K, 0, 0, 0),  # 10: drop
    )


def dhcp_record(frame: bytes) -> dict[str, object] | None:
    ihl = (frame[14] & 0x0F) * 4
    at = 14 + ihl + 8
    if len(frame) < at + 240:
        return None
    mtype, i = None, at + 240
    while i + 1 < len(frame) and frame[i] != 255:
        if frame[i] == 0:
            i += 1
            continue
        if frame[i] == 53 and i + 2 < len(frame):
            mtype = frame[i + 2]
        i += 2 + frame[i + 1]
    return {
        "type": TYPES.get(mtype or 0, str(mtype)),
        "xid": struct.unpack_from("!I", frame, at + 4)[0],
        "ciaddr": socket.inet_ntoa(frame[at + 12 : at + 16]),
        "src_ip": socket.inet_ntoa(frame[26:30]),
        "dst_ip": socket.inet_ntoa(frame[30:34]),
    }


ARP_ONLY: tuple[bpf.Insn, ...] = (
    (bpf.BPF_LD | bpf.BPF_H | bpf.BPF_ABS, 0, 0, 12),
    (bpf.BPF_JMP | bpf.BPF_JEQ | bpf.BPF_K, 0, 1, ETH_P_ARP),
    (bpf.BPF_RET | bpf.BPF_K, 0, 0, 0xFFFF),
    (bpf.BPF_RET | bpf.BPF_K, 0, 0, 0),
)


def arp_record(frame: bytes) -> dict[str, object] | None:
    if len(frame) < 42:
        return None
    return {
        "op": struct.unpack_from("!H", frame, 20)[0],
        "sha": frame[22:28].hex(":"),
        "spa": socket.inet_ntoa(frame[28:32]),
        "tpa": socket.inet_ntoa(frame[38:42]),
    }


def address_events(data: bytes) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    off = 0
    while off + 16 <= len(data):
        mlen, mtype = struct.unpack_from("=IH", data, off)
        if mlen < 16:
            break
        if mtype in (RTM_NEWADDR, RTM_DELADDR) and data[off + 16] == socket.AF_INET:
            a = off + 24  # after nlmsghdr (16) and ifaddrmsg (8)
            while a + 4 <= off + mlen:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype == IFA_LOCAL:
                    out.append({"event": "new" if mtype == RTM_NEWADDR else "del",
                                "addr": socket.inet_ntoa(data[a + 4 : a + 8])})  # fmt: skip
                a += (alen + 3) & ~3
        off += (mlen + 3) & ~3
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wirelog")
    p.add_argument("--iface", required=True)
    p.add_argument("--server-ip", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--arp", action="store_true")
    args = p.parse_args(argv)
    pkt = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    bpf._attach(pkt, program(args.server_ip))
    pkt.bind((args.iface, ETH_P_ALL))
    arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    bpf._attach(arp, ARP_ONLY if args.arp else bpf.DROP_ALL)
    arp.bind((args.iface, ETH_P_ALL))
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    nl.bind((0, RTMGRP_IPV4_IFADDR))
    with open(args.out, "a", buffering=1) as out:
        out.write(json.dumps({"t": time.monotonic(), "dir": "ready"}) + "\n")
        while True:
            for s in select.select([pkt, nl, arp], [], [])[0]:
                t = time.monotonic()
                if s is nl:
                    for ev in address_events(nl.recv(65536)):
                        out.write(json.dumps({"t": t, "dir": "kernel", **ev}) + "\n")
                    continue
                if s is arp:
                    frame, addr = arp.recvfrom(4096)
                    rec = arp_record(frame)
                    if rec is not None:
                        direction = "arp-out" if addr[2] == PACKET_OUTGOING else "arp-in"
                        out.write(json.dumps({"t": t, "dir": direction, **rec}) + "\n")
                    continue
                frame, addr = pkt.recvfrom(4096)
                rec = dhcp_record(frame)
                if rec is not None:
                    direction = "out" if addr[2] == PACKET_OUTGOING else "in"
                    out.write(json.dumps({"t": t, "dir": direction, **rec}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
