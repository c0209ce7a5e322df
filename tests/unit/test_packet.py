"""dhcpleased.packet: every check of the receive path, every option, the builders."""

from __future__ import annotations

import os
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhcpleased import defs, packet
from dhcpleased.packet import (
    DhcpMessage,
    Rejection,
    Request,
    Route,
    build_bootp,
    build_frame,
    internet_checksum,
    parse_bootp,
    parse_frame,
    request_list,
    vis,
)
from fuzz import fuzz_packet
from tests.unit import frames as F
from tests.unit.frames import ACK_OPTIONS, CLIENT_MAC, SERVER, SERVER_MAC, XID, YIADDR

A = IPv4Address
ZERO = A(0)
N_IP = len(F.frame()) - 14  # IP packet length of the default ACK frame
N_UDP = N_IP - 20


def ok(raw: bytes | None = None, **kw: object) -> DhcpMessage:
    msg = parse_frame(F.frame() if raw is None else raw, **kw)  # type: ignore[arg-type]
    assert isinstance(msg, DhcpMessage), msg
    return msg


def bad(raw: bytes, reason: str, *, silent: bool = False, **kw: object) -> None:
    msg = parse_frame(raw, **kw)  # type: ignore[arg-type]
    assert msg == Rejection(reason, silent), msg


def ack(*extra: tuple[int, bytes], drop: tuple[int, ...] = (), **kw: object) -> bytes:
    """An ACK frame without the options in ``drop`` and with ``extra`` ones appended."""
    opts = [o for o in ACK_OPTIONS if o[0] not in drop] + list(extra)
    return F.frame(F.bootp(opts, **kw))  # type: ignore[arg-type]


def with_opts(*opts: tuple[int, bytes], **kw: object) -> DhcpMessage:
    return ok(F.frame(F.bootp(opts, **kw)))  # type: ignore[arg-type]


def opt_reject(reason: str, *opts: tuple[int, bytes]) -> None:
    bad(F.frame(F.bootp(opts)), reason)


# --- a full ACK ---------------------------------------------------------------------------


def test_full_ack() -> None:
    msg = ok(
        F.frame(F.bootp(ACK_OPTIONS, sname=b"srv", file=b"boot/pxe\0junk")),
        our_mac=CLIENT_MAC,
        xid=XID,
        ignore_servers=[A("198.51.100.1")],
    )
    assert (msg.src_mac, msg.dst_mac) == (SERVER_MAC, CLIENT_MAC)
    assert (msg.ip_src, msg.ip_dst) == (SERVER, YIADDR)
    assert (msg.op, msg.htype, msg.hlen, msg.xid, msg.secs, msg.flags) == (2, 1, 6, XID, 0, 0)
    assert (msg.ciaddr, msg.yiaddr, msg.siaddr, msg.giaddr) == (ZERO, YIADDR, SERVER, ZERO)
    assert msg.chaddr == CLIENT_MAC
    assert (msg.sname, msg.file) == (b"srv", b"boot/pxe")
    assert msg.message_type == defs.DHCPACK
    assert msg.server_identifier == SERVER
    assert (msg.lease_time, msg.renewal_time, msg.rebinding_time) == (3600, 1800, 3150)
    assert msg.subnet_mask == A("255.255.255.0")
    assert msg.routers == (SERVER,)
    assert msg.dns == (A("192.0.2.53"), A("192.0.2.54"))
    assert (msg.host_name, msg.domain_name) == ("client1", "example.org")
    assert msg.domain_search == ("example.org", "lab.example.org")
    assert msg.client_id == b"\x01" + CLIENT_MAC
    assert (msg.ipv6_only_wait, msg.mtu) == (1800, 1400)
    assert msg.ntp == (A("192.0.2.123"),)
    assert msg.classless_routes == (
        Route(A("10.1.2.0"), A("255.255.255.0"), SERVER),
        Route(ZERO, ZERO, SERVER),
    )
    assert msg.unknown == ()
    assert msg.trailing_garbage == 0


def test_minimal_message_defaults() -> None:
    msg = with_opts()
    assert msg.message_type is None and msg.server_identifier is None
    assert msg.lease_time is msg.renewal_time is msg.rebinding_time is None
    assert msg.subnet_mask is None and msg.classless_routes is None
    assert msg.routers == msg.dns == msg.ntp == ()
    assert msg.domain_search == () and msg.unknown == ()
    assert msg.host_name is None and msg.domain_name is None and msg.client_id is None
    assert msg.ipv6_only_wait is msg.mtu is None
    assert msg.routes() == ()


def test_routes_from_routers_and_classless_override() -> None:
    two = A("192.0.2.2").packed
    msg = with_opts((3, SERVER.packed + two))
    assert msg.routes() == (Route(ZERO, ZERO, SERVER), Route(ZERO, ZERO, A("192.0.2.2")))
    assert msg.routes()[0].prefixlen == 0
    r121 = (121, bytes([32, 10, 0, 0, 1, 0, 0, 0, 0]))
    for opts in [((3, SERVER.packed), r121), (r121, (3, SERVER.packed))]:
        msg = with_opts(*opts)
        assert msg.routes() == (Route(A("10.0.0.1"), A("255.255.255.255"), ZERO),)
        assert msg.routes()[0].prefixlen == 32
    assert with_opts((3, SERVER.packed), (121, b"")).routes() == ()


