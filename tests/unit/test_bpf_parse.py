"""dhcpleased.bpf without sockets: link-message decoding and the classic BPF program.

The filter is checked by running it in a small classic-BPF interpreter written here
(the kernel's semantics: out-of-bounds loads drop the packet, jumps are relative to the
next instruction), on frames built by hand.
"""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased import bpf, defs

# --- netlink link messages -------------------------------------------------------------------


def rtattr(atype: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), atype) + payload
    return data + b"\0" * (-len(data) % 4)


def nlmsg(mtype: int, body: bytes, *, flags: int = 0, seq: int = 0) -> bytes:
    data = struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body
    return data + b"\0" * (-len(data) % 4)


def link(
    mtype: int = bpf.RTM_NEWLINK,
    *,
    index: int = 7,
    name: bytes = b"eth0\0",
    hw: bytes = bytes.fromhex("020000000001"),
    oper: int | None = defs.IF_OPER_UP,
    flags: int = bpf.IFF_UP | bpf.IFF_RUNNING,
    family: int = socket.AF_UNSPEC,
    arphrd: int = 1,
    extra: bytes = b"",
) -> bytes:
    body = struct.pack("=BxHiII", family, arphrd, index, flags, 0)
    body += rtattr(bpf.IFLA_IFNAME, name) + rtattr(bpf.IFLA_ADDRESS, hw)
    if oper is not None:
        body += rtattr(bpf.IFLA_OPERSTATE, bytes([oper]))
    return nlmsg(mtype, body + extra)


def test_newlink_decoded() -> None:
    (ev,) = bpf.parse_link_messages(link())
    assert ev == bpf.LinkEvent(
        deleted=False,
        if_index=7,
        if_name="eth0",
        hw_address=bytes.fromhex("020000000001"),
        up=True,
        link_state=defs.IF_OPER_UP,
        arphrd=1,
    )


def test_dellink_and_down_flags() -> None:
    (ev,) = bpf.parse_link_messages(link(bpf.RTM_DELLINK, flags=bpf.IFF_UP))
    assert ev.deleted
    assert not ev.up  # UP without RUNNING (no carrier) is not up


def test_several_messages_and_noise_in_one_datagram() -> None:
    data = (
        link(index=2, name=b"a\0")
        + nlmsg(bpf.NLMSG_DONE, struct.pack("=i", 0))
        + nlmsg(bpf.NLMSG_ERROR, struct.pack("=i", -1) + b"\0" * 16)
        + nlmsg(20, b"\0" * 8)  # RTM_NEWADDR: not ours
        + link(index=3, name=b"b\0", oper=None)
        + link(index=4, family=socket.AF_BRIDGE)  # a bridge port event, not a link change
        + link(index=0)  # no such interface index
    )
    events = bpf.parse_link_messages(data)
    assert [(e.if_index, e.if_name) for e in events] == [(2, "a"), (3, "b")]
    assert events[1].link_state == defs.IF_OPER_UNKNOWN


def test_attribute_flags_and_unknown_attributes() -> None:
    nested = rtattr(0x8000 | 26, rtattr(1, b"xxxx"))  # NLA_F_NESTED IFLA_AF_SPEC
    body = struct.pack("=BxHiII", 0, 1, 9, 0, 0) + nested
    body += rtattr(0x4000 | bpf.IFLA_IFNAME, b"x0\0")  # NLA_F_NET_BYTEORDER set
    (ev,) = bpf.parse_link_messages(nlmsg(bpf.RTM_NEWLINK, body))
    assert ev.if_name == "x0"
    assert ev.hw_address == b""


def test_long_name_and_address_are_bounded() -> None:
    (ev,) = bpf.parse_link_messages(link(name=b"n" * 40, hw=b"\xaa" * 64))
    assert ev.if_name == "n" * (defs.IF_NAMESIZE - 1)
    assert len(ev.hw_address) == bpf.MAX_ADDR_LEN


def test_non_utf8_name_does_not_raise() -> None:
    (ev,) = bpf.parse_link_messages(link(name=b"\xff\xfe\0"))
    assert ev.if_name


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0" * 15,
        struct.pack("=IHHII", 15, bpf.RTM_NEWLINK, 0, 0, 0),  # length below the header
        struct.pack("=IHHII", 1000, bpf.RTM_NEWLINK, 0, 0, 0) + b"\0" * 16,  # past the end
        nlmsg(bpf.RTM_NEWLINK, b"\0" * 15),  # ifinfomsg cut short
        nlmsg(bpf.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 5, 0, 0) + b"\0\0\0\0"),  # alen 0
        nlmsg(
            bpf.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 5, 0, 0) + struct.pack("=HH", 200, 3)
        ),  # attribute longer than the message
    ],
)
def test_garbage_is_skipped(data: bytes) -> None:
    events = bpf.parse_link_messages(data)
    assert all(e.if_index == 5 for e in events)


def test_truncated_datagram_keeps_whole_messages() -> None:
    data = link(index=2) + link(index=3)
    assert [e.if_index for e in bpf.parse_link_messages(data[:-3])] == [2]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise(data: bytes) -> None:
    bpf.parse_link_messages(data)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_messages_never_raise(data: st.DataObject) -> None:
    raw = bytearray(link() + link(bpf.RTM_DELLINK, index=9))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for ev in bpf.parse_link_messages(bytes(raw[:cut])):
        assert isinstance(ev, bpf.LinkEvent)


