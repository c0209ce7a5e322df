"""Pure DHCPv4 codec: received Ethernet frames in, typed messages out; requests out as bytes.

This is the Python twin of engine.c's ``parse_dhcp`` and frontend.c's ``build_packet``.
It does no I/O and never raises on network input: every frame becomes a `DhcpMessage`
or a `Rejection` whose ``reason`` the engine logs (``silent`` ones it drops without a word,
as the original does for a foreign MAC or a stale xid).

Checks run in the order of the original (reference facts, section 5) so that the first
problem found is the one logged.  Which mistakes cost the reply and which only the option
follow engine.c's parse_dhcp (v1.59): a wrong length on 1, 51, 53, 54, 58, 59 or 108, an
empty or ragged (not n x 4) 3 or 6, a bad prefix or a short route in 121, an option that
overruns the packet or lacks its length byte drop the reply, as there. Options the
original does not parse at all cannot cost a reply here either: a 26 that is not 2 bytes,
a 42 that is not n x 4, an 80 (rapid commit, RFC 4039) that is not empty and a 119 whose
names do not decode are ignored, each noted in `DhcpMessage.ignored` for the engine's debug
log; an empty 12 or 15 counts as absent.
Choices where the original is silent or unsafe:

- Several instances of one option: fixed-size options (1, 26, 51, 53, 54, 58, 59, 108)
  must each have the right length and the last one wins; everything else is concatenated
  in order before decoding (RFC 3396), so 3/6/42 lists grow, 121 routes and 119 names may
  span instances, and 12/15/61 are joined.  Unknown options stay separate, raw, in order.
- Host/domain names (12, 15) are cut to 255 bytes, stripped of trailing NULs and
  vis-encoded (`vis`): the result is printable ASCII without whitespace, safe in a log
  line, a ``key: value`` lease file and resolv.conf (the original's VIS_SAFE lets a
  newline through, which would forge lease-file lines).
- Search names (119) are decoded with RFC 1035 compression; a pointer must point before
  the previous jump (so loops, self and forward pointers are impossible).  Broken
  compression drops the option (names decoded before the fault too); a well-formed name
  whose labels are not
  letters/digits/``-``/``_`` is skipped, and names stop being added once the
  space-separated list would no longer fit `defs.MAX_SEARCH`.
- Classless routes (121) have their destination masked to the prefix (netlink refuses
  host bits); more than `defs.MAX_DHCP_ROUTES` routes are ignored past the limit.
- ``file`` and ``sname`` are returned raw up to the first NUL; ``chaddr`` as its first
  ``hlen`` bytes (at most 16).

ARP (RFC 826) for address conflict detection (RFC 5227) lives here too: the engine parses
the frames the frontend carries (`parse_arp`), the parent builds the probes and
announcements it sends (`arp_probe`, `arp_announcement`); nothing else touches ARP bytes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address

from dhcpleased import defs

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_U16 = struct.Struct("!H")

ETH_HLEN = _ETH.size  # 14
IP_HLEN = _IP.size  # 20, no options
UDP_HLEN = _UDP.size  # 8
BOOTP_HLEN = _BOOTP.size  # 236, up to the magic cookie
BROADCAST_MAC = b"\xff" * 6
_IP_MF = 0x2000
_IP_OFFMASK = 0x1FFF
_IPPROTO_UDP = 17
_IPTOS_LOWDELAY = 0x10
_TTL = 128
_ZERO = IPv4Address(0)
_BROADCAST = IPv4Address("255.255.255.255")

# Options that must have exactly this length, and list options made of IPv4 addresses.
_FIXED_LEN = {
    defs.DHO_SUBNET_MASK: 4,
    defs.DHO_INTERFACE_MTU: 2,
    defs.DHO_DHCP_LEASE_TIME: 4,
    defs.DHO_DHCP_MESSAGE_TYPE: 1,
    defs.DHO_DHCP_SERVER_IDENTIFIER: 4,
    defs.DHO_DHCP_RENEWAL_TIME: 4,
    defs.DHO_DHCP_REBINDING_TIME: 4,
    defs.DHO_IPV6_ONLY_PREFERRED: 4,
    defs.DHO_RAPID_COMMIT: 0,
}
_ADDR_LISTS = frozenset({defs.DHO_ROUTERS, defs.DHO_DOMAIN_NAME_SERVERS, defs.DHO_NTP_SERVERS})
# Of those, the ones engine.c never looks at: a malformed one is ignored, not the reply.
_LENIENT = frozenset({defs.DHO_INTERFACE_MTU, defs.DHO_NTP_SERVERS, defs.DHO_RAPID_COMMIT})
_CONCAT = _ADDR_LISTS | {
    defs.DHO_HOST_NAME,
    defs.DHO_DOMAIN_NAME,
    defs.DHO_DHCP_CLIENT_IDENTIFIER,
    defs.DHO_DOMAIN_SEARCH,
    defs.DHO_CLASSLESS_STATIC_ROUTES,
}
_PADS = re.compile(rb"\x00*")
_LABEL_OK = re.compile(rb"[A-Za-z0-9_-]+")
_MAX_SEARCH_STEPS = 4096  # labels + pointers followed while decoding option 119
_VIS_SAFE = bytes(c for c in range(0x21, 0x7F) if c != ord("\\"))
_VIS_CSTYLE = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 32: "\\s"}
_VIS_TABLE = tuple(
    chr(c) if c in _VIS_SAFE else "\\\\" if c == ord("\\") else _VIS_CSTYLE.get(c, f"\\{c:03o}")
    for c in range(256)
)


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a lease: ``dst/mask`` via ``gw`` (0.0.0.0 = on-link)."""

    dst: IPv4Address
    mask: IPv4Address
    gw: IPv4Address

    @property
    def prefixlen(self) -> int:
        return int(self.mask).bit_count()


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a frame was dropped; ``silent`` ones are not logged (foreign MAC, stale xid)."""

    reason: str
    silent: bool = False


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """A received BOOTREPLY with the options the client acts on already decoded."""

    src_mac: bytes
    dst_mac: bytes
    ip_src: IPv4Address
    ip_dst: IPv4Address
    op: int
    htype: int
    hlen: int
    xid: int
    secs: int
    flags: int
    ciaddr: IPv4Address
    yiaddr: IPv4Address
    siaddr: IPv4Address
    giaddr: IPv4Address
    chaddr: bytes
    sname: bytes
    file: bytes
    message_type: int | None
    server_identifier: IPv4Address | None
    lease_time: int | None
    renewal_time: int | None
    rebinding_time: int | None
    subnet_mask: IPv4Address | None
    routers: tuple[IPv4Address, ...]
    classless_routes: tuple[Route, ...] | None
    dns: tuple[IPv4Address, ...]
    host_name: str | None
    domain_name: str | None
    domain_search: tuple[str, ...]
    client_id: bytes | None
    ipv6_only_wait: int | None
    mtu: int | None
    ntp: tuple[IPv4Address, ...]
    unknown: tuple[tuple[int, bytes], ...]
    trailing_garbage: int = 0  # bytes after END that are not pads (the original logs them)
    ignored: tuple[str, ...] = ()  # malformed options dropped on their own ("option 26 ...")
    rapid_commit: bool = False  # an empty option 80: a DHCPACK answering a DISCOVER (RFC 4039)

    def routes(self) -> tuple[Route, ...]:
        """Routes to install: option 121 overrides option 3 (RFC 3442), whatever the order."""
        if self.classless_routes is not None:
            return self.classless_routes
        return tuple(Route(_ZERO, _ZERO, gw) for gw in self.routers)


class _Malformed(Exception):
    """Internal: raised by option decoders, turned into a Rejection at the top."""


def vis(data: bytes) -> str:
    """Encode bytes like strvis(3) with VIS_CSTYLE|VIS_OCTAL|VIS_SP: printable, no whitespace.

    Graphic ASCII passes unchanged, a backslash doubles, the rest becomes ``\\n``-style or
    three-digit octal escapes, so the text is at most four times as long as the input.
    """
    if not data.translate(None, _VIS_SAFE):
        return data.decode("ascii")
    return "".join([_VIS_TABLE[c] for c in data])


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data`` (the value to store; 0 when ``data`` already sums right).

    Summing 16-bit words modulo 0xffff is the remainder of the whole buffer read as one
    big-endian integer (65536 is 1 mod 65535): one C-level operation instead of a loop.
    """
    if len(data) % 2:
        data += b"\0"
    n = int.from_bytes(data, "big")
    if n == 0:
        return 0xFFFF
    return ~(n % 0xFFFF or 0xFFFF) & 0xFFFF