def test_parse_bootp_alone() -> None:
    msg = parse_bootp(F.bootp(), xid=XID)
    assert isinstance(msg, DhcpMessage)
    assert msg.src_mac == b"" and msg.ip_src == ZERO and msg.message_type == 5
    assert parse_bootp(F.bootp(), xid=1) == Rejection("xid mismatch: 0x1234abcd", silent=True)
    assert parse_bootp(b"") == Rejection("truncated BOOTP header (0 bytes)")


# --- Ethernet -----------------------------------------------------------------------------


def test_ethernet_checks() -> None:
    raw = F.frame()
    bad(raw[:13], "truncated Ethernet header")
    bad(raw, "not for us: destination 02:00:00:00:00:01", silent=True, our_mac=SERVER_MAC)
    ok(raw, our_mac=CLIENT_MAC)
    ok(F.frame(dst_mac=b"\xff" * 6), our_mac=SERVER_MAC)
    ok(F.frame(dst_mac=b"\x01" * 6))  # our_mac None: no check
    bad(F.frame(ethertype=0x86DD), "not IPv4: ethertype 0x86dd")
    # The MAC check comes first, silently.
    bad(F.frame(ethertype=0x86DD), "not for us: destination 02:00:00:00:00:01", silent=True,
        our_mac=SERVER_MAC)  # fmt: skip


# --- IPv4 ---------------------------------------------------------------------------------


def test_ip_header_checks() -> None:
    raw = F.frame()
    bad(raw[: F.IP + 19], "truncated IP header")
    bad(F.frame(version=6), "bad IP version 6")
    bad(F.frame(ihl=4), "bad IP header length 16")
    bad(F.frame(ihl=0), "bad IP header length 0")
    short = F.frame(F.bootp(pad_to=0), ihl=15)[: F.IP + 40]
    bad(short, "bad IP header length 60")
    bad(F.frame(total_len=19), f"bad IP total length 19 ({N_IP} bytes captured)")
    bad(F.frame(total_len=N_IP + 1), f"bad IP total length {N_IP + 1} ({N_IP} bytes captured)")
    bad(F.frame(ip_csum=0x1234), "bad IP checksum")
    bad(F.frame(ip_csum=0x1234), "bad IP checksum", csum_flags=defs.TP_STATUS_CSUM_VALID)
    bad(F.frame(ip_csum=0x1234), "bad IP checksum", csum_flags=defs.TP_STATUS_CSUMNOTREADY)
    bad(F.frame(frag=0x2000), "IP fragment")
    bad(F.frame(frag=0x0001), "IP fragment")
    ok(F.frame(frag=0x4000))  # DF is fine
    bad(F.frame(proto=6), "not UDP: IP protocol 6")


def test_ip_options_and_ethernet_padding() -> None:
    msg = ok(F.frame(ip_options=b"\x01\x01\x01\x00", eth_tail=b"\0" * 20))
    assert msg.message_type == defs.DHCPACK


def test_ignore_servers() -> None:
    bad(F.frame(), "ignoring server 192.0.2.1", ignore_servers=(SERVER,))
    bad(F.frame(), "ignoring server 192.0.2.1", ignore_servers={SERVER})
    ok(F.frame(), ignore_servers=(YIADDR,))
    # The ignore check comes after the IP checks and before the UDP ones.
    bad(F.frame(ip_csum=1), "bad IP checksum", ignore_servers=(SERVER,))
    bad(F.frame(udp_csum=1), "ignoring server 192.0.2.1", ignore_servers=(SERVER,))


# --- UDP ----------------------------------------------------------------------------------


def test_udp_checks() -> None:
    bad(F.frame(total_len=27)[: F.IP + 27], "truncated UDP header")
    bad(F.frame(ulen=7), f"bad UDP length 7 ({N_UDP} bytes in IP packet)")
    bad(F.frame(ulen=N_UDP + 1), f"bad UDP length {N_UDP + 1} ({N_UDP} bytes in IP packet)")
    bad(F.frame(udp_csum=0x1234), "bad UDP checksum")
    ok(F.frame(udp_csum=0))  # no checksum
    ok(F.frame(udp_csum=0x1234), csum_flags=defs.TP_STATUS_CSUMNOTREADY)
    ok(F.frame(udp_csum=0x1234), csum_flags=defs.TP_STATUS_CSUM_VALID)


def test_udp_trailing_bytes_allowed() -> None:
    # The IP packet is longer than the UDP datagram: the rest is ignored, not parsed.
    msg = ok(F.frame(udp_tail=b"\x35\x01\x06\xff"))
    assert msg.message_type == defs.DHCPACK


def test_udp_length_cuts_the_options() -> None:
    payload = F.bootp([(53, b"\x02")], end=False, pad_to=0) + b"\x33\x04\0\0\0\x10"
    raw = F.frame(payload, ulen=8 + len(payload) - 6, udp_csum=0)
    msg = ok(raw)
    assert msg.message_type == defs.DHCPOFFER and msg.lease_time is None


# --- BOOTP header and cookie ----------------------------------------------------------------


