"""The frontend process object against a fake parent, a fake engine and fake sockets.

Unix datagram pairs stand in for the netlink and packet sockets the parent would pass:
the frontend only ever calls send/recv(msg) on them, which is the point of the design.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from dhcpleased import defs, imsg, netlink, packet
from dhcpleased.frontend import Frontend
from dhcpleased.imsg import ImsgType
from tests.proc.peer import Peer, pair
from tests.unit import frames
from tests.unit.test_netlink import RTM_DELLINK, done_msg, link

IFINDEX = 7
IFNAME = "dl0"
ZERO = IPv4Address(0)


@dataclass
class Rig:
    fe: Frontend
    task: asyncio.Task[int]
    main: Peer
    engine: Peer
    netlink: socket.socket


def dgram_pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    return a, b


async def recv(sock: socket.socket, timeout: float = 2.0) -> bytes:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)


def configure(main: Peer, *names: str, h_name: str | None = None) -> None:
    main.send(ImsgType.RECONF_CONF)
    for name in names:
        main.send(ImsgType.RECONF_IFACE, imsg.IfaceConf(name, 0, (), False).pack())
        if h_name is not None:
            main.send(ImsgType.RECONF_H_NAME, imsg.HostName(h_name).pack())
    main.send(ImsgType.RECONF_END)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    main_a, main_b = pair()
    eng_a, eng_b = pair()
    nl_test, nl_fe = dgram_pair()
    fe = Frontend(main_b, "testhost")
    task = asyncio.get_running_loop().create_task(fe.run())
    main = Peer(main_a)
    main.send(ImsgType.SOCKET_IPC, fd=eng_b.detach())
    engine = Peer(eng_a)
    main.send(ImsgType.ROUTESOCK, fd=nl_fe.detach())
    configure(main, IFNAME)
    main.send(ImsgType.STARTUP)
    dump = await recv(nl_test)
    assert dump == netlink.link_dump_request(1)
    yield Rig(fe, task, main, engine, nl_test)
    main.close()
    engine.close()
    nl_test.close()
    if not task.done():
        await asyncio.wait_for(task, 2)


async def appear(r: Rig, name: str = IFNAME, index: int = IFINDEX) -> imsg.IfInfo:
    r.netlink.send(link(index=index, name=name.encode() + b"\0", hw=frames.CLIENT_MAC))
    req = await r.main.expect(ImsgType.OPEN_BPFSOCK)
    assert imsg.IfIndex.unpack(req.data).if_index == index
    info = imsg.IfInfo.unpack((await r.main.expect(ImsgType.UPDATE_IF)).data)
    assert (info.if_index, info.if_name, info.hw_address) == (index, name, frames.CLIENT_MAC)
    return info


async def give_bpf(r: Rig, index: int = IFINDEX) -> socket.socket:
    wire, theirs = dgram_pair()
    r.main.send(ImsgType.BPFSOCK, imsg.IfIndex(index).pack(), fd=theirs.detach())
    await asyncio.sleep(0.05)
    return wire


async def test_managed_link_is_announced_and_others_ignored(rig: Rig) -> None:
    rig.netlink.send(link(index=3, name=b"other0\0"))
    rig.netlink.send(link(index=4, name=b"lo\0", arphrd=772))
    await rig.main.quiet()
    info = await appear(rig)
    assert info.running
    assert info.lease == ""
    # an unchanged repeat is not news; a carrier change is
    rig.netlink.send(link(index=IFINDEX, name=b"dl0\0", hw=frames.CLIENT_MAC))
    await rig.main.quiet()
    rig.netlink.send(
        link(index=IFINDEX, name=b"dl0\0", hw=frames.CLIENT_MAC, oper=defs.IF_OPER_DOWN)
    )
    info = imsg.IfInfo.unpack((await rig.main.expect(ImsgType.UPDATE_IF)).data)
    assert info.link_state == defs.IF_OPER_DOWN


async def test_frames_are_forwarded_untouched(rig: Rig) -> None:
    await appear(rig)
    wire = await give_bpf(rig)
    raw = frames.frame()
    wire.send(raw)
    wire.send(b"\x01\x02garbage")
    for expected in (raw, b"\x01\x02garbage"):
        d = imsg.Dhcp.unpack((await rig.engine.expect(ImsgType.DHCP)).data)
        assert (d.if_index, d.packet) == (IFINDEX, expected)


async def test_discover_and_request_are_built_from_fields(rig: Rig) -> None:
    await appear(rig)
    wire = await give_bpf(rig)
    rig.engine.send(
        ImsgType.SEND_DISCOVER, imsg.ReqDhcp(IFINDEX, 0xABCD, ZERO, ZERO, ZERO, ZERO).pack()
    )
    out = await recv(wire)
    assert out[:6] == b"\xff" * 6 and out[6:12] == frames.CLIENT_MAC
    assert out[42] == 1  # BOOTREQUEST
    reply = packet.parse_frame(frames.as_reply(out))
    assert isinstance(reply, packet.DhcpMessage), reply
    assert reply.xid == 0xABCD
    assert reply.message_type == defs.DHCPDISCOVER
    assert reply.host_name == "testhost"
    req = imsg.ReqDhcp(IFINDEX, 0xABCE, ZERO, frames.YIADDR, frames.SERVER, ZERO)
    rig.engine.send(ImsgType.SEND_REQUEST, req.pack())
    reply = packet.parse_frame(frames.as_reply(await recv(wire)))
    assert isinstance(reply, packet.DhcpMessage)
    assert reply.message_type == defs.DHCPREQUEST
    assert (50, frames.YIADDR.packed) in reply.unknown
    assert reply.server_identifier == frames.SERVER


async def test_discover_before_socket_is_retried_when_it_arrives(rig: Rig) -> None:
    await appear(rig)
    rig.engine.send(ImsgType.SEND_DISCOVER, imsg.ReqDhcp(IFINDEX, 1, ZERO, ZERO, ZERO, ZERO).pack())
    await rig.engine.quiet()
    await give_bpf(rig)
    msg = await rig.engine.expect(ImsgType.REQUEST_REBOOT)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX


async def test_removed_link_and_reload(rig: Rig) -> None:
    await appear(rig)
    rig.netlink.send(link(RTM_DELLINK, index=IFINDEX, name=b"dl0\0"))
    msg = await rig.engine.expect(ImsgType.REMOVE_IF)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX
    # it comes back; then a reload changes its settings: re-requested, not re-created
    await appear(rig)
    configure(rig.main, IFNAME, h_name="newname")
    msg = await rig.engine.expect(ImsgType.REQUEST_REBOOT)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX
    # a reload that drops it stops managing it
    configure(rig.main, "other9")
    await rig.engine.expect(ImsgType.REMOVE_IF)


async def test_interface_named_later_is_picked_up_on_reload(rig: Rig) -> None:
    rig.netlink.send(link(index=9, name=b"late0\0", hw=frames.CLIENT_MAC))
    await rig.main.quiet()
    configure(rig.main, IFNAME, "late0")
    await appear_known(rig, 9, "late0")


async def appear_known(r: Rig, index: int, name: str) -> None:
    req = await r.main.expect(ImsgType.OPEN_BPFSOCK)
    assert imsg.IfIndex.unpack(req.data).if_index == index
    info = imsg.IfInfo.unpack((await r.main.expect(ImsgType.UPDATE_IF)).data)
    assert info.if_name == name


class Overflowing:
    """The routing socket, with ENOBUFS from recv() as often as asked (the kernel's word
    for "events were dropped")."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.overflows = 0

    def recv(self, size: int) -> bytes:
        if self.overflows:
            self.overflows -= 1
            raise OSError(errno.ENOBUFS, "No buffer space available")
        return self.sock.recv(size)

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


