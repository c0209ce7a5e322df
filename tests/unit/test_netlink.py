"""dhcpleased.netlink: how pyroute2 is imported, link decoding, the parent's requests.

The import is checked in fresh interpreters (what the daemon's processes really load);
link messages are built here with :mod:`struct` in the kernel's layout, so pyroute2's
decoding is checked against an independent encoder; the request machinery runs against
a scripted fake socket and, read-only, against the real kernel (a dump needs no
privilege and changes nothing).
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import struct
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import version
from ipaddress import IPv4Address as A
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased import defs, netlink

ROOT = Path(__file__).resolve().parents[2]

# --- how pyroute2 is imported -----------------------------------------------------------------

# Every pyroute2 module a daemon process may load: importing dhcpleased.netlink must not
# run pyroute2's package __init__ (230 modules) nor pull in more than this.
_PLUGINS = "bond can geneve gtp ipoib ipvlan team tun tuntap vlan vrf vti vti6 vxlan xfrm"
PYROUTE2_MODULES = frozenset(
    {
        "pyroute2",
        "pyroute2.common",
        "pyroute2.config",
        "pyroute2.netlink",
        "pyroute2.netlink.exceptions",
        "pyroute2.netlink.marshal",
        "pyroute2.netlink.rtnl",
        "pyroute2.netlink.rtnl.ifaddrmsg",
        "pyroute2.netlink.rtnl.ifinfmsg",
        "pyroute2.netlink.rtnl.ifinfmsg.plugins",
        *(f"pyroute2.netlink.rtnl.ifinfmsg.plugins.{p}" for p in _PLUGINS.split()),
        "pyroute2.netlink.rtnl.iw_event",
        "pyroute2.netlink.rtnl.rtmsg",
    }
)

PROBE = r"""
import json, sys
import {module}
print(json.dumps({{
    "pyroute2": sorted(m for m in sys.modules if m.split(".")[0] == "pyroute2"),
    "init_ran": hasattr(sys.modules.get("pyroute2"), "IPRoute"),
}}))
"""


def probe(module: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What importing ``module`` loads, in a fresh isolated interpreter as the daemon's."""
    import json

    out = subprocess.run(
        [sys.executable, "-I", "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("module", ["dhcpleased.netlink", "dhcpleased.frontend"])
def test_only_the_message_classes_are_imported(module: str) -> None:
    got = probe(module)
    assert not got["init_ran"], "pyroute2's package __init__ ran"
    assert set(got["pyroute2"]) <= PYROUTE2_MODULES, set(got["pyroute2"]) - PYROUTE2_MODULES
    assert "pyroute2.netlink.rtnl.ifinfmsg" in got["pyroute2"]


def test_the_parent_imports_the_same_and_the_engine_none() -> None:
    """The parent's late imports (main.parent_main) and the engine's whole module."""
    parent = probe("dhcpleased.bpf, dhcpleased.kroute, dhcpleased.lease, dhcpleased.main")
    assert set(parent["pyroute2"]) <= PYROUTE2_MODULES and not parent["init_ran"]
    assert probe("dhcpleased.engine")["pyroute2"] == []


def test_installed_pyroute2_is_in_the_tested_range() -> None:
    """pyproject's range is the one tested here: >= 0.9.7 (see the module docstring
    for why not 0.9.5/0.9.6), < 0.10."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.startswith("pyroute2")]
    assert spec == "pyroute2>=0.9.7,<0.10"
    major, minor, patch = (int(x) for x in re.findall(r"\d+", version("pyroute2"))[:3])
    assert (0, 9, 7) <= (major, minor, patch) < (0, 10, 0)


def test_importing_starts_no_process(tmp_path: Path) -> None:
    """pyroute2 0.9.5/0.9.6 ran ``uname -p`` and ``file`` at import: stand-ins for both
    on PATH record any call."""
    marker = tmp_path / "ran"
    for tool in ("uname", "file"):
        script = tmp_path / tool
        script.write_text(f"#!/bin/sh\necho {tool} >> {marker}\n")
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ.get('PATH', '')}"}
    probe("dhcpleased.netlink", env=env)
    assert not marker.exists(), marker.read_text()


def test_a_full_pyroute2_imported_first_is_left_alone() -> None:
    got = probe("pyroute2, dhcpleased.netlink")
    assert got["init_ran"]


# --- link events ------------------------------------------------------------------------------
RTM_NEWLINK, RTM_DELLINK, NLMSG_DONE, NLMSG_ERROR = 16, 17, 3, 2
IFLA_ADDRESS, IFLA_IFNAME, IFLA_OPERSTATE = 1, 3, 16
IFF_UP, IFF_RUNNING = 0x1, 0x40


def rtattr(atype: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), atype) + payload
    return data + b"\0" * (-len(data) % 4)


def nlmsg(mtype: int, body: bytes, *, flags: int = 0, seq: int = 0) -> bytes:
    data = struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body
    return data + b"\0" * (-len(data) % 4)


def link(
    mtype: int = RTM_NEWLINK,
    *,
    index: int = 7,
    name: bytes = b"eth0\0",
    hw: bytes = bytes.fromhex("020000000001"),
    oper: int | None = defs.IF_OPER_UP,
    flags: int = IFF_UP | IFF_RUNNING,
    family: int = socket.AF_UNSPEC,
    arphrd: int = 1,
    seq: int = 0,
    extra: bytes = b"",
) -> bytes:
    body = struct.pack("=BxHiII", family, arphrd, index, flags, 0)
    body += rtattr(IFLA_IFNAME, name) + rtattr(IFLA_ADDRESS, hw)
    if oper is not None:
        body += rtattr(IFLA_OPERSTATE, bytes([oper]))
    return nlmsg(mtype, body + extra, seq=seq)


def events(data: bytes) -> list[netlink.LinkEvent]:
    return [ev for m in netlink.parse(data) if (ev := netlink.link_event(m)) is not None]


def test_newlink_decoded() -> None:
    assert events(link()) == [
        netlink.LinkEvent(
            deleted=False,
            if_index=7,
            if_name="eth0",
            hw_address=bytes.fromhex("020000000001"),
            up=True,
            link_state=defs.IF_OPER_UP,
            arphrd=1,
        )
    ]


def test_dellink_and_down_flags() -> None:
    (ev,) = events(link(RTM_DELLINK, flags=IFF_UP))
    assert ev.deleted
    assert not ev.up  # UP without RUNNING (no carrier) is not up


def test_several_messages_and_noise_in_one_datagram() -> None:
    data = (
        link(index=2, name=b"a\0")
        + nlmsg(NLMSG_DONE, struct.pack("=i", 0))
        + nlmsg(20, b"\0" * 8)  # RTM_NEWADDR: not a link
        + link(index=3, name=b"b\0", oper=None)
        + link(index=4, family=socket.AF_BRIDGE)  # a bridge port event, not a link change
        + link(index=0)  # no such interface index
    )
    got = events(data)
    assert [(e.if_index, e.if_name) for e in got] == [(2, "a"), (3, "b")]
    assert got[1].link_state == defs.IF_OPER_UNKNOWN


def test_tunnel_addresses_are_not_decoded() -> None:
    """pyroute2 decodes IFLA_ADDRESS as six bytes and formats a traceback for a tunnel's
    four: only an Ethernet link's address is read (ARPHRD 768 = IPIP)."""
    (ev,) = events(link(arphrd=768, hw=b"\0\0\0\0"))
    assert ev.hw_address == b"" and ev.arphrd == 768


def test_attribute_flags_and_unknown_attributes() -> None:
    nested = rtattr(0x8000 | 26, rtattr(1, b"xxxx"))  # NLA_F_NESTED IFLA_AF_SPEC
    body = struct.pack("=BxHiII", 0, 1, 9, 0, 0) + nested + rtattr(999, b"yy")
    body += rtattr(IFLA_IFNAME, b"x0\0")
    (ev,) = events(nlmsg(RTM_NEWLINK, body))
    assert ev.if_name == "x0"
    assert ev.hw_address == b""


def test_long_and_odd_names_are_bounded() -> None:
    (ev,) = events(link(name=b"n" * 40))
    assert ev.if_name == "n" * (defs.IF_NAMESIZE - 1)
    (ev,) = events(link(name=b"\xff\xfe\0"))
    assert ev.if_name


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0" * 15,
        struct.pack("=IHHII", 15, RTM_NEWLINK, 0, 0, 0),  # length below the header
        struct.pack("=IHHII", 1000, RTM_NEWLINK, 0, 0, 0) + b"\0" * 16,  # past the end
        nlmsg(RTM_NEWLINK, b"\0" * 15),  # ifinfomsg cut short
    ],
)
def test_garbage_is_skipped(data: bytes) -> None:
    assert all(e.if_index == 5 for e in events(data))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_messages_never_raise(data: st.DataObject) -> None:
    raw = bytearray(link() + link(RTM_DELLINK, index=9))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for ev in events(bytes(raw[:cut])):
        assert isinstance(ev, netlink.LinkEvent)


