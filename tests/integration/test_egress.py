"""What a compromised frontend can put on the wire: DHCP client messages, nothing else.

The daemon runs bound in the lab; Python is injected into its running, sandboxed
frontend (``inject.py``: gdb, the sandbox untouched) and tries, as an attacker there
would, to emit an ARP frame, a UDP datagram to port 9999 and a DHCP *server* message
(from port 67) through every socket the frontend holds.  A sniffer on the server side
of the veth sees every frame meanwhile.  Each try is refused (ENXIO: the packet socket
is bound to no interface) or kills the frontend (SIGSYS: an address, ``sendmsg`` off the
parent channel, ``bind``), the daemon then exits 1, and none of the attack's frames
arrives.  A control frame sent from the client netns by the test itself shows that the
sniffer would have seen one.

The frontend also cannot grow its own reach: a MANAGE_IF it forges (no root client's
token behind it, or its own engine channel passed as one) ends the daemon and no socket
is opened on the other interface.
"""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.inject import inject, require_gdb
from tests.integration.lab import Lab
from tests.integration.test_daemon import daemon_log, wait_leased
from tests.integration.test_sandbox import kids_by_name

pytestmark = pytest.mark.integration

MARK = b"EGRESS-ATTACK"
FORGED_MAC = "02:de:ad:be:ef:01"

# Server side: every frame on the wire until the control frame, which the test sends
# after the attack, arrives (or 20 s pass); prints those carrying MARK or the control
# mark, or sent from the forged MAC.
SNIFFER = r"""
import json, socket, sys, time
dev, forged = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((dev, 0))
s.settimeout(1.0)
print("ready", flush=True)
seen, end = [], time.monotonic() + 20
while time.monotonic() < end:
    try:
        f = s.recv(4096)
    except TimeoutError:
        continue
    if b"EGRESS-" in f or forged in f:
        seen.append(f.hex())
    if b"EGRESS-CONTROL" in f:
        break
print(json.dumps(seen), flush=True)
"""

# Runs inside the frontend: only modules it has imported (gc and errno are built in).
SETUP = """
import errno, gc, os, socket, sys
from ipaddress import IPv4Address
packet = sys.modules["dhcpleased.packet"]
fe = next(o for o in gc.get_objects() if type(o).__name__ == "Frontend")
iface = next(iter(fe.ifaces.values()))
pkt, bcast, udp = iface.bpf, iface.bcast, iface.udp
MARK = {mark!r}
forged = bytes.fromhex({forged!r}.replace(":", ""))
server = IPv4Address({server!r})
ANY, BCAST = IPv4Address(0), IPv4Address("255.255.255.255")
arp = (b"\\xff" * 6 + forged + b"\\x08\\x06" + b"\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x01"
       + forged + server.packed + b"\\0" * 6 + server.packed + MARK)
to_9999 = packet.udp_frame(MARK, src_mac=iface.hw_address, dst_mac=b"\\xff" * 6,
                           ip_src=ANY, ip_dst=BCAST, sport=68, dport=9999)
from_67 = packet.udp_frame(b"\\x02\\x01\\x06\\x00" + b"\\0" * 232 + MARK, src_mac=forged,
                           dst_mac=b"\\xff" * 6, ip_src=server, ip_dst=BCAST, sport=67, dport=68)
"""

# The tries that are refused without a kill: no address, so nothing the kernel can send.
REFUSED = """
out = {}
for name, frame in (("arp", arp), ("udp9999", to_9999), ("server", from_67)):
    for how, call in (("send", lambda: pkt.send(frame)),
                      ("write", lambda: os.write(pkt.fileno(), frame))):
        try:
            call()
            out[name + "/" + how] = "sent"
        except OSError as e:
            out[name + "/" + how] = errno.errorcode[e.errno]
out["sockets"] = [pkt is not None, bcast is not None, udp is not None]
result = out
"""

# One try each, and the process must die of it (SIGSYS).
KILLING = {
    "arp-with-address": "pkt.sendto(arp, (iface.name, 0x0806))",
    "udp9999-broadcast-socket": "bcast.sendto(MARK, ('255.255.255.255', 9999))",
    "udp9999-renewal-socket": "udp.sendto(MARK, (str(server), 9999))",
    "server-message-sendmsg": "pkt.sendmsg([from_67], [], 0, (iface.name, 0x0800))",
    "server-port-bind": "bcast.bind(('0.0.0.0', 67))",
}