def test_link_dump_request() -> None:
    req = bpf.link_dump_request(42)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", req)
    assert (length, mtype, seq, pid) == (len(req), bpf.RTM_GETLINK, 42, 0)
    assert flags == bpf.NLM_F_REQUEST | bpf.NLM_F_DUMP
    assert req[16:] == struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)


# --- the classic BPF program -----------------------------------------------------------------

IFINDEX = 4


def run_cbpf(
    prog: tuple[bpf.Insn, ...],
    pkt: bytes,
    *,
    ifindex: int = IFINDEX,
    pkttype: int = 0,
    vlan: bool = False,
) -> int:
    """Classic BPF as sk_run_filter runs it, for the opcodes our filters use."""
    ancillary = {
        bpf.SKF_AD_IFINDEX: ifindex,
        bpf.SKF_AD_PKTTYPE: pkttype,
        bpf.SKF_AD_VLAN_TAG_PRESENT: int(vlan),
    }
    a = x = pc = 0
    sizes = {bpf.BPF_W: 4, bpf.BPF_H: 2, bpf.BPF_B: 1}
    for _ in range(4096):
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls == bpf.BPF_RET:
            return k
        if cls == bpf.BPF_LD:
            size, mode = sizes[code & 0x18], code & 0xE0
            off = k if mode == bpf.BPF_ABS else x + k
            if mode == bpf.BPF_ABS and k >= (bpf.SKF_AD_OFF & 0xFFFFFFFF):
                a = ancillary[k - (bpf.SKF_AD_OFF & 0xFFFFFFFF)]
                continue
            if off + size > len(pkt):
                return 0
            a = int.from_bytes(pkt[off : off + size], "big")
        elif cls == bpf.BPF_LDX:
            assert code == bpf.BPF_LDX | bpf.BPF_B | bpf.BPF_MSH
            if k >= len(pkt):
                return 0
            x = (pkt[k] & 0x0F) * 4
        elif cls == bpf.BPF_JMP:
            op = code & 0xF0
            hit = a == k if op == bpf.BPF_JEQ else bool(a & k)
            pc += jt if hit else jf
        else:
            raise AssertionError(f"opcode {code:#x}")
    raise AssertionError("no return")


def frame(
    *,
    ethertype: int = 0x0800,
    proto: int = 17,
    frag: int = 0,
    ihl: int = 5,
    dport: int = 68,
    sport: int = 67,
    payload: bytes = b"x" * 300,
) -> bytes:
    eth = b"\xff" * 6 + b"\x02" * 6 + struct.pack("!H", ethertype)
    opts = b"\x01" * ((ihl - 5) * 4)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(udp),
        1,
        frag,
        64,
        proto,
        0,
        bytes(4),
        b"\xff" * 4,
    )
    return eth + ip + opts + udp


ACCEPT = 0xFFFFFFFF


@pytest.mark.parametrize("prog", [bpf.DHCP_FILTER, bpf.filter_program(IFINDEX)])
@pytest.mark.parametrize(
    ("pkt", "verdict"),
    [
        (frame(), ACCEPT),
        (frame(ihl=6), ACCEPT),  # IP options move the UDP header
        (frame(ihl=15), ACCEPT),
        (frame(frag=0x4000), ACCEPT),  # DF is fine
        (frame(dport=67), 0),
        (frame(dport=9999), 0),
        (frame(sport=68, dport=67), 0),  # our own DISCOVER
        (frame(proto=6), 0),  # TCP
        (frame(frag=0x2000), 0),  # first fragment (MF): stricter than the original
        (frame(frag=0x0003), 0),  # later fragment
        (frame(ethertype=0x86DD), 0),
        (frame(ethertype=0x8100), 0),  # a tag still in the frame
        (frame(ethertype=0x0806), 0),
        (frame()[:14], 0),  # too short: the kernel drops out-of-bounds loads
        (frame()[:36], 0),
        (b"", 0),
    ],
)
def test_filter_verdicts(prog: tuple[bpf.Insn, ...], pkt: bytes, verdict: int) -> None:
    assert run_cbpf(prog, pkt) == verdict


@pytest.mark.parametrize(
    "ctx",
    [
        {"ifindex": IFINDEX + 1},  # delivered for a VLAN device on top of ours
        {"pkttype": bpf.PACKET_OTHERHOST},  # tag stripped, no VLAN device
        {"vlan": True},
    ],
)
def test_foreign_frames_dropped(ctx: dict[str, int]) -> None:
    assert run_cbpf(bpf.filter_program(IFINDEX), frame(), **ctx) == 0
    assert run_cbpf(bpf.DHCP_FILTER, frame(), **ctx) == ACCEPT


@pytest.mark.parametrize("prog", [bpf.DHCP_FILTER, bpf.filter_program(3), bpf.DROP_ALL])
def test_program_is_well_formed(prog: tuple[bpf.Insn, ...]) -> None:
    """What the kernel's bpf_check_classic insists on: forward jumps in range, ret last."""
    assert 0 < len(prog) <= 4096
    for pc, (code, jt, jf, k) in enumerate(prog):
        assert 0 <= code <= 0xFFFF and 0 <= jt <= 255 and 0 <= jf <= 255
        assert 0 <= k <= 0xFFFFFFFF
        if code & 0x07 == bpf.BPF_JMP:
            assert pc + 1 + max(jt, jf) < len(prog)
    assert prog[-1][0] & 0x07 == bpf.BPF_RET
    assert prog[-1][3] == 0  # whatever falls through is dropped


def test_drop_all_drops() -> None:
    assert run_cbpf(bpf.DROP_ALL, frame()) == 0
