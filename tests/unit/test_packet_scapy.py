"""dhcpleased.packet against scapy, an independent DHCP implementation, in both directions."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP, IPOption
from scapy.layers.l2 import Ether

from dhcpleased import defs
from dhcpleased.packet import (
    DhcpMessage,
    Rejection,
    Request,
    Route,
    build_bootp,
    build_frame,
    parse_frame,
)
from tests.unit.frames import CLIENT_MAC, SERVER, SERVER_MAC, XID, YIADDR

A = IPv4Address
ZERO = A(0)
MAC = "02:00:00:00:00:01"
SMAC = "02:00:00:00:00:02"


def scapy_reply(options: list[Any], *, ip: dict[str, Any] | None = None, **bootp: Any) -> bytes:
    fields: dict[str, Any] = {
        "op": 2,
        "xid": XID,
        "yiaddr": str(YIADDR),
        "siaddr": str(SERVER),
        "chaddr": CLIENT_MAC,
    }
    fields.update(bootp)
    pkt = (
        Ether(src=SMAC, dst=MAC)
        / IP(src=str(SERVER), dst=str(YIADDR), **(ip or {}))
        / UDP(sport=67, dport=68)
        / BOOTP(**fields)
        / DHCP(options=options)
    )
    return bytes(pkt)


def parsed(raw: bytes, **kw: Any) -> DhcpMessage:
    msg = parse_frame(raw, **kw)
    assert isinstance(msg, DhcpMessage), msg
    return msg


def test_scapy_ack_parses_to_the_same_fields() -> None:
    search = b"\x07example\x03org\x00\x03lab\xc0\x00"
    raw = scapy_reply(
        [
            ("message-type", "ack"),
            ("server_id", str(SERVER)),
            ("lease_time", 86400),
            ("renewal_time", 43200),
            ("rebinding_time", 75600),
            ("subnet_mask", "255.255.255.0"),
            ("router", "192.0.2.1", "192.0.2.2"),
            ("name_server", "192.0.2.53", "192.0.2.54", "192.0.2.55"),
            ("domain", b"example.org"),
            ("hostname", b"client1"),
            ("NTP_server", "192.0.2.123"),
            ("interface-mtu", 1492),
            ("ipv6-only-preferred", 3600),
            ("client_id", b"\x01" + CLIENT_MAC),
            ("classless_static_routes", "10.0.0.0/8:192.0.2.1", "0.0.0.0/0:192.0.2.2"),
            (119, search),
            ("vendor_class_id", b"dnsmasq"),
            "end",
        ],
        sname=b"server",
        file=b"pxelinux.0",
    )
    msg = parsed(raw, our_mac=CLIENT_MAC, xid=XID)
    assert (msg.src_mac, msg.dst_mac, msg.ip_src, msg.ip_dst) == (
        SERVER_MAC,
        CLIENT_MAC,
        SERVER,
        YIADDR,
    )
    assert (msg.op, msg.xid, msg.yiaddr, msg.siaddr, msg.chaddr) == (
        2,
        XID,
        YIADDR,
        SERVER,
        CLIENT_MAC,
    )
    assert (msg.sname, msg.file) == (b"server", b"pxelinux.0")
    assert msg.message_type == defs.DHCPACK and msg.server_identifier == SERVER
    assert (msg.lease_time, msg.renewal_time, msg.rebinding_time) == (86400, 43200, 75600)
    assert msg.subnet_mask == A("255.255.255.0")
    assert msg.routers == (A("192.0.2.1"), A("192.0.2.2"))
    assert msg.dns == (A("192.0.2.53"), A("192.0.2.54"), A("192.0.2.55"))
    assert (msg.domain_name, msg.host_name) == ("example.org", "client1")
    assert msg.ntp == (A("192.0.2.123"),)
    assert (msg.mtu, msg.ipv6_only_wait) == (1492, 3600)
    assert msg.client_id == b"\x01" + CLIENT_MAC
    assert msg.routes() == (
        Route(A("10.0.0.0"), A("255.0.0.0"), A("192.0.2.1")),
        Route(ZERO, ZERO, A("192.0.2.2")),
    )
    assert msg.domain_search == ("example.org", "lab.example.org")
    assert msg.unknown == ((60, b"dnsmasq"),)


def test_scapy_nak_offer_and_odd_ip() -> None:
    nak = parsed(scapy_reply([("message-type", "nak"), "end"]))
    assert nak.message_type == defs.DHCPNAK
    ip_opts = {"options": IPOption(b"\x01\x01\x01\x00")}
    offer = parsed(scapy_reply([("message-type", "offer"), "end"], ip=ip_opts))
    assert offer.message_type == defs.DHCPOFFER
    assert parse_frame(scapy_reply(["end"], ip={"flags": "MF"})) == Rejection("IP fragment")
    assert parse_frame(scapy_reply(["end"], ip={"frag": 3})) == Rejection("IP fragment")
    assert parse_frame(scapy_reply(["end"], ip={"proto": 6})) == Rejection("not UDP: IP protocol 6")


def test_scapy_checksums() -> None:
    pkt = Ether(scapy_reply([("message-type", "ack"), "end"]))
    pkt[UDP].chksum ^= 0x0101
    assert parse_frame(bytes(pkt)) == Rejection("bad UDP checksum")
    assert isinstance(parse_frame(bytes(pkt), csum_flags=defs.TP_STATUS_CSUMNOTREADY), DhcpMessage)
    pkt[UDP].chksum = 0
    assert isinstance(parse_frame(bytes(pkt)), DhcpMessage)
    pkt[IP].chksum ^= 0x0101
    assert parse_frame(bytes(pkt)) == Rejection("bad IP checksum")
    # the kernel's "checksum valid" covers UDP only, never the IP header
    assert parse_frame(bytes(pkt), csum_flags=defs.TP_STATUS_CSUM_VALID) == Rejection(
        "bad IP checksum"
    )


ipv4 = st.builds(A, st.integers(1, 2**32 - 2))
networks = st.builds(
    lambda addr, plen: IPv4Network((addr, plen), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@settings(max_examples=60, deadline=None)
@given(
    xid=st.integers(0, 2**32 - 1),
    yiaddr=ipv4,
    lease=st.integers(0, 2**32 - 1),
    routers=st.lists(ipv4, min_size=1, max_size=10),
    dns=st.lists(ipv4, min_size=1, max_size=12),
    routes=st.lists(st.tuples(networks, ipv4), max_size=20),
    mtu=st.integers(0, 65535),
    v6=st.integers(0, 2**32 - 1),
    host=st.binary(min_size=1, max_size=60),
)
def test_scapy_built_replies_round_trip(  # noqa: PLR0917 (hypothesis passes keywords)
    xid: int,
    yiaddr: IPv4Address,
    lease: int,
    routers: list[IPv4Address],
    dns: list[IPv4Address],
    routes: list[tuple[IPv4Network, IPv4Address]],
    mtu: int,
    v6: int,
    host: bytes,
) -> None:
    opts: list[Any] = [
        ("message-type", "offer"),
        ("lease_time", lease),
        ("router", *map(str, routers)),
        ("name_server", *map(str, dns)),
        ("interface-mtu", mtu),
        ("ipv6-only-preferred", v6),
        ("hostname", host),
    ]
    if routes:
        opts.append(("classless_static_routes", *(f"{n}:{gw}" for n, gw in routes)))
    msg = parsed(scapy_reply([*opts, "end"], xid=xid, yiaddr=str(yiaddr)), xid=xid)
    assert (msg.xid, msg.yiaddr, msg.lease_time, msg.mtu) == (xid, yiaddr, lease, mtu)
    assert msg.ipv6_only_wait == v6
    assert msg.routers == tuple(routers)
    assert msg.dns == tuple(dns[:8])
    stripped = host.rstrip(b"\0")
    assert (msg.host_name is None) == (not stripped)
    if routes:
        assert msg.routes() == tuple(Route(n.network_address, n.netmask, gw) for n, gw in routes)
    else:
        assert msg.routes() == tuple(Route(ZERO, ZERO, r) for r in routers)


def dissect(raw: bytes) -> tuple[Any, dict[Any, Any]]:
    pkt = Ether(raw)
    opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
    return pkt, opts


def checksums_valid(pkt: Any) -> bool:
    again = pkt.copy()
    del again[IP].chksum
    del again[UDP].chksum
    fresh = Ether(bytes(again))
    return bool(fresh[IP].chksum == pkt[IP].chksum and fresh[UDP].chksum == pkt[UDP].chksum)


def test_our_discover_in_scapy() -> None:
    pkt, opts = dissect(build_frame(Request(defs.DHCPDISCOVER, XID, CLIENT_MAC)))
    assert (pkt[Ether].dst, pkt[Ether].src) == ("ff:ff:ff:ff:ff:ff", MAC)
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].tos, pkt[IP].ttl) == (
        "0.0.0.0",
        "255.255.255.255",
        0x10,
        128,
    )
    assert (pkt[UDP].sport, pkt[UDP].dport) == (68, 67)
    assert checksums_valid(pkt)
    b = pkt[BOOTP]
    assert (b.op, b.htype, b.hlen, b.xid, b.secs, int(b.flags)) == (1, 1, 6, XID, 0, 0)
    assert b.chaddr[:6] == CLIENT_MAC and b.ciaddr == "0.0.0.0"
    assert [o[0] for o in pkt[DHCP].options if isinstance(o, tuple)] == [
        "message-type",
        "client_id",
        "param_req_list",
    ]
    assert opts["message-type"] == (1,)
    assert opts["client_id"] == (b"\x01" + CLIENT_MAC,)
    assert list(opts["param_req_list"][0]) == [*defs.REQUEST_LIST, 26, 42]


requests = st.builds(
    Request,
    message_type=st.sampled_from([defs.DHCPDISCOVER, defs.DHCPREQUEST]),
    xid=st.integers(0, 2**32 - 1),
    mac=st.binary(min_size=6, max_size=6),
    ciaddr=st.builds(A, st.integers(0, 2**32 - 1)),
    requested_ip=st.none() | ipv4,
    server_identifier=st.none() | ipv4,
    host_name=st.none()
    | st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63).map(str.encode),
    client_id=st.none() | st.binary(min_size=1, max_size=255),
    vendor_class_id=st.none() | st.binary(min_size=1, max_size=255),
    prefer_ipv6=st.booleans(),
    rapid_commit=st.booleans(),
    ask_mtu=st.booleans(),
    ask_ntp=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(requests)
def test_our_requests_in_scapy(req: Request) -> None:
    pkt, opts = dissect(build_frame(req))
    assert checksums_valid(pkt)
    assert pkt[Ether].src == ":".join(f"{b:02x}" for b in req.mac)
    b = pkt[BOOTP]
    assert (b.op, b.xid, b.chaddr[:6], A(b.ciaddr)) == (1, req.xid, req.mac, req.ciaddr)
    assert opts["message-type"] == (req.message_type,)
    assert opts.get("requested_addr") == (
        None if req.requested_ip is None else (str(req.requested_ip),)
    )
    assert opts.get("server_id") == (
        None if req.server_identifier is None else (str(req.server_identifier),)
    )
    assert opts["client_id"] == (b"\x01" + req.mac if req.client_id is None else req.client_id,)
    assert opts.get("hostname") == (None if req.host_name is None else (req.host_name,))
    vc = req.vendor_class_id
    assert opts.get("vendor_class_id") == (None if vc is None else (vc,))
    extra = [(26, req.ask_mtu), (42, req.ask_ntp), (108, req.prefer_ipv6)]
    prl = list(defs.REQUEST_LIST) + [code for code, on in extra if on]
    assert list(opts["param_req_list"][0]) == prl
    rapid = req.rapid_commit and req.message_type == defs.DHCPDISCOVER  # RFC 4039: DISCOVER only
    assert opts.get("rapid_commit") == ((b"",) if rapid else None)
    assert len(pkt[UDP].payload) >= defs.DHCP_MIN_PACKET


@settings(max_examples=60, deadline=None)
@given(requests)
def test_our_release_in_scapy_has_what_rfc_2131_table_5_allows(req: Request) -> None:
    """ciaddr, 53 = 7, 61, 54 (MUST); never 12, 50, 55, 60 or 80, whatever else was set."""
    server = req.server_identifier or A("192.0.2.1")
    rel = Request(
        defs.DHCPRELEASE, req.xid, req.mac, A("192.0.2.10"),
        requested_ip=req.requested_ip, server_identifier=server, host_name=req.host_name,
        client_id=req.client_id, vendor_class_id=req.vendor_class_id,
        prefer_ipv6=req.prefer_ipv6, rapid_commit=req.rapid_commit,
    )  # fmt: skip
    b = BOOTP(build_bootp(rel))
    assert (b.op, b.xid, b.ciaddr, b.yiaddr, b.siaddr, b.giaddr) == (
        1, req.xid, "192.0.2.10", "0.0.0.0", "0.0.0.0", "0.0.0.0",
    )  # fmt: skip
    assert (b.secs, int(b.flags), b.chaddr[:6], b.sname, b.file) == (
        0, 0, req.mac, b"\0" * 64, b"\0" * 128,
    )  # fmt: skip
    options = [o for o in b[DHCP].options if isinstance(o, tuple)]
    client_id = b"\x01" + req.mac if req.client_id is None else req.client_id
    assert options == [
        ("message-type", defs.DHCPRELEASE),
        ("client_id", client_id),
        ("server_id", str(server)),
    ]


def test_rapid_commit_in_a_reply_is_read_and_a_malformed_one_ignored() -> None:
    base = [("message-type", "ack"), ("server_id", str(SERVER)), ("lease_time", 600),
            ("subnet_mask", "255.255.255.0")]  # fmt: skip
    assert parsed(scapy_reply([*base, ("rapid_commit", b""), "end"])).rapid_commit
    assert not parsed(scapy_reply([*base, "end"])).rapid_commit
    odd = parsed(scapy_reply([*base, ("rapid_commit", b"x"), "end"]))
    assert not odd.rapid_commit  # the reply is kept: the original does not read option 80
    assert odd.ignored == ("option 80 with wrong length 1",)


def test_a_release_without_server_identifier_cannot_be_built() -> None:
    """RFC 2131 table 5: option 54 MUST be there; the frontend refuses such a request."""
    with pytest.raises(ValueError, match="server identifier"):
        build_bootp(Request(defs.DHCPRELEASE, XID, CLIENT_MAC, A("192.0.2.10")))