def _udp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, _IPPROTO_UDP, len(segment))
    return internet_checksum(pseudo + segment)


def _mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _cstring(field: bytes) -> bytes:
    nul = field.find(b"\0")
    return field if nul < 0 else field[:nul]


def parse_frame(
    frame: bytes,
    *,
    csum_flags: int = 0,
    our_mac: bytes | None = None,
    xid: int | None = None,
    ignore_servers: Collection[IPv4Address] = (),
) -> DhcpMessage | Rejection:
    """Decode a whole received Ethernet frame, or say why it is dropped. Never raises."""
    stale = None if xid is None else _stale_xid(frame, xid)
    if stale is not None:
        return Rejection(f"xid mismatch: 0x{stale:08x}", silent=True)
    try:
        return _parse_frame(bytes(frame), csum_flags, our_mac, xid, ignore_servers)
    except (IndexError, struct.error, ValueError, TypeError) as e:  # safety net, not a path
        return Rejection(f"malformed packet: {e}")


def _stale_xid(frame: bytes, xid: int) -> int | None:
    """The BOOTREPLY's xid where the IP header length puts it, if it is not ``xid``.

    Checked before anything else: a flood of random xids then costs a few operations per
    frame instead of two checksums.  A frame dropped here would be dropped by the full
    parse as well, at worst for another reason, which is then not logged.
    """
    if len(frame) <= ETH_HLEN:
        return None
    at = ETH_HLEN + (frame[ETH_HLEN] & 0x0F) * 4 + UDP_HLEN
    if len(frame) < at + 8 or frame[at] != defs.BOOTREPLY:
        return None
    got = int.from_bytes(frame[at + 4 : at + 8], "big")
    return None if got == xid else got


