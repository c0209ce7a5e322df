"""The codec fuzz target (fuzz/fuzz_packet.py) as a bounded hypothesis run in the suite."""

from __future__ import annotations

from hypothesis import given, settings

from dhcpleased import defs, packet
from fuzz import fuzz_packet
from fuzz.fuzz_packet import FRAMES, check


@settings(max_examples=400, deadline=None, database=None)
@given(FRAMES)
def test_codec_never_fails(case: tuple[bytes, int, int | None, bytes | None]) -> None:
    check(*case)


def test_shaped_frames_reach_the_option_parser() -> None:
    """The strategy must produce accepted messages, or the fuzzing only tests headers."""
    accepted = 0

    @settings(max_examples=200, deadline=None, database=None)
    @given(fuzz_packet.shaped_frames())
    def count(case: tuple[bytes, int, int | None, bytes | None]) -> None:
        nonlocal accepted
        res = packet.parse_frame(case[0], csum_flags=case[1], our_mac=case[3], xid=case[2])
        accepted += isinstance(res, packet.DhcpMessage)

    count()
    assert accepted > 10


def test_safety_net_counts_as_a_finding() -> None:
    """check() must flag a Rejection from the codec's catch-all as a bug."""
    bad = packet.Rejection("malformed packet: index out of range")
    try:
        fuzz_packet.check_result(bad)
    except AssertionError:
        return
    raise AssertionError("safety-net rejection passed the fuzz property")


def test_mtu_sized_option_119_is_bounded() -> None:
    """A reply full of option 119 decodes within the search-list bound."""
    name = b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x00"
    data = name * 8  # split over instances (RFC 3396): the decoder sees it joined
    opts = b"".join(
        bytes([119, len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255)
    )
    hdr = bytearray(236)
    hdr[0:3] = b"\x02\x01\x06"
    frame = fuzz_packet.ip_udp(bytes(hdr) + fuzz_packet.COOKIE + b"\x35\x01\x02" + opts + b"\xff")
    res = packet.parse_frame(frame)
    fuzz_packet.check_result(res)
    assert isinstance(res, packet.DhcpMessage)
    assert 0 < len(" ".join(res.domain_search)) < defs.MAX_SEARCH