def test_bootp_checks() -> None:
    bad(F.frame(F.bootp(pad_to=0)[:235]), "truncated BOOTP header (235 bytes)")
    bad(F.frame(F.bootp(op=1)), "not a BOOTREPLY: op 1")
    bad(F.frame(), "xid mismatch: 0x1234abcd", silent=True, xid=XID + 1)
    assert ok(F.frame(), xid=XID).xid == XID
    bad(F.frame(F.bootp(op=1)), "not a BOOTREPLY: op 1", xid=XID + 1)  # op before xid
    bad(F.frame(F.bootp(pad_to=0)[:238]), "no magic cookie")
    bad(F.frame(F.bootp(pad_to=0)[:236]), "no magic cookie")
    bad(F.frame(F.bootp(cookie=b"\x63\x82\x53\x64")), "bad magic cookie")
    bad(F.frame(F.bootp(cookie=b"\x63\x82\x53\x64")), "xid mismatch: 0x1234abcd", silent=True,
        xid=0)  # fmt: skip


def test_stale_xid_is_dropped_before_the_checksums() -> None:
    """The early xid check (a flood of random xids costs no checksum): wherever the IP
    header length puts the xid; a BOOTREQUEST still reads as "not a BOOTREPLY"."""
    broken = F.frame(ip_csum=0x1234)
    bad(broken, "bad IP checksum", xid=XID)
    bad(broken, "xid mismatch: 0x1234abcd", silent=True, xid=XID + 1)
    with_options = F.frame(ip_options=b"\x01" * 8)
    assert ok(with_options, xid=XID).xid == XID
    bad(with_options, "xid mismatch: 0x1234abcd", silent=True, xid=XID + 1)
    bad(F.frame(F.bootp(op=1), ip_csum=0x1234), "bad IP checksum", xid=XID + 1)


@settings(max_examples=300, deadline=None, database=None)
@given(fuzz_packet.FRAMES, st.sampled_from(["own", "other", "none"]))
def test_early_xid_check_never_changes_the_verdict(
    case: tuple[bytes, int, int | None, bytes | None], which: str
) -> None:
    """Accepted or dropped, with the early check exactly as with the full parse alone."""
    raw, csum, xid, mac = case
    want = {"own": xid, "other": XID, "none": None}[which]
    early = parse_frame(raw, csum_flags=csum, our_mac=mac, xid=want)
    full = packet._parse_frame(raw, csum, mac, want, ())
    assert isinstance(early, DhcpMessage) == isinstance(full, DhcpMessage)


def test_chaddr_follows_hlen() -> None:
    assert with_opts(chaddr=bytes(range(16)), hlen=16).chaddr == bytes(range(16))
    assert with_opts(chaddr=bytes(range(16)), hlen=200).chaddr == bytes(range(16))
    assert with_opts(hlen=0).chaddr == b""


# --- option framing -----------------------------------------------------------------------


def test_option_framing() -> None:
    head = F.bootp([], end=False, pad_to=0)
    bad(F.frame(head + b"\x35"), "option 53 without length byte")
    bad(F.frame(head + b"\x35\x02\x05"), "option 53 overruns the packet (length 2)")
    bad(F.frame(head + b"\x00\x00\x0c\x05abc"), "option 12 overruns the packet (length 5)")
    # No END at all is fine, so is an empty option area.
    assert ok(F.frame(head + b"\x35\x01\x05")).message_type == 5
    assert ok(F.frame(head)).message_type is None
    # Pads anywhere.
    msg = ok(F.frame(head + b"\0\0\0\x35\x01\x02\0\0\x36\x04\xc0\0\x02\x01\0\xff"))
    assert (msg.message_type, msg.server_identifier) == (2, SERVER)


def test_after_end() -> None:
    msg = with_opts((53, b"\x05"), tail=b"\0\0\0\x35\x01\x06\0", pad_to=0)
    assert msg.message_type == 5  # options after END are not parsed
    assert msg.trailing_garbage == 4
    assert with_opts((53, b"\x05")).trailing_garbage == 0  # zero padding to 300 bytes
    assert with_opts((53, b"\x05"), tail=b"\x01", pad_to=0).trailing_garbage == 1


@pytest.mark.parametrize(
    ("code", "good"),
    [(1, 4), (51, 4), (53, 1), (54, 4), (58, 4), (59, 4), (108, 4)],
)
def test_fixed_length_options(code: int, good: int) -> None:
    for length in {0, good - 1, good + 1, 255}:
        opt_reject(f"received option {code} with wrong length", (code, b"\x01" * length))
    with_opts((code, b"\x01" * good))


@pytest.mark.parametrize("code", [3, 6])
def test_address_list_lengths(code: int) -> None:
    for length in (0, 1, 3, 5, 7, 254):
        opt_reject(f"received option {code} with wrong length", (code, b"\x01" * length))
    # A bad second instance drops the packet too.
    opt_reject(f"received option {code} with wrong length", (code, bytes(4)), (code, bytes(3)))


def test_wrong_length_is_checked_in_order() -> None:
    opt_reject("received option 51 with wrong length", (51, b"\0"), (53, b"\0\0"))
    head = F.bootp([(53, b"\0\0")], end=False, pad_to=0)
    bad(F.frame(head + b"\x33"), "received option 53 with wrong length")


