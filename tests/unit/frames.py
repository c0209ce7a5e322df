"""Frame builders for codec tests, written apart from dhcpleased.packet on purpose.

They can lie about every length and checksum, which the codec's own builder never does,
and they share no code with it, so a bug in one is not mirrored by the other.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from ipaddress import IPv4Address

COOKIE = b"\x63\x82\x53\x63"
CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")
SERVER = IPv4Address("192.0.2.1")
YIADDR = IPv4Address("192.0.2.10")
XID = 0x1234ABCD
ZERO = IPv4Address(0)

ETH = 0  # offsets in a frame without IP options
IP = 14
UDP = 34
BOOTP = 42
COOKIE_OFF = BOOTP + 236
OPTIONS = COOKIE_OFF + 4

Options = Iterable[tuple[int, bytes]]

# An ACK with every option the client acts on.
ACK_OPTIONS: tuple[tuple[int, bytes], ...] = (
    (53, b"\x05"),
    (54, SERVER.packed),
    (51, struct.pack("!I", 3600)),
    (58, struct.pack("!I", 1800)),
    (59, struct.pack("!I", 3150)),
    (1, bytes([255, 255, 255, 0])),
    (3, SERVER.packed),
    (6, bytes([192, 0, 2, 53, 192, 0, 2, 54])),
    (12, b"client1"),
    (15, b"example.org"),
    (26, struct.pack("!H", 1400)),
    (42, bytes([192, 0, 2, 123])),
    (61, b"\x01" + CLIENT_MAC),
    (108, struct.pack("!I", 1800)),
    (119, b"\x07example\x03org\x00\x03lab\xc0\x00"),
    (121, bytes([24, 10, 1, 2, 192, 0, 2, 1, 0, 192, 0, 2, 1])),
)


def checksum(data: bytes) -> int:
    """Plain RFC 1071 loop (the codec uses a different algorithm)."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def options(opts: Options, *, end: bool = True) -> bytes:
    out = b"".join(bytes([code, len(value)]) + value for code, value in opts)
    return out + (b"\xff" if end else b"")


def bootp(
    opts: Options = ACK_OPTIONS,
    *,
    op: int = 2,
    xid: int = XID,
    ciaddr: IPv4Address = ZERO,
    yiaddr: IPv4Address = YIADDR,
    siaddr: IPv4Address = SERVER,
    giaddr: IPv4Address = ZERO,
    chaddr: bytes = CLIENT_MAC,
    hlen: int = 6,
    sname: bytes = b"",
    file: bytes = b"",
    cookie: bytes = COOKIE,
    end: bool = True,
    tail: bytes = b"",
    pad_to: int = 300,
) -> bytes:
    """A BOOTREPLY payload; ``tail`` goes after END, before padding."""
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,
        hlen,
        0,
        xid,
        0,
        0,
        ciaddr.packed,
        yiaddr.packed,
        siaddr.packed,
        giaddr.packed,
        chaddr,
        sname,
        file,
    )
    body = header + cookie + options(opts, end=end) + tail
    return body.ljust(pad_to, b"\0")


def frame(
    payload: bytes | None = None,
    *,
    src_mac: bytes = SERVER_MAC,
    dst_mac: bytes = CLIENT_MAC,
    ethertype: int = 0x0800,
    ip_src: IPv4Address = SERVER,
    ip_dst: IPv4Address = YIADDR,
    version: int = 4,
    ihl: int | None = None,
    ip_options: bytes = b"",
    total_len: int | None = None,
    frag: int = 0,
    proto: int = 17,
    ip_csum: int | None = None,
    sport: int = 67,
    dport: int = 68,
    ulen: int | None = None,
    udp_csum: int | None = None,
    udp_tail: bytes = b"",
    eth_tail: bytes = b"",
) -> bytes:
    """Ethernet/IPv4/UDP around ``payload``; any field can be forced to a wrong value.

    ``udp_tail`` lies inside the IP packet after the UDP datagram; ``eth_tail`` after the
    IP packet (Ethernet padding).
    """
    if payload is None:
        payload = bootp()
    ulen_true = 8 + len(payload)
    ulen_field = ulen_true if ulen is None else ulen
    header_len = 20 + len(ip_options)
    ihl_field = header_len // 4 if ihl is None else ihl
    total = header_len + ulen_true + len(udp_tail)
    total_field = total if total_len is None else total_len
    pseudo = ip_src.packed + ip_dst.packed + struct.pack("!BBH", 0, 17, ulen_true)
    udp = struct.pack("!HHHH", sport, dport, ulen_field, 0) + payload
    if udp_csum is None:
        udp_csum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_csum) + udp[8:]
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        (version << 4) | ihl_field,
        0,
        total_field,
        0,
        frag,
        64,
        proto,
        0,
        ip_src.packed,
        ip_dst.packed,
    )
    hdr += ip_options
    if ip_csum is None:
        ip_csum = checksum(hdr)
    hdr = hdr[:10] + struct.pack("!H", ip_csum) + hdr[12:]
    eth = dst_mac + src_mac + struct.pack("!H", ethertype)
    return eth + hdr + udp + udp_tail + eth_tail


def refresh(raw: bytes) -> bytes:
    """Recompute IP/UDP lengths and checksums of a frame whose payload was edited.

    Assumes no IP options and no trailing bytes: everything after the UDP header is payload.
    """
    payload = raw[BOOTP:]
    src = IPv4Address(raw[IP + 12 : IP + 16])
    dst = IPv4Address(raw[IP + 16 : IP + 20])
    return frame(payload, src_mac=raw[6:12], dst_mac=raw[0:6], ip_src=src, ip_dst=dst)


def as_reply(raw: bytes) -> bytes:
    """Turn a client's frame into a BOOTREPLY (op 2) with valid checksums, for round trips."""
    b = bytearray(raw)
    b[BOOTP] = 2
    return refresh(bytes(b))
