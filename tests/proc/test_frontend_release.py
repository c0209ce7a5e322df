"""Issue 15 in the frontend: the DHCPRELEASE it unicasts, option 80 in the DISCOVER."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from dhcpleased import defs, imsg, packet
from dhcpleased.imsg import ImsgType
from tests.proc import test_frontend
from tests.proc.test_frontend import (
    IFINDEX,
    IFNAME,
    ZERO,
    Rig,
    appear,
    give_bpf,
    give_sockets,
    recv,
    sent,
)
from tests.unit import frames

LOOPBACK = frames.SERVER.__class__("127.0.0.1")
rig = test_frontend.rig  # the fixture: a Frontend between a fake parent and a fake engine


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A stand-in DHCP server on loopback, where the renewal socket is connected."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    yield s
    s.close()


def give_udp(r: Rig, server: socket.socket) -> None:
    """The renewal socket as the parent hands it over: connected to the server."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(server.getsockname())
    r.main.send(ImsgType.UDPSOCK, imsg.UdpSock(IFINDEX, LOOPBACK).pack(), fd=udp.detach())


def release(xid: int = 0x7E1) -> bytes:
    return imsg.ReqDhcp(IFINDEX, xid, frames.YIADDR, ZERO, frames.SERVER, LOOPBACK).pack()


async def test_release_is_unicast_with_ciaddr_and_server_id(
    rig: Rig, server: socket.socket
) -> None:
    await appear(rig)
    wire = await give_bpf(rig)
    give_udp(rig, server)
    await asyncio.sleep(0.05)
    rig.engine.send(ImsgType.SEND_RELEASE, release())
    payload = await recv(server)
    done = await rig.engine.expect(ImsgType.RELEASE_SENT)
    assert imsg.IfIndex.unpack(done.data).if_index == IFINDEX
    msg = packet.parse_bootp(bytes([defs.BOOTREPLY]) + payload[1:])  # read it as a reply
    assert isinstance(msg, packet.DhcpMessage), msg
    assert (msg.message_type, msg.xid, msg.ciaddr) == (defs.DHCPRELEASE, 0x7E1, frames.YIADDR)
    assert msg.server_identifier == frames.SERVER
    assert msg.client_id == b"\x01" + frames.CLIENT_MAC
    assert msg.host_name is None and msg.unknown == ()  # no 12, 50, 55 or 60
    with pytest.raises(BlockingIOError):
        wire.recv(2048)  # nothing broadcast


async def test_release_without_a_unicast_path_is_not_broadcast(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await appear(rig)
    wire = await give_bpf(rig)
    rig.engine.send(ImsgType.SEND_RELEASE, release())
    await rig.engine.expect(ImsgType.RELEASE_SENT)  # the engine may go on all the same
    assert f"{IFNAME}: DHCPRELEASE not sent: no unicast path to 127.0.0.1" in caplog.text
    with pytest.raises(BlockingIOError):
        wire.recv(2048)


@pytest.mark.parametrize(
    "req",
    [
        imsg.ReqDhcp(IFINDEX, 1, ZERO, ZERO, frames.SERVER, LOOPBACK),  # no address
        imsg.ReqDhcp(IFINDEX, 1, frames.YIADDR, ZERO, ZERO, LOOPBACK),  # no option 54
        imsg.ReqDhcp(IFINDEX, 1, frames.YIADDR, ZERO, frames.SERVER, ZERO),  # nowhere to go
    ],
)
async def test_a_release_dnsmasq_would_ignore_is_a_broken_engine(
    rig: Rig, req: imsg.ReqDhcp
) -> None:
    await appear(rig)
    rig.engine.send(ImsgType.SEND_RELEASE, req.pack())
    assert await asyncio.wait_for(rig.task, 2) == 1


async def test_rapid_commit_is_in_the_discover_only(rig: Rig) -> None:
    rig.main.send(ImsgType.RECONF_CONF)
    rig.main.send(ImsgType.RECONF_IFACE, imsg.IfaceConf(IFNAME, 0, (), False, True).pack())
    rig.main.send(ImsgType.RECONF_END)
    await appear(rig)
    wire, _ = await give_sockets(rig)  # broadcasts leave through the broadcast socket
    rig.engine.send(ImsgType.SEND_DISCOVER, imsg.ReqDhcp(IFINDEX, 2, ZERO, ZERO, ZERO, ZERO).pack())
    raw = await recv(wire)
    disc = sent(raw)
    assert disc.message_type == defs.DHCPDISCOVER and disc.rapid_commit
    req = imsg.ReqDhcp(IFINDEX, 2, ZERO, frames.YIADDR, frames.SERVER, ZERO)
    rig.engine.send(ImsgType.SEND_REQUEST, req.pack())
    assert not sent(await recv(wire)).rapid_commit
