"""RFC 5227 in the frontend: the ARP socket's frames reach the engine as ARP, the DHCPDECLINE
it broadcasts, and what a broken engine or parent cannot make it do."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dhcpleased import defs, imsg, packet
from dhcpleased.imsg import ImsgType
from tests.proc import test_frontend
from tests.proc.test_frontend import (
    IFINDEX,
    ZERO,
    Rig,
    appear,
    dgram_pair,
    give_sockets,
    recv,
    sent,
)
from tests.unit import frames

rig = test_frontend.rig  # the fixture: a Frontend between a fake parent and a fake engine
SQUATTER_MAC = bytes.fromhex("02000000bad1")


async def give_arp(r: Rig, address: packet.IPv4Address = frames.YIADDR) -> socket.socket:
    """The ARP socket (a stand-in): frames written to the returned end arrive."""
    wire, theirs = dgram_pair()
    r.main.send(ImsgType.ARPSOCK, imsg.ArpReq(IFINDEX, address).pack(), fd=theirs.detach())
    await asyncio.sleep(0.05)
    return wire


CLAIM = packet.arp_frame(
    packet.ARPOP_REPLY, SQUATTER_MAC, frames.YIADDR, frames.CLIENT_MAC, ZERO,
    dst=frames.CLIENT_MAC,
).ljust(60, b"\0")  # fmt: skip


async def test_arp_frames_go_to_the_engine_as_arp_untouched(rig: Rig) -> None:
    await appear(rig)
    _, dhcp_wire = await give_sockets(rig)
    arp_wire = await give_arp(rig)
    arp_wire.send(CLAIM)
    got = imsg.Dhcp.unpack((await rig.engine.expect(ImsgType.ARP)).data)
    assert (got.if_index, got.csumflags, got.packet) == (IFINDEX, 0, CLAIM)
    dhcp_wire.send(b"\x01" * 300)  # the DHCP socket still goes to the engine as DHCP
    await rig.engine.expect(ImsgType.DHCP)
    assert rig.fe.frames_read == 2


async def test_a_new_watch_replaces_the_socket_and_close_ends_it(rig: Rig) -> None:
    await appear(rig)
    first = await give_arp(rig)
    second = await give_arp(rig, frames.SERVER)
    with pytest.raises(OSError):  # the frontend closed its end of the first one
        first.send(CLAIM)
    second.send(CLAIM)
    await rig.engine.expect(ImsgType.ARP)
    rig.main.send(ImsgType.CLOSE_ARPSOCK, imsg.IfIndex(IFINDEX).pack())
    await asyncio.sleep(0.05)
    with pytest.raises(OSError):
        second.send(CLAIM)
    assert rig.fe.ifaces[IFINDEX].arp is None and not rig.task.done()


async def test_an_arp_socket_for_an_interface_not_managed_is_closed(rig: Rig) -> None:
    wire = await give_arp(rig)  # the interface never appeared (or went away meanwhile)
    with pytest.raises(OSError):
        wire.send(CLAIM)
    assert not rig.task.done()


async def test_the_arp_socket_pauses_with_the_engine(rig: Rig) -> None:
    await appear(rig)
    wire = await give_arp(rig)
    rig.fe.engine_pressure(True)
    wire.send(CLAIM)
    await rig.engine.quiet(0.1)
    rig.fe.engine_pressure(False)
    await rig.engine.expect(ImsgType.ARP)


async def test_the_decline_is_broadcast_with_50_54_and_56(rig: Rig) -> None:
    await appear(rig)
    out, _ = await give_sockets(rig)
    dec = imsg.ReqDhcp(IFINDEX, 0xDEC1, ZERO, frames.YIADDR, frames.SERVER, ZERO)
    rig.engine.send(ImsgType.SEND_DECLINE, dec.pack())
    msg = sent(await recv(out))
    assert (msg.message_type, msg.xid, msg.ciaddr) == (defs.DHCPDECLINE, 0xDEC1, ZERO)
    assert msg.server_identifier == frames.SERVER
    assert msg.client_id == b"\x01" + frames.CLIENT_MAC
    assert msg.unknown == (  # 50 and 56 are not reply options: the codec keeps them raw
        (defs.DHO_DHCP_REQUESTED_ADDRESS, frames.YIADDR.packed),
        (defs.DHO_DHCP_MESSAGE, packet.DECLINE_MESSAGE),
    )
    assert msg.host_name is None  # no 12, 55 or 60 (table 5: MUST NOT)


@pytest.mark.parametrize(
    "req",
    [
        imsg.ReqDhcp(IFINDEX, 1, ZERO, ZERO, frames.SERVER, ZERO),  # no option 50
        imsg.ReqDhcp(IFINDEX, 1, ZERO, frames.YIADDR, ZERO, ZERO),  # no option 54
        imsg.ReqDhcp(IFINDEX, 1, frames.YIADDR, frames.YIADDR, frames.SERVER, ZERO),  # ciaddr
        imsg.ReqDhcp(IFINDEX, 1, ZERO, frames.YIADDR, frames.SERVER, frames.SERVER),  # unicast
    ],
    ids=["no-50", "no-54", "ciaddr", "unicast"],
)
async def test_a_decline_off_rfc_2131_is_a_broken_engine(rig: Rig, req: imsg.ReqDhcp) -> None:
    await appear(rig)
    rig.engine.send(ImsgType.SEND_DECLINE, req.pack())
    assert await asyncio.wait_for(rig.task, 2) == 1


async def test_arpsock_without_a_descriptor_is_a_broken_parent(rig: Rig) -> None:
    rig.main.send(ImsgType.ARPSOCK, imsg.ArpReq(IFINDEX, frames.YIADDR).pack())
    assert await asyncio.wait_for(rig.task, 2) == 1


@pytest.mark.parametrize("mtype", [ImsgType.ARP_PROBE, ImsgType.ARP_ANNOUNCE, ImsgType.ARP])
async def test_arp_requests_from_the_engine_are_not_the_frontends(
    rig: Rig, mtype: ImsgType
) -> None:
    """The engine asks the parent for ARP, never the frontend: from the engine they end it."""
    rig.engine.send(mtype, imsg.ArpReq(IFINDEX, frames.YIADDR).pack())
    assert await asyncio.wait_for(rig.task, 2) == 1
