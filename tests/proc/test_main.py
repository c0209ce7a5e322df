"""The parent's dispatch: each child may ask only for what it needs, with sane content."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dhcpleased import defs, imsg, main
from dhcpleased.imsg import ImsgType
from dhcpleased.ipc import Imsg
from dhcpleased.packet import Route
from dhcpleased.parse import Config, IfaceConf
from tests.proc.peer import Peer, pair
from tests.proc.tokens import foreign_token

IFNAME = "lo"  # exists in every network namespace, index 1
IFINDEX = socket.if_nametoindex("lo")
ZERO = IPv4Address(0)
ADDR = IPv4Address("192.0.2.10")
MASK = IPv4Address("255.255.255.0")


@dataclass
class FakeKRoute:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def configure(self, *args: Any) -> None:
        self.calls.append(("configure", *args))

    async def deconfigure(self, *args: Any) -> None:
        self.calls.append(("deconfigure", *args))

    async def withdraw_routes(self, *args: Any) -> None:
        self.calls.append(("withdraw_routes", *args))

    async def set_up(self, *args: Any) -> bool:
        self.calls.append(("set_up", *args))
        return True

    async def set_mtu(self, if_index: int, mtu: int) -> int:
        self.calls.append(("set_mtu", if_index, mtu))
        return 1500

    async def restore_mtu(self, if_index: int) -> tuple[int, int] | None:
        self.calls.append(("restore_mtu", if_index))
        return 1400, 1500


@dataclass
class FakeResolver:
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def propose(
        self, ifname: str, ns: Sequence[IPv4Address], d: str, s: Sequence[str]
    ) -> None:
        self.calls.append(("propose", ifname, tuple(ns), d, tuple(s)))

    async def withdraw(self, ifname: str) -> None:
        self.calls.append(("withdraw", ifname))

    ntp_mode = "chrony"

    async def propose_ntp(self, ifname: str, servers: Sequence[IPv4Address]) -> None:
        self.calls.append(("propose_ntp", ifname, tuple(servers)))

    async def withdraw_ntp(self, ifname: str) -> None:
        self.calls.append(("withdraw_ntp", ifname))


@dataclass
class Rig:
    m: main.Main
    kroute: FakeKRoute
    resolver: FakeResolver
    fe: Peer
    engine: Peer
    worker: asyncio.Task[None]


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setattr(defs, "LEASE_DIR", str(tmp_path))
    kroute, resolver = FakeKRoute(), FakeResolver()
    m = main.Main(
        opts=main.Options(ifaces=[IFNAME]),
        conf=Config(ifaces=(IfaceConf(name=IFNAME),)),
        kroute=kroute,  # type: ignore[arg-type]
        resolver=resolver,  # type: ignore[arg-type]
        load_config=Config,
        open_bpfsock=lambda i: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_bcastsock=lambda i: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_udpsock=lambda i, a, s: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
        open_routesock=lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
    )
    ours, theirs = pair()
    from dhcpleased.ipc import Channel

    chan = Channel(ours, lambda _m: None, lambda _r: None, name="frontend")
    chan.start()
    m.children["frontend"] = SimpleNamespace(channel=chan, pid=-1)  # type: ignore[assignment]
    fe = Peer(theirs)
    en_ours, en_theirs = pair()
    en_chan = Channel(en_ours, lambda _m: None, lambda _r: None, name="engine")
    en_chan.start()
    m.children["engine"] = SimpleNamespace(channel=en_chan, pid=-1)  # type: ignore[assignment]
    engine = Peer(en_theirs)
    worker = asyncio.get_running_loop().create_task(m.worker())
    yield Rig(m, kroute, resolver, fe, engine, worker)
    worker.cancel()
    for c in (chan, en_chan):
        c.close()
    fe.close()
    engine.close()


def send(r: Rig, role: str, t: int, data: bytes = b"", fd: int | None = None) -> None:
    r.m.dispatch(role, Imsg(t, 0, 0, data, fd))


def ci(addr: IPv4Address = ADDR, routes: tuple[Route, ...] = ()) -> bytes:
    return imsg.ConfigureInterface(
        if_index=IFINDEX, rdomain=0, addr=addr, mask=MASK, siaddr=ZERO, server=ADDR,
        file=b"", domain_name="", host_name="", lease_time=60, routes=routes,
    ).pack()  # fmt: skip


def know_interface(r: Rig) -> None:
    info = imsg.IfInfo(IFINDEX, IFNAME, 0, True, 6, b"\x02" * 6, "")
    send(r, "frontend", ImsgType.UPDATE_IF, info.pack())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


def failed(r: Rig) -> bool:
    return r.m.done.done() and r.m.done.result() == 1


@pytest.mark.parametrize(
    "role, t",
    [
        ("engine", ImsgType.OPEN_BPFSOCK),
        ("engine", ImsgType.UPDATE_IF),
        ("engine", ImsgType.CTL_RELOAD),
        ("frontend", ImsgType.CONFIGURE_INTERFACE),
        ("frontend", ImsgType.PROPOSE_RDNS),
        ("frontend", ImsgType.SEND_DISCOVER),
        ("frontend", 31337),
    ],
)
async def test_a_child_may_only_ask_for_its_own_things(rig: Rig, role: str, t: int) -> None:
    send(rig, role, t, imsg.IfIndex(IFINDEX).pack())
    assert failed(rig)


async def test_descriptors_from_children_are_fatal(rig: Rig) -> None:
    r, w = socket.socketpair()
    w.close()
    send(rig, "frontend", ImsgType.OPEN_BPFSOCK, imsg.IfIndex(IFINDEX).pack(), fd=r.detach())
    assert failed(rig)


async def test_wrong_size_is_fatal(rig: Rig) -> None:
    send(rig, "frontend", ImsgType.OPEN_BPFSOCK, b"\0\0")
    assert failed(rig)


async def test_unmanaged_interfaces_are_fatal(rig: Rig) -> None:
    info = imsg.IfInfo(IFINDEX, "eth9", 0, True, 6, b"\x02" * 6, "")
    send(rig, "frontend", ImsgType.UPDATE_IF, info.pack())
    assert failed(rig)


async def test_engine_cannot_configure_an_interface_it_was_not_told_about(rig: Rig) -> None:
    send(rig, "engine", ImsgType.CONFIGURE_INTERFACE, ci())
    assert failed(rig)


@pytest.mark.parametrize(
    "payload",
    [
        ci(addr=IPv4Address("224.0.0.1")),
        ci(addr=IPv4Address("255.255.255.255")),
        ci(addr=IPv4Address("127.0.0.1")),
        ci(routes=(Route(IPv4Address("10.0.0.1"), MASK, ADDR),)),  # host bits
        ci(routes=(Route(ZERO, ZERO, IPv4Address("224.0.0.9")),)),  # multicast gateway
    ],
)
async def test_configure_content_is_checked(rig: Rig, payload: bytes) -> None:
    know_interface(rig)
    await settle()
    send(rig, "engine", ImsgType.CONFIGURE_INTERFACE, payload)
    assert failed(rig)


async def test_valid_requests_are_served_in_order(rig: Rig, tmp_path: Path) -> None:
    opened: list[tuple[int, IPv4Address, IPv4Address | None]] = []
    real = rig.m.open_udpsock

    def record(i: int, a: IPv4Address, s: IPv4Address | None) -> socket.socket:
        opened.append((i, a, s))
        return real(i, a, s)

    rig.m.open_udpsock = record
    know_interface(rig)
    await settle()
    route = Route(ZERO, ZERO, IPv4Address("192.0.2.1"))
    send(rig, "engine", ImsgType.CONFIGURE_INTERFACE, ci(routes=(route,)))
    rd = imsg.ProposeRdns(IFINDEX, 0, (IPv4Address("192.0.2.53"),), "lab.test", ("a.test",))
    send(rig, "engine", ImsgType.PROPOSE_RDNS, rd.pack())
    await settle()
    assert not rig.m.done.done()
    assert rig.kroute.calls == [("configure", IFINDEX, ADDR, MASK, (route,), 60)]
    assert rig.resolver.calls == [
        ("propose", IFNAME, (IPv4Address("192.0.2.53"),), "lab.test", ("a.test",))
    ]
    update = imsg.IfInfo.unpack((await rig.engine.expect(ImsgType.UPDATE_IF)).data)
    assert (update.if_index, update.lease) == (IFINDEX, "")  # no lease file yet
    lease = (tmp_path / IFNAME).read_text()
    assert f"ip: {ADDR}" in lease.splitlines()
    assert (tmp_path / IFNAME).stat().st_mode & 0o777 == 0o644
    udp = await rig.fe.expect(ImsgType.UDPSOCK)
    assert udp.fd is not None
    socket.close(udp.fd)
    # the frontend's is connected to the server; the parent keeps an unconnected one
    assert imsg.UdpSock.unpack(udp.data) == imsg.UdpSock(IFINDEX, ADDR)
    assert opened == [(IFINDEX, ADDR, None), (IFINDEX, ADDR, ADDR)]
    assert list(rig.m.udp_absorb) == [IFINDEX]
    withdraw = imsg.ProposeRdns(IFINDEX, 0, (), "", ())
    send(rig, "engine", ImsgType.WITHDRAW_RDNS, withdraw.pack())
    send(rig, "engine", ImsgType.DECONFIGURE_INTERFACE, ci())
    await settle()
    assert rig.resolver.calls[-1] == ("withdraw", IFNAME)
    assert rig.kroute.calls[-1][0] == "deconfigure"
    await rig.fe.expect(ImsgType.CLOSE_UDPSOCK)
    assert rig.m.udp_absorb == {}


async def test_packet_socket_comes_with_its_broadcast_socket(rig: Rig) -> None:
    """OPEN_BPFSOCK: the broadcast socket first, then the packet socket, whose arrival
    sends what waits; both or neither."""
    send(rig, "frontend", ImsgType.OPEN_BPFSOCK, imsg.IfIndex(IFINDEX).pack())
    for t in (ImsgType.BCASTSOCK, ImsgType.BPFSOCK):
        msg = await rig.fe.expect(t)
        assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX and msg.fd is not None
        socket.close(msg.fd)

    def refuse(i: int) -> socket.socket:
        raise OSError(19, "No such device")

    rig.m.open_bpfsock = refuse
    send(rig, "frontend", ImsgType.OPEN_BPFSOCK, imsg.IfIndex(IFINDEX).pack())
    await rig.fe.quiet()
    assert not rig.m.done.done()


async def test_renewal_refreshes_address_and_lease_file_only(
    rig: Rig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """11.13: every ACK's CONFIGURE_INTERFACE restarts the address's lifetime; for the
    address already in place no new UDP socket and no second "adding" line."""
    caplog.set_level(logging.DEBUG, logger="dhcpleased")
    know_interface(rig)
    await settle()
    send(rig, "engine", ImsgType.CONFIGURE_INTERFACE, ci())
    udp = await rig.fe.expect(ImsgType.UDPSOCK)
    assert udp.fd is not None
    socket.close(udp.fd)
    (tmp_path / IFNAME).unlink()
    send(rig, "engine", ImsgType.CONFIGURE_INTERFACE, ci())
    await rig.fe.quiet()
    assert rig.kroute.calls == [("configure", IFINDEX, ADDR, MASK, (), 60)] * 2
    assert f"ip: {ADDR}" in (tmp_path / IFNAME).read_text().splitlines()
    adding = [r for r in caplog.records if r.getMessage().startswith("adding")]
    assert len(adding) == 1
    assert any("renewed for 60 s" in r.getMessage() for r in caplog.records)


async def test_dhcpleasectl_request_sets_the_interface_up(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """11.12: MANAGE_IF (with root's token) for a managed interface too: the parent sets
    a down one up."""
    caplog.set_level(logging.INFO, logger="dhcpleased")
    rig.m.ctl_uid = os.geteuid()  # the token's maker: root in CI, the test's user here
    lo = socket.if_nametoindex("lo")
    send(rig, "frontend", ImsgType.MANAGE_IF, imsg.IfIndex(lo).pack(), foreign_token(lo))
    await settle()
    assert ("set_up", lo) in rig.kroute.calls
    assert "set lo up, as dhcpleasectl asked" in caplog.text


async def test_lease_text_reaches_the_engine(rig: Rig, tmp_path: Path) -> None:
    (tmp_path / IFNAME).write_bytes(b"version: 2\nip: 192.0.2.10\n\0\xff")
    know_interface(rig)
    update = imsg.IfInfo.unpack((await rig.engine.expect(ImsgType.UPDATE_IF)).data)
    assert update.lease == "version: 2\nip: 192.0.2.10\n??"


async def test_withdraw_rdns_must_be_empty(rig: Rig) -> None:
    know_interface(rig)
    await settle()
    rd = imsg.ProposeRdns(IFINDEX, 0, (IPv4Address("192.0.2.53"),), "", ())
    send(rig, "engine", ImsgType.WITHDRAW_RDNS, rd.pack())
    assert failed(rig)