def test_dump_state() -> None:
    (part,) = netlink.parse(link(seq=5))
    (intr,) = netlink.parse(nlmsg(RTM_NEWLINK, bytes(16), flags=0x12, seq=5))
    (done,) = netlink.parse(nlmsg(NLMSG_DONE, struct.pack("=i", 0), seq=5))
    (bad,) = netlink.parse(nlmsg(NLMSG_DONE, struct.pack("=i", -errno.EINTR), seq=5))
    (err,) = netlink.parse(nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.EBUSY) + bytes(16), seq=5))
    assert [netlink.dump_state(m, 5) for m in (part, intr, done, bad, err)] == [
        "part",
        "intr",
        "done",
        "failed",
        "failed",
    ]
    assert netlink.dump_state(part, 6) is None and netlink.dump_state(part, 0) is None
    assert netlink.error_of(done) is None
    assert getattr(netlink.error_of(bad), "errno", None) == errno.EINTR
    assert getattr(netlink.error_of(err), "errno", None) == errno.EBUSY


def test_link_dump_request_is_the_kernel_layout() -> None:
    req = netlink.link_dump_request(42)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", req)
    assert (length, mtype, seq, pid) == (len(req), 18, 42, 0)  # RTM_GETLINK
    assert flags == 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
    assert req[16:32] == struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)


