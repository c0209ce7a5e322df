"""The parent's half of address conflict detection (RFC 5227): ARP sockets and frames.

The engine decides (:mod:`acd`, :mod:`fsm`); the parent alone touches ARP on the wire, so
that neither child can emit a frame of its own making.  For each interface whose address
the engine watches, the parent opens the frontend's receive-only socket with the address
in its locked filter (:func:`bpf.open_arpsock`, handed over as ARPSOCK) and a send-only
socket of its own (:func:`bpf.open_arp_sender`).  It builds every frame itself from what
the engine names, and only:

* a probe (sender IP 0.0.0.0, sender MAC the interface's, as the kernel reports it now)
  for the address being watched;
* an announcement (sender and target IP the address) of an address the parent itself
  configured on that interface, which it would answer ARP for anyway;
* at most `acd.RateLimit`'s rate per interface (a burst of 3, then one a second: the
  RFC's own schedule never needs more).

A request outside these bounds is logged and not sent, not fatal: a reload that turns
``arp probe`` off, or a configure the kernel refused, can leave an honest one in flight.
What is fatal (a malformed message, an interface the engine was not told of, an address
that is not unicast) the parent's dispatch checks before anything gets here.

Calls this makes after the parent's sandbox is up, for its seccomp list (strace of the
running parent through a watch, probes and announcements): per watched address
``socket(AF_PACKET, SOCK_RAW|SOCK_NONBLOCK|SOCK_CLOEXEC, 0)`` twice; libc's
``if_indextoname`` = ``socket(AF_UNIX, SOCK_DGRAM|SOCK_CLOEXEC, 0)`` + ``ioctl(SIOCGIFNAME)``
+ ``close``; ``setsockopt`` SOL_SOCKET SO_ATTACH_FILTER, SO_LOCK_FILTER, SO_RCVBUF and
SOL_PACKET PACKET_AUXDATA; ``bind`` with a ``sockaddr_ll``; ``recvfrom(fd, buf, 2048, 0,
NULL, NULL)`` until EAGAIN (the drain); ``sendmsg`` with SCM_RIGHTS on the frontend's
channel; ``close``.  Per frame: ``getsockname`` and ``ioctl(SIOCGIFNAME)`` on the send
socket (Python names the interface in the address) and ``sendto(fd, frame, 42, 0, NULL,
0)``: no destination address, the socket is bound.  All but the last two the DHCP
sockets' opening needs already.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import IPv4Address

from dhcpleased import acd, bpf, imsg, packet
from dhcpleased.imsg import ImsgType
from dhcpleased.ipc import Channel
from dhcpleased.log import log

WARN_INTERVAL = 60.0  # seconds between "rate limited" warnings per interface


class ParentArp:
    """Watched addresses, send sockets and rate limits, per interface index."""

    def __init__(
        self,
        frontend: Callable[[], Channel],
        clock: Callable[[], float],
        open_arpsock: Callable[[int, IPv4Address], socket.socket] = bpf.open_arpsock,
        open_sender: Callable[[int], socket.socket] = bpf.open_arp_sender,
        hw_address: Callable[[socket.socket], bytes] = bpf.hw_address,
    ) -> None:
        self.frontend = frontend
        self.clock = clock
        self.open_arpsock = open_arpsock
        self.open_sender = open_sender
        self.hw_address = hw_address
        self.watched: dict[int, IPv4Address] = {}
        self.senders: dict[int, socket.socket] = {}
        self.limits: dict[int, acd.RateLimit] = {}
        self.warned: dict[int, float] = {}
        self.sent = 0  # frames sent, for tests and logs

    async def watch(self, if_index: int, name: str, address: IPv4Address) -> None:
        """ARP about ``address`` on this interface reaches the frontend from now on."""
        try:
            rx = self.open_arpsock(if_index, address)
            try:
                sender = self.senders.get(if_index) or self.open_sender(if_index)
            except BaseException:
                rx.close()
                raise
        except OSError as e:
            log.warning("%s: cannot open ARP sockets: %s", name, e.strerror)
            await self.unwatch(if_index)
            return
        self.senders[if_index] = sender
        self.watched[if_index] = address
        self.frontend().compose(
            ImsgType.ARPSOCK, imsg.ArpReq(if_index, address).pack(), fd=rx.detach()
        )

    async def unwatch(self, if_index: int) -> None:
        """Nothing is watched on this interface any more: both sockets go."""
        if self.watched.pop(if_index, None) is not None:
            self.frontend().compose(ImsgType.CLOSE_ARPSOCK, imsg.IfIndex(if_index).pack())
        sender = self.senders.pop(if_index, None)
        if sender is not None:
            sender.close()

    async def send(
        self, if_index: int, name: str, address: IPv4Address, configured: IPv4Address | None
    ) -> None:
        """A probe (``configured`` None) or an announcement, if the bounds allow it."""
        kind = "probe" if configured is None else "announcement"
        sender = self.senders.get(if_index)
        if sender is None or self.watched.get(if_index) != address:
            log.warning("%s: ARP %s for %s, which is not watched: not sent", name, kind, address)
            return
        if configured is not None and configured != address:
            log.warning("%s: ARP announcement of %s, not configured here: not sent", name, address)
            return
        now = self.clock()
        if not self.limits.setdefault(if_index, acd.RateLimit()).take(now):
            if now >= self.warned.get(if_index, 0.0):
                self.warned[if_index] = now + WARN_INTERVAL
                log.warning("%s: ARP frames asked for faster than RFC 5227 sends: dropped", name)
            return
        try:
            mac = self.hw_address(sender)
            build = packet.arp_probe if configured is None else packet.arp_announcement
            bpf.send_arp(sender, build(mac, address))
        except (OSError, ValueError) as e:
            log.warning("%s: cannot send ARP %s for %s: %s", name, kind, address, e)
            return
        self.sent += 1
