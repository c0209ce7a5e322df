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

from dhcpleased import defs, frontend, imsg, netlink, packet
from dhcpleased.frontend import Frontend
from dhcpleased.imsg import ImsgType
from tests.proc.peer import Peer, pair
from tests.unit import frames
from tests.unit.test_netlink import RTM_DELLINK, done_msg, link

IFINDEX = 7
IFNAME = "dl0"
ZERO = IPv4Address(0)
HOSTNAME = ["testhost"]  # what the frontend's gethostname stand-in returns, now


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


def configure(main: Peer, *names: str, h_name: bytes | None = None) -> None:
    main.send(ImsgType.RECONF_CONF)
    for name in names:
        main.send(ImsgType.RECONF_IFACE, imsg.IfaceConf(name, 0, (), False).pack())
        if h_name is not None:
            main.send(ImsgType.RECONF_H_NAME, imsg.HostName(h_name).pack())
    main.send(ImsgType.RECONF_END)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    HOSTNAME[0] = "testhost"
    main_a, main_b = pair()
    eng_a, eng_b = pair()
    nl_test, nl_fe = dgram_pair()
    fe = Frontend(main_b, lambda: HOSTNAME[0])
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
    """The packet socket (a stand-in): frames written to the returned end arrive."""
    wire, theirs = dgram_pair()
    r.main.send(ImsgType.BPFSOCK, imsg.IfIndex(index).pack(), fd=theirs.detach())
    await asyncio.sleep(0.05)
    return wire


async def give_sockets(r: Rig, index: int = IFINDEX) -> tuple[socket.socket, socket.socket]:
    """Broadcast socket, then packet socket, as the parent sends them: (what the
    frontend broadcasts comes out here, frames written here arrive)."""
    out, theirs = dgram_pair()
    r.main.send(ImsgType.BCASTSOCK, imsg.IfIndex(index).pack(), fd=theirs.detach())
    return out, await give_bpf(r, index)


def on_wire(payload: bytes) -> bytes:
    """The frame the kernel makes of a DHCP message sent on the broadcast socket."""
    return packet.udp_frame(
        payload, src_mac=frames.CLIENT_MAC, dst_mac=packet.BROADCAST_MAC, ip_src=ZERO,
        ip_dst=IPv4Address("255.255.255.255"), sport=defs.CLIENT_PORT, dport=defs.SERVER_PORT,
    )  # fmt: skip


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


async def test_a_busy_engine_pauses_the_packet_sockets(rig: Rig) -> None:
    """Frames stop being read at ENGINE_HIGH_WATER queued for an engine that does not
    read (the socket's own buffer fills instead, where the kernel would drop), and are
    read again once it has caught up: nothing is lost, the channel never overflows."""
    await appear(rig)
    wire = await give_bpf(rig)
    loop = asyncio.get_running_loop()
    engine_fd = rig.engine.ch._fileno
    loop.remove_reader(engine_fd)  # the engine is busy
    raw, sent, refused = frames.frame(), 0, 0
    while refused < 20:  # the stand-in socket's buffer is full: the frontend stopped
        try:
            wire.send(raw)
            sent, refused = sent + 1, 0
        except BlockingIOError:
            refused += 1
        await asyncio.sleep(0.001)
    fe = rig.fe
    assert fe.engine is not None and fe.engine.congested and not fe.reading
    assert fe.engine.pending == frontend.ENGINE_HIGH_WATER
    assert (fe.read_pauses, rig.task.done()) == (1, False)
    loop.add_reader(engine_fd, rig.engine.ch._on_readable)  # caught up
    for _ in range(sent):
        d = imsg.Dhcp.unpack((await rig.engine.expect(ImsgType.DHCP)).data)
        assert d.packet == raw
    assert fe.reading and not fe.engine.congested and fe.frames_read == sent
    await rig.engine.quiet()


async def test_discover_and_request_are_built_from_fields(rig: Rig) -> None:
    await appear(rig)
    wire, _ = await give_sockets(rig)
    rig.engine.send(
        ImsgType.SEND_DISCOVER, imsg.ReqDhcp(IFINDEX, 0xABCD, ZERO, ZERO, ZERO, ZERO).pack()
    )
    out = await recv(wire)
    assert out[0] == 1 and out[28:34] == frames.CLIENT_MAC  # BOOTREQUEST, chaddr
    reply = packet.parse_frame(frames.as_reply(on_wire(out)))
    assert isinstance(reply, packet.DhcpMessage), reply
    assert reply.xid == 0xABCD
    assert reply.message_type == defs.DHCPDISCOVER
    assert reply.host_name == "testhost"
    req = imsg.ReqDhcp(IFINDEX, 0xABCE, ZERO, frames.YIADDR, frames.SERVER, ZERO)
    rig.engine.send(ImsgType.SEND_REQUEST, req.pack())
    reply = packet.parse_frame(frames.as_reply(on_wire(await recv(wire))))
    assert isinstance(reply, packet.DhcpMessage)
    assert reply.message_type == defs.DHCPREQUEST
    assert (50, frames.YIADDR.packed) in reply.unknown
    assert reply.server_identifier == frames.SERVER


def sent(raw: bytes) -> packet.DhcpMessage:
    msg = packet.parse_frame(frames.as_reply(on_wire(raw)))
    assert isinstance(msg, packet.DhcpMessage), msg
    return msg


async def test_discover_before_socket_goes_out_when_it_arrives(rig: Rig) -> None:
    await appear(rig)
    rig.engine.send(ImsgType.SEND_DISCOVER, imsg.ReqDhcp(IFINDEX, 1, ZERO, ZERO, ZERO, ZERO).pack())
    await rig.engine.quiet()
    wire, _ = await give_sockets(rig)
    msg = sent(await recv(wire))
    assert (msg.message_type, msg.xid) == (defs.DHCPDISCOVER, 1)
    await rig.engine.quiet()  # no second "reboot" asked of the engine


