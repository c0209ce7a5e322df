"""The engine process object against a fake parent and a fake frontend."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from dhcpleased import defs, imsg
from dhcpleased.engine import Engine
from dhcpleased.imsg import ImsgType
from tests.proc.peer import Peer, pair
from tests.unit import frames

IFINDEX = 7
IFNAME = "dl0"


@dataclass
class Rig:
    engine: Engine
    task: asyncio.Task[int]
    main: Peer
    fe: Peer


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    main_a, main_b = pair()
    fe_a, fe_b = pair()
    engine = Engine(main_b, random.Random(7))
    task = asyncio.get_running_loop().create_task(engine.run())
    main = Peer(main_a)
    main.send(ImsgType.SOCKET_IPC, fd=fe_b.detach())
    fe = Peer(fe_a)
    configure(main)
    yield Rig(engine, task, main, fe)
    main.close()
    fe.close()
    if not task.done():
        await asyncio.wait_for(task, 2)


def configure(
    main: Peer, *, ignore: int = 0, c_id: bytes | None = None, name: str = IFNAME
) -> None:
    main.send(ImsgType.RECONF_CONF)
    main.send(ImsgType.RECONF_IFACE, imsg.IfaceConf(name, ignore, (), False).pack())
    if c_id is not None:
        main.send(ImsgType.RECONF_C_ID, imsg.OptionBytes(61, c_id).pack())
    main.send(ImsgType.RECONF_END)


def update_if(main: Peer, *, running: bool = True, lease: str = "") -> None:
    info = imsg.IfInfo(IFINDEX, IFNAME, 0, running, 6, frames.CLIENT_MAC, lease)
    main.send(ImsgType.UPDATE_IF, info.pack())


def reply(xid: int, mtype: int, extra: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    if mtype == defs.DHCPACK:
        opts = tuple(o for o in frames.ACK_OPTIONS if o[0] != 53)
    else:
        opts = ((54, frames.SERVER.packed),)
    opts = ((53, bytes([mtype])), *opts, *extra)
    return frames.frame(frames.bootp(opts, xid=xid))


def dhcp(fe: Peer, raw: bytes, csum: int = 0) -> None:
    fe.send(ImsgType.DHCP, imsg.Dhcp(IFINDEX, csum, raw).pack())


async def bind(r: Rig) -> imsg.ConfigureInterface:
    update_if(r.main)
    disc = imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_DISCOVER)).data)
    assert disc.if_index == IFINDEX
    dhcp(r.fe, reply(disc.xid, defs.DHCPOFFER))
    req = imsg.ReqDhcp.unpack((await r.fe.expect(ImsgType.SEND_REQUEST)).data)
    assert req.xid == disc.xid
    assert req.requested_ip == frames.YIADDR
    assert req.server_identifier == frames.SERVER
    assert req.dhcp_server == IPv4Address(0)
    dhcp(r.fe, reply(req.xid, defs.DHCPACK))
    ci = imsg.ConfigureInterface.unpack((await r.main.expect(ImsgType.CONFIGURE_INTERFACE)).data)
    return ci


async def test_dora_configures_and_proposes_dns(rig: Rig) -> None:
    ci = await bind(rig)
    assert (ci.if_index, ci.addr, ci.mask) == (IFINDEX, frames.YIADDR, IPv4Address("255.255.255.0"))
    routes = [(str(r.dst), r.prefixlen, str(r.gw)) for r in ci.routes]
    assert ("0.0.0.0", 0, str(frames.SERVER)) in routes  # ACK_OPTIONS carries 121 too
    assert ("10.1.2.0", 24, str(frames.SERVER)) in routes
    assert ci.server == frames.SERVER
    rdns = imsg.ProposeRdns.unpack((await rig.main.expect(ImsgType.PROPOSE_RDNS)).data)
    assert [str(a) for a in rdns.rdns] == ["192.0.2.53", "192.0.2.54"]


async def test_show_interface_info_replies_to_the_asker(rig: Rig) -> None:
    await bind(rig)
    rig.fe.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(IFINDEX).pack(), peerid=3, pid=42)
    msg = await rig.fe.expect(ImsgType.CTL_SHOW_INTERFACE_INFO)
    assert (msg.peerid, msg.pid) == (3, 42)
    info = imsg.CtlEngineInfo.unpack(msg.data)
    assert info.state == "Bound"
    assert info.requested_ip == frames.YIADDR
    rig.fe.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(99).pack(), peerid=3, pid=42)
    await rig.fe.expect(ImsgType.CTL_END)


async def test_init_reboot_from_lease_text(rig: Rig) -> None:
    update_if(rig.main, lease="version: 2\nip: 192.0.2.10\n")
    req = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_REQUEST)).data)
    assert req.requested_ip == frames.YIADDR
    assert req.server_identifier == IPv4Address(0)
    assert req.ciaddr == IPv4Address(0)


async def test_nak_restarts_discovery(rig: Rig) -> None:
    update_if(rig.main, lease="version: 2\nip: 192.0.2.10\n")
    req = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_REQUEST)).data)
    dhcp(rig.fe, reply(req.xid, defs.DHCPNAK))
    await rig.fe.expect(ImsgType.SEND_DISCOVER)


async def test_link_down_withdraws_dns_and_remove_deconfigures(rig: Rig) -> None:
    await bind(rig)
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    update_if(rig.main, running=False)
    await rig.main.expect(ImsgType.WITHDRAW_RDNS)
    await rig.main.quiet()
    rig.fe.send(ImsgType.REMOVE_IF, imsg.IfIndex(IFINDEX).pack())
    seen = {(await rig.main.expect(t)).type for t in (ImsgType.WITHDRAW_RDNS,)}
    msg = await asyncio.wait_for(rig.main.queue.get(), 2)
    seen.add(msg.type)
    assert ImsgType.DECONFIGURE_INTERFACE in seen


async def test_reload_without_the_interface_deconfigures_and_forgets_it(rig: Rig) -> None:
    """The engine drops an interface a reload removed on the reload itself (RECONF_END),
    in order with the parent's UPDATE_IFs: withdraw DNS, deconfigure, no timer left."""
    ci = await bind(rig)
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    configure(rig.main, name="other9")
    await rig.main.expect(ImsgType.WITHDRAW_RDNS)
    gone = imsg.ConfigureInterface.unpack(
        (await rig.main.expect(ImsgType.DECONFIGURE_INTERFACE)).data
    )
    assert (gone.if_index, gone.addr, gone.routes) == (IFINDEX, ci.addr, ci.routes)
    assert IFINDEX not in rig.engine.ifaces
    # the frontend's REMOVE_IF of a link change, or any frame in flight: nothing to do
    rig.fe.send(ImsgType.REMOVE_IF, imsg.IfIndex(IFINDEX).pack())
    dhcp(rig.fe, reply(0, defs.DHCPNAK))
    await rig.main.quiet()
    await rig.fe.quiet()
    # named again: picked up afresh at the next UPDATE_IF
    configure(rig.main)
    update_if(rig.main)
    await rig.fe.expect(ImsgType.SEND_DISCOVER)
    assert not rig.task.done()


