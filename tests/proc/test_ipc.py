"""ipc.Channel over real SOCK_SEQPACKET socketpairs: framing, fd passing, errors, leaks."""

from __future__ import annotations

import array
import asyncio
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from dhcpleased.imsg import HEADER, IMSGF_HASFD, MAX_IMSGSIZE, ImsgType
from dhcpleased.ipc import Channel, Imsg


def open_fds() -> set[int]:
    """Open descriptors, without the one listdir used (closed by the time we look)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue
        fds.add(int(name))
    return fds


@dataclass
class End:
    """One channel plus what its callbacks saw."""

    chan: Channel
    messages: list[Imsg] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    want: int = 1


def make_end(sock: socket.socket, *, name: str = "", max_queue: int = 1024) -> End:
    end: End

    def on_message(m: Imsg) -> None:
        end.messages.append(m)
        if len(end.messages) >= end.want:
            end.got.set()

    def on_close(reason: str) -> None:
        end.closes.append(reason)
        end.closed.set()

    end = End(Channel(sock, on_message, on_close, name=name, max_queue=max_queue))
    return end


@pytest.fixture
def pair() -> Iterator[tuple[End, End]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ea, eb = make_end(a, name="a"), make_end(b, name="b")
    yield ea, eb
    for e in (ea, eb):
        e.chan.close()
        for m in e.messages:
            if m.fd is not None:
                try:
                    os.close(m.fd)
                except OSError:
                    pass


@pytest.fixture
def raw_pair() -> Iterator[tuple[socket.socket, End]]:
    """A raw socket talking to a started Channel (to send malformed datagrams)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    end = make_end(b, name="victim")
    yield a, end
    end.chan.close()
    a.close()


async def wait(ev: asyncio.Event, timeout: float = 5.0) -> None:
    await asyncio.wait_for(ev.wait(), timeout)


def hdr(t: int, length: int, flags: int = 0) -> bytes:
    return HEADER.pack(t, length, flags, 0, 0)


def rights(*fds: int) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


# --- the happy path -----------------------------------------------------------------------


async def test_round_trip(pair: tuple[End, End]) -> None:
    a, b = pair
    a.chan.start()
    b.chan.start()
    a.chan.compose(ImsgType.REMOVE_IF, b"\x01\x02\x03\x04", peerid=7, pid=4242)
    b.chan.compose(ImsgType.CTL_END)
    await wait(b.got)
    await wait(a.got)
    assert b.messages == [Imsg(ImsgType.REMOVE_IF, 7, 4242, b"\x01\x02\x03\x04", None)]
    assert a.messages == [Imsg(ImsgType.CTL_END, 0, 0, b"", None)]
    assert a.closes == b.closes == []


async def test_max_size_message(pair: tuple[End, End]) -> None:
    a, b = pair
    a.chan.start()
    b.chan.start()
    data = os.urandom(MAX_IMSGSIZE - HEADER.size)
    a.chan.compose(ImsgType.DHCP, data)
    await wait(b.got)
    assert b.messages[0].data == data
    with pytest.raises(ValueError, match="length"):
        a.chan.compose(ImsgType.DHCP, data + b"x")
    assert not a.chan.closed


async def test_fd_is_the_pipe_and_sender_copy_closed(pair: tuple[End, End]) -> None:
    a, b = pair
    a.chan.start()
    b.chan.start()
    before = open_fds()
    r, w = os.pipe()
    a.chan.compose(ImsgType.BPFSOCK, b"\0\0\0\0", fd=r)
    await wait(b.got)
    msg = b.messages[0]
    assert msg.fd is not None
    os.write(w, b"through the pipe")
    os.close(w)
    assert os.read(msg.fd, 100) == b"through the pipe"
    os.close(msg.fd)
    b.messages.clear()
    assert open_fds() == before  # the sender's r was closed once sent: no leak


async def test_compose_before_start_is_flushed(pair: tuple[End, End]) -> None:
    a, b = pair
    b.want = 3
    for i in range(3):
        a.chan.compose(ImsgType.STARTUP, bytes([i]))
    assert a.chan.pending == 3
    b.chan.start()
    a.chan.start()
    await wait(b.got)
    assert [m.data for m in b.messages] == [b"\0", b"\1", b"\2"]


