"""Forged DHCP replies to one client: ``flood.py IFNAME DSTMAC DSTIP RATE SECS [options]``.

Run in the *server* namespace of a lab (it never leaves it).  Every frame passes the
clients' packet filters (IPv4, UDP to port 68, the client's MAC as destination) and must
be rejected by their DHCP code:

``--kind ack`` (default)
    DHCPACKs from a made-up server (10.x.x.254 of the client's /24) with random xids and
    a router and DNS that would hijack the client if accepted; 1024 distinct frames.
``--kind rejected``
    The client's *current* xid, as an attacker on the LAN learns it from the client's
    broadcasts (the sender sniffs them and follows every new one), in a reply the client
    must refuse after reading all of it: an ACK whose options fill the frame and whose
    last one runs past its end.  Until the first xid is seen nothing is sent.

RATE > 0 paces single ``send()`` calls every 5 ms, as the bench's fixed-rate run does.
RATE 0 sends as fast as the sender can: ``sendmmsg(2)`` through ctypes, ``--batch``
frames per call, so the rate is the kernel's, not the interpreter's.  ``--senders N``
forks N processes, each with its own AF_PACKET socket.  UDP checksums are real (the
client must verify them; veth does not vouch for checksums of AF_PACKET frames).

Prints the number of frames sent on the last line; with ``--json`` one JSON object with
the totals, the wall time and the rate per sender before it.
"""

import argparse
import ctypes
import errno
import json
import os
import select
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
XID_OFFSET = 14 + 20 + 8 + 4  # Ethernet + IPv4 (no options) + UDP + op/htype/hlen/hops


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s >> 16) + (s & 0xFFFF)
    return int(~s & 0xFFFF)


def frame(src_mac: bytes, dst_mac: bytes, dst_ip: bytes, xid: int, opts: bytes) -> bytes:
    """Ethernet/IPv4/UDP/BOOTREPLY from the made-up server, with valid checksums."""
    fake_srv = dst_ip[:3] + b"\xfe"
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, xid, 0, 0, b"\0" * 4, dst_ip, fake_srv,
        b"\0" * 4, dst_mac + b"\0" * 10, b"", b"",
    ) + b"\x63\x82\x53\x63" + opts  # fmt: skip
    ulen = 8 + len(bootp)
    pseudo = fake_srv + dst_ip + struct.pack("!BBH", 0, 17, ulen)
    udp_sum = csum(pseudo + struct.pack("!HHHH", 67, 68, ulen, 0) + bootp) or 0xFFFF
    udp = struct.pack("!HHHH", 67, 68, ulen, udp_sum) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, fake_srv, dst_ip)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def ack_options(dst_ip: bytes) -> bytes:
    fake_srv = dst_ip[:3] + b"\xfe"
    return (
        b"\x35\x01\x05"  # DHCPACK
        + b"\x36\x04" + fake_srv
        + b"\x33\x04" + struct.pack("!I", 86400)
        + b"\x01\x04\xff\xff\xff\x00"
        + b"\x03\x04" + fake_srv
        + b"\x06\x04" + fake_srv
        + b"\xff"
    )  # fmt: skip