def _parse_frame(
    frame: bytes,
    csum_flags: int,
    our_mac: bytes | None,
    xid: int | None,
    ignore_servers: Collection[IPv4Address],
) -> DhcpMessage | Rejection:
    if len(frame) < ETH_HLEN:
        return Rejection("truncated Ethernet header")
    dst_mac, src_mac, ethertype = _ETH.unpack_from(frame)
    if our_mac is not None and dst_mac not in (our_mac, BROADCAST_MAC):
        return Rejection(f"not for us: destination {_mac(dst_mac)}", silent=True)
    if ethertype != defs.ETH_P_IP:
        return Rejection(f"not IPv4: ethertype 0x{ethertype:04x}")

    ip = ETH_HLEN
    if len(frame) - ip < IP_HLEN:
        return Rejection("truncated IP header")
    vhl, _tos, total_len, _id, frag, _ttl, proto, _sum, src, dst = _IP.unpack_from(frame, ip)
    if vhl >> 4 != 4:
        return Rejection(f"bad IP version {vhl >> 4}")
    ihl = (vhl & 0x0F) * 4
    if ihl < IP_HLEN or ihl > len(frame) - ip:
        return Rejection(f"bad IP header length {ihl}")
    if total_len < ihl or total_len > len(frame) - ip:
        return Rejection(f"bad IP total length {total_len} ({len(frame) - ip} bytes captured)")
    # TP_STATUS_CSUM_VALID vouches for the UDP checksum only: the header is always ours to check
    if internet_checksum(frame[ip : ip + ihl]):
        return Rejection("bad IP checksum")
    if frag & (_IP_MF | _IP_OFFMASK):
        return Rejection("IP fragment")
    if proto != _IPPROTO_UDP:
        return Rejection(f"not UDP: IP protocol {proto}")
    ip_src = IPv4Address(src)
    if ip_src in ignore_servers:
        return Rejection(f"ignoring server {ip_src}")

    udp = ip + ihl
    ip_end = ip + total_len
    if ip_end - udp < UDP_HLEN:
        return Rejection("truncated UDP header")
    _sport, _dport, ulen, usum = _UDP.unpack_from(frame, udp)
    if ulen < UDP_HLEN or ulen > ip_end - udp:
        return Rejection(f"bad UDP length {ulen} ({ip_end - udp} bytes in IP packet)")
    skip_udp = defs.TP_STATUS_CSUM_VALID | defs.TP_STATUS_CSUMNOTREADY
    checked = usum != 0 and not csum_flags & skip_udp
    if checked and _udp_checksum(src, dst, frame[udp : udp + ulen]):
        return Rejection("bad UDP checksum")

    return parse_bootp(
        frame[udp + UDP_HLEN : udp + ulen],
        xid=xid,
        src_mac=src_mac,
        dst_mac=dst_mac,
        ip_src=ip_src,
        ip_dst=IPv4Address(dst),
    )