def test_option_values() -> None:
    msg = with_opts(
        (53, b"\x06"),
        (51, b"\xff\xff\xff\xff"),
        (58, b"\0\0\0\0"),
        (59, b"\x80\0\0\0"),
        (26, b"\x05\xdc"),
        (108, b"\0\0\0\0"),
    )
    assert msg.message_type == defs.DHCPNAK
    assert (msg.lease_time, msg.renewal_time, msg.rebinding_time) == (0xFFFFFFFF, 0, 2**31)
    assert (msg.mtu, msg.ipv6_only_wait) == (1500, 0)


def test_repeated_fixed_options_last_wins() -> None:
    msg = with_opts((53, b"\x02"), (54, SERVER.packed), (53, b"\x05"), (54, YIADDR.packed))
    assert (msg.message_type, msg.server_identifier) == (5, YIADDR)


def test_repeated_lists_concatenate() -> None:
    addrs = [A(f"10.0.0.{k}") for k in range(1, 13)]
    packed = [a.packed for a in addrs]
    msg = with_opts(
        (3, packed[0] + packed[1]),
        (6, b"".join(packed[:5])),
        (42, packed[0]),
        (3, packed[2]),
        (6, b"".join(packed[5:])),
        (42, packed[1]),
    )
    assert msg.routers == tuple(addrs[:3])
    assert msg.dns == tuple(addrs[:8])  # first 8 kept
    assert msg.ntp == tuple(addrs[:2])


def test_routers_capped_at_256() -> None:
    many = [(3, bytes([10, 0, k, j])) for k in range(2) for j in range(200)]
    grouped = [(3, b"".join(v for _, v in many[i : i + 50])) for i in range(0, 400, 50)]
    msg = with_opts(*grouped, pad_to=0)
    assert len(msg.routers) == 256 and len(msg.routes()) == 256
    assert msg.routers[-1] == A("10.0.1.55")


def test_client_id_and_unknown_options() -> None:
    msg = with_opts((61, b"\xff\x01"), (50, b"\x01\x02"), (60, b"vc"), (61, b"\x02"), (50, b""))
    assert msg.client_id == b"\xff\x01\x02"
    assert msg.unknown == ((50, b"\x01\x02"), (60, b"vc"), (50, b""))
    assert with_opts((61, b"")).client_id == b""


# --- names: 12 and 15 -----------------------------------------------------------------------


def test_vis() -> None:
    assert vis(b"host-1.example.org") == "host-1.example.org"
    assert vis(b"a b\tc\nd\re") == "a\\sb\\tc\\nd\\re"
    assert vis(b"\\") == "\\\\"
    assert vis(b"\x00\x01\x7f\x80\xff") == "\\000\\001\\177\\200\\377"
    assert vis(b"\x07\x08\x0b\x0c") == "\\a\\b\\v\\f"
    assert vis(b"") == ""
    every = vis(bytes(range(256)))
    assert every.isascii() and every.isprintable() and " " not in every
    assert all(len(vis(bytes([c]))) <= 4 for c in range(256))


def test_host_and_domain_names() -> None:
    msg = with_opts((12, b"my host\n\0\0"), (15, b"example.org\0"))
    assert msg.host_name == "my\\shost\\n"
    assert msg.domain_name == "example.org"
    assert with_opts((12, b"\0\0")).host_name is None
    assert with_opts((15, b"")).domain_name is None
    assert with_opts((12, b"a\0b\0")).host_name == "a\\000b"
    # Split over two instances (RFC 3396), cut to 255 bytes before encoding.
    msg = with_opts((12, b"x" * 200), (12, b"y" * 200), (15, b"\n" * 255), (15, b"z"))
    assert msg.host_name == "x" * 200 + "y" * 55
    assert msg.domain_name == "\\n" * 255
    long = with_opts((12, b"\xff" * 255), (12, b"\xff" * 10)).host_name
    assert long is not None and len(long) == 4 * 255 < defs.MAX_DOMAIN


# --- option 121 ---------------------------------------------------------------------------


def r121(*routes: tuple[int, bytes, str]) -> bytes:
    return b"".join(bytes([plen]) + dst + A(gw).packed for plen, dst, gw in routes)


def test_classless_routes() -> None:
    data = r121(
        (0, b"", "192.0.2.1"),
        (8, b"\x0a", "192.0.2.2"),
        (25, b"\xc6\x33\x64\x80", "0.0.0.0"),
        (32, b"\xc6\x33\x64\x01", "192.0.2.3"),
        (12, b"\xac\x1f", "192.0.2.4"),  # host bits set: masked
    )
    msg = with_opts((121, data))
    assert msg.classless_routes == (
        Route(ZERO, ZERO, A("192.0.2.1")),
        Route(A("10.0.0.0"), A("255.0.0.0"), A("192.0.2.2")),
        Route(A("198.51.100.128"), A("255.255.255.128"), ZERO),
        Route(A("198.51.100.1"), A("255.255.255.255"), A("192.0.2.3")),
        Route(A("172.16.0.0"), A("255.240.0.0"), A("192.0.2.4")),
    )
    assert [r.prefixlen for r in msg.routes()] == [0, 8, 25, 32, 12]


def test_classless_routes_split_over_instances() -> None:
    data = r121((24, b"\x0a\x01\x02", "192.0.2.1"), (16, b"\x0a\x02", "192.0.2.1"))
    msg = with_opts((121, data[:6]), (53, b"\x05"), (121, data[6:]))
    assert [str(r.dst) for r in msg.routes()] == ["10.1.2.0", "10.2.0.0"]