async def test_reboot_request_before_socket_is_sent_as_is_not_restarted(rig: Rig) -> None:
    """INIT-REBOOT keeps both of its tries when the packet socket comes late (11.12)."""
    await appear(rig)
    for xid in (5, 6):  # the engine's first try, then its second: the latest one counts
        req = imsg.ReqDhcp(IFINDEX, xid, ZERO, frames.YIADDR, ZERO, ZERO)
        rig.engine.send(ImsgType.SEND_REQUEST, req.pack())
    await asyncio.sleep(0.05)
    wire, _ = await give_sockets(rig)
    msg = sent(await recv(wire))
    assert (msg.message_type, msg.xid) == (defs.DHCPREQUEST, 6)
    assert (50, frames.YIADDR.packed) in msg.unknown
    await rig.engine.quiet()
    with pytest.raises(BlockingIOError):
        wire.recv(2048)  # once


async def test_renewals_go_to_the_server_the_parent_connected(rig: Rig) -> None:
    """Unicast only through the renewal socket, and only for its server; a request for
    another server (one that changed while rebinding) or after CLOSE_UDPSOCK broadcasts,
    as the original falls back to BPF. dhcpleasectl -p counts the sockets."""
    await appear(rig)
    bcast, _ = await give_sockets(rig)
    unicast, theirs = dgram_pair()
    rig.main.send(ImsgType.UDPSOCK, imsg.UdpSock(IFINDEX, frames.SERVER).pack(), fd=theirs.detach())
    await asyncio.sleep(0.05)
    info = rig.fe.procinfo()
    assert (info.udp_broadcast, info.udp_unicast) == (1, 1)
    # the stand-in "packet socket" is a unix socket: not bound to no interface, so it
    # counts as one that can send (the lab test sees the real one as receive-only)
    assert (info.packet_rx_only, info.packet_tx) == (0, 1)
    other = IPv4Address("192.0.2.99")
    for xid, server, wire in ((1, frames.SERVER, unicast), (2, other, bcast)):
        req = imsg.ReqDhcp(IFINDEX, xid, frames.YIADDR, ZERO, ZERO, server)
        rig.engine.send(ImsgType.SEND_REQUEST, req.pack())
        msg = sent(await recv(wire))
        assert (msg.xid, msg.ciaddr) == (xid, frames.YIADDR)
    rig.main.send(ImsgType.CLOSE_UDPSOCK, imsg.IfIndex(IFINDEX).pack())
    req = imsg.ReqDhcp(IFINDEX, 3, frames.YIADDR, ZERO, ZERO, frames.SERVER)
    rig.engine.send(ImsgType.SEND_REQUEST, req.pack())
    assert sent(await recv(bcast)).xid == 3
    with pytest.raises(BlockingIOError):
        unicast.recv(2048)
    assert rig.fe.procinfo().udp_unicast == 0


async def test_nothing_is_sent_before_both_sockets_are_there(rig: Rig) -> None:
    await appear(rig)
    rig.engine.send(ImsgType.SEND_DISCOVER, imsg.ReqDhcp(IFINDEX, 9, ZERO, ZERO, ZERO, ZERO).pack())
    out, theirs = dgram_pair()
    rig.main.send(ImsgType.BCASTSOCK, imsg.IfIndex(IFINDEX).pack(), fd=theirs.detach())
    await asyncio.sleep(0.05)
    with pytest.raises(BlockingIOError):  # no packet socket yet: a reply could not be read
        out.recv(2048)
    await give_bpf(rig)
    assert sent(await recv(out)).xid == 9


async def test_host_name_is_read_for_each_packet(rig: Rig) -> None:
    await appear(rig)
    wire, _ = await give_sockets(rig)
    names = []
    for name in ("alpha", "beta", ""):
        HOSTNAME[0] = name
        rig.engine.send(
            ImsgType.SEND_DISCOVER, imsg.ReqDhcp(IFINDEX, 1, ZERO, ZERO, ZERO, ZERO).pack()
        )
        names.append(sent(await recv(wire)).host_name)
    assert names == ["alpha", "beta", None]  # an empty name: no option 12


def test_short_hostname_reads_the_uts_name_now(monkeypatch: pytest.MonkeyPatch) -> None:
    from dhcpleased import frontend

    for full, short in (("box.example.org", "box"), ("plain", "plain"), ("", "")):
        monkeypatch.setattr(frontend.socket, "gethostname", lambda full=full: full)
        assert frontend.short_hostname() == short


async def test_removed_link_and_reload(rig: Rig) -> None:
    await appear(rig)
    rig.netlink.send(link(RTM_DELLINK, index=IFINDEX, name=b"dl0\0"))
    msg = await rig.engine.expect(ImsgType.REMOVE_IF)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX
    # it comes back; then a reload changes its settings: re-requested, not re-created
    await appear(rig)
    configure(rig.main, IFNAME, h_name=b"newname")
    msg = await rig.engine.expect(ImsgType.REQUEST_REBOOT)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX
    # a reload that drops it stops managing it; the engine drops it on the same reload by
    # itself, so no REMOVE_IF (it could overtake the UPDATE_IF of the interface's return)
    wire = await give_bpf(rig)
    configure(rig.main, "other9")
    await rig.engine.quiet()
    assert IFINDEX not in rig.fe.ifaces
    with pytest.raises(ConnectionRefusedError):  # its packet socket was closed
        wire.send(b"x")
    # and a reload that names it again picks it up at once, from the links it knows
    configure(rig.main, IFNAME)
    await appear_known(rig, IFINDEX, IFNAME)


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
