"""RFC 5227 in the parent: the ARP sockets it opens, and the only frames it agrees to send
(probes for the watched address, announcements of the address it configured, rate
limited), whatever the engine asks."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from dhcpleased import imsg, packet
from dhcpleased.arp import ParentArp
from dhcpleased.imsg import ImsgType
from dhcpleased.parse import IfaceConf
from tests.proc import test_main
from tests.proc.test_main import (
    ADDR,
    IFINDEX,
    IFNAME,
    Rig,
    ci,
    failed,
    know_interface,
    send,
    settle,
)

rig = test_main.rig  # the fixture: a Main with fake children, kernel and resolver
MAC = bytes.fromhex("020000000001")
OTHER = IPv4Address("192.0.2.99")


class Wire:
    """The parent's ARP sockets, faked: what it opens, and what it sends."""

    def __init__(self) -> None:
        self.opened: list[tuple[int, IPv4Address]] = []
        self.senders: list[socket.socket] = []  # the far ends of the send sockets
        self.now = 100.0

    def open_arpsock(self, if_index: int, address: IPv4Address) -> socket.socket:
        self.opened.append((if_index, address))
        return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def open_sender(self, if_index: int) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        theirs.setblocking(False)
        self.senders.append(theirs)
        return ours

    def frames(self) -> list[bytes]:
        out = []
        for s in self.senders:
            while True:
                try:
                    out.append(s.recv(100))
                except BlockingIOError:
                    break
        return out


@pytest.fixture
def wire(rig: Rig) -> Iterator[Wire]:
    w = Wire()
    rig.m.arp = ParentArp(
        lambda: rig.m.children["frontend"].channel,
        lambda: w.now,
        open_arpsock=w.open_arpsock,
        open_sender=w.open_sender,
        hw_address=lambda _s: MAC,
    )
    rig.m.managed = {IFNAME: IfaceConf(IFNAME, arp_probe=True)}
    know_interface(rig)
    yield w
    for s in w.senders:
        s.close()


def arp(rig: Rig, mtype: ImsgType, address: IPv4Address = ADDR) -> None:
    send(rig, "engine", mtype, imsg.ArpReq(IFINDEX, address).pack())


async def watched(rig: Rig, wire: Wire, address: IPv4Address = ADDR) -> None:
    await rig.engine.expect(ImsgType.UPDATE_IF)
    arp(rig, ImsgType.ARP_WATCH, address)
    msg = await rig.fe.expect(ImsgType.ARPSOCK)
    assert msg.fd is not None and imsg.ArpReq.unpack(msg.data) == imsg.ArpReq(IFINDEX, address)
    socket.socket(fileno=msg.fd).close()
    assert wire.opened[-1] == (IFINDEX, address)


async def test_probes_are_built_by_the_parent_for_the_watched_address(rig: Rig, wire: Wire) -> None:
    await watched(rig, wire)
    arp(rig, ImsgType.ARP_PROBE)
    await settle()
    assert wire.frames() == [packet.arp_probe(MAC, ADDR)]  # sender IP 0.0.0.0, our MAC