def test_classless_routes_rejected() -> None:
    opt_reject("received option 121 with invalid prefixlen 33", (121, bytes([33, 1, 2, 3, 4, 5])))
    opt_reject("received option 121 with invalid prefixlen 255", (121, bytes([255] + [0] * 9)))
    opt_reject("received option 121 with wrong length", (121, bytes([24, 10, 1, 2, 192, 0, 2])))
    opt_reject("received option 121 with wrong length", (121, bytes([24, 10, 1])))
    opt_reject("received option 121 with wrong length", (121, b"\x00"))
    good = r121((0, b"", "192.0.2.1"))
    opt_reject("received option 121 with invalid prefixlen 40", (121, good + b"\x28"))


def test_classless_routes_capped_at_256() -> None:
    one = r121((32, b"\x0a\x00\x00\x01", "192.0.2.1"))  # 9 bytes
    data = one * 300 + b"\x21"  # a bad prefix past the limit is never looked at
    opts = [(121, data[i : i + 255]) for i in range(0, len(data), 255)]
    msg = with_opts(*opts, pad_to=0)
    assert msg.classless_routes is not None and len(msg.classless_routes) == 256


# --- option 119 ---------------------------------------------------------------------------


def test_domain_search_rfc3397_example() -> None:
    # RFC 3397 section 3: eng.apple.com. and marketing.apple.com.
    data = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert with_opts((119, data)).domain_search == ("eng.apple.com", "marketing.apple.com")
    # RFC 3397 also allows the list to span instances, pointers reaching across them.
    msg = with_opts((119, data[:7]), (119, data[7:]))
    assert msg.domain_search == ("eng.apple.com", "marketing.apple.com")


def test_domain_search_chained_pointers() -> None:
    data = b"\x03org\x00\x07example\xc0\x00\x03lab\xc0\x05\x01a\xc0\x0f"
    assert with_opts((119, data)).domain_search == (
        "org",
        "example.org",
        "lab.example.org",
        "a.lab.example.org",
    )


def test_domain_search_skips_unsafe_names() -> None:
    data = (
        b"\x03a b\x00"
        + b"\x04ok-1\x00"
        + b"\x03a\nb\x00"
        + b"\x00"  # the root
        + b"\x03a.b\x00"
        + b"\x04_srv\x03com\x00"
        + b"\x03\xc3\xa9t\x00"
        + b"\x01#\x00"
    )
    assert with_opts((119, data)).domain_search == ("ok-1", "_srv.com")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xc0\x00", "a pointer loop"),  # self pointer
        (b"\x01a\xc0\x00", "a pointer loop"),  # back into its own name
        (b"\x01a\x00\xc0\x05\x00\x00", "a pointer loop"),  # forward
        (b"\x01a\x00\x01b\xc0\x03", "a pointer loop"),  # to its own start
        (b"\x01a\xc0\x04\x01b\xc0\x00", "a pointer loop"),  # 2-cycle
        (b"\x03ab", "a name too long or truncated"),
        (b"\x02ab", "a truncated name"),
        (b"\x01a\x00\x01b\xc0", "a truncated pointer"),
        (b"\x41a\x00", "label type 0x40"),
        (b"\x81a\x00", "label type 0x80"),
        (
            b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"b" * 63
            + b"\x3f"
            + b"c" * 63
            + b"\x3f"
            + b"d" * 63
            + b"\x00",
            "a name too long or truncated",
        ),
    ],
)
def test_domain_search_broken_is_ignored(data: bytes, reason: str) -> None:
    opts = [(119, data[i : i + 255]) for i in range(0, len(data), 255)]
    msg = with_opts((53, b"\x05"), *opts)
    assert msg.message_type == 5 and msg.domain_search == ()
    assert msg.ignored == (f"option 119 with {reason}",)


def test_domain_search_longest_name() -> None:
    name = b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3d" + b"d" * 61
    msg = with_opts((119, name[:255]), (119, name[255:] + b"\x00"))
    assert len(msg.domain_search[0]) == 253


def test_domain_search_fits_max_search() -> None:
    label = b"\x3f" + b"x" * 63
    name = label * 3 + b"\x00"  # 191 characters
    data = name * 6
    opts = [(119, data[i : i + 255]) for i in range(0, len(data), 255)]
    msg = with_opts(*opts, pad_to=0)
    assert len(msg.domain_search) == 5
    assert len(" ".join(msg.domain_search)) + 1 <= defs.MAX_SEARCH


def test_domain_search_bounded_work() -> None:
    # One deepest (254-byte) name of unsafe labels, then 600 pointers to it: without the
    # step budget that is 600 * 128 label reads for nothing (all names are skipped).
    data = b"\x01 " * 127 + b"\x00" + b"\xc0\x00" * 600
    opts = [(119, data[i : i + 255]) for i in range(0, len(data), 255)]
    msg = parse_frame(F.frame(F.bootp(opts, pad_to=0)))
    assert isinstance(msg, DhcpMessage) and msg.domain_search == ()
    # Valid names stop at MAX_SEARCH long before the budget.
    data = b"\x01a\x00" + b"".join(
        b"\x01a" + struct.pack("!H", 0xC000 | (3 + 4 * (k - 1) if k else 0)) for k in range(300)
    )
    opts = [(119, data[i : i + 255]) for i in range(0, len(data), 255)]
    msg = ok(F.frame(F.bootp(opts, pad_to=0)))
    assert msg.domain_search[:3] == ("a", "a.a", "a.a.a")
    assert len(" ".join(msg.domain_search)) < defs.MAX_SEARCH


