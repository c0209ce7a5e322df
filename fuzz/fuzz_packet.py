"""Fuzz target for the packet codec: bytes in, a Rejection or a DhcpMessage out, nothing else.

Two inputs, both hypothesis strategies so that the suite (tests/unit/test_fuzz_packet.py)
and long standalone runs share them:

* ``raw_frames``: arbitrary bytes, sometimes behind a valid Ethernet/IPv4/UDP header so
  that the BOOTP parser is reached at all;
* ``shaped_frames``: a BOOTREPLY with a random mix of well-formed and broken options
  (lying lengths, truncated 121/119, pointer loops, oversize lists), then random byte
  edits, truncation and checksum damage.

A failure is any exception, a Rejection from the codec's safety net ("malformed packet:"
means a decoder indexed past its data: a bug even though nothing crashed), or a decoded
message that breaks a bound the rest of the daemon relies on.

Standalone: ``python -m fuzz.fuzz_packet --runs 1000000 [--seed N]`` feeds random
buffers to hypothesis' ``fuzz_one_input`` (atheris is used instead when it is installed
and ``--atheris`` is given).
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dhcpleased import defs, packet

CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")
SERVER = IPv4Address("192.0.2.1")
XID = 0x1234ABCD
COOKIE = b"\x63\x82\x53\x63"


def check(frame: bytes, csum_flags: int, xid: int | None, our_mac: bytes | None) -> None:
    """The property: raises AssertionError (or whatever the codec raised) on a finding."""
    res = packet.parse_frame(frame, csum_flags=csum_flags, our_mac=our_mac, xid=xid)
    check_result(res)
    # the UDP payload on its own path too (the engine test tools and ctl use it)
    if len(frame) > 42:
        check_result(packet.parse_bootp(frame[42:], xid=xid))


def check_result(res: packet.DhcpMessage | packet.Rejection) -> None:
    if isinstance(res, packet.Rejection):
        assert not res.reason.startswith("malformed packet"), res.reason
        return
    assert isinstance(res, packet.DhcpMessage)
    assert res.op == defs.BOOTREPLY
    assert len(res.dns) <= defs.MAX_RDNS_COUNT
    assert len(res.routers) <= defs.MAX_DHCP_ROUTES
    assert len(res.routes()) <= defs.MAX_DHCP_ROUTES
    for r in res.routes():
        assert int(r.dst) & ~int(r.mask) & 0xFFFFFFFF == 0, r
        assert 0 <= r.prefixlen <= 32
    assert len(" ".join(res.domain_search)) + 1 <= defs.MAX_SEARCH
    for name in res.domain_search:
        assert name and all(c.isalnum() or c in "-_." for c in name), name
    for text in (res.host_name, res.domain_name):
        assert text is None or (text.isprintable() and len(text) < defs.MAX_DOMAIN), text
    assert len(res.chaddr) <= 16
    assert packet.vis(res.file).isprintable()


# --- strategies ---------------------------------------------------------------------------


def ip_udp(
    payload: bytes,
    *,
    ulen_delta: int = 0,
    tlen_delta: int = 0,
    src: IPv4Address = SERVER,
    dst_mac: bytes = CLIENT_MAC,
) -> bytes:
    """A frame around payload via the codec's builder, optionally with lying lengths."""
    f = bytearray(
        packet.udp_frame(
            payload,
            src_mac=SERVER_MAC,
            dst_mac=dst_mac,
            ip_src=src,
            ip_dst=IPv4Address("192.0.2.10"),
            sport=67,
            dport=68,
        )
    )
    if ulen_delta:
        struct.pack_into("!H", f, 38, (len(payload) + 8 + ulen_delta) & 0xFFFF)
    if tlen_delta:
        struct.pack_into("!H", f, 16, (len(payload) + 28 + tlen_delta) & 0xFFFF)
    return bytes(f)


OPTION_CODES = [1, 3, 6, 12, 15, 26, 42, 51, 53, 54, 58, 59, 61, 108, 119, 121, 249, 252]