async def test_burst_order_and_fd_pairing() -> None:
    """300 messages, an fd on every third, queued before the reader runs (EAGAIN path)."""
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sa.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    a, b = make_end(sa, name="a"), make_end(sb, name="b")
    b.want = 300
    socks = {sa.fileno(), sb.fileno()}
    before = open_fds()
    a.chan.start()
    b.chan.start()
    for i in range(300):
        data = struct.pack("=I", i) * (1 + (i * 37) % 250)
        if i % 3 == 0:
            r, w = os.pipe()
            os.write(w, b"pipe %d" % i)
            os.close(w)
            a.chan.compose(ImsgType.UDPSOCK, data, fd=r, peerid=i)
        else:
            a.chan.compose(ImsgType.DHCP, data, peerid=i)
    assert a.chan.pending > 0  # EAGAIN happened: the rest waits for the writer callback
    await wait(b.got, 20)
    assert [m.peerid for m in b.messages] == list(range(300))
    for i, m in enumerate(b.messages):
        assert m.data == struct.pack("=I", i) * (1 + (i * 37) % 250)
        if i % 3 == 0:
            assert m.type == ImsgType.UDPSOCK
            assert m.fd is not None
            assert os.read(m.fd, 100) == b"pipe %d" % i
            os.close(m.fd)
        else:
            assert m.fd is None
    assert a.chan.pending == 0
    assert a.closes == b.closes == []
    a.chan.close()
    b.chan.close()
    assert open_fds() == before - socks


async def test_no_fd_leak_over_burst() -> None:
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    socks = {sa.fileno(), sb.fileno()}
    before = open_fds()
    a, b = make_end(sa), make_end(sb)
    b.want = 50
    a.chan.start()
    b.chan.start()
    for _ in range(50):
        a.chan.compose(ImsgType.SOCKET_IPC, fd=os.open("/dev/null", os.O_RDONLY))
    await wait(b.got)
    for m in b.messages:
        assert m.fd is not None
        os.close(m.fd)
    assert open_fds() == before
    a.chan.close()
    b.chan.close()
    assert open_fds() == before - socks


# --- errors from the peer -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("nfds", "reason"), [(2, "2 descriptors"), (3, "MSG_CTRUNC"), (8, "MSG_CTRUNC")]
)
async def test_too_many_fds(raw_pair: tuple[socket.socket, End], nfds: int, reason: str) -> None:
    raw, end = raw_pair
    end.chan.start()
    before = open_fds()
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(nfds)]
    raw.sendmsg([hdr(ImsgType.BPFSOCK, 16, IMSGF_HASFD)], rights(*fds))
    for fd in fds:
        os.close(fd)
    await wait(end.closed)
    assert len(end.closes) == 1
    assert reason in end.closes[0]
    assert end.messages == []
    assert end.chan.closed
    assert open_fds() == before - {end.chan._fileno}  # received copies closed too


@pytest.mark.parametrize(
    ("datagram", "with_fd", "reason"),
    [
        (hdr(1, 20) + b"\0" * 8, False, "imsg length 20 != 24"),
        (hdr(1, 24) + b"\0" * 4, False, "imsg length 24 != 20"),
        (b"\0" * 15, False, "short imsg"),
        (hdr(1, 16, 0x2), False, "bad imsg header"),
        (hdr(1, 16, IMSGF_HASFD), False, "IMSGF_HASFD"),
        (hdr(1, 16), True, "IMSGF_HASFD"),
        (hdr(1, 8), False, "bad imsg header"),
        (b"", True, "descriptor without message"),
    ],
)
async def test_malformed(
    raw_pair: tuple[socket.socket, End], datagram: bytes, with_fd: bool, reason: str
) -> None:
    raw, end = raw_pair
    end.chan.start()
    before = open_fds()
    if with_fd:
        fd = os.open("/dev/null", os.O_RDONLY)
        raw.sendmsg([datagram], rights(fd))
        os.close(fd)
    else:
        raw.send(datagram)
    await wait(end.closed)
    assert end.closes == [end.closes[0]]
    assert reason in end.closes[0]
    assert end.messages == []
    assert open_fds() == before - {end.chan._fileno}