# The shipped bound on option 119 decoding: labels, pointers and terminating zeros followed.
SEARCH_STEP_BUDGET = 4096


@pytest.mark.parametrize("pointers", [30, 600])
def test_domain_search_step_budget(pointers: int) -> None:
    """The pathological input stops at the shipped budget, counted in steps: one unsafe
    254-byte name (127 labels + its zero = 128 steps, skipped), pointers to it (129 steps
    each, skipped), then 100 valid names "a" (2 steps each). How many of those come back
    says how many steps were taken: 30 pointers leave (4096 - 128 - 3870) // 2 = 49 of
    them within the budget; 600 pointers exhaust it (without a budget: all 100)."""
    data = b"\x01 " * 127 + b"\x00" + b"\xc0\x00" * pointers + b"\x01a\x00" * 100
    opts = [(119, data[i : i + 255]) for i in range(0, len(data), 255)]
    found = ok(F.frame(F.bootp(opts, pad_to=0))).domain_search
    assert found == ("a",) * max(0, (SEARCH_STEP_BUDGET - 128 - 129 * pointers) // 2)
    assert packet._MAX_SEARCH_STEPS == SEARCH_STEP_BUDGET  # and the name says so


# --- checksum -------------------------------------------------------------------------------


def test_internet_checksum() -> None:
    # RFC 1071 section 3 example: sum 0xddf2, checksum 0x220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\0\0\0") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0
    assert internet_checksum(b"\x01") == F.checksum(b"\x01")
    data = bytes.fromhex("0001f203f4f5f6f7") + (0x220D).to_bytes(2, "big")
    assert internet_checksum(data) == 0


@given(st.binary(max_size=600))
def test_internet_checksum_matches_the_loop(data: bytes) -> None:
    assert internet_checksum(data) == F.checksum(data)


# --- builders -------------------------------------------------------------------------------


def options_of(payload: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 240
    while payload[i] != 255:
        out.append((payload[i], payload[i + 2 : i + 2 + payload[i + 1]]))
        i += 2 + payload[i + 1]
    assert not payload[i + 1 :].strip(b"\0")
    return out


def test_build_discover() -> None:
    p = build_bootp(Request(defs.DHCPDISCOVER, 0xDEADBEEF, CLIENT_MAC))
    assert len(p) == 300
    assert p[:12] == bytes([1, 1, 6, 0]) + bytes.fromhex("deadbeef") + bytes(4)
    assert p[12:28] == bytes(16)  # ciaddr yiaddr siaddr giaddr
    assert p[28:44] == CLIENT_MAC + bytes(10)
    assert p[44:236] == bytes(192)
    assert p[236:240] == defs.DHCP_COOKIE
    assert options_of(p) == [
        (53, b"\x01"),
        (61, b"\x01" + CLIENT_MAC),
        (55, bytes([1, 3, 6, 12, 15, 28, 119, 121, 26, 42])),  # the original's, MTU, NTP
    ]


@pytest.mark.parametrize(("mtu", "ntp"), [(a, b) for a in (True, False) for b in (True, False)])
def test_ignored_options_are_not_requested(mtu: bool, ntp: bool) -> None:
    """ "ignore mtu"/"ignore ntp" take 26/42 out of the request list; 108 stays last."""
    req = Request(defs.DHCPREQUEST, 1, CLIENT_MAC, ask_mtu=mtu, ask_ntp=ntp, prefer_ipv6=True)
    want = [*defs.REQUEST_LIST, *([26] if mtu else []), *([42] if ntp else []), 108]
    assert dict(options_of(build_bootp(req)))[55] == bytes(want)


def test_build_request_all_options() -> None:
    req = Request(
        defs.DHCPREQUEST,
        7,
        CLIENT_MAC,
        ciaddr=YIADDR,
        requested_ip=YIADDR,
        server_identifier=SERVER,
        host_name=b"client1",
        client_id=b"\xffabc",
        vendor_class_id=b"OpenBSD",
        prefer_ipv6=True,
    )
    p = build_bootp(req)
    assert p[12:16] == YIADDR.packed
    assert options_of(p) == [
        (53, b"\x03"),
        (12, b"client1"),
        (61, b"\xffabc"),
        (60, b"OpenBSD"),
        (55, bytes([1, 3, 6, 12, 15, 28, 119, 121, 26, 42, 108])),
        (50, YIADDR.packed),
        (54, SERVER.packed),
    ]


def test_build_skips_unset_and_cuts_long() -> None:
    req = Request(3, 1, CLIENT_MAC, requested_ip=ZERO, server_identifier=ZERO, host_name=b"",
                  vendor_class_id=b"", client_id=b"c" * 300)  # fmt: skip
    opts = options_of(build_bootp(req))
    assert [c for c, _ in opts] == [53, 61, 55]
    assert opts[1][1] == b"c" * 255
    big = build_bootp(Request(3, 1, CLIENT_MAC, host_name=b"h" * 255, vendor_class_id=b"v" * 255,
                              client_id=b"c" * 255))  # fmt: skip
    assert len(big) > 300 and big.endswith(b"\xff")


def test_build_sends_a_host_names_bytes_as_they_are() -> None:
    name = os.fsdecode(b"h\xf6st")  # sethostname takes any bytes; gethostname escapes them
    opts = options_of(build_bootp(Request(1, 1, CLIENT_MAC, host_name=os.fsencode(name))))
    assert (12, b"h\xf6st") in opts


def test_build_rejects_bad_mac() -> None:
    with pytest.raises(ValueError, match="MAC"):
        build_bootp(Request(1, 1, b"\x01\x02"))


def test_build_frame_headers() -> None:
    raw = build_frame(Request(defs.DHCPDISCOVER, 0xDEADBEEF, CLIENT_MAC))
    assert raw[:14] == b"\xff" * 6 + CLIENT_MAC + b"\x08\x00"
    ver, tos, total, _id, frag, ttl, proto, _s, src, dst = struct.unpack_from(
        "!BBHHHBBH4s4s", raw, 14
    )
    assert (ver, tos, total, frag, ttl, proto) == (0x45, 0x10, 328, 0, 128, 17)
    assert (src, dst) == (bytes(4), b"\xff" * 4)
    assert F.checksum(raw[14:34]) == 0
    sport, dport, ulen, usum = struct.unpack_from("!HHHH", raw, 34)
    assert (sport, dport, ulen) == (68, 67, 308) and usum != 0
    pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
    assert F.checksum(pseudo + raw[34:]) == 0
    assert len(raw) == 342


def test_build_then_parse_as_reply() -> None:
    req = Request(defs.DHCPREQUEST, 99, CLIENT_MAC, requested_ip=YIADDR, server_identifier=SERVER,
                  host_name=b"h1", vendor_class_id=b"vc")  # fmt: skip
    msg = ok(F.as_reply(build_frame(req)), xid=99, our_mac=CLIENT_MAC)
    assert msg.message_type == defs.DHCPREQUEST and msg.server_identifier == SERVER
    assert (msg.host_name, msg.client_id, msg.chaddr) == ("h1", b"\x01" + CLIENT_MAC, CLIENT_MAC)
    prl = bytes(request_list(req))
    assert msg.unknown == ((60, b"vc"), (55, prl), (50, YIADDR.packed))
    assert (msg.src_mac, msg.dst_mac, msg.ip_src) == (CLIENT_MAC, b"\xff" * 6, ZERO)


# --- hypothesis -------------------------------------------------------------------------------

ipv4 = st.builds(A, st.integers(0, 2**32 - 1))
requests = st.builds(
    Request,
    message_type=st.sampled_from([defs.DHCPDISCOVER, defs.DHCPREQUEST]),
    xid=st.integers(0, 2**32 - 1),
    mac=st.binary(min_size=6, max_size=6),
    ciaddr=ipv4,
    requested_ip=st.none() | ipv4.filter(lambda a: a != ZERO),
    server_identifier=st.none() | ipv4.filter(lambda a: a != ZERO),
    host_name=st.none()
    | st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1).map(str.encode),
    client_id=st.none() | st.binary(min_size=1, max_size=255),
    vendor_class_id=st.none() | st.binary(min_size=1, max_size=255),
    prefer_ipv6=st.booleans(),
    ask_mtu=st.booleans(),
    ask_ntp=st.booleans(),
)


@given(requests)
def test_round_trip(req: Request) -> None:
    raw = build_frame(req)
    assert isinstance(parse_frame(raw), Rejection)  # a request is not a reply
    msg = ok(F.as_reply(raw), xid=req.xid, our_mac=b"\x00" * 6)
    assert (msg.xid, msg.chaddr, msg.ciaddr, msg.src_mac) == (req.xid, req.mac, req.ciaddr, req.mac)
    assert msg.message_type == req.message_type
    assert msg.server_identifier == req.server_identifier
    assert msg.host_name == (req.host_name[:255].decode() if req.host_name else None)
    assert msg.client_id == (b"\x01" + req.mac if req.client_id is None else req.client_id)
    unknown = dict(msg.unknown)
    assert unknown.get(60) == req.vendor_class_id
    extra = [(26, req.ask_mtu), (42, req.ask_ntp), (108, req.prefer_ipv6)]
    assert unknown[55] == bytes(defs.REQUEST_LIST) + bytes(c for c, on in extra if on)
    assert unknown.get(50) == (req.requested_ip.packed if req.requested_ip else None)
    assert msg.trailing_garbage == 0


FLAGS = st.sampled_from([0, defs.TP_STATUS_CSUMNOTREADY, defs.TP_STATUS_CSUM_VALID])


@settings(max_examples=300)
@given(st.binary(max_size=1600), FLAGS)
def test_random_bytes_never_raise(data: bytes, flags: int) -> None:
    assert isinstance(parse_frame(data, csum_flags=flags), (DhcpMessage, Rejection))
    assert isinstance(parse_frame(data, our_mac=CLIENT_MAC, xid=1), (DhcpMessage, Rejection))
    assert isinstance(parse_bootp(data), (DhcpMessage, Rejection))
    # And with a valid header in front so the option walker sees the random bytes.
    head = F.bootp([], end=False, pad_to=0)
    assert isinstance(parse_bootp(head + data), (DhcpMessage, Rejection))


VALID = F.frame(F.bootp(ACK_OPTIONS, pad_to=0))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(VALID)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and raw:
            raw[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del raw[pos:]
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[pos : pos + draw(st.integers(1, 8))]
    return bytes(raw)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), FLAGS)
