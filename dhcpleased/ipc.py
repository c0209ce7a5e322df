"""The imsg channel: one end of an AF_UNIX SOCK_SEQPACKET socketpair on asyncio.

Why not asyncio streams: in 3.11 transports only ``recv()``, and the kernel then drops
SCM_RIGHTS descriptors silently.  So the socket is read with ``loop.add_reader`` and a
non-blocking ``recvmsg``; on SEQPACKET one ``recvmsg`` is exactly one imsg with its
descriptors, and every send is atomic, so there is no reassembly and no partial write.

Ownership rules (as OpenBSD's imsg_compose):

* ``compose(fd=...)`` hands the descriptor to the channel *from that call on*: it is
  closed once it has been sent, or when the message is dropped (channel closed, queue
  full, oversize message).  Closing it early in the caller would let the number be
  reused while the message waits in the queue, sending the wrong file.
* A received descriptor is given to ``on_message`` in ``Imsg.fd``; from then on it is
  the consumer's: it must use or close it (also when it rejects the message).

Peer errors never raise into the loop: the channel closes itself and calls
``on_close(reason)`` exactly once, and the owner decides (fatal for a sibling process,
drop the client for dhcpleasectl).  ``close()`` by the owner does not call it.
Programming errors of the caller (oversize payload, bad field values) raise ValueError.

A full write queue is such an error too, so an owner whose messages are caused by
someone else's traffic must stop taking that traffic before the queue fills:
``watch_pressure(high, low, callback)`` calls ``callback(True)`` when the queue reaches
``high`` messages and ``callback(False)`` once the peer has drained it to ``low``
(hysteresis, so a busy peer does not toggle it per message); ``congested`` says which.
The frontend stops reading its packet sockets in between and lets the kernel drop.
"""

from __future__ import annotations

import array
import asyncio
import collections
import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from dhcpleased.imsg import HEADER, IMSGF_HASFD, MAX_IMSGSIZE, Header, ImsgError, type_name

_FD_SIZE = array.array("i").itemsize
_ANC_SIZE = socket.CMSG_SPACE(_FD_SIZE)  # room for one fd (CMSG alignment fits two)
_READ_BUDGET = 128  # messages handled per readable event, so one peer cannot starve others


@dataclass(frozen=True, slots=True)
class Imsg:
    """A received message; ``fd`` (if any) now belongs to the consumer."""

    type: int
    peerid: int
    pid: int
    data: bytes
    fd: int | None


class ChannelError(Exception):
    """A malformed message from the peer; its text becomes the on_close reason."""


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _parse_ancillary(ancdata: list[tuple[int, int, bytes]]) -> tuple[list[int], str | None]:
    """All descriptors in ``ancdata`` and an error text if anything else was there."""
    fds: list[int] = []
    error = None
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(cdata[: len(cdata) - len(cdata) % _FD_SIZE])
            fds.extend(arr)
        else:
            error = f"unexpected control message {level}/{kind}"
    return fds, error