def parse_bootp(
    payload: bytes,
    *,
    xid: int | None = None,
    src_mac: bytes = b"",
    dst_mac: bytes = b"",
    ip_src: IPv4Address = _ZERO,
    ip_dst: IPv4Address = _ZERO,
) -> DhcpMessage | Rejection:
    """Decode a UDP payload (BOOTP header, cookie, options). Never raises."""
    try:
        return _parse_bootp(
            bytes(payload),
            want_xid=xid,
            src_mac=src_mac,
            dst_mac=dst_mac,
            ip_src=ip_src,
            ip_dst=ip_dst,
        )
    except _Malformed as e:
        return Rejection(str(e))
    except (IndexError, struct.error, ValueError, TypeError) as e:  # safety net, not a path
        return Rejection(f"malformed packet: {e}")


def _parse_bootp(
    data: bytes,
    *,
    want_xid: int | None,
    src_mac: bytes,
    dst_mac: bytes,
    ip_src: IPv4Address,
    ip_dst: IPv4Address,
) -> DhcpMessage | Rejection:
    if len(data) < BOOTP_HLEN:
        return Rejection(f"truncated BOOTP header ({len(data)} bytes)")
    (op, htype, hlen, _hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file) = _BOOTP.unpack_from(data)  # fmt: skip
    if op != defs.BOOTREPLY:
        return Rejection(f"not a BOOTREPLY: op {op}")
    if want_xid is not None and xid != want_xid:
        return Rejection(f"xid mismatch: 0x{xid:08x}", silent=True)
    cookie = data[BOOTP_HLEN : BOOTP_HLEN + 4]
    if cookie != defs.DHCP_COOKIE:
        return Rejection("bad magic cookie" if len(cookie) == 4 else "no magic cookie")

    # Walk the options: fixed-size ones are checked per instance, the rest collected.
    fixed: dict[int, bytes] = {}
    parts: dict[int, list[bytes]] = {}
    unknown: list[tuple[int, bytes]] = []
    ignored: list[str] = []
    n = len(data)
    i = BOOTP_HLEN + 4
    garbage = 0
    while i < n:
        code = data[i]
        if code == defs.DHO_PAD:
            m = _PADS.match(data, i)
            i = m.end() if m else i + 1
            continue
        if code == defs.DHO_END:
            end = _PADS.match(data, i + 1)
            garbage = n - (end.end() if end else i + 1)
            break
        if i + 1 >= n:
            return Rejection(f"option {code} without length byte")
        olen = data[i + 1]
        start = i + 2
        i = start + olen
        if i > n:
            return Rejection(f"option {code} overruns the packet (length {olen})")
        value = data[start:i]
        want = _FIXED_LEN.get(code)
        if want is not None:
            wrong = olen != want
        else:
            wrong = code in _ADDR_LISTS and (olen == 0 or olen % 4 != 0)
        if wrong and code in _LENIENT:
            ignored.append(f"option {code} with wrong length {olen}")
        elif wrong:
            return Rejection(f"received option {code} with wrong length")
        elif want is not None:
            fixed[code] = value
        elif code in _CONCAT:
            parts.setdefault(code, []).append(value)
        else:
            unknown.append((code, value))

    joined = {code: b"".join(values) for code, values in parts.items()}
    routes121 = joined.get(defs.DHO_CLASSLESS_STATIC_ROUTES)
    search: tuple[str, ...] = ()
    if defs.DHO_DOMAIN_SEARCH in joined:
        try:
            search = _domain_search(joined[defs.DHO_DOMAIN_SEARCH])
        except _Malformed as e:  # the original never parses 119: only the list is lost
            ignored.append(str(e).removeprefix("received "))
    dns = _addrs(joined.get(defs.DHO_DOMAIN_NAME_SERVERS, b""))
    return DhcpMessage(
        src_mac=src_mac,
        dst_mac=dst_mac,
        ip_src=ip_src,
        ip_dst=ip_dst,
        op=op,
        htype=htype,
        hlen=hlen,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=IPv4Address(ciaddr),
        yiaddr=IPv4Address(yiaddr),
        siaddr=IPv4Address(siaddr),
        giaddr=IPv4Address(giaddr),
        chaddr=chaddr[: min(hlen, 16)],
        sname=_cstring(sname),
        file=_cstring(file),
        message_type=_u(fixed, defs.DHO_DHCP_MESSAGE_TYPE),
        server_identifier=_addr(fixed, defs.DHO_DHCP_SERVER_IDENTIFIER),
        lease_time=_u(fixed, defs.DHO_DHCP_LEASE_TIME),
        renewal_time=_u(fixed, defs.DHO_DHCP_RENEWAL_TIME),
        rebinding_time=_u(fixed, defs.DHO_DHCP_REBINDING_TIME),
        subnet_mask=_addr(fixed, defs.DHO_SUBNET_MASK),
        routers=_addrs(joined.get(defs.DHO_ROUTERS, b""))[: defs.MAX_DHCP_ROUTES],
        classless_routes=None if routes121 is None else _classless_routes(routes121),
        dns=dns[: defs.MAX_RDNS_COUNT],
        host_name=_name(joined.get(defs.DHO_HOST_NAME)),
        domain_name=_name(joined.get(defs.DHO_DOMAIN_NAME)),
        domain_search=search,
        client_id=joined.get(defs.DHO_DHCP_CLIENT_IDENTIFIER),
        ipv6_only_wait=_u(fixed, defs.DHO_IPV6_ONLY_PREFERRED),
        mtu=_u(fixed, defs.DHO_INTERFACE_MTU),
        ntp=_addrs(joined.get(defs.DHO_NTP_SERVERS, b"")),
        unknown=tuple(unknown),
        trailing_garbage=garbage,
        ignored=tuple(ignored),
        rapid_commit=defs.DHO_RAPID_COMMIT in fixed,
    )


