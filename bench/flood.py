"""Send forged DHCPACKs to one client at a fixed rate: ``flood.py IFNAME DSTMAC DSTIP RATE SECS``.

Run in the *server* namespace of a bench lab (it never leaves it).  Every frame is a
DHCPACK from a made-up server (10.x.x.254 of the client's /24) with a random xid, the
client's MAC as chaddr and a router and DNS that would hijack the client if accepted:
each one passes the clients' packet filters (UDP to port 68) and must be rejected by
their DHCP code.  1024 precomputed frames (UDP checksum 0, IPv4 header checksummed),
paced in bursts every 5 ms.  Prints the number of frames sent.
"""

import os
import socket
import struct
import sys
import time


def csum(b: bytes) -> int:
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return int(~s & 0xFFFF)


def frame(src_mac: bytes, dst_mac: bytes, dst_ip: bytes, xid: int) -> bytes:
    fake_srv = dst_ip[:3] + b"\xfe"
    opts = (
        b"\x63\x82\x53\x63"
        + b"\x35\x01\x05"  # DHCPACK
        + b"\x36\x04"
        + fake_srv
        + b"\x33\x04"
        + struct.pack("!I", 86400)
        + b"\x01\x04\xff\xff\xff\x00"
        + b"\x03\x04"
        + fake_srv
        + b"\x06\x04"
        + fake_srv
        + b"\xff"
    )
    bootp = (
        struct.pack(
            "!BBBBIHH4s4s4s4s16s64s128s",
            2,
            1,
            6,
            0,
            xid,
            0,
            0,
            b"\0" * 4,
            dst_ip,
            fake_srv,
            b"\0" * 4,
            dst_mac + b"\0" * 10,
            b"",
            b"",
        )
        + opts
    )
    udp = struct.pack("!HHHH", 67, 68, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, fake_srv, dst_ip)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def main() -> int:
    ifname, dst_mac_s, dst_ip_s = sys.argv[1:4]
    rate, secs = int(sys.argv[4]), float(sys.argv[5])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    src_mac = s.getsockname()[4]
    dst_mac = bytes.fromhex(dst_mac_s.replace(":", ""))
    frames = [
        frame(src_mac, dst_mac, socket.inet_aton(dst_ip_s), int.from_bytes(os.urandom(4)))
        for _ in range(1024)
    ]
    tick = 0.005
    per_tick = max(1, round(rate * tick))
    start = time.monotonic()
    sent = 0
    n = 0
    while True:
        now = time.monotonic()
        if now - start >= secs:
            break
        due = int((now - start) * rate) + per_tick
        while sent < due:
            try:
                s.send(frames[n & 1023])
            except OSError:  # ENOBUFS: the queue is full, count it as not sent
                break
            sent += 1
            n += 1
        time.sleep(max(0.0, start + (sent / rate) - time.monotonic()))
    print(sent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
