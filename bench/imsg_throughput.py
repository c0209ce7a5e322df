"""imsg throughput over one SOCK_SEQPACKET socketpair, both Channels in one event loop.

Not a test: run ``.venv/bin/python bench/imsg_throughput.py [count]`` and read the numbers.
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


async def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for with_fd in (False, True):
        rates = [await run(count, with_fd) for _ in range(3)]
        label = "with fd" if with_fd else "no fd  "
        print(
            f"SEQPACKET {label}: best {max(rates):,.0f} imsg/s, "
            f"runs {', '.join(f'{r:,.0f}' for r in rates)} ({count} messages, 64 B)"
        )


if __name__ == "__main__":
    asyncio.run(main())