def _u(fixed: dict[int, bytes], code: int) -> int | None:
    value = fixed.get(code)
    return None if value is None else int.from_bytes(value, "big")


def _addr(fixed: dict[int, bytes], code: int) -> IPv4Address | None:
    value = fixed.get(code)
    return None if value is None else IPv4Address(value)


def _addrs(data: bytes) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(data[k : k + 4]) for k in range(0, len(data) - 3, 4))


def _name(data: bytes | None) -> str | None:
    """Option 12/15: at most one option's worth, trailing NULs dropped (RFC 2132), vis'd."""
    if data is None:
        return None
    data = data[: defs.MAX_OPT_LEN].rstrip(b"\0")
    return vis(data) if data else None


def _classless_routes(data: bytes) -> tuple[Route, ...]:
    """RFC 3442: width, significant destination octets, gateway; repeated."""
    routes: list[Route] = []
    i, n = 0, len(data)
    while i < n and len(routes) < defs.MAX_DHCP_ROUTES:
        plen = data[i]
        if plen > 32:
            raise _Malformed(f"received option 121 with invalid prefixlen {plen}")
        sig = (plen + 7) // 8
        if i + 1 + sig + 4 > n:
            raise _Malformed("received option 121 with wrong length")
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        dst = int.from_bytes(data[i + 1 : i + 1 + sig].ljust(4, b"\0"), "big") & mask
        i += 1 + sig
        routes.append(Route(IPv4Address(dst), IPv4Address(mask), IPv4Address(data[i : i + 4])))
        i += 4
    return tuple(routes)


