"""dhcpleased.rtnl: message bytes, answer decoding, and the request/dump machinery.

The golden bytes were checked once against pyroute2's encoder (the client rtnl replaced)
and are written out here so the test does not need it.  The request/dump machinery runs
against a scripted fake socket (every answer path, including lost and garbled ones) and,
read-only, against the real kernel: an address dump needs no privilege and changes
nothing.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address as A

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased import rtnl

ACK_FLAGS = rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
REPLACE = rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE

# --- encoding ---------------------------------------------------------------------------------


def test_route_replace_golden_bytes() -> None:
    body = rtnl.route_body(
        dst=A("198.18.7.0"),
        dst_len=24,
        oif=3,
        table=254,
        proto=16,
        priority=1003,
        scope=0,
        gateway=A("10.0.0.1"),
        prefsrc=A("10.0.0.50"),
    )
    msg = rtnl.nlmsg(rtnl.RTM_NEWROUTE, ACK_FLAGS | REPLACE, 7, body)
    assert msg.hex() == (
        "4c000000" "1800" "0505" "07000000" "00000000"  # len 76, NEWROUTE, flags, seq, pid
        "02" "18" "00" "00" "fe" "10" "00" "01" "00000000"  # inet /24 main dhcp universe unicast
        "08000100" "c6120700"  # RTA_DST 198.18.7.0
        "08000f00" "fe000000"  # RTA_TABLE 254
        "08000400" "03000000"  # RTA_OIF 3
        "08000600" "eb030000"  # RTA_PRIORITY 1003
        "08000500" "0a000001"  # RTA_GATEWAY 10.0.0.1
        "08000700" "0a000032"  # RTA_PREFSRC 10.0.0.50
    )  # fmt: skip


def test_route_delete_golden_bytes() -> None:
    """Delete: any scope (NOWHERE), any type, no gateway or source: matched by oif,
    proto and metric only."""
    body = rtnl.route_body(
        dst=A("0.0.0.0"),
        dst_len=0,
        oif=3,
        table=254,
        proto=16,
        priority=1003,
        scope=255,
        rtype=rtnl.RTN_UNSPEC,
    )
    assert rtnl.nlmsg(rtnl.RTM_DELROUTE, ACK_FLAGS, 8, body).hex() == (
        "3c000000" "1900" "0500" "08000000" "00000000"
        "02" "00" "00" "00" "fe" "10" "ff" "00" "00000000"
        "08000100" "00000000" "08000f00" "fe000000" "08000400" "03000000" "08000600" "eb030000"
    )  # fmt: skip


def test_large_table_only_in_the_attribute() -> None:
    body = rtnl.route_body(
        dst=A("0.0.0.0"), dst_len=0, oif=1, table=1000, proto=16, priority=1, scope=0
    )
    assert body[4] == 0  # RT_TABLE_UNSPEC in the header
    assert rtnl.parse_attrs(body, rtnl.RTMSG.size)[rtnl.RTA_TABLE] == struct.pack("=I", 1000)


def test_address_golden_bytes() -> None:
    body = rtnl.addr_body(3, 24, A("10.0.0.50"), address=A("10.0.0.50"), broadcast=A("10.0.0.255"))
    assert rtnl.nlmsg(rtnl.RTM_NEWADDR, ACK_FLAGS | REPLACE, 9, body).hex() == (
        "30000000" "1400" "0505" "09000000" "00000000"
        "02" "18" "00" "00" "03000000"  # inet /24 flags 0 scope 0 index 3
        "08000200" "0a000032" "08000100" "0a000032" "08000400" "0a0000ff"
    )  # fmt: skip
    # any-prefix delete: IFA_LOCAL only, prefix 0
    assert rtnl.addr_body(3, 0, A("10.0.0.50")).hex() == "0200000003000000080002000a000032"


def test_dump_request_golden_bytes() -> None:
    msg = rtnl.nlmsg(
        rtnl.RTM_GETADDR, rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP, 1, rtnl.addr_body(3, 0)
    )
    assert msg.hex() == "180000001600010301000000000000000200000003000000"


def test_odd_attribute_is_padded() -> None:
    assert rtnl.rtattr(3, b"abcde") == b"\x09\x00\x03\x00abcde\0\0\0"
    assert len(rtnl.nlmsg(1, 0, 0, b"x")) == 20


# --- decoding ---------------------------------------------------------------------------------


def error_msg(code: int, seq: int, *, extack: str | None = None, capped: bool = True) -> bytes:
    echoed = rtnl.nlmsg(rtnl.RTM_NEWROUTE, ACK_FLAGS, seq, b"" if capped else b"\0" * 12)
    payload = struct.pack("=i", -code) + echoed
    flags = rtnl.NLM_F_CAPPED if capped else 0
    if extack is not None:
        flags |= rtnl.NLM_F_ACK_TLVS
        payload += rtnl.rtattr(rtnl.NLMSGERR_ATTR_MSG, extack.encode() + b"\0")
    return rtnl.nlmsg(rtnl.NLMSG_ERROR, flags, seq, payload)


def done_msg(seq: int, code: int = 0) -> bytes:
    return rtnl.nlmsg(rtnl.NLMSG_DONE, rtnl.NLM_F_MULTI, seq, struct.pack("=i", -code))


def newaddr(seq: int, index: int, addr: str, prefixlen: int) -> bytes:
    body = rtnl.addr_body(index, prefixlen, A(addr), address=A(addr))
    return rtnl.nlmsg(rtnl.RTM_NEWADDR, rtnl.NLM_F_MULTI, seq, body)


def test_ack_and_errors_decode() -> None:
    (m,) = rtnl.parse_messages(error_msg(0, 5))
    assert (m.mtype, m.seq) == (rtnl.NLMSG_ERROR, 5)
    assert rtnl.parse_error(m.flags, m.payload) == (0, "")
    (m,) = rtnl.parse_messages(error_msg(errno.EEXIST, 5))
    assert rtnl.parse_error(m.flags, m.payload) == (errno.EEXIST, "File exists")
    for capped in (True, False):
        (m,) = rtnl.parse_messages(
            error_msg(errno.ENETUNREACH, 6, extack="Nexthop has invalid gateway", capped=capped)
        )
        text = "Nexthop has invalid gateway"
        assert rtnl.parse_error(m.flags, m.payload) == (errno.ENETUNREACH, text)
    assert rtnl.parse_error(0, b"\1\0") == (errno.EPROTO, "short netlink error message")
    assert rtnl.parse_error(0, struct.pack("=i", 12))[0] == errno.EPROTO  # positive: nonsense


def test_done_and_addresses_decode() -> None:
    (m,) = rtnl.parse_messages(done_msg(3, errno.ENODEV))
    assert rtnl.parse_done(m.flags, m.payload) == (errno.ENODEV, "No such device")
    assert rtnl.parse_done(0, b"") == (0, "")
    (m,) = rtnl.parse_messages(newaddr(3, 4, "192.0.2.9", 24))
    assert rtnl.parse_ifaddr(m.payload) == rtnl.IfAddr(4, 24, A("192.0.2.9"))
    p2p = rtnl.IFADDRMSG.pack(socket.AF_INET, 32, 0, 0, 4) + rtnl.rtattr(
        rtnl.IFA_ADDRESS, A("192.0.2.1").packed
    )
    assert rtnl.parse_ifaddr(p2p) == rtnl.IfAddr(4, 32, A("192.0.2.1"))
    assert rtnl.parse_ifaddr(b"\x0a" + bytes(7)) is None  # AF_INET6
    assert rtnl.parse_ifaddr(b"\2\0") is None


def test_several_messages_in_one_datagram() -> None:
    data = newaddr(1, 2, "192.0.2.1", 24) + newaddr(1, 2, "192.0.2.2", 25) + done_msg(1)
    assert [m.mtype for m in rtnl.parse_messages(data)] == [20, 20, rtnl.NLMSG_DONE]
    assert rtnl.parse_messages(data[:-3])[-1].mtype == rtnl.RTM_NEWADDR  # cut: DONE dropped


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 0xFFFF))
def test_garbage_never_raises(data: bytes, flags: int) -> None:
    for m in rtnl.parse_messages(data):
        rtnl.parse_error(m.flags, m.payload)
        rtnl.parse_done(m.flags, m.payload)
        rtnl.parse_ifaddr(m.payload)
    rtnl.parse_attrs(data, 3)
    rtnl.parse_error(flags, data)
    rtnl.parse_done(flags, data)
    rtnl.parse_ifaddr(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=8))
def test_mangled_lengths_never_raise(parts: list[tuple[int, bytes]]) -> None:
    """Well-framed messages whose length fields then lie."""
    data = bytearray(b"".join(rtnl.nlmsg(t, 0, 1, p) for t, p in parts))
    for i in range(0, len(data), 7):
        data[i] ^= 0xFF
    rtnl.parse_messages(bytes(data))
    rtnl.parse_attrs(bytes(data))


# --- the request machinery, on a scripted socket ----------------------------------------------

Responder = Callable[[int, int, int, bytes], list[bytes]]  # (type, flags, seq, body) -> datagrams


class FakeNetlink:
    """Stands in for the netlink socket: send() runs a responder, recvmsg() replays.

    fileno() is a real socketpair end, kept readable while datagrams are queued, so
    add_reader works; ``source`` is the (pid, groups) the datagrams claim to come from.
    """

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.r, self.w = socket.socketpair()
        self.queue: list[tuple[bytes, int]] = []
        self.source: tuple[int, int] = (0, 0)
        self.sent: list[bytes] = []

    def fileno(self) -> int:
        return self.r.fileno()

    def push(self, datagram: bytes, flags: int = 0) -> None:
        if not self.queue:
            self.w.send(b"!")
        self.queue.append((datagram, flags))

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        (m,) = rtnl.parse_messages(data)
        for d in self.respond(m.mtype, m.flags, m.seq, m.payload):
            self.push(d)
        return len(data)

    def recvmsg(self, size: int) -> tuple[bytes, list[object], int, tuple[int, int]]:
        if not self.queue:
            raise BlockingIOError
        data, flags = self.queue.pop(0)
        if not self.queue:
            self.r.recv(1)
        if len(data) > size:
            data, flags = data[:size], flags | socket.MSG_TRUNC
        return data, [], flags, self.source

    def close(self) -> None:
        self.r.close()
        self.w.close()


MakeNl = Callable[[Responder], tuple[rtnl.Rtnl, FakeNetlink]]


@pytest.fixture
def make_nl() -> Iterator[MakeNl]:
    made: list[rtnl.Rtnl] = []

    def make(respond: Responder) -> tuple[rtnl.Rtnl, FakeNetlink]:
        fake = FakeNetlink(respond)
        nl = rtnl.Rtnl(timeout=0.5)
        nl.open(sock=fake)  # type: ignore[arg-type]
        made.append(nl)
        return nl, fake

    yield make
    for nl in made:
        nl.close()


async def test_request_ack_and_error(make_nl: MakeNl) -> None:
    def respond(mtype: int, flags: int, seq: int, body: bytes) -> list[bytes]:
        assert flags & ACK_FLAGS == ACK_FLAGS
        if mtype == rtnl.RTM_NEWROUTE:
            return [error_msg(0, seq + 1000), error_msg(0, seq)]  # a stray answer first
        return [error_msg(errno.ESRCH, seq, extack="No such route")]

    nl, fake = make_nl(respond)
    await nl.request(rtnl.RTM_NEWROUTE, REPLACE, b"")
    with pytest.raises(OSError) as ei:
        await nl.request(rtnl.RTM_DELROUTE, 0, b"", "delete route 0.0.0.0/0")
    assert ei.value.errno == errno.ESRCH
    assert str(ei.value.strerror) == "delete route 0.0.0.0/0: No such route"
    seqs = [m.seq for d in fake.sent for m in rtnl.parse_messages(d)]
    assert seqs[1] == seqs[0] + 1


async def test_dump_collects_until_done(make_nl: MakeNl) -> None:
    def respond(mtype: int, flags: int, seq: int, body: bytes) -> list[bytes]:
        assert flags == rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP
        return [  # three datagrams, as a multi-part dump arrives
            newaddr(seq, 2, "192.0.2.1", 24) + newaddr(seq, 2, "192.0.2.2", 24),
            rtnl.nlmsg(rtnl.NLMSG_NOOP, 0, seq, b""),
            newaddr(seq, 3, "198.51.100.1", 16) + done_msg(seq),
        ]

    nl, _ = make_nl(respond)
    msgs = await nl.dump(rtnl.RTM_GETADDR, rtnl.addr_body(0, 0))
    got = [rtnl.parse_ifaddr(m.payload) for m in msgs]
    assert got == [
        rtnl.IfAddr(2, 24, A("192.0.2.1")),
        rtnl.IfAddr(2, 24, A("192.0.2.2")),
        rtnl.IfAddr(3, 16, A("198.51.100.1")),
    ]


async def test_dump_errors(make_nl: MakeNl) -> None:
    answers: list[Callable[[int], list[bytes]]] = [
        lambda seq: [done_msg(seq, errno.ENODEV)],
        lambda seq: [newaddr(seq, 2, "192.0.2.1", 24), error_msg(errno.EINVAL, seq)],
    ]

    def respond(mtype: int, flags: int, seq: int, body: bytes) -> list[bytes]:
        return answers.pop(0)(seq)

    nl, _ = make_nl(respond)
    with pytest.raises(OSError) as ei:
        await nl.dump(rtnl.RTM_GETADDR, b"", "add address x")
    assert ei.value.errno == errno.ENODEV and "add address x: No such device" in str(ei.value)
    with pytest.raises(OSError) as ei:
        await nl.dump(rtnl.RTM_GETADDR, b"")
    assert ei.value.errno == errno.EINVAL


async def test_oversized_dump_is_refused(make_nl: MakeNl) -> None:
    def respond(mtype: int, flags: int, seq: int, body: bytes) -> list[bytes]:
        if mtype != rtnl.RTM_GETADDR:
            return [error_msg(0, seq)]
        big = rtnl.nlmsg(rtnl.RTM_NEWADDR, rtnl.NLM_F_MULTI, seq, bytes(30000))
        return [big] * (rtnl.MAX_DUMP_BYTES // 30000 + 2) + [done_msg(seq)]

    nl, fake = make_nl(respond)
    with pytest.raises(OSError) as ei:
        await nl.dump(rtnl.RTM_GETADDR, b"")
    assert ei.value.errno == errno.EMSGSIZE
    # the rest of that dump is read and dropped; the socket still works
    await nl.request(rtnl.RTM_NEWADDR, 0, b"")
    assert fake.queue == []


async def test_lost_or_forged_answers_time_out(make_nl: MakeNl) -> None:
    nl, fake = make_nl(lambda mtype, flags, seq, body: [b"\xff" * 40, error_msg(0, seq)])
    fake.source = (4242, 0)  # from another process, not the kernel: ignored
    with pytest.raises(OSError) as ei:
        await nl.request(rtnl.RTM_NEWADDR, 0, b"", "add address y")
    assert ei.value.errno == errno.ETIMEDOUT
    fake.source = (0, 0)
    await nl.request(rtnl.RTM_NEWADDR, 0, b"")  # the next one goes through


async def test_truncated_answer_fails_the_request(make_nl: MakeNl) -> None:
    def respond(mtype: int, flags: int, seq: int, body: bytes) -> list[bytes]:
        return [rtnl.nlmsg(rtnl.RTM_NEWADDR, rtnl.NLM_F_MULTI, seq, bytes(rtnl.RECV_SIZE))]

    nl, _ = make_nl(respond)
    with pytest.raises(OSError) as ei:
        await nl.dump(rtnl.RTM_GETADDR, b"")
    assert ei.value.errno == errno.EMSGSIZE


async def test_closed_socket_refuses() -> None:
    nl = rtnl.Rtnl()
    with pytest.raises(OSError) as ei:
        await nl.request(rtnl.RTM_NEWADDR, 0, b"")
    assert ei.value.errno == errno.ENOTCONN
    nl.close()  # closing what was never opened is fine


# --- the real kernel, read-only ---------------------------------------------------------------


async def test_kernel_address_dump_and_dump_error() -> None:
    nl = rtnl.Rtnl()
    nl.open()
    try:
        lo = socket.if_nametoindex("lo")
        msgs = await nl.dump(rtnl.RTM_GETADDR, rtnl.addr_body(lo, 0))
        addrs = [rtnl.parse_ifaddr(m.payload) for m in msgs if m.mtype == rtnl.RTM_NEWADDR]
        assert rtnl.IfAddr(lo, 8, A("127.0.0.1")) in addrs
        with pytest.raises(OSError) as ei:  # strict checking: a missing index is an error
            await nl.dump(rtnl.RTM_GETADDR, rtnl.addr_body(0x7FFFFFF0, 0))
        assert ei.value.errno == errno.ENODEV
    finally:
        nl.close()