def test_mutated_frames_never_raise(raw: bytes, flags: int) -> None:
    assert isinstance(parse_frame(raw, csum_flags=flags), (DhcpMessage, Rejection))
    # With lengths and checksums made right again the mutation reaches the options.
    if len(raw) >= F.BOOTP:
        fixed = F.refresh(raw)
        assert isinstance(parse_frame(fixed), (DhcpMessage, Rejection))


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=30))
def test_random_options_never_raise(opts: list[tuple[int, bytes]]) -> None:
    result = parse_frame(F.frame(F.bootp(opts, pad_to=0)))
    assert isinstance(result, (DhcpMessage, Rejection))
    if isinstance(result, DhcpMessage):
        for name in (result.host_name, result.domain_name, *result.domain_search):
            assert name is None or (name.isascii() and name.isprintable() and " " not in name)


# --- malformed corpus -------------------------------------------------------------------------


def test_truncated_at_every_offset() -> None:
    raw = VALID
    for n in range(len(raw)):
        result = parse_frame(raw[:n])
        if n < 14:
            expected = "truncated Ethernet header"
        elif n < 34:
            expected = "truncated IP header"
        else:
            expected = f"bad IP total length {len(raw) - 14} ({n - 14} bytes captured)"
        assert result == Rejection(expected), n
    ok(raw)


