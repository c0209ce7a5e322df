"""With ``arp probe`` the frontend holds one more packet socket, for ARP about its address:
it still cannot put an ARP frame of its own on the wire, nor make the parent send one.

As ``test_egress.py`` does for the DHCP side: the daemon runs bound in the lab with
``arp probe`` (so its frontend holds the ARP socket the parent opened), Python is
injected into the sandboxed frontend, and it tries what an attacker there would: an ARP
reply that claims the server's address for a forged MAC (cache poisoning), through the
ARP socket and every other, and asking the parent for a probe or an announcement over
its channel.  The sniffer on the server side sees none of it; each try is refused
(ENXIO), kills the frontend (SIGSYS), or ends the daemon (the parent takes ARP requests
from the engine only).
"""

from __future__ import annotations

import ast

import pytest

from tests.integration.inject import inject
from tests.integration.lab import Lab
from tests.integration.test_arp_lab import conf
from tests.integration.test_daemon import daemon_log
from tests.integration.test_egress import SETUP, Wire, attack, control_frame, only_control, start

pytestmark = pytest.mark.integration

ARP_SETUP = (
    SETUP
    + """
arpsock = iface.arp
poison = (b"\\xff" * 6 + forged + b"\\x08\\x06" + b"\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x02"
          + forged + server.packed + b"\\xff" * 6 + server.packed + MARK)
"""
)

REFUSED = """
out = {"held": arpsock is not None}
for name, sock in (("arp", arpsock), ("dhcp", pkt)):
    for how, call in (("send", lambda: sock.send(poison)),
                      ("write", lambda: os.write(sock.fileno(), poison))):
        try:
            call()
            out[name + "/" + how] = "sent"
        except OSError as e:
            out[name + "/" + how] = errno.errorcode[e.errno]
result = out
"""

KILLING = {
    "arp-socket-sendto": "arpsock.sendto(poison, (iface.name, 0x0806))",
    "arp-socket-sendmsg": "arpsock.sendmsg([poison], [], 0, (iface.name, 0x0806))",
}

# Over its channel to the parent: what only the engine may ask for.
FORGE = """
import sys
imsg = sys.modules["dhcpleased.imsg"]
fe = next(o for o in __import__("gc").get_objects() if type(o).__name__ == "Frontend")
iface = next(iter(fe.ifaces.values()))
server = sys.modules["ipaddress"].IPv4Address({server!r})
fe.main.compose(imsg.ImsgType.{mtype}, imsg.ArpReq(iface.if_index, server).pack())
"""


def start_arp(lab: Lab) -> int:
    conf(lab)
    _daemon, frontend = start(lab)
    lab.wait_for(lambda: "1 ARP packet socket, receive only" in lab.ctl("-p").stdout, 20)
    return frontend


def test_the_arp_socket_cannot_send_and_p_says_so(daemon_lab: Lab) -> None:
    lab = daemon_lab
    frontend = start_arp(lab)
    r, frames = attack(lab, frontend, REFUSED, ARP_SETUP)
    assert r.alive and r.error is None, r.error
    only_control(frames)
    tries = ast.literal_eval(r.value or "")
    assert tries.pop("held") is True
    assert set(tries.values()) == {"ENXIO"}, tries
    sends = [line for line in lab.ctl("-p").stdout.splitlines() if " can send: " in line]
    assert (
        "frontend can send: 1 packet socket, receive only; 1 ARP packet socket, receive only; "
        "UDP 68->255.255.255.255:67 on 1 interface; UDP 68->its server:67 on 1 interface; "
        "no destination of its own choosing"
    ) in sends


@pytest.mark.parametrize("name", sorted(KILLING))
def test_the_frontend_dies_trying_to_aim_the_arp_socket(daemon_lab: Lab, name: str) -> None:
    lab = daemon_lab
    frontend = start_arp(lab)
    r, frames = attack(lab, frontend, KILLING[name], ARP_SETUP)
    assert r.killed == "SIGSYS", (r.error, r.output)
    only_control(frames)


@pytest.mark.parametrize("mtype", ["ARP_ANNOUNCE", "ARP_PROBE", "ARP_WATCH"])
def test_the_frontend_cannot_make_the_parent_send_arp(daemon_lab: Lab, mtype: str) -> None:
    """Announcing the server's address would poison every neighbour's cache: the parent
    takes ARP requests from the engine alone, and ends the daemon instead."""
    lab = daemon_lab
    frontend = start_arp(lab)
    wire = Wire(lab)
    r = inject(frontend, FORGE.format(server=str(lab.server_ip), mtype=mtype), on_loop=True)
    assert r.scheduled
    lab.wait_for(lambda: f"frontend sent IMSG_{mtype}, which it may not send" in daemon_log(lab))
    control_frame(lab)
    frames = wire.seen()
    only_control(frames)