class Wire:
    """The sniffer on the server side of the lab's veth."""

    def __init__(self, lab: Lab) -> None:
        self.p = lab.spawn_in(
            lab.srv_ns,
            [sys.executable, "-c", SNIFFER, lab.srv_ifname, FORGED_MAC],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.p.stdout is not None
        assert self.p.stdout.readline().strip() == "ready"

    def seen(self) -> list[bytes]:
        """What it saw, once the control frame has come."""
        assert self.p.stdout is not None
        return [bytes.fromhex(f) for f in json.loads(self.p.stdout.readline())]


def control_frame(lab: Lab) -> None:
    """What the sniffer must see: a marked frame the test sends from the client netns."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)\n"
        "s.bind((sys.argv[1], 0))\n"
        "s.send(b'\\xff' * 12 + b'\\x88\\xb5' + b'EGRESS-CONTROL'.ljust(46, b'.'))\n"
    )
    r = lab.python_in(lab.cli_ns, code, lab.ifname)
    assert r.returncode == 0, r.stderr


def start(lab: Lab) -> tuple[subprocess.Popen[bytes], int]:
    require_gdb()
    daemon = lab.start_daemon("-d", "-v", lab.ifname)
    wait_leased(lab, daemon)
    # the renewal socket arrives with the lease: wait until the frontend holds it
    lab.wait_for(lambda: "frontend can send" in lab.ctl("-p").stdout, 10)
    return daemon, kids_by_name(lab, daemon.pid)["dhcp-frontend"]


def attack(lab: Lab, frontend: int, code: str, setup: str = SETUP) -> tuple[Any, list[bytes]]:
    wire = Wire(lab)
    setup = setup.format(mark=MARK, forged=FORGED_MAC, server=str(lab.server_ip))
    r = inject(frontend, setup + code)
    control_frame(lab)
    return r, wire.seen()


def only_control(frames: list[bytes]) -> None:
    assert len(frames) == 1 and b"EGRESS-CONTROL" in frames[0], frames
    assert not any(MARK in f for f in frames)


def test_frontend_can_send_no_frame_of_its_own(daemon_lab: Lab) -> None:
    """send()/write() on the packet socket: ENXIO for every frame, and the daemon, still
    bound, goes on; -p says what the frontend can send."""
    lab = daemon_lab
    daemon, frontend = start(lab)
    r, frames = attack(lab, frontend, REFUSED)
    assert r.alive and r.error is None, r.error
    only_control(frames)
    tries = ast.literal_eval(r.value or "")
    assert tries.pop("sockets") == [True, True, True]  # packet, broadcast, renewal
    assert set(tries.values()) == {"ENXIO"}, tries
    assert daemon.poll() is None, daemon_log(lab)
    # what -p says each process can send, as README's security model quotes it
    sends = [line for line in lab.ctl("-p").stdout.splitlines() if " can send: " in line]
    assert [line.split()[0] for line in sends] == ["main", "frontend", "engine"]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for line in sends:
        assert f"\n{line}\n" in readme, line
    assert (
        "frontend can send: 1 packet socket, receive only; UDP 68->255.255.255.255:67 on 1 "
        "interface; UDP 68->its server:67 on 1 interface; no destination of its own choosing"
    ) in sends


@pytest.mark.parametrize("name", sorted(KILLING))
def test_frontend_dies_trying_to_aim_a_socket(daemon_lab: Lab, name: str) -> None:
    lab = daemon_lab
    daemon, frontend = start(lab)
    r, frames = attack(lab, frontend, KILLING[name])
    assert r.killed == "SIGSYS", (r.error, r.output)
    only_control(frames)
    assert daemon.wait(15) == 1
    assert f"frontend terminated by signal {int(signal.SIGSYS)}" in daemon_log(lab)


FORGE = """
import sys
imsg = sys.modules["dhcpleased.imsg"]
ImsgType = imsg.ImsgType
fe = next(o for o in __import__("gc").get_objects() if type(o).__name__ == "Frontend")
index = {index}
{how}
"""
FORGERIES = {
    # as the old frontend did for every dhcpleasectl request: no token at all
    "no-token": "fe.main.compose(ImsgType.MANAGE_IF, imsg.IfIndex(index).pack())",
    # its engine channel: a socketpair the root parent made, so SO_PEERCRED says uid 0
    # (given away, not dup()ed: dup is no call of the frontend's)
    "engine-channel": (
        "fe.main.compose(ImsgType.MANAGE_IF, imsg.IfIndex(index).pack(), fd=fe.engine._fileno)"
    ),
    # the listening control socket: root's too
    "control-socket": (
        "fe.main.compose(ImsgType.MANAGE_IF, imsg.IfIndex(index).pack(), fd=fe.control._fileno)"
    ),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_frontend_cannot_make_the_parent_manage_an_interface(daemon_lab: Lab, name: str) -> None:
    """A second interface no one asked for: the forged MANAGE_IF ends the daemon, and no
    packet socket is ever opened there."""
    lab = daemon_lab
    lab.exec_in(lab.cli_ns, ["ip", "link", "add", "dx0", "type", "veth", "peer", "name", "dx1"])
    lab.exec_in(lab.cli_ns, ["ip", "link", "set", "dx0", "up"])
    index = int(lab.exec_in(lab.cli_ns, ["cat", "/sys/class/net/dx0/ifindex"]).stdout)
    daemon, frontend = start(lab)
    code = FORGE.format(index=index, how=FORGERIES[name])
    r = inject(frontend, code, on_loop=True)
    assert r.scheduled
    assert daemon.wait(15) == 1
    log = daemon_log(lab)
    verdict = {
        "no-token": "fatal in main: frontend sent no descriptor with IMSG_MANAGE_IF",
        "engine-channel": "request token made by the daemon itself",
        "control-socket": "request token is a listening socket",
    }[name]
    assert verdict in log, log
    assert "managing dx0" not in log