def test_kernel_link_dump_decodes() -> None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.settimeout(5)
        s.send(netlink.link_dump_request(3))
        got: list[netlink.LinkEvent] = []
        state = None
        while state not in ("done", "failed"):
            for m in netlink.parse(s.recv(netlink.RECV_SIZE)):
                state = netlink.dump_state(m, 3) or state
                ev = netlink.link_event(m)
                if ev is not None:
                    got.append(ev)
    assert state == "done"
    lo = socket.if_nametoindex("lo")
    assert any(e.if_index == lo and e.if_name == "lo" and e.arphrd == 772 for e in got)


# --- the parent's requests, on a scripted socket ----------------------------------------------

Responder = Callable[[int, int, int], list[bytes]]  # (type, flags, seq) -> datagrams


def error_msg(code: int, seq: int, echoed: bytes = bytes(16), *, extack: str = "") -> bytes:
    flags, tail = 0, b""
    if extack:
        flags, tail = 0x200, rtattr(1, extack.encode() + b"\0")  # NLM_F_ACK_TLVS, ATTR_MSG
    echoed = struct.pack("=I", len(echoed)) + echoed[4:]
    return nlmsg(NLMSG_ERROR, struct.pack("=i", -code) + echoed + tail, flags=flags, seq=seq)


def done_msg(seq: int, code: int = 0) -> bytes:
    return nlmsg(NLMSG_DONE, struct.pack("=i", -code), flags=0x2, seq=seq)


def newaddr(seq: int, index: int, addr: str, plen: int, family: int = socket.AF_INET) -> bytes:
    body = struct.pack("=BBBBi", family, plen, 0, 0, index)
    body += rtattr(2, A(addr).packed) + rtattr(1, A(addr).packed)  # IFA_LOCAL, IFA_ADDRESS
    return nlmsg(20, body, flags=0x2, seq=seq)