def rejected_options(dst_ip: bytes) -> bytes:
    """A plausible ACK, then empty unknown options (224) up to ~1400 bytes of frame, then
    one whose length runs past the end: refused only after walking ~550 options."""
    body = ack_options(dst_ip)[:-1]
    room = 1400 - (14 + 20 + 8 + 240) - len(body) - 4
    return body + b"\xe0\x00" * (room // 2) + b"\x2b\xf0\x00\x00"  # 43 claims 240 bytes


def build_frames(args: argparse.Namespace, src_mac: bytes, xid: int | None) -> list[bytes]:
    dst_mac = bytes.fromhex(args.dstmac.replace(":", ""))
    dst_ip = socket.inet_aton(args.dstip)
    if args.kind == "rejected":
        assert xid is not None
        return [frame(src_mac, dst_mac, dst_ip, xid, rejected_options(dst_ip))] * args.batch
    opts = ack_options(dst_ip)
    return [frame(src_mac, dst_mac, dst_ip, int.from_bytes(os.urandom(4)), opts)
            for _ in range(1024)]  # fmt: skip


class XidWatch:
    """The client's latest broadcast xid, read off the wire (BOOTREQUESTs from its MAC)."""

    def __init__(self, ifname: str, client_mac: bytes) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not our own flood
        self.sock.bind((ifname, ETH_P_IP))
        self.sock.setblocking(False)
        self.mac = client_mac
        self.xid: int | None = None
        self.seen = 0

    def poll(self, timeout: float = 0.0) -> bool:
        """Read what arrived; True if the xid changed."""
        changed = False
        if timeout and not select.select([self.sock], [], [], timeout)[0]:
            return False
        while True:
            try:
                f = self.sock.recv(2048)
            except BlockingIOError:
                return changed
            ihl = (f[14] & 0x0F) * 4 if len(f) > 14 else 0
            at = 14 + ihl + 8
            if len(f) < at + 28 or f[23] != 17 or f[14 + ihl + 2 : 14 + ihl + 4] != b"\x00\x43":
                continue
            if f[at] != 1 or f[at + 28 : at + 34] != self.mac:  # BOOTREQUEST, chaddr
                continue
            (xid,) = struct.unpack_from("!I", f, at + 4)
            if xid != self.xid:
                self.xid, changed = xid, True
                self.seen += 1


class MsgArray:
    """struct mmsghdr[n] over one list of frames, for sendmmsg(2)."""

    class Iovec(ctypes.Structure):
        _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))

    class Msghdr(ctypes.Structure):
        _fields_ = (
            ("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
            ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
            ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
            ("flags", ctypes.c_int),
        )  # fmt: skip

    class Mmsghdr(ctypes.Structure):
        pass

    Mmsghdr._fields_ = (("hdr", Msghdr), ("len", ctypes.c_uint))

    def __init__(self, frames: list[bytes], batch: int) -> None:
        self.bufs = [ctypes.create_string_buffer(f, len(f)) for f in frames]
        self.iovs = (self.Iovec * len(frames))()
        for i, (b, f) in enumerate(zip(self.bufs, frames, strict=True)):
            self.iovs[i].base, self.iovs[i].len = ctypes.addressof(b), len(f)
        self.batches = []
        for start in range(0, len(frames) - batch + 1, batch):
            arr = (self.Mmsghdr * batch)()
            for j in range(batch):
                arr[j].hdr.iov = ctypes.addressof(self.iovs[start + j])
                arr[j].hdr.iovlen = 1
            self.batches.append(arr)


def send_unpaced(sock: socket.socket, args: argparse.Namespace, watch: XidWatch | None) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    sendmmsg = libc.sendmmsg
    sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    src_mac = sock.getsockname()[4]
    msgs = None if watch else MsgArray(build_frames(args, src_mac, None), args.batch)
    fd, batch, sent, n = sock.fileno(), args.batch, 0, 0
    give_up = time.monotonic() + 60
    while msgs is None:  # --kind rejected: the clock starts with the first xid seen
        assert watch is not None
        if time.monotonic() > give_up:
            return 0
        watch.poll(0.05)
        if watch.xid is not None:
            msgs = MsgArray(build_frames(args, src_mac, watch.xid), batch)
    end = time.monotonic() + args.secs
    while time.monotonic() < end:
        if watch is not None and watch.poll():
            msgs = MsgArray(build_frames(args, src_mac, watch.xid), batch)
        got = sendmmsg(fd, msgs.batches[n % len(msgs.batches)], batch, 0)
        n += 1
        if got > 0:
            sent += got
        elif ctypes.get_errno() not in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR):
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return sent


def send_paced(sock: socket.socket, args: argparse.Namespace) -> int:
    frames = build_frames(args, sock.getsockname()[4], None)
    rate, tick = args.rate, 0.005
    per_tick = max(1, round(rate * tick))
    start = time.monotonic()
    sent = n = 0
    while True:
        now = time.monotonic()
        if now - start >= args.secs:
            break
        due = int((now - start) * rate) + per_tick
        while sent < due:
            try:
                sock.send(frames[n & 1023])
            except OSError:  # ENOBUFS: the queue is full, count it as not sent
                break
            sent += 1
            n += 1
        time.sleep(max(0.0, start + (sent / rate) - time.monotonic()))
    return sent


def sender(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.ifname, 0))
    if args.rate > 0:
        return send_paced(sock, args)
    watch = None
    if args.kind == "rejected":
        watch = XidWatch(args.ifname, bytes.fromhex(args.dstmac.replace(":", "")))
    return send_unpaced(sock, args, watch)


def main() -> int:
    p = argparse.ArgumentParser(prog="flood.py")
    p.add_argument("ifname")
    p.add_argument("dstmac")
    p.add_argument("dstip")
    p.add_argument("rate", type=int, help="frames/s, 0 = as fast as possible")
    p.add_argument("secs", type=float)
    p.add_argument("--kind", choices=("ack", "rejected"), default="ack")
    p.add_argument("--senders", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.kind == "rejected" and args.rate > 0:
        p.error("--kind rejected is unpaced only")
    start = time.monotonic()
    pipes = []
    for _ in range(args.senders):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, str(sender(args)).encode())
            os._exit(0)
        os.close(w)
        pipes.append((pid, r))
    counts = []
    for pid, r in pipes:
        out = b""
        while chunk := os.read(r, 64):
            out += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            print(f"sender {pid} failed: status {status}", file=sys.stderr)
            return 1
        counts.append(int(out))
    wall = time.monotonic() - start
    if args.json:
        print(json.dumps({"sent": sum(counts), "wall": round(wall, 3), "senders": counts,
                          "rate": round(sum(counts) / args.secs)}))  # fmt: skip
    print(sum(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
