"""A fake sibling process for process tests: one end of a SEQPACKET pair, with a queue."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

from dhcpleased.imsg import ImsgType, type_name
from dhcpleased.ipc import Channel, Imsg


class Peer:
    """Plays the parent, the frontend or the engine opposite the process under test."""

    def __init__(self, sock: socket.socket) -> None:
        self.queue: asyncio.Queue[Imsg] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.reason = ""
        self.ch = Channel(sock, self.queue.put_nowait, self._lost, name="peer")
        self.ch.start()

    def _lost(self, reason: str) -> None:
        self.reason = reason
        self.closed.set()

    def send(self, t: ImsgType | int, data: bytes = b"", **kw: int | None) -> None:
        self.ch.compose(t, data, **kw)  # type: ignore[arg-type]

    async def expect(self, t: ImsgType, timeout: float = 2.0) -> Imsg:
        msg = await asyncio.wait_for(self.queue.get(), timeout)
        assert msg.type == t, f"expected {type_name(t)}, got {type_name(msg.type)}"
        return msg

    async def quiet(self, wait: float = 0.1) -> None:
        await asyncio.sleep(wait)
        assert self.queue.empty(), type_name(self.queue.get_nowait().type)

    def close(self) -> None:
        self.ch.close()


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def fake_children(
    children: dict[str, Any], dispatch: Callable[[str, Imsg], None] | None = None
) -> tuple[list[Peer], list[Channel]]:
    """A parent's frontend and engine as Peers at the far end of real channels.

    Fills ``children`` (Main.children) with stand-ins (pid -1: no daemon process, for the
    request-token check); what the peers send goes to ``dispatch(role, msg)`` if given.
    Returns the peers and the parent's channels, both in (frontend, engine) order, for
    the caller to close.
    """
    peers, chans = [], []
    for role in ("frontend", "engine"):
        ours, theirs = pair()
        on_message = partial(dispatch, role) if dispatch is not None else lambda _m: None
        ch = Channel(ours, on_message, lambda _r: None, name=role)
        ch.start()
        chans.append(ch)
        children[role] = SimpleNamespace(channel=ch, pid=-1)
        peers.append(Peer(theirs))
    return peers, chans
