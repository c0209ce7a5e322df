"""Lease file text: v2 rendering, tolerant parsing of v1/v2/garbage."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased.lease import Lease, parse_lease, render_lease

A = IPv4Address

FULL = Lease(
    ip=A("192.0.2.10"),
    next_server=A("192.0.2.1"),
    filename="pxelinux.0",
    host_name="gw1",
    domain_name="example.org",
)
FULL_TEXT = (
    "version: 2\n"
    "ip: 192.0.2.10\n"
    "next-server: 192.0.2.1\n"
    "filename: pxelinux.0\n"
    "host-name: gw1\n"
    "domain-name: example.org\n"
)


def test_render_v2() -> None:
    assert render_lease(FULL) == FULL_TEXT
    assert parse_lease(FULL_TEXT) == FULL


def test_empty_values() -> None:
    text = (
        "version: 2\nip: 192.0.2.10\nnext-server: 0.0.0.0\nfilename: \nhost-name: \ndomain-name: \n"
    )
    lease = Lease(ip=A("192.0.2.10"), next_server=A("0.0.0.0"))
    assert render_lease(lease) == text
    assert parse_lease(text) == lease
    unset = "version: 2\nip: \nnext-server: \nfilename: \nhost-name: \ndomain-name: \n"
    assert render_lease(Lease(ip=None)) == unset
    assert parse_lease(unset) == Lease(ip=None)


def test_six_lines_whatever_the_values() -> None:
    lease = Lease(ip=A("192.0.2.10"), filename="a\nip: 6.6.6.6\n", host_name="x\0y\r\\n")
    text = render_lease(lease)
    assert text.count("\n") == 6
    assert "\0" not in text
    assert "\r" not in text
    assert "filename: a\\nip: 6.6.6.6\\n\n" in text
    assert "host-name: x\\0y\\r\\\\n\n" in text
    assert parse_lease(text) == lease


def test_v1() -> None:
    assert parse_lease("version: 1\nip: 192.0.2.7\n") == Lease(ip=A("192.0.2.7"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "garbage",
        "version: 2\n",
        "version: 2\nip: not-an-address\n",
        "version: 2\nip: 192.0.2\n",
        "version: 2\nip: 192.0.2.010\n",
        "ip 192.0.2.1\n",
        "zip: 192.0.2.1\n",
        "\0\xff\ud800",
    ],
)
def test_garbage_has_no_ip(text: str) -> None:
    assert parse_lease(text).ip is None


def test_tolerance() -> None:
    # truncated file, CRLF line ends, blanks around the address, unknown keys
    assert parse_lease("version: 2\nip: 192.0.2.10\nnext-ser") == Lease(ip=A("192.0.2.10"))
    assert parse_lease("version: 2\r\nip:  192.0.2.10 \r\nhost-name: h\r\n") == Lease(
        ip=A("192.0.2.10"), host_name="h"
    )
    assert parse_lease("future: x\nip: 192.0.2.10\n") == Lease(ip=A("192.0.2.10"))
    # the first occurrence wins, as the original's strstr("ip: ") does
    assert parse_lease("ip: 192.0.2.1\nip: 192.0.2.2\n").ip == A("192.0.2.1")
    # a bad next-server does not spoil the rest
    assert parse_lease("ip: 192.0.2.1\nnext-server: x\nfilename: f\n") == Lease(
        ip=A("192.0.2.1"), filename="f"
    )
    # unknown escapes (hand edits) are kept as written
    assert parse_lease("ip: 192.0.2.1\nfilename: a\\qb\\\n").filename == "a\\qb\\"


addresses = st.one_of(st.none(), st.integers(0, 2**32 - 1).map(IPv4Address))
leases = st.builds(
    Lease,
    ip=addresses,
    next_server=addresses,
    filename=st.text(),
    host_name=st.text(),
    domain_name=st.text(),
)


@settings(max_examples=300)
@given(leases)
def test_roundtrip(lease: Lease) -> None:
    text = render_lease(lease)
    assert text.startswith("version: 2\n")
    assert text.count("\n") == 6
    assert "\0" not in text
    assert parse_lease(text) == lease


@settings(max_examples=300)
@given(st.text())
def test_parse_never_raises(text: str) -> None:
    lease = parse_lease(text)
    assert isinstance(lease, Lease)