async def test_oversize_datagram(raw_pair: tuple[socket.socket, End]) -> None:
    raw, end = raw_pair
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    end.chan.start()
    raw.send(hdr(1, 0xFFFF) + b"\0" * (0xFFFF - 16))
    await wait(end.closed)
    assert "MSG_TRUNC" in end.closes[0]


async def test_eof_calls_on_close_once(pair: tuple[End, End]) -> None:
    a, b = pair
    a.chan.start()
    b.chan.start()
    a.chan.compose(ImsgType.STARTUP)
    await wait(b.got)
    a.chan.close()
    assert a.closes == []  # the owner's own close() is not reported to it
    await wait(b.closed)
    assert b.closes == ["peer closed"]
    assert b.chan.closed
    r, _w = os.pipe()
    os.close(_w)
    b.chan.compose(ImsgType.STARTUP, fd=r)  # dropped silently, fd closed
    with pytest.raises(OSError):
        os.fstat(r)
    b.chan.close()
    await asyncio.sleep(0.05)
    assert b.closes == ["peer closed"]


async def test_send_to_closed_peer() -> None:
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a = make_end(sa)
    a.chan.start()
    sb.close()
    a.chan.compose(ImsgType.STARTUP)  # EPIPE (or EOF seen first): reported, not raised
    a.chan.compose(ImsgType.STARTUP)
    await wait(a.closed)
    await asyncio.sleep(0.05)
    assert len(a.closes) == 1
    assert "peer closed" in a.closes[0]


async def test_queue_overflow() -> None:
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sa.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    socks = {sa.fileno(), sb.fileno()}
    before = open_fds()
    a = make_end(sa, max_queue=5)
    a.chan.start()  # the peer never reads
    n = 0
    while not a.chan.closed:
        a.chan.compose(ImsgType.ROUTESOCK, b"x" * 512, fd=os.open("/dev/null", os.O_RDONLY))
        n += 1
        assert n < 1000
    await wait(a.closed)
    await asyncio.sleep(0.01)
    assert a.closes == ["write queue full"]
    sb.close()
    # every fd ever handed over is closed: sent ones (kernel holds its own copy), queued ones
    assert open_fds() == before - socks


async def test_pressure_watermarks_with_hysteresis() -> None:
    """A producer that stops at congested never meets "write queue full": the callback
    says stop at the high mark (from inside compose) and go once the reader has drained
    the queue to the low mark, once per crossing."""
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a, b = make_end(sa, max_queue=32), make_end(sb)
    calls: list[tuple[bool, int]] = []
    a.chan.watch_pressure(16, 4, lambda on: calls.append((on, a.chan.pending)))
    a.chan.start()  # b does not read yet
    sent = 0
    while not a.chan.congested:
        a.chan.compose(ImsgType.DHCP, b"x" * 1000)
        sent += 1
    assert calls == [(True, 16)] and a.closes == []
    b.want = sent
    b.chan.start()
    await wait(b.got)
    assert calls[0] == (True, 16) and len(calls) == 2 and not a.chan.congested
    assert calls[1][0] is False and calls[1][1] <= 4
    assert len(b.messages) == sent and a.closes == []
    with pytest.raises(ValueError, match="watermarks"):
        a.chan.watch_pressure(32, 4, lambda on: None)  # high must stay below max_queue
    a.chan.close()
    b.chan.close()


async def test_compose_programming_errors(pair: tuple[End, End]) -> None:
    a, _ = pair
    a.chan.start()
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(ValueError):
        a.chan.compose(ImsgType.DHCP, b"x" * (MAX_IMSGSIZE - HEADER.size + 1), fd=r)
    with pytest.raises(OSError):
        os.fstat(r)  # owned by the channel even on error: closed
    with pytest.raises(ValueError):
        a.chan.compose(2**32)
    with pytest.raises(ValueError):
        a.chan.compose(ImsgType.STARTUP, pid=-1)
    with pytest.raises(ValueError):
        a.chan.compose(ImsgType.STARTUP, fd=-1)
    assert not a.chan.closed
    assert a.closes == []


def test_rejects_stream_socket() -> None:
    s1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(ValueError):
        Channel(s1, lambda m: None, lambda r: None)
    s1.close()
    s2.close()
