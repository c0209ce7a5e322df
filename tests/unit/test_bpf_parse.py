"""dhcpleased.bpf without sockets: the classic BPF program.

The filter is checked by running it in a small classic-BPF interpreter written here
(the kernel's semantics: out-of-bounds loads drop the packet, jumps are relative to the
next instruction), on frames built by hand.
"""

from __future__ import annotations

import struct

import pytest

from dhcpleased import bpf

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