async def overflow(r: Rig, sock: Overflowing, *, expect_dump: int | None) -> None:
    """One ENOBUFS (woken by an unrelated event); the dump it asks for, if any."""
    sock.overflows += 1
    r.netlink.send(link(index=3, name=b"other0\0"))
    if expect_dump is None:
        with pytest.raises(TimeoutError):
            await recv(r.netlink, 0.2)
    else:
        assert await recv(r.netlink) == netlink.link_dump_request(expect_dump)


async def test_overflow_redump_forgets_links_it_no_longer_lists(rig: Rig) -> None:
    """11.8: after ENOBUFS the frontend dumps the links again; one missing from that dump
    (its RTM_DELLINK was lost) is removed, even if stale events for it were still queued
    ahead of the dump; a link announced by an event among the dump's parts is kept; an
    overflow during a dump is answered by another dump after it."""
    await appear(rig)
    dl0 = link(index=IFINDEX, name=b"dl0\0", hw=frames.CLIENT_MAC, seq=1)
    rig.netlink.send(dl0 + done_msg(1))  # the start-up dump ends
    await rig.engine.quiet()
    sock = Overflowing(rig.fe.routesock)  # type: ignore[arg-type]
    rig.fe.routesock = sock  # type: ignore[assignment]
    await overflow(rig, sock, expect_dump=2)
    rig.netlink.send(link(index=IFINDEX, name=b"dl0\0", hw=frames.CLIENT_MAC))  # stale
    await overflow(rig, sock, expect_dump=None)  # dump 2 still running: later, not lost
    rig.netlink.send(link(index=3, name=b"other0\0", seq=2))  # its first part: no dl0
    rig.netlink.send(link(index=11, name=b"new0\0"))  # an event among its parts
    rig.netlink.send(done_msg(2))
    msg = await rig.engine.expect(ImsgType.REMOVE_IF)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX
    assert await recv(rig.netlink) == netlink.link_dump_request(3)  # the lost overflow's
    assert set(rig.fe.links) == {3, 11}
    # a dump the kernel marks inconsistent (NLM_F_DUMP_INTR) may have skipped links:
    # nothing is removed for it, it is repeated
    intr = bytearray(link(index=3, name=b"other0\0", seq=3))
    intr[6] |= 0x10
    rig.netlink.send(bytes(intr) + done_msg(3))
    assert await recv(rig.netlink) == netlink.link_dump_request(4)
    assert set(rig.fe.links) == {3, 11}
    rig.netlink.send(link(index=11, name=b"new0\0", seq=4) + done_msg(4))
    await rig.engine.quiet()
    assert set(rig.fe.links) == {11}


@pytest.mark.parametrize(
    "sender, mtype, data",
    [
        ("main", ImsgType.BPFSOCK, imsg.IfIndex(IFINDEX).pack()),  # no descriptor
        ("main", ImsgType.STARTUP, b"x"),  # wrong size
        ("main", ImsgType.CONFIGURE_INTERFACE, b""),  # not main's to send here
        ("engine", ImsgType.SEND_DISCOVER, b"\0" * 23),  # wrong size
        ("engine", ImsgType.UPDATE_IF, b""),  # not the engine's to send
        ("engine", 4242, b""),  # unknown
    ],
)
async def test_bad_message_from_a_sibling_is_fatal(
    rig: Rig, sender: str, mtype: int, data: bytes
) -> None:
    peer = rig.main if sender == "main" else rig.engine
    peer.send(mtype, data)
    assert await asyncio.wait_for(rig.task, 2) == 1


async def test_parent_eof_is_a_clean_exit(rig: Rig) -> None:
    rig.main.close()
    assert await asyncio.wait_for(rig.task, 2) == 0