@st.composite
def option(draw: st.DrawFn) -> bytes:
    """One option instance: plausible, wrong-length, or with a lying length byte."""
    code = draw(st.sampled_from(OPTION_CODES) | st.integers(1, 254))
    kind = draw(st.integers(0, 19))
    if code == 121 and kind < 4:
        parts = []
        for _ in range(draw(st.integers(0, 6))):
            plen = draw(st.integers(0, 40))
            sig = (min(plen, 32) + 7) // 8
            parts.append(bytes([plen]) + draw(st.binary(min_size=sig, max_size=sig + 5)))
        value = b"".join(parts)[:255]
    elif code == 119 and kind < 4:
        value = b""
        for _ in range(draw(st.integers(0, 8))):
            if draw(st.booleans()):
                value += bytes([0xC0 | draw(st.integers(0, 3)), draw(st.integers(0, 255))])
            else:
                label = draw(st.binary(max_size=70))
                value += bytes([draw(st.sampled_from([len(label), 63, 64, 0]))]) + label
            if draw(st.booleans()):
                value += b"\0"
        value = value[:255]
    elif kind < 14:
        value = draw(st.binary(max_size=16 if kind < 12 else 255))
    else:
        value = draw(st.binary(min_size=4, max_size=4)) * draw(st.integers(1, 60))
        value = value[:255]
    olen = len(value) if kind != 19 else draw(st.integers(0, 255))
    return bytes([code, olen]) + value


@st.composite
def shaped_frames(draw: st.DrawFn) -> tuple[bytes, int, int | None, bytes | None]:
    hdr = bytearray(236)
    hdr[0] = 2 if draw(st.integers(0, 9)) else draw(st.integers(0, 255))
    hdr[1:3] = b"\x01\x06"
    xid = XID if draw(st.integers(0, 9)) else draw(st.integers(0, 2**32 - 1))
    struct.pack_into("!I", hdr, 4, xid)
    hdr[16:20] = draw(st.binary(min_size=4, max_size=4))
    hdr[28:34] = CLIENT_MAC
    if draw(st.booleans()):
        hdr[44:236] = draw(st.binary(min_size=192, max_size=192))
    mtype = draw(st.sampled_from([2, 5, 6, 5, 2, 9]))
    opts = bytes([53, 1, mtype]) + b"".join(draw(st.lists(option(), max_size=12)))
    opts += draw(st.sampled_from([b"\xff", b"\xff\0\0", b"\xff\x01garbage", b"", b"\0\0"]))
    payload = bytes(hdr) + draw(st.sampled_from([COOKIE, COOKIE, COOKIE, b"\x63\x82"])) + opts
    lie = draw(st.integers(0, 9)) == 0
    frame = bytearray(
        ip_udp(
            payload,
            ulen_delta=draw(st.sampled_from([0, 1, -1, 40, -300])) if lie else 0,
            tlen_delta=draw(st.sampled_from([0, 1, -1, 20, -300])) if lie else 0,
        )
    )
    if draw(st.integers(0, 9)) == 0:  # byte edits anywhere, headers included
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(frame) - 1))
            frame[i] = draw(st.integers(0, 255))
    if draw(st.integers(0, 9)) == 0:
        frame = frame[: draw(st.integers(0, len(frame)))]
    csum = draw(st.sampled_from([0, 0, defs.TP_STATUS_CSUM_VALID, defs.TP_STATUS_CSUMNOTREADY]))
    want_xid = draw(st.sampled_from([XID, None]))
    mac = draw(st.sampled_from([CLIENT_MAC, None]))
    return bytes(frame), csum, want_xid, mac


@st.composite
def raw_frames(draw: st.DrawFn) -> tuple[bytes, int, int | None, bytes | None]:
    body = draw(st.binary(max_size=1600))
    if draw(st.booleans()):
        body = ip_udp(body)
    return body, draw(st.integers(0, 255)), draw(st.sampled_from([XID, None])), None


FRAMES = st.one_of(shaped_frames(), shaped_frames(), shaped_frames(), raw_frames())


@settings(
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(FRAMES)
def fuzz_codec(case: tuple[bytes, int, int | None, bytes | None]) -> None:
    check(*case)


if __name__ == "__main__":
    import sys

    from fuzz.runner import run

    sys.exit(run(fuzz_codec, "codec"))
