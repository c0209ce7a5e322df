"""Which of a server's mistakes cost the whole reply and which only the option (issue 11.6).

The verdicts are engine.c's parse_dhcp (v1.59): a wrong length on an option it decodes
(1, 3, 6, 51, 53, 54, 58, 59, 108, 121; 61 with the default client id, in the engine) is
``goto wrong_length`` and drops the reply; options it does not decode (26, 42, 119, 28,
33, 52, 249, ...) fall to ``default:`` and cannot. Each case is a complete, otherwise
good ACK built with scapy, with one bad option added.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dhcpleased.packet import DhcpMessage, Rejection, parse_frame
from tests.unit.frames import CLIENT_MAC, SERVER, XID, YIADDR

A = IPv4Address
GOOD = [
    ("message-type", "ack"),
    ("server_id", str(SERVER)),
    ("lease_time", 3600),
    ("subnet_mask", "255.255.255.0"),
    ("router", str(SERVER)),
    ("name_server", "192.0.2.53"),
]
GOOD_CODES = {53, 54, 51, 1, 3, 6}


def ack_with(*bad: tuple[int, bytes]) -> bytes:
    """A good ACK, the bad option(s) after the good ones (so the walk reaches them)."""
    pkt = (
        Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
        / IP(src=str(SERVER), dst=str(YIADDR))
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, xid=XID, yiaddr=str(YIADDR), chaddr=CLIENT_MAC)
        / DHCP(options=[*GOOD, *bad, "end"])
    )
    return bytes(pkt)


def lease_intact(msg: DhcpMessage) -> None:
    assert (msg.message_type, msg.server_identifier, msg.lease_time) == (5, SERVER, 3600)
    assert msg.subnet_mask == A("255.255.255.0")
    assert msg.routers == (SERVER,) and msg.dns == (A("192.0.2.53"),)


LOOP = b"\x01a\xc0\x04\x01b\xc0\x00"
# (bad option, the reason the reply is dropped) -- as the original drops it
DROPPED: list[tuple[tuple[int, bytes], str]] = [
    ((53, b""), "received option 53 with wrong length"),
    ((53, b"\x05\x05"), "received option 53 with wrong length"),
    ((54, b"\xc0\x00\x02"), "received option 54 with wrong length"),
    ((51, b"\0\0\x0e\x10\0"), "received option 51 with wrong length"),
    ((1, b"\xff\xff\xff"), "received option 1 with wrong length"),
    ((58, b"\x07\x08"), "received option 58 with wrong length"),
    ((59, b""), "received option 59 with wrong length"),
    ((108, b"\0\0\x07"), "received option 108 with wrong length"),
    ((3, b""), "received option 3 with wrong length"),
    ((3, b"\xc0\x00\x02\x01\x01"), "received option 3 with wrong length"),
    ((6, b""), "received option 6 with wrong length"),
    ((6, b"\xc0\x00\x02\x35\xc0\x00\x02"), "received option 6 with wrong length"),
    ((121, bytes([33, 1, 2, 3, 4, 5, 6, 7, 8])), "received option 121 with invalid prefixlen 33"),
    ((121, bytes([24, 10, 1, 2, 192, 0, 2])), "received option 121 with wrong length"),
]
# (bad option, what is left of it, the note for the engine's log or None)
IGNORED: list[tuple[tuple[int, bytes], dict[str, Any], str | None]] = [
    ((26, b""), {"mtu": None}, "option 26 with wrong length 0"),
    ((26, b"\x05"), {"mtu": None}, "option 26 with wrong length 1"),
    ((26, b"\x05\xdc\x00"), {"mtu": None}, "option 26 with wrong length 3"),
    ((42, b""), {"ntp": ()}, "option 42 with wrong length 0"),
    ((42, b"\xc0\x00\x02"), {"ntp": ()}, "option 42 with wrong length 3"),
    ((42, b"\xc0\x00\x02\x7b\x01\x02"), {"ntp": ()}, "option 42 with wrong length 6"),
    ((119, LOOP), {"domain_search": ()}, "option 119 with a pointer loop"),
    ((119, b"\x07example"), {"domain_search": ()}, "option 119 with a truncated name"),
    ((119, b"\x81a\x00"), {"domain_search": ()}, "option 119 with label type 0x80"),
    ((12, b""), {"host_name": None}, None),  # RFC 2132 minimum is 1: as if absent
    ((15, b""), {"domain_name": None}, None),
    ((15, b"\0\0"), {"domain_name": None}, None),  # only NULs: nothing left
    ((28, b"\xc0\x00\x02"), {}, None),  # broadcast address: requested, never used
    ((33, b"\x0a\x00\x00"), {}, None),  # static routes: not implemented, as the original
    ((52, b"\x03\x03"), {}, None),  # overload: not implemented, as the original
    ((249, b"\x21"), {}, None),  # Microsoft's 121
    ((61, b""), {"client_id": b""}, None),  # the engine judges 61 (length 7 or drop)
]


@pytest.mark.parametrize(
    ("opt", "reason"), DROPPED, ids=[f"{o[0]}-{len(o[1])}" for o, _ in DROPPED]
)
def test_mistakes_the_original_drops_the_reply_for(opt: tuple[int, bytes], reason: str) -> None:
    assert parse_frame(ack_with(opt), our_mac=CLIENT_MAC, xid=XID) == Rejection(reason)


@pytest.mark.parametrize(
    ("opt", "left", "note"), IGNORED, ids=[f"{o[0]}-{len(o[1])}" for o, _, _ in IGNORED]
)
def test_mistakes_that_cost_only_the_option(
    opt: tuple[int, bytes], left: dict[str, Any], note: str | None
) -> None:
    msg = parse_frame(ack_with(opt), our_mac=CLIENT_MAC, xid=XID)
    assert isinstance(msg, DhcpMessage), msg
    lease_intact(msg)
    for field, value in left.items():
        assert getattr(msg, field) == value, field
    assert msg.ignored == (() if note is None else (note,))


def test_a_bad_instance_costs_only_that_instance() -> None:
    msg = parse_frame(ack_with((42, b"\xc0\x00\x02\x7b"), (42, b"\x01"), (26, b"\x05\xdc")))
    assert isinstance(msg, DhcpMessage), msg
    assert msg.ntp == (A("192.0.2.123"),) and msg.mtu == 1500
    assert msg.ignored == ("option 42 with wrong length 1",)


def test_every_mistake_at_once_still_leaves_the_lease() -> None:
    msg = parse_frame(ack_with(*(opt for opt, _, _ in IGNORED if opt[0] != 61)))
    assert isinstance(msg, DhcpMessage), msg
    lease_intact(msg)
    # 26 and 42 per instance; the 119 instances form one list (RFC 3396): one note
    assert [n.split(" with")[0] for n in msg.ignored] == ["option 26"] * 3 + ["option 42"] * 3 + [
        "option 119"
    ]


def test_the_first_fatal_mistake_wins_over_ignored_ones() -> None:
    raw = ack_with((26, b"\x05"), (51, b"\0"), (119, LOOP))
    assert parse_frame(raw) == Rejection("received option 51 with wrong length")