def test_payload_truncated_at_every_offset_with_honest_lengths() -> None:
    payload = F.bootp(ACK_OPTIONS, pad_to=0)
    starts, i = {}, F.OPTIONS - F.BOOTP
    while payload[i] != 255:
        starts[i] = payload[i]
        i += 2 + payload[i + 1]
    for n in range(len(payload) + 1):
        result = parse_frame(F.frame(payload[:n]))
        if n < 236:
            assert result == Rejection(f"truncated BOOTP header ({n} bytes)"), n
        elif n < 240:
            assert result == Rejection("no magic cookie"), n
        elif n in starts or n >= len(payload) - 1:
            assert isinstance(result, DhcpMessage), n  # cut on an option boundary
        else:
            assert isinstance(result, Rejection), n
            assert "option" in result.reason, (n, result)


def lying(payload: bytes, **kw: object) -> bytes:
    return F.frame(payload, **kw)  # type: ignore[arg-type]


HEAD = F.bootp([], end=False, pad_to=0)
CORPUS = [
    ("empty", b"", "truncated Ethernet header"),
    ("arp", F.frame(ethertype=0x0806), "not IPv4: ethertype 0x0806"),
    (
        "ip total length lies",
        F.frame(total_len=1400),
        f"bad IP total length 1400 ({N_IP} bytes captured)",
    ),
    ("ihl too small", F.frame(ihl=2), "bad IP header length 8"),
    ("ip checksum", F.frame(ip_csum=0), "bad IP checksum"),
    ("fragment", F.frame(frag=0x2000 | 10), "IP fragment"),
    ("icmp", F.frame(proto=1), "not UDP: IP protocol 1"),
    ("udp length lies", F.frame(ulen=1000), f"bad UDP length 1000 ({N_UDP} bytes in IP packet)"),
    ("udp checksum", F.frame(udp_csum=0xFFFF), "bad UDP checksum"),
    ("bootrequest", F.frame(F.bootp(op=1)), "not a BOOTREPLY: op 1"),
    ("op 0", F.frame(F.bootp(op=0)), "not a BOOTREPLY: op 0"),
    ("bad cookie", F.frame(F.bootp(cookie=b"\0\0\0\0")), "bad magic cookie"),
    ("no cookie", F.frame(F.bootp(pad_to=0)[:237]), "no magic cookie"),
    (
        "option overrun",
        F.frame(HEAD + b"\x03\x08\xc0\x00\x02\x01"),
        "option 3 overruns the packet (length 8)",
    ),
    ("length byte missing", F.frame(HEAD + b"\x35\x01\x05\x79"), "option 121 without length byte"),
    (
        "121 prefix 33",
        F.frame(F.bootp([(121, bytes([33]) + bytes(8))])),
        "received option 121 with invalid prefixlen 33",
    ),
    (
        "121 truncated",
        F.frame(F.bootp([(121, bytes([32, 1, 2, 3, 4, 5]))])),
        "received option 121 with wrong length",
    ),
    (
        "53 wrong length",
        F.frame(F.bootp([(53, b"\x05\x05")])),
        "received option 53 with wrong length",
    ),
    (
        "lease time short",
        F.frame(F.bootp([(51, b"\0\0\x10")])),
        "received option 51 with wrong length",
    ),
    ("routers empty", F.frame(F.bootp([(3, b"")])), "received option 3 with wrong length"),
]


@pytest.mark.parametrize(("name", "raw", "reason"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus(name: str, raw: bytes, reason: str) -> None:
    assert parse_frame(raw) == Rejection(reason)