class Channel:
    """One end of an AF_UNIX SOCK_SEQPACKET socketpair, read with add_reader + recvmsg."""

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Imsg], None],
        on_close: Callable[[str], None],
        *,
        name: str = "",
        max_queue: int = 1024,
    ) -> None:
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
            raise ValueError("Channel needs an AF_UNIX SOCK_SEQPACKET socket")
        sock.setblocking(False)
        self.name = name
        self._sock = sock
        self._fileno = sock.fileno()
        self._on_message = on_message
        self._on_close = on_close
        self._max_queue = max_queue
        self._queue: collections.deque[tuple[bytes, int | None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self._closed = False
        self._high = self._low = 0
        self._on_pressure: Callable[[bool], None] | None = None
        self._congested = False

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} fd={self._fileno} queued={len(self._queue)}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Messages waiting to be written."""
        return len(self._queue)

    @property
    def congested(self) -> bool:
        """The queue reached the high watermark and has not yet drained to the low one."""
        return self._congested

    def watch_pressure(self, high: int, low: int, callback: Callable[[bool], None]) -> None:
        """``callback(True)`` at ``high`` queued messages, ``callback(False)`` back at ``low``.

        Called from inside ``compose`` (so the caller can stop producing at once) and from
        the writer callback; not after ``close()``.
        """
        if not 0 <= low < high < self._max_queue:
            raise ValueError(f"watermarks need 0 <= low < high < {self._max_queue}")
        self._high, self._low, self._on_pressure = high, low, callback

    def start(self) -> None:
        """Start reading (and flush what was composed before) on the running loop."""
        if self._closed or self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fileno, self._on_readable)
        self._flush()

    def compose(
        self,
        type: int,
        data: bytes = b"",
        *,
        fd: int | None = None,
        peerid: int = 0,
        pid: int = 0,
    ) -> None:
        """Queue one message; the channel owns ``fd`` from now on, whatever happens.

        On a closed channel the message is dropped silently (the owner has already been
        told through on_close).  Raises ValueError for an oversize message or bad
        header fields: those are bugs in the caller, not peer errors.
        """
        if fd is not None and (not isinstance(fd, int) or fd < 0):
            raise ValueError(f"bad descriptor {fd!r}")
        try:
            header = Header(
                type, HEADER.size + len(data), IMSGF_HASFD if fd is not None else 0, peerid, pid
            )
        except ImsgError as e:
            if fd is not None:
                _close_fds([fd])
            raise ValueError(f"cannot compose {type_name(type)}: {e}") from None
        if self._closed:
            if fd is not None:
                _close_fds([fd])
            return
        if len(self._queue) >= self._max_queue:
            if fd is not None:
                _close_fds([fd])
            self._fail("write queue full", defer=True)
            return
        self._queue.append((header.pack() + data, fd))
        if not self._writing and len(self._queue) == 1:
            self._flush(defer=True)
        if self._on_pressure is not None and not self._congested and self.pending >= self._high:
            self._congested = True
            self._on_pressure(True)

    def close(self) -> None:
        """Close the socket and every queued descriptor; on_close is not called."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self._fileno)
            if self._writing:
                self._loop.remove_writer(self._fileno)
        self._writing = False
        _close_fds([fd for _, fd in self._queue if fd is not None])
        self._queue.clear()
        self._sock.close()

    # --- internals ----------------------------------------------------------------------

    def _fail(self, reason: str, *, defer: bool = False) -> None:
        """Close and tell the owner once; deferred when we are inside the owner's call."""
        if self._closed:
            return
        self.close()
        if defer and self._loop is not None:
            self._loop.call_soon(self._on_close, reason)
        else:
            self._on_close(reason)

    def _flush(self, *, defer: bool = False) -> None:
        self._write_queue(defer)
        if self._congested and not self._closed and self.pending <= self._low:
            self._congested = False
            assert self._on_pressure is not None
            self._on_pressure(False)

    def _write_queue(self, defer: bool) -> None:
        if self._loop is None:
            return  # not started: compose only queues
        while self._queue and not self._closed:
            data, fd = self._queue[0]
            try:
                if fd is None:
                    sent = self._sock.send(data)
                else:
                    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
                    sent = self._sock.sendmsg([data], rights)
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    self._loop.add_writer(self._fileno, self._flush)
                    self._writing = True
                return
            except OSError as e:
                reason = "peer closed" if e.errno in (errno.EPIPE, errno.ECONNRESET) else str(e)
                self._fail(f"send: {reason}", defer=defer)
                return
            self._queue.popleft()
            if fd is not None:
                _close_fds([fd])
            if sent != len(data):  # cannot happen on SEQPACKET
                self._fail(f"short send {sent}/{len(data)}", defer=defer)
                return
        if self._writing and not self._closed:
            self._loop.remove_writer(self._fileno)
            self._writing = False

    def _on_readable(self) -> None:
        for _ in range(_READ_BUDGET):
            if self._closed:
                return
            try:
                data, ancdata, flags, _ = self._sock.recvmsg(
                    MAX_IMSGSIZE, _ANC_SIZE, socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                reason = "peer closed" if e.errno == errno.ECONNRESET else str(e)
                self._fail(f"recv: {reason}")
                return
            fds, error = _parse_ancillary(ancdata)
            try:
                if error is not None:
                    raise ChannelError(error)
                msg = self._check(data, flags, fds)
            except ChannelError as e:
                _close_fds(fds)
                self._fail(str(e))
                return
            if msg is None:
                self._fail("peer closed")
                return
            self._on_message(msg)

    @staticmethod
    def _check(data: bytes, flags: int, fds: list[int]) -> Imsg | None:
        """The message in one datagram, None at EOF; ChannelError if malformed."""
        if flags & socket.MSG_CTRUNC:
            raise ChannelError("descriptors truncated (MSG_CTRUNC)")
        if flags & socket.MSG_TRUNC:
            raise ChannelError("imsg larger than the maximum (MSG_TRUNC)")
        if not data:
            if fds:
                raise ChannelError("descriptor without message")
            return None
        if len(data) < HEADER.size:
            raise ChannelError(f"short imsg: {len(data)} bytes")
        try:
            hdr = Header.unpack(data[: HEADER.size])
        except ImsgError as e:
            raise ChannelError(f"bad imsg header: {e}") from None
        if hdr.length != len(data):
            raise ChannelError(f"imsg length {hdr.length} != {len(data)} bytes received")
        if len(fds) > 1:
            raise ChannelError(f"{len(fds)} descriptors in one imsg")
        if bool(hdr.flags & IMSGF_HASFD) != bool(fds):
            raise ChannelError("descriptor does not match IMSGF_HASFD")
        return Imsg(hdr.type, hdr.peerid, hdr.pid, data[HEADER.size :], fds[0] if fds else None)