class FakeNetlink:
    """Stands in for the netlink socket: send() runs a responder, recvmsg() replays.

    fileno() is a real socketpair end, kept readable while datagrams are queued, so
    add_reader works; ``source`` is the (pid, groups) the datagrams claim to come from.
    """

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.r, self.w = socket.socketpair()
        self.queue: list[tuple[bytes, int]] = []
        self.source: tuple[int, int] = (0, 0)
        self.sent: list[bytes] = []

    def fileno(self) -> int:
        return self.r.fileno()

    def push(self, datagram: bytes, flags: int = 0) -> None:
        if not self.queue:
            self.w.send(b"!")
        self.queue.append((datagram, flags))

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        _length, mtype, flags, seq, _pid = struct.unpack_from("=IHHII", data)
        for d in self.respond(mtype, flags, seq):
            self.push(d)
        return len(data)

    def recvmsg(self, size: int) -> tuple[bytes, list[object], int, tuple[int, int]]:
        if not self.queue:
            raise BlockingIOError
        data, flags = self.queue.pop(0)
        if not self.queue:
            self.r.recv(1)
        if len(data) > size:
            data, flags = data[:size], flags | socket.MSG_TRUNC
        return data, [], flags, self.source

    def close(self) -> None:
        self.r.close()
        self.w.close()


MakeNl = Callable[[Responder], tuple[netlink.Rtnl, FakeNetlink]]


@pytest.fixture
def make_nl() -> Iterator[MakeNl]:
    made: list[netlink.Rtnl] = []

    def make(respond: Responder) -> tuple[netlink.Rtnl, FakeNetlink]:
        fake = FakeNetlink(respond)
        nl = netlink.Rtnl(timeout=0.5)
        nl.open(sock=fake)  # type: ignore[arg-type]
        made.append(nl)
        return nl, fake

    yield make
    for nl in made:
        nl.close()


def addr_query(index: int = 0) -> Any:
    q = netlink.ifaddrmsg()
    q["family"], q["index"] = socket.AF_INET, index
    return q


async def test_request_ack_and_error(make_nl: MakeNl) -> None:
    def respond(mtype: int, flags: int, seq: int) -> list[bytes]:
        assert flags & 0x5 == 0x5  # NLM_F_REQUEST | NLM_F_ACK
        if mtype == netlink.RTM_NEWROUTE:
            return [error_msg(0, seq + 1000), error_msg(0, seq)]  # a stray answer first
        return [error_msg(errno.ESRCH, seq, extack="No such route")]

    nl, fake = make_nl(respond)
    await nl.request(netlink.rtmsg(), netlink.RTM_NEWROUTE, 0, "add route")
    with pytest.raises(OSError) as ei:
        await nl.request(netlink.rtmsg(), netlink.RTM_DELROUTE, 0, "delete route 0.0.0.0/0")
    assert ei.value.errno == errno.ESRCH
    assert str(ei.value.strerror) == "delete route 0.0.0.0/0: No such route"
    seqs = [struct.unpack_from("=I", d, 8)[0] for d in fake.sent]
    assert seqs[1] == seqs[0] + 1


async def test_each_request_yields_to_the_loop(make_nl: MakeNl) -> None:
    """The kernel answers inside send(); the parent still lets its loop run (and read its
    children's channels) between requests, so a long backlog of jobs cannot starve it."""
    nl, _ = make_nl(lambda mtype, flags, seq: [error_msg(0, seq)])
    ran: list[int] = []
    for i in range(3):
        asyncio.get_running_loop().call_soon(ran.append, i)
        await nl.request(addr_query(), netlink.RTM_NEWADDR, 0, "add")
        assert ran == list(range(i + 1))


async def test_dump_collects_until_done(make_nl: MakeNl) -> None:
    def respond(mtype: int, flags: int, seq: int) -> list[bytes]:
        assert flags == 0x301  # NLM_F_REQUEST | NLM_F_DUMP
        return [  # three datagrams, as a multi-part dump arrives
            newaddr(seq, 2, "192.0.2.1", 24) + newaddr(seq, 2, "192.0.2.2", 24),
            newaddr(seq, 2, "192.0.2.3", 64, socket.AF_INET6)[:40],  # not IPv4: skipped
            newaddr(seq, 3, "198.51.100.1", 16) + done_msg(seq),
        ]

    nl, _ = make_nl(respond)
    msgs = await nl.dump(addr_query(), netlink.RTM_GETADDR, "dump")
    assert netlink.ipv4_addresses(msgs, 2) == [(A("192.0.2.1"), 24), (A("192.0.2.2"), 24)]
    assert netlink.ipv4_addresses(msgs, 3) == [(A("198.51.100.1"), 16)]


