"""imsg throughput over one SOCK_SEQPACKET socketpair: both Channels in one event loop, and
between two processes (a forked receiver with its own loop, as between daemon processes).

Not a test: run ``.venv/bin/python bench/imsg_throughput.py [count]`` and read the numbers
(one Markdown-ish line per case: ``mode | descriptors | best | runs``).
A 64-byte payload, without and with a descriptor per message (a dup of /dev/null, which the
sender's channel closes after sending and the receiver closes on arrival; the dup and the
two closes are part of the cost, as they are in the daemon).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

from dhcpleased.imsg import ImsgType
from dhcpleased.ipc import Channel, Imsg


async def run(count: int, with_fd: bool) -> float:
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    done = asyncio.get_running_loop().create_future()
    received = 0

    def on_message(m: Imsg) -> None:
        nonlocal received
        if m.fd is not None:
            os.close(m.fd)
        received += 1
        if received == count:
            done.set_result(None)

    def on_close(reason: str) -> None:
        if not done.done():
            done.set_exception(RuntimeError(reason))

    a = Channel(sa, lambda m: None, on_close, name="a", max_queue=count + 1)
    b = Channel(sb, on_message, on_close, name="b")
    a.start()
    b.start()
    payload = b"\xa5" * 64
    devnull = os.open(os.devnull, os.O_RDONLY)
    start = time.perf_counter()
    sent = 0
    while sent < count:  # compose in slices so the reader gets turns, as in the daemon
        for _ in range(min(256, count - sent)):
            fd = os.dup(devnull) if with_fd else None
            a.compose(ImsgType.DHCP, payload, fd=fd)
            sent += 1
        while sent - received > 512:  # bound descriptors in flight (RLIMIT_NOFILE)
            await asyncio.sleep(0)
    await done
    elapsed = time.perf_counter() - start
    os.close(devnull)
    a.close()
    b.close()
    return count / elapsed


async def receive(sock: socket.socket, count: int) -> None:
    """The forked receiver: count messages (closing descriptors), then acknowledge."""
    done = asyncio.get_running_loop().create_future()
    received = 0

    def on_message(m: Imsg) -> None:
        nonlocal received
        if m.fd is not None:
            os.close(m.fd)
        received += 1
        if received == count:
            ch.compose(ImsgType.DHCP, b"done")
            done.set_result(None)

    def on_close(reason: str) -> None:
        if not done.done():
            done.set_exception(RuntimeError(reason))

    ch = Channel(sock, on_message, on_close, name="receiver")
    ch.start()
    await done
    while ch.pending:
        await asyncio.sleep(0.001)
    ch.close()


async def send(sock: socket.socket, count: int, with_fd: bool) -> float:
    """The sender: compose count messages as fast as the channel takes them, await the ack."""
    done = asyncio.get_running_loop().create_future()

    def on_message(m: Imsg) -> None:
        done.set_result(None)

    def on_close(reason: str) -> None:
        if not done.done():
            done.set_exception(RuntimeError(reason))

    ch = Channel(sock, on_message, on_close, name="sender", max_queue=1024)
    ch.start()
    payload = b"\xa5" * 64
    devnull = os.open(os.devnull, os.O_RDONLY)
    start = time.perf_counter()
    sent = 0
    while sent < count:
        while ch.pending >= 512:  # back-pressure: the socket buffer is full
            await asyncio.sleep(0)
        fd = os.dup(devnull) if with_fd else None
        ch.compose(ImsgType.DHCP, payload, fd=fd)
        sent += 1
        if sent % 256 == 0:
            await asyncio.sleep(0)
    await done
    elapsed = time.perf_counter() - start
    os.close(devnull)
    ch.close()
    return count / elapsed


def two_processes(count: int, with_fd: bool) -> float:
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()  # no event loop exists yet in this process: fork is safe
    if pid == 0:
        sa.close()
        try:
            asyncio.run(receive(sb, count))
        finally:
            os._exit(0)
    sb.close()
    rate = asyncio.run(send(sa, count, with_fd))
    os.waitpid(pid, 0)
    return rate


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for mode in ("1 process", "2 processes"):
        for with_fd in (False, True):
            if mode == "1 process":
                rates = [asyncio.run(run(count, with_fd)) for _ in range(3)]
            else:
                rates = [two_processes(count, with_fd) for _ in range(3)]
            label = "1 per message" if with_fd else "none"
            print(
                f"{mode} | {label} | {max(rates):,.0f} | "
                f"{', '.join(f'{r:,.0f}' for r in rates)} ({count} x 64 B)",
                flush=True,
            )


if __name__ == "__main__":
    main()