def _domain_search(data: bytes) -> tuple[str, ...]:
    """RFC 3397: a list of compressed domain names over the concatenated option data.

    Each pointer must point before the previous jump target (before the name's start for
    the first jump), so decoding always terminates; work is also capped by a step budget.
    """
    names: list[str] = []
    used = 0  # characters in " ".join(names) + NUL
    steps = 0
    pos, n = 0, len(data)
    while pos < n:
        labels: list[bytes] = []
        wire = 0
        i, limit, jumped = pos, pos, False
        while True:
            steps += 1
            if steps > _MAX_SEARCH_STEPS:
                return tuple(names)
            if i >= n:
                raise _Malformed("received option 119 with a truncated name")
            b = data[i]
            if b == 0:
                if not jumped:
                    pos = i + 1
                break
            if b & 0xC0 == 0xC0:
                if i + 1 >= n:
                    raise _Malformed("received option 119 with a truncated pointer")
                target = ((b & 0x3F) << 8) | data[i + 1]
                if target >= limit:
                    raise _Malformed("received option 119 with a pointer loop")
                if not jumped:
                    pos, jumped = i + 2, True
                i = limit = target
                continue
            if b & 0xC0:
                raise _Malformed(f"received option 119 with label type 0x{b & 0xC0:02x}")
            wire += b + 1
            if wire > 254 or i + 1 + b > n:
                raise _Malformed("received option 119 with a name too long or truncated")
            labels.append(data[i + 1 : i + 1 + b])
            i += 1 + b
        if not labels or not all(_LABEL_OK.fullmatch(label) for label in labels):
            continue  # the root, or characters unsafe in resolv.conf: skip the name
        name = b".".join(labels).decode("ascii")
        cost = len(name) + 1
        if used + cost > defs.MAX_SEARCH:
            break
        names.append(name)
        used += cost
    return tuple(names)