async def test_dump_errors(make_nl: MakeNl) -> None:
    answers: list[Callable[[int], list[bytes]]] = [
        lambda seq: [done_msg(seq, errno.ENODEV)],
        lambda seq: [newaddr(seq, 2, "192.0.2.1", 24), error_msg(errno.EINVAL, seq)],
    ]

    def respond(mtype: int, flags: int, seq: int) -> list[bytes]:
        return answers.pop(0)(seq)

    nl, _ = make_nl(respond)
    with pytest.raises(OSError) as ei:
        await nl.dump(addr_query(), netlink.RTM_GETADDR, "add address x")
    assert ei.value.errno == errno.ENODEV and "add address x: No such device" in str(ei.value)
    with pytest.raises(OSError) as ei:
        await nl.dump(addr_query(), netlink.RTM_GETADDR, "dump")
    assert ei.value.errno == errno.EINVAL


async def test_oversized_answer_is_refused(make_nl: MakeNl) -> None:
    def respond(mtype: int, flags: int, seq: int) -> list[bytes]:
        if mtype != netlink.RTM_GETADDR:
            return [error_msg(0, seq)]
        one = newaddr(seq, 2, "192.0.2.1", 24)
        return [one * 200] * (netlink.MAX_DUMP // 200 + 2) + [done_msg(seq)]

    nl, fake = make_nl(respond)
    with pytest.raises(OSError) as ei:
        await nl.dump(addr_query(), netlink.RTM_GETADDR, "dump")
    assert ei.value.errno == errno.EMSGSIZE
    # the rest of that dump is read and dropped; the socket still works
    await nl.request(addr_query(), netlink.RTM_NEWADDR, 0, "add")
    assert fake.queue == []


async def test_lost_or_forged_answers_time_out(make_nl: MakeNl) -> None:
    nl, fake = make_nl(lambda mtype, flags, seq: [b"\xff" * 40, error_msg(0, seq)])
    fake.source = (4242, 0)  # from another process, not the kernel: ignored
    with pytest.raises(OSError) as ei:
        await nl.request(addr_query(), netlink.RTM_NEWADDR, 0, "add address y")
    assert ei.value.errno == errno.ETIMEDOUT
    fake.source = (0, 0)
    await nl.request(addr_query(), netlink.RTM_NEWADDR, 0, "add")  # the next one goes through


async def test_truncated_answer_fails_the_request(make_nl: MakeNl) -> None:
    def respond(mtype: int, flags: int, seq: int) -> list[bytes]:
        return [nlmsg(20, bytes(netlink.RECV_SIZE), flags=0x2, seq=seq)]

    nl, _ = make_nl(respond)
    with pytest.raises(OSError) as ei:
        await nl.dump(addr_query(), netlink.RTM_GETADDR, "dump")
    assert ei.value.errno == errno.EMSGSIZE


async def test_closed_socket_refuses() -> None:
    nl = netlink.Rtnl()
    with pytest.raises(OSError) as ei:
        await nl.request(addr_query(), netlink.RTM_NEWADDR, 0, "add")
    assert ei.value.errno == errno.ENOTCONN
    nl.close()  # closing what was never opened is fine


# --- the real kernel, read-only ---------------------------------------------------------------


async def test_kernel_dump_get_and_errors() -> None:
    nl = netlink.Rtnl()
    nl.open()
    try:
        lo = socket.if_nametoindex("lo")
        msgs = await nl.dump(addr_query(lo), netlink.RTM_GETADDR, "dump")
        assert (A("127.0.0.1"), 8) in netlink.ipv4_addresses(msgs, lo)
        with pytest.raises(OSError) as ei:  # strict checking: a missing index is an error
            await nl.dump(addr_query(0x7FFFFFF0), netlink.RTM_GETADDR, "dump")
        assert ei.value.errno == errno.ENODEV
        q = netlink.ifinfmsg()
        q["index"] = lo
        (got,) = await nl.request(q, netlink.RTM_GETLINK, 0, "get lo")
        assert got["index"] == lo and got.get_attr("IFLA_IFNAME") == "lo"
        q = netlink.ifinfmsg()
        q["index"] = lo
        with pytest.raises(OSError) as ei:  # the kernel's own words come through
            await nl.dump(q, netlink.RTM_GETLINK, "dump links")
        assert ei.value.errno == errno.EINVAL and "index" in str(ei.value)
    finally:
        nl.close()