async def test_nothing_is_sent_for_an_address_not_watched(
    rig: Rig, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    await watched(rig, wire)
    arp(rig, ImsgType.ARP_PROBE, OTHER)
    await settle()
    assert wire.frames() == []
    assert f"{IFNAME}: ARP probe for {OTHER}, which is not watched: not sent" in caplog.text
    assert not rig.m.done.done()


async def test_announcements_only_of_the_address_the_parent_configured(
    rig: Rig, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    await watched(rig, wire)
    arp(rig, ImsgType.ARP_ANNOUNCE)  # a gratuitous ARP for an address we do not hold
    await settle()
    assert wire.frames() == []
    assert f"ARP announcement of {ADDR}, not configured here: not sent" in caplog.text
    send(rig, "engine", ImsgType.CONFIGURE_INTERFACE, ci())
    arp(rig, ImsgType.ARP_ANNOUNCE)  # in order after the configure: now it is ours
    await settle()
    assert wire.frames() == [packet.arp_announcement(MAC, ADDR)]
    send(rig, "engine", ImsgType.DECONFIGURE_INTERFACE, ci())
    arp(rig, ImsgType.ARP_ANNOUNCE)
    await settle()
    assert wire.frames() == []


async def test_frames_are_rate_limited_per_interface(
    rig: Rig, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    await watched(rig, wire)
    for _ in range(10):  # an engine gone wild
        arp(rig, ImsgType.ARP_PROBE)
    await settle()
    assert len(wire.frames()) == 3
    assert caplog.text.count("ARP frames asked for faster than RFC 5227 sends") == 1
    wire.now += 1.0
    for _ in range(3):
        arp(rig, ImsgType.ARP_PROBE)
    await settle()
    assert len(wire.frames()) == 1
    assert not rig.m.done.done()


async def test_unwatch_closes_both_sockets_even_after_a_reload_dropped_it(
    rig: Rig, wire: Wire
) -> None:
    await watched(rig, wire)
    rig.m.managed = {}  # a reload stopped managing the interface
    arp(rig, ImsgType.ARP_WATCH, IPv4Address(0))
    msg = await rig.fe.expect(ImsgType.CLOSE_ARPSOCK)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX
    await settle()
    with pytest.raises(OSError):  # the parent's end of its send socket is closed
        wire.senders[0].send(b"x")
    assert rig.m.arp.watched == {} and rig.m.arp.senders == {}


async def test_without_arp_probe_the_parent_opens_nothing(rig: Rig, wire: Wire) -> None:
    rig.m.managed = {IFNAME: IfaceConf(IFNAME)}  # e.g. unset by a reload in the meantime
    await rig.engine.expect(ImsgType.UPDATE_IF)
    arp(rig, ImsgType.ARP_WATCH)
    arp(rig, ImsgType.ARP_PROBE)
    await settle()
    await rig.fe.quiet()
    assert wire.opened == [] and wire.frames() == [] and not rig.m.done.done()


@pytest.mark.parametrize("address", ["224.0.0.1", "255.255.255.255", "127.0.0.1"])
@pytest.mark.parametrize("mtype", [ImsgType.ARP_WATCH, ImsgType.ARP_PROBE, ImsgType.ARP_ANNOUNCE])
async def test_arp_for_an_address_that_is_not_unicast_is_a_broken_engine(
    rig: Rig, wire: Wire, mtype: ImsgType, address: str
) -> None:
    arp(rig, mtype, IPv4Address(address))
    assert failed(rig)


async def test_arp_for_an_interface_the_engine_was_not_told_of_is_fatal(rig: Rig) -> None:
    send(rig, "engine", ImsgType.ARP_WATCH, imsg.ArpReq(IFINDEX + 99, ADDR).pack())
    assert failed(rig)


@pytest.mark.parametrize("mtype", [ImsgType.ARP_WATCH, ImsgType.ARP_PROBE, ImsgType.ARP_ANNOUNCE])
async def test_the_frontend_may_not_ask_for_arp(rig: Rig, mtype: ImsgType) -> None:
    send(rig, "frontend", mtype, imsg.ArpReq(IFINDEX, ADDR).pack())
    assert failed(rig)


async def test_a_watch_the_kernel_refuses_is_logged_and_nothing_held(
    rig: Rig, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(if_index: int, address: IPv4Address) -> socket.socket:
        raise OSError(19, "No such device")

    rig.m.arp.open_arpsock = refuse
    await rig.engine.expect(ImsgType.UPDATE_IF)
    arp(rig, ImsgType.ARP_WATCH)
    await settle()
    assert f"{IFNAME}: cannot open ARP sockets: No such device" in caplog.text
    assert rig.m.arp.senders == {} and not rig.m.done.done()