async def test_network_garbage_is_dropped(rig: Rig) -> None:
    ci = await bind(rig)
    await rig.main.expect(ImsgType.PROPOSE_RDNS)
    good = reply(0, defs.DHCPNAK)
    for raw in (b"", b"\xff" * 40, good[:50], good[:-200], bytes(1500)):
        dhcp(rig.fe, raw)
    await rig.main.quiet()
    await rig.fe.quiet()
    assert not rig.task.done()
    assert rig.engine.ifaces[IFINDEX].machine.state.value == "Bound"
    assert ci.addr == rig.engine.ifaces[IFINDEX].machine.requested_ip


async def test_client_id_length_mismatch_drops_reply(rig: Rig) -> None:
    update_if(rig.main)
    disc = imsg.ReqDhcp.unpack((await rig.fe.expect(ImsgType.SEND_DISCOVER)).data)
    dhcp(rig.fe, reply(disc.xid, defs.DHCPOFFER, ((61, b"\x01\x02\x03"),)))
    await rig.fe.quiet()
    dhcp(rig.fe, reply(disc.xid, defs.DHCPOFFER, ((61, b"\x01" + frames.CLIENT_MAC),)))
    await rig.fe.expect(ImsgType.SEND_REQUEST)


@pytest.mark.parametrize(
    "sender, mtype, data",
    [
        ("main", ImsgType.UPDATE_IF, b"\0" * 10),  # wrong size
        ("main", ImsgType.SEND_DISCOVER, bytes(24)),  # not main's to send
        ("main", 9999, b""),  # unknown type
        ("fe", ImsgType.DHCP, struct.pack("=IH", IFINDEX, 0)),  # wrong size
        ("fe", ImsgType.CONFIGURE_INTERFACE, b""),  # not the frontend's to send
        ("main", ImsgType.RECONF_END, b""),  # RECONF_END without RECONF_CONF
    ],
)
async def test_bad_message_from_a_sibling_is_fatal(
    rig: Rig, sender: str, mtype: int, data: bytes
) -> None:
    await asyncio.sleep(0.05)  # let the configuration land first
    peer = rig.main if sender == "main" else rig.fe
    peer.send(mtype, data)
    assert await asyncio.wait_for(rig.task, 2) == 1


async def test_parent_eof_is_a_clean_exit(rig: Rig) -> None:
    rig.main.close()
    assert await asyncio.wait_for(rig.task, 2) == 0
