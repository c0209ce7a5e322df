"""ARP frames and the DHCPDECLINE against scapy, in both directions (RFC 826, 5227, 2131)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Padding

from dhcpleased import defs
from dhcpleased.packet import (
    ARPOP_REPLY,
    ARPOP_REQUEST,
    DECLINE_MESSAGE,
    ArpPacket,
    Rejection,
    Request,
    arp_announcement,
    arp_probe,
    build_bootp,
    parse_arp,
)
from tests.unit.frames import CLIENT_MAC, SERVER, SERVER_MAC, XID, YIADDR

A = IPv4Address
ZERO = A(0)
macs = st.binary(min_size=6, max_size=6)
ipv4 = st.builds(A, st.integers(0, 2**32 - 1))


def text_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


@settings(max_examples=50, deadline=None)
@given(macs, ipv4)
def test_our_probe_and_announcement_in_scapy(mac: bytes, addr: IPv4Address) -> None:
    """RFC 5227 2.1.1 and 2.3: a broadcast request from our MAC, target MAC zero, sender
    IP 0.0.0.0 (probe) or the address itself (announcement), target IP the address."""
    for frame, spa in ((arp_probe(mac, addr), ZERO), (arp_announcement(mac, addr), addr)):
        pkt = Ether(frame)
        assert (pkt.dst, pkt.src, pkt.type) == ("ff:ff:ff:ff:ff:ff", text_mac(mac), 0x0806)
        a = pkt[ARP]
        assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, 0x0800, 6, 4, 1)
        assert (a.hwsrc, a.psrc) == (text_mac(mac), str(spa))
        assert (a.hwdst, a.pdst) == ("00:00:00:00:00:00", str(addr))
        assert len(frame) == 42 and Padding not in pkt


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([1, 2]), macs, ipv4, macs, ipv4, st.binary(max_size=30))
def test_scapy_arp_parses_to_the_same_fields(  # noqa: PLR0917 (hypothesis passes them)
    op: int, sha: bytes, spa: IPv4Address, tha: bytes, tpa: IPv4Address, pad: bytes
) -> None:
    raw = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=text_mac(SERVER_MAC))
        / ARP(op=op, hwsrc=text_mac(sha), psrc=str(spa), hwdst=text_mac(tha), pdst=str(tpa))
        / Padding(load=pad)
    )
    assert parse_arp(raw) == ArpPacket(SERVER_MAC, op, sha, spa, tha, tpa)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (bytes(Ether() / ARP())[:41], "truncated ARP frame (41 bytes)"),
        (bytes(Ether(type=0x0800) / ARP()), "not ARP: ethertype 0x0800"),
        (bytes(Ether() / ARP(hwtype=6, hwlen=6)), "not Ethernet/IPv4 ARP: 6/0x0800/6/4"),
        (bytes(Ether() / ARP(ptype=0x86DD)), "not Ethernet/IPv4 ARP: 1/0x86dd/6/16"),
        (bytes(Ether() / ARP(op=3)), "ARP operation 3"),
        (b"", "truncated ARP frame (0 bytes)"),
    ],
    ids=["short", "ethertype", "htype", "ptype", "op", "empty"],
)
def test_what_is_not_an_rfc_5227_arp_packet(raw: bytes, reason: str) -> None:
    assert parse_arp(raw) == Rejection(reason)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_parse_arp_never_raises(raw: bytes) -> None:
    assert isinstance(parse_arp(raw), ArpPacket | Rejection)


def test_arp_constants() -> None:
    assert (ARPOP_REQUEST, ARPOP_REPLY) == (1, 2)


@settings(max_examples=60, deadline=None)
@given(
    xid=st.integers(0, 2**32 - 1),
    mac=macs,
    client_id=st.none() | st.binary(min_size=1, max_size=255),
    host_name=st.none() | st.binary(min_size=1, max_size=63),
    vendor=st.none() | st.binary(min_size=1, max_size=40),
    prefer_ipv6=st.booleans(),
    rapid=st.booleans(),
)
def test_our_decline_in_scapy_has_what_rfc_2131_table_5_asks(  # noqa: PLR0917
    xid: int,
    mac: bytes,
    client_id: bytes | None,
    host_name: bytes | None,
    vendor: bytes | None,
    prefer_ipv6: bool,
    rapid: bool,
) -> None:
    """ciaddr 0, 53 = 4, 61, 50 and 54 (MUST: dnsmasq ignores a DECLINE without them), 56
    (SHOULD); never 12, 55, 60 or 80, whatever else the interface sends."""
    dec = Request(
        defs.DHCPDECLINE, xid, mac, requested_ip=YIADDR, server_identifier=SERVER,
        host_name=host_name, client_id=client_id, vendor_class_id=vendor,
        prefer_ipv6=prefer_ipv6, rapid_commit=rapid,
    )  # fmt: skip
    b = BOOTP(build_bootp(dec))
    assert (b.op, b.xid, b.ciaddr, b.yiaddr, b.siaddr, b.giaddr) == (
        1, xid, "0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0",
    )  # fmt: skip
    assert (b.secs, int(b.flags), b.chaddr[:6]) == (0, 0, mac)
    options = [o for o in b[DHCP].options if isinstance(o, tuple)]
    assert options == [
        ("message-type", defs.DHCPDECLINE),
        ("client_id", b"\x01" + mac if client_id is None else client_id),
        ("requested_addr", str(YIADDR)),
        ("server_id", str(SERVER)),
        ("error_message", DECLINE_MESSAGE),
    ]


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"server_identifier": SERVER}, "option 50"),
        ({"requested_ip": YIADDR}, "option 54"),
        ({"requested_ip": YIADDR, "server_identifier": ZERO}, "option 54"),
    ],
)
def test_a_decline_without_50_or_54_cannot_be_built(fields: dict[str, A], missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        build_bootp(Request(defs.DHCPDECLINE, XID, CLIENT_MAC, **fields))  # type: ignore[arg-type]


def test_a_decline_has_ciaddr_zero() -> None:
    with pytest.raises(ValueError, match="ciaddr 0"):
        build_bootp(
            Request(defs.DHCPDECLINE, XID, CLIENT_MAC, YIADDR, YIADDR, server_identifier=SERVER)
        )