# --- ARP (RFC 826, as RFC 5227 uses it) ---------------------------------------------------
_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype, ptype, hlen, plen, op, sha, spa, tha, tpa
ARP_FRAME_LEN = ETH_HLEN + _ARP.size  # 42; a NIC pads it to 60 on the wire
ARPOP_REQUEST = 1
ARPOP_REPLY = 2


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP request or reply; ``src_mac`` is the Ethernet source."""

    src_mac: bytes
    op: int
    sha: bytes
    spa: IPv4Address
    tha: bytes
    tpa: IPv4Address


def parse_arp(frame: bytes) -> ArpPacket | Rejection:
    """Decode a received ARP frame (padding and trailers allowed), or say why not.

    Only what RFC 5227 reasons about passes: Ethernet hardware, IPv4 protocol, 6- and
    4-byte addresses, a request or a reply.  Never raises.
    """
    frame = bytes(frame)
    if len(frame) < ARP_FRAME_LEN:
        return Rejection(f"truncated ARP frame ({len(frame)} bytes)")
    _dst, src, ethertype = _ETH.unpack_from(frame)
    if ethertype != defs.ETH_P_ARP:
        return Rejection(f"not ARP: ethertype 0x{ethertype:04x}")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, ETH_HLEN)
    if (htype, ptype, hlen, plen) != (defs.ARPHRD_ETHER, defs.ETH_P_IP, defs.ETH_ALEN, 4):
        return Rejection(f"not Ethernet/IPv4 ARP: {htype}/0x{ptype:04x}/{hlen}/{plen}")
    if op not in (ARPOP_REQUEST, ARPOP_REPLY):
        return Rejection(f"ARP operation {op}")
    return ArpPacket(src, op, sha, IPv4Address(spa), tha, IPv4Address(tpa))


def arp_frame(
    op: int, sha: bytes, spa: IPv4Address, tha: bytes, tpa: IPv4Address, *, dst: bytes
) -> bytes:
    """Ethernet + ARP from ``sha`` to ``dst``; ``ValueError`` unless the MACs are 6 bytes."""
    if not len(sha) == len(tha) == len(dst) == defs.ETH_ALEN:
        raise ValueError("ARP hardware addresses must be 6 bytes")
    arp = _ARP.pack(
        defs.ARPHRD_ETHER, defs.ETH_P_IP, defs.ETH_ALEN, 4, op, sha, spa.packed, tha, tpa.packed
    )
    return _ETH.pack(dst, sha, defs.ETH_P_ARP) + arp


def arp_probe(mac: bytes, address: IPv4Address) -> bytes:
    """RFC 5227 2.1.1: a broadcast request for ``address`` from sender IP 0.0.0.0."""
    return arp_frame(ARPOP_REQUEST, mac, _ZERO, bytes(6), address, dst=BROADCAST_MAC)


def arp_announcement(mac: bytes, address: IPv4Address) -> bytes:
    """RFC 5227 2.3 (and 2.4's defence): a probe whose sender IP is the address too."""
    return arp_frame(ARPOP_REQUEST, mac, address, bytes(6), address, dst=BROADCAST_MAC)


@dataclass(frozen=True, slots=True)
class Request:
    """What the engine asks the frontend to send (frontend.c ``build_packet`` inputs).

    ``requested_ip``/``server_identifier`` of 0.0.0.0 count as unset, like the C zero.
    """

    message_type: int
    xid: int
    mac: bytes
    ciaddr: IPv4Address = _ZERO
    requested_ip: IPv4Address | None = None
    server_identifier: IPv4Address | None = None
    host_name: bytes | None = None  # any bytes, as configured (send host name)
    client_id: bytes | None = None
    vendor_class_id: bytes | None = None
    prefer_ipv6: bool = False
    rapid_commit: bool = False  # a DISCOVER asks for a two-message exchange (RFC 4039)
    ask_mtu: bool = True  # option 26 in the request list (not with "ignore mtu")
    ask_ntp: bool = True  # option 42 in the request list (not with "ignore ntp")


DECLINE_MESSAGE = b"address in use (RFC 5227 conflict)"  # option 56 of every DHCPDECLINE


def _opt(code: int, value: bytes) -> bytes:
    value = value[: defs.MAX_OPT_LEN]
    return bytes((code, len(value))) + value


def build_bootp(req: Request) -> bytes:
    """BOOTREQUEST + options in the original's order, zero-padded to >= 300 bytes.

    Empty host name/vendor class are not sent (a zero-length option is invalid); values
    longer than 255 bytes are cut.  ``mac`` must be 6 bytes (``ValueError`` otherwise).
    A DISCOVER with ``rapid_commit`` ends with an empty option 80 (RFC 4039).  A
    DHCPRELEASE carries what RFC 2131 table 5 allows it: ``ciaddr``, 53, 61 and 54 (which
    it MUST have; dnsmasq ignores a RELEASE without it), never 12, 50, 55 or 60.  A
    DHCPDECLINE, by the same table: ``ciaddr`` 0, 53, 61, 50 and 54 (both MUST; dnsmasq
    ignores a DECLINE without them) and the 56 it SHOULD have, nothing else.
    """
    if len(req.mac) != defs.ETH_ALEN:
        raise ValueError(f"MAC must be {defs.ETH_ALEN} bytes, got {len(req.mac)}")
    out = [
        _BOOTP.pack(
            defs.BOOTREQUEST,
            1,  # htype Ethernet
            defs.ETH_ALEN,
            0,
            req.xid & 0xFFFFFFFF,
            0,  # secs
            0,  # flags: no broadcast bit, as the original
            req.ciaddr.packed,
            bytes(4),
            bytes(4),
            bytes(4),
            req.mac,
            b"",
            b"",
        ),
        defs.DHCP_COOKIE,
        _opt(defs.DHO_DHCP_MESSAGE_TYPE, bytes((req.message_type,))),
    ]
    release = req.message_type == defs.DHCPRELEASE
    decline = req.message_type == defs.DHCPDECLINE
    if req.host_name and not (release or decline):
        out.append(_opt(defs.DHO_HOST_NAME, req.host_name))
    client_id = req.client_id if req.client_id is not None else b"\x01" + req.mac
    out.append(_opt(defs.DHO_DHCP_CLIENT_IDENTIFIER, client_id))
    if decline:
        if req.ciaddr != _ZERO:
            raise ValueError("a DHCPDECLINE has ciaddr 0")
        for code, addr in (
            (defs.DHO_DHCP_REQUESTED_ADDRESS, req.requested_ip),
            (defs.DHO_DHCP_SERVER_IDENTIFIER, req.server_identifier),
        ):
            if addr is None or addr == _ZERO:
                raise ValueError(f"a DHCPDECLINE needs option {code}")
            out.append(_opt(code, addr.packed))
        out.append(_opt(defs.DHO_DHCP_MESSAGE, DECLINE_MESSAGE))
        return _end(out)
    if release:
        if req.server_identifier is None or req.server_identifier == _ZERO:
            raise ValueError("a DHCPRELEASE needs the server identifier")
        out.append(_opt(defs.DHO_DHCP_SERVER_IDENTIFIER, req.server_identifier.packed))
        return _end(out)
    if req.vendor_class_id:
        out.append(_opt(defs.DHO_DHCP_CLASS_IDENTIFIER, req.vendor_class_id))
    prl = request_list(req)
    out.append(_opt(defs.DHO_DHCP_PARAMETER_REQUEST_LIST, bytes(prl)))
    if req.requested_ip is not None and req.requested_ip != _ZERO:
        out.append(_opt(defs.DHO_DHCP_REQUESTED_ADDRESS, req.requested_ip.packed))
    if req.server_identifier is not None and req.server_identifier != _ZERO:
        out.append(_opt(defs.DHO_DHCP_SERVER_IDENTIFIER, req.server_identifier.packed))
    if req.rapid_commit and req.message_type == defs.DHCPDISCOVER:
        out.append(_opt(defs.DHO_RAPID_COMMIT, b""))
    return _end(out)


def request_list(req: Request) -> tuple[int, ...]:
    """Option 55: the original's list, then 26 and 42 unless ignored, then 108 with
    "prefer ipv6"."""
    extra = (
        (defs.DHO_INTERFACE_MTU, req.ask_mtu),
        (defs.DHO_NTP_SERVERS, req.ask_ntp),
        (defs.DHO_IPV6_ONLY_PREFERRED, req.prefer_ipv6),
    )
    return defs.REQUEST_LIST + tuple(code for code, wanted in extra if wanted)


def _end(options: list[bytes]) -> bytes:
    options.append(bytes((defs.DHO_END,)))
    return b"".join(options).ljust(defs.DHCP_MIN_PACKET, b"\0")


def build_frame(req: Request) -> bytes:
    """Broadcast frame for the packet socket: ff:ff:ff:ff:ff:ff <- mac, 0.0.0.0 -> bcast."""
    payload = build_bootp(req)
    return udp_frame(
        payload,
        src_mac=req.mac,
        dst_mac=BROADCAST_MAC,
        ip_src=_ZERO,
        ip_dst=_BROADCAST,
        sport=defs.CLIENT_PORT,
        dport=defs.SERVER_PORT,
        tos=_IPTOS_LOWDELAY,
    )


def udp_frame(
    payload: bytes,
    *,
    src_mac: bytes,
    dst_mac: bytes,
    ip_src: IPv4Address,
    ip_dst: IPv4Address,
    sport: int,
    dport: int,
    tos: int = 0,
    ttl: int = _TTL,
) -> bytes:
    """Ethernet/IPv4/UDP around ``payload`` with both checksums filled in (id 0, no DF)."""
    ulen = UDP_HLEN + len(payload)
    udp = _UDP.pack(sport, dport, ulen, 0) + payload
    usum = _udp_checksum(ip_src.packed, ip_dst.packed, udp) or 0xFFFF  # 0 means "none"
    udp = udp[:6] + _U16.pack(usum) + udp[8:]
    hdr = _IP.pack(
        0x45, tos, IP_HLEN + ulen, 0, 0, ttl, _IPPROTO_UDP, 0, ip_src.packed, ip_dst.packed
    )
    hdr = hdr[:10] + _U16.pack(internet_checksum(hdr)) + hdr[12:]
    return _ETH.pack(dst_mac, src_mac, defs.ETH_P_IP) + hdr + udp
