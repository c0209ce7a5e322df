"""Privileged sockets the parent opens for the frontend (bpf.c + the routing socket).

The Linux twin of OpenBSD's locked ``/dev/bpf`` is an AF_PACKET socket with a classic BPF
program attached and locked (``SO_LOCK_FILTER``): once the descriptor has been passed to
the sandboxed frontend nobody, not even root, can widen what it sees.

The original also locks a BPF *write* filter (IPv4 UDP 68->67 only); Linux has none for
packet sockets.  So the frontend gets no socket that can emit a frame of its choosing:

* the packet socket is bound to no interface (``sll_ifindex`` 0, its filter checks the
  arrival interface itself), and a packet socket bound so cannot send without a
  destination address: ``send``/``write`` fail with ENXIO, and the frontend's seccomp
  list admits ``sendto`` only with a NULL address and ``sendmsg`` only on its channel to
  the parent.  It only receives;
* DISCOVER, REQUEST and REBIND go out through a UDP socket per interface bound to
  0.0.0.0:68 on that device and *connected* to 255.255.255.255:67 (:func:`open_bcastsock`);
  renewals through one bound to the leased address:68 and connected to the server:67
  (:func:`open_udpsock`).  The kernel builds the Ethernet, IP and UDP headers: the
  frontend chooses the DHCP payload and nothing else, as the original's write filter
  allows.

ARP for address conflict detection (RFC 5227) follows the same split.  The frontend
receives through one more locked, receive-only packet socket per watched address
(:func:`open_arpsock`): bound to ETH_P_ARP on no interface, its filter passes only ARP
that arrived on the interface, not sent by this host, whose sender or target IP is that
address (:func:`arp_filter`), so the address is part of the locked program and a new one
means a new socket.  The frontend never sends ARP: the parent builds the probes and
announcements itself and emits them on a send-only socket of its own
(:func:`open_arp_sender`, :func:`send_arp`), as the engine asks and as the parent allows
(``main``: probes only for the watched address, announcements only of the address it
configured, rate limited).  An engine or frontend that is taken over therefore cannot
emit an ARP frame of its own making, such as a reply that poisons a neighbour's cache.

The frontend only calls :func:`recv_frame` and :func:`send_dhcp` on what it was given;
the ``open_*`` functions need privileges and run in the parent.  The routing socket's
messages are pyroute2's business (:mod:`dhcpleased.netlink`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from ipaddress import IPv4Address
from typing import Final

from dhcpleased import defs, netlink

# --- kernel ABI (asm-generic values; x86_64 and aarch64 use these) -----------------------
SOL_PACKET: Final = 263
PACKET_STATISTICS: Final = 6
PACKET_AUXDATA: Final = 8
SO_ATTACH_FILTER: Final = 26
SO_DETACH_FILTER: Final = 27
SO_LOCK_FILTER: Final = 44
SO_BINDTOIFINDEX: Final = 62

# classic BPF opcodes (linux/filter.h)
BPF_LD: Final = 0x00
BPF_LDX: Final = 0x01
BPF_JMP: Final = 0x05
BPF_RET: Final = 0x06
BPF_W: Final = 0x00
BPF_H: Final = 0x08
BPF_B: Final = 0x10
BPF_ABS: Final = 0x20
BPF_IND: Final = 0x40
BPF_MSH: Final = 0xA0
BPF_JEQ: Final = 0x10
BPF_JSET: Final = 0x40
BPF_K: Final = 0x00
SKF_AD_OFF: Final = -0x1000
SKF_AD_VLAN_TAG_PRESENT: Final = 48

IPPROTO_UDP: Final = 17
IP_MTU_DISCOVER: Final = 10
IP_PMTUDISC_DONT: Final = 0  # no DF bit, as the original's frames
IPTOS_LOWDELAY: Final = 0x10  # the original's broadcast frames: TOS lowdelay, TTL 128
BROADCAST_TTL: Final = 128
IP_FRAGMASK: Final = 0x3FFF  # MF flag + fragment offset: set on every fragment, first or later

_AUXDATA: Final = struct.Struct("=IIIHHHH")  # tp_status, tp_len, tp_snaplen, mac, net, tci, tpid
_SOCK_FILTER: Final = struct.Struct("=HBBI")
_SOCKADDR_LL: Final = struct.Struct("=HHiHBB8s")  # family, protocol (be), ifindex, ...
_TPACKET_STATS: Final = struct.Struct("=II")  # tp_packets, tp_drops

_libc = ctypes.CDLL(None, use_errno=True)
_RECV_SIZE: Final = 2048  # the original's BPFLEN; anything larger is dropped anyway
_MAX_SKIPPED: Final = 64  # bounded work per readable event, so a flood cannot starve the loop

Insn = tuple[int, int, int, int]  # (code, jt, jf, k), exactly struct sock_filter


def _stmt(code: int, k: int) -> Insn:
    return (code, 0, 0, k & 0xFFFFFFFF)


def _jump(code: int, k: int, jt: int, jf: int) -> Insn:
    return (code, jt, jf, k & 0xFFFFFFFF)


# Accept IPv4 + UDP + not a fragment + dst port 68; offsets count from the Ethernet header
# because the socket is SOCK_RAW.  The original tests only the offset (0x1fff) and so lets
# a *first* fragment through; a fragment can never hold a whole DHCP message, so this one
# also drops MF-flagged packets and they never cross a process boundary.
DHCP_FILTER: Final[tuple[Insn, ...]] = (
    _stmt(BPF_LD | BPF_H | BPF_ABS, 12),  # 0: A = ethertype
    _jump(BPF_JMP | BPF_JEQ | BPF_K, defs.ETH_P_IP, 0, 8),  # 1: not IPv4 -> 10
    _stmt(BPF_LD | BPF_B | BPF_ABS, 23),  # 2: A = IP protocol
    _jump(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, 6),  # 3: not UDP -> 10
    _stmt(BPF_LD | BPF_H | BPF_ABS, 20),  # 4: A = flags + fragment offset
    _jump(BPF_JMP | BPF_JSET | BPF_K, IP_FRAGMASK, 4, 0),  # 5: a fragment -> 10
    _stmt(BPF_LDX | BPF_B | BPF_MSH, 14),  # 6: X = IP header length
    _stmt(BPF_LD | BPF_H | BPF_IND, 16),  # 7: A = UDP destination port
    _jump(BPF_JMP | BPF_JEQ | BPF_K, defs.CLIENT_PORT, 0, 1),  # 8: not 68 -> 10
    _stmt(BPF_RET | BPF_K, 0xFFFFFFFF),  # 9: accept the whole frame
    _stmt(BPF_RET | BPF_K, 0),  # 10: drop
)

SKF_AD_PKTTYPE: Final = 4
SKF_AD_IFINDEX: Final = 8
PACKET_OTHERHOST: Final = 3
PACKET_OUTGOING: Final = 4


_ACCEPT, _DROP = "accept", "drop"
Step = tuple[int, int, int | str, int | str]  # (opcode, k, jt, jf); jumps 0 or a label


def _arrival(if_index: int, *, outgoing: bool = False) -> tuple[Step, ...]:
    """Steps that drop frames not really received on if_index (and, with ``outgoing``,
    the host's own frames).

    Linux strips an 802.1Q tag into skb metadata before a packet socket bound to one
    protocol sees the frame, so a DHCP reply for a VLAN on top of this interface looks
    untagged at offset 12.  Three ancillary loads catch it: with a VLAN device the frame
    arrives with skb->dev = that device (ifindex differs); without one the kernel marks
    it PACKET_OTHERHOST (and a tag still present at filter time is checked too).
    """
    ld, jeq = BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JEQ | BPF_K
    return (
        (ld, SKF_AD_OFF + SKF_AD_IFINDEX, 0, 0),
        (jeq, if_index, 0, _DROP),
        (ld, SKF_AD_OFF + SKF_AD_PKTTYPE, 0, 0),
        (jeq, PACKET_OTHERHOST, _DROP, 0),
        *(((jeq, PACKET_OUTGOING, _DROP, 0),) if outgoing else ()),
        (ld, SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT, 0, 0),
        (jeq, 0, 0, _DROP),
    )


def _resolve(code: tuple[Step, ...], at: dict[str, int]) -> list[Insn]:
    """The steps as instructions, each label's jump aimed at its index in ``at``."""
    out: list[Insn] = []
    for i, (op, k, jt, jf) in enumerate(code):
        t, f = (j if isinstance(j, int) else at[j] - (i + 1) for j in (jt, jf))
        out.append(_jump(op, k, t, f))
    return out


def foreign_drop(if_index: int) -> tuple[Insn, ...]:
    """:func:`_arrival`'s checks as a prefix of :data:`DHCP_FILTER`, dropping at its
    final "ret 0"."""
    steps = _arrival(if_index)
    return tuple(_resolve(steps, {_DROP: len(steps) + len(DHCP_FILTER) - 1}))


DROP_ALL: Final[tuple[Insn, ...]] = (_stmt(BPF_RET | BPF_K, 0),)


def _assemble(code: tuple[Step, ...]) -> tuple[Insn, ...]:
    """The steps, then "accept" and "drop", which end the program."""
    out = _resolve(code, {_ACCEPT: len(code), _DROP: len(code) + 1})
    return (*out, _stmt(BPF_RET | BPF_K, 0xFFFFFFFF), _stmt(BPF_RET | BPF_K, 0))


def arp_filter(if_index: int, address: IPv4Address) -> tuple[Insn, ...]:
    """ARP about ``address`` that arrived on ``if_index`` from another host, nothing else.

    Arrival checks as :func:`_arrival`'s, with PACKET_OUTGOING: the host's own ARP
    (the kernel's, the parent's probes and announcements) must never look like another
    host claiming the address (a socket bound to a protocol is not shown outgoing frames
    today; this and the ethertype test hold should that change).  Then Ethernet/IPv4 ARP
    with 6- and 4-byte addresses, and the sender IP (probe replies, announcements,
    claims) or the target IP (another host's probe) equal to ``address``; the engine
    parses and judges the rest.
    """
    ld, jeq = BPF_LD | BPF_ABS, BPF_JMP | BPF_JEQ | BPF_K
    w, h = BPF_W, BPF_H
    return _assemble(
        (
            *_arrival(if_index, outgoing=True),
            (ld | h, 12, 0, 0),  # ethertype
            (jeq, defs.ETH_P_ARP, 0, _DROP),
            (ld | w, 14, 0, 0),  # hardware type, protocol type
            (jeq, defs.ARPHRD_ETHER << 16 | defs.ETH_P_IP, 0, _DROP),
            (ld | h, 18, 0, 0),  # address lengths
            (jeq, defs.ETH_ALEN << 8 | 4, 0, _DROP),
            (ld | w, 28, 0, 0),  # sender IP
            (jeq, int(address), _ACCEPT, 0),
            (ld | w, 38, 0, 0),  # target IP
            (jeq, int(address), _ACCEPT, _DROP),
        )
    )


def filter_program(if_index: int | None = None) -> tuple[Insn, ...]:
    """The read filter: :data:`DHCP_FILTER`, behind :func:`foreign_drop` when if_index given."""
    return DHCP_FILTER if if_index is None else foreign_drop(if_index) + DHCP_FILTER


def _attach(sock: socket.socket, program: tuple[Insn, ...]) -> None:
    """SO_ATTACH_FILTER: struct sock_fprog points at the instructions, so pass a pointer."""
    code = b"".join(_SOCK_FILTER.pack(*insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    fprog = SockFprog(len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:  # a link that is down has nothing queued; the socket is fine
            if e.errno == errno.ENETDOWN:
                return
            raise


def open_bpfsock(if_index: int) -> socket.socket:
    """Open the locked, receive-only DHCP packet socket for one interface (open_bpfsock).

    Protocol 0 at creation means the socket receives nothing until bind(), and by then the
    filter is attached and locked: no unfiltered frame is ever queued.  It is bound to
    ETH_P_IP on *no* interface, so it cannot send (see the module doc); the filter's
    :func:`foreign_drop` prefix keeps it to frames that arrived on ``if_index``.  The drain
    is a second belt.  Raises OSError (ENXIO/ENODEV if the interface is gone).
    """
    return _open_rx(if_index, filter_program(if_index), defs.ETH_P_IP)


def open_arpsock(if_index: int, address: IPv4Address) -> socket.socket:
    """The frontend's locked, receive-only socket for ARP about one address
    (:func:`arp_filter`), made as :func:`open_bpfsock` makes the DHCP one."""
    return _open_rx(if_index, arp_filter(if_index, address), defs.ETH_P_ARP)


def _open_rx(if_index: int, program: tuple[Insn, ...], protocol: int) -> socket.socket:
    sock = socket.socket(
        socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0
    )
    try:
        socket.if_indextoname(if_index)  # ENXIO now rather than a socket that sees nothing
        _attach(sock, program)
        sock.setsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER, 1)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        _bind_packet(sock, 0, protocol)
        _drain(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def open_arp_sender(if_index: int) -> socket.socket:
    """The parent's send-only packet socket on one interface, for its ARP frames.

    Bound by index (a rename cannot redirect it) with protocol 0, so the kernel delivers
    it nothing; a locked drop-all filter and the smallest buffer make sure of it.
    ``send`` needs no address: the frame goes out on that interface as built.
    """
    sock = socket.socket(
        socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        _attach(sock, DROP_ALL)
        sock.setsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER, 1)
        _bind_packet(sock, if_index, 0)
    except BaseException:
        sock.close()
        raise
    return sock


def hw_address(sock: socket.socket) -> bytes:
    """The MAC of the interface a packet socket is bound to, as the kernel has it now."""
    name = sock.getsockname()
    return bytes(name[4]) if isinstance(name, tuple) and len(name) >= 5 else b""


def receive_only(sock: socket.socket) -> bool:
    """Is this packet socket bound to no interface (and so unable to send)?  For
    ``dhcpleasectl -p``: getsockname names the bound interface, "" for none."""
    try:
        name = sock.getsockname()
    except OSError:
        return False
    return isinstance(name, tuple) and name[0] == ""


def _bind_packet(sock: socket.socket, if_index: int, protocol: int) -> None:
    """bind() a packet socket by index: Python's (ifname, proto) form cannot say "none"."""
    addr = _SOCKADDR_LL.pack(socket.AF_PACKET, socket.htons(protocol), if_index, 0, 0, 0, b"")
    if _libc.bind(sock.fileno(), addr, len(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind packet socket: {os.strerror(err)}")


def recv_frame(sock: socket.socket) -> tuple[bytes, int] | None:
    """Read the next whole frame and its checksum status bits; None when nothing is left.

    Frames the kernel truncated (tp_len != tp_snaplen) or longer than MAX_PACKET are
    skipped, as the original skips short BPF captures.  The csum bits tell the engine that
    veth/virtio left the UDP checksum partial (CSUMNOTREADY) or already verified it.
    """
    csum_mask = defs.TP_STATUS_CSUMNOTREADY | defs.TP_STATUS_CSUM_VALID
    for _ in range(_MAX_SKIPPED):
        try:
            data, ancdata, flags, _addr = sock.recvmsg(_RECV_SIZE, socket.CMSG_SPACE(_AUXDATA.size))
        except (BlockingIOError, InterruptedError):
            return None
        status, tp_len, snaplen = 0, len(data), len(data)
        for level, ctype, cdata in ancdata:
            if level == SOL_PACKET and ctype == PACKET_AUXDATA and len(cdata) >= _AUXDATA.size:
                status, tp_len, snaplen = _AUXDATA.unpack_from(cdata)[:3]
        if (
            flags & socket.MSG_TRUNC
            or tp_len != snaplen
            or snaplen != len(data)
            or len(data) > defs.MAX_PACKET
        ):
            continue
        return data, status & csum_mask
    return None


def take_drops(sock: socket.socket) -> int:
    """Frames that passed the filter but found the receive buffer full, since the last call.

    PACKET_STATISTICS: the kernel resets its counters on every read, so the caller adds
    them up (0 if the socket cannot say).
    """
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
    except OSError:
        return 0
    return int(_TPACKET_STATS.unpack(raw)[1])


def send_dhcp(sock: socket.socket, payload: bytes) -> None:
    """Send one DHCP message on a connected UDP socket; OSError on failure."""
    sent = sock.send(payload)
    if sent != len(payload):
        raise OSError(errno.EMSGSIZE, f"short send: {sent} of {len(payload)}")


send_arp = send_dhcp  # one ARP frame out of open_arp_sender's socket, whole or OSError


def _udp_sendonly(if_index: int) -> socket.socket:
    """A UDP socket on one device whose receive side never holds a byte.

    DHCP replies arrive on the packet socket; these sockets only send.  A locked drop-all
    filter guarantees nothing piles up (shutdown(SHUT_RD) alone does not stop UDP queueing
    on Linux), and the smallest receive buffer bounds it regardless.  SO_BINDTOIFINDEX
    (Linux 5.0) names the device by index, so a rename cannot slip in between.
    """
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX, if_index)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        _attach(sock, DROP_ALL)
        sock.setsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _shut_rd(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError as e:  # unconnected UDP: Linux sets the flag yet returns ENOTCONN
        if e.errno != errno.ENOTCONN:
            raise


def open_bcastsock(if_index: int) -> socket.socket:
    """UDP 0.0.0.0:68 -> 255.255.255.255:67 on one interface: DISCOVER, REQUEST, REBIND.

    Linux sends it from 0.0.0.0 to ff:ff:ff:ff:ff:ff while the interface has no address
    (from the interface's address once it has one), with the original's TOS and TTL and
    no DF bit.  Connected, so ``send()`` needs no address and cannot be given another.
    """
    sock = _udp_sendonly(if_index)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, IPTOS_LOWDELAY)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, BROADCAST_TTL)
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        sock.bind(("0.0.0.0", defs.CLIENT_PORT))
        sock.connect(("255.255.255.255", defs.SERVER_PORT))
        _shut_rd(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def open_udpsock(
    if_index: int, addr: IPv4Address, server: IPv4Address | None = None
) -> socket.socket:
    """UDP socket bound to addr:68 on one interface; connected to server:67 if given.

    The connected one is the frontend's, for unicast renewals.  The unconnected one stays
    in the parent: bound like the original's, it takes (and drops) unicast replies from
    any other server, so the kernel answers none of them with ICMP port unreachable.
    """
    sock = _udp_sendonly(if_index)
    try:
        sock.bind((str(addr), defs.CLIENT_PORT))
        if server is not None:
            sock.connect((str(server), defs.SERVER_PORT))
        _shut_rd(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def open_routesock() -> socket.socket:
    """rtnetlink socket subscribed to link events (RTMGRP_LINK), non-blocking."""
    return netlink.open_socket(netlink.RTMGRP_LINK)
