"""A scripted, scapy-built DHCP server for the fault tests (runs in the lab's server netns).

dnsmasq is a correct server with a 120 s minimum lease; the fault tests need one that
hands out 6 s leases, option 108, NAKs on demand, falls silent, and lies.  Three commands:

``serve``  answer DISCOVER/REQUEST on an AF_PACKET socket as the control file (JSON) says;
           the file is re-read whenever it changes (write it atomically, see
           :func:`write_control`), which also resets the ``nak_requests`` counter.  Every
           received client message is appended to the ``--log`` file as one JSON line.
           With ``--sniff`` it only logs (a sniffer beside dnsmasq).
``flood``  send N forged replies (offer/ack/nak) with random xids to one MAC, then exit.
``garbage`` send the catalogue of malformed replies (:func:`malformed`) for one xid, then exit.

Control keys (all optional): ``mode`` ("serve" or "silent"), ``address``, ``mask``,
``lease``, ``t1``, ``t2`` (None leaves the option out), ``routers``, ``dns``,
``v6only`` (option 108), ``extra`` ([[code, hex], ...] appended as raw options),
``nak_requests`` (NAK that many REQUESTs), ``garbage_first`` (send the malformed
catalogue with the client's own xid before every real answer), ``broken_naks`` (before
every answer to a REQUEST, NAKs with the client's xid that each break one header check,
:data:`BROKEN_NAKS`: a client that took one would start over with a DISCOVER).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.integration.lab import IP as IP_TOOL
from tests.integration.lab import REPO, _udp_port_open

if TYPE_CHECKING:
    from tests.integration.lab import Lab

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
BROADCAST = "ff:ff:ff:ff:ff:ff"
# the address a malformed reply offers: if a client ever configures it, a check failed
EVIL_LAST_OCTET = 66


class HostileServer:
    """Test-side handle: start ``serve`` in the lab's server netns, steer it, read its log."""

    def __init__(self, lab: Lab, name: str = "hostile", *, sniff: bool = False, **conf: Any):
        """``sniff``: only log what clients send (next to another server, dnsmasq): no
        answer, no UDP socket on :67 that could take that server's unicast renewals."""
        self.lab = lab
        self.control = lab.tmp / f"{name}.json"
        self.log = lab.tmp / f"{name}.log"
        self.address = str(lab.subnet.network_address + 50)
        self.conf: dict[str, Any] = {
            "mode": "serve",
            "address": self.address,
            "lease": 3600,
            "routers": [str(lab.server_ip)],
            "dns": list(lab.dns),
        }
        self.conf.update(conf)
        if sniff:
            self.conf["mode"] = "silent"
        write_control(self.control, **self.conf)
        argv = [
            sys.executable, "-m", "tests.integration.hostile", "serve",
            "--iface", lab.srv_ifname, "--server-ip", str(lab.server_ip),
            "--control", str(self.control), "--log", str(self.log),
        ] + (["--sniff"] if sniff else [])  # fmt: skip
        err = open(lab.tmp / f"{name}.stderr", "ab")  # noqa: SIM115 - child's stderr
        self.proc = lab.spawn_in(lab.srv_ns, argv, stdout=err, stderr=err, cwd=str(REPO))
        err.close()

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError((lab.tmp / f"{name}.stderr").read_text())
            # the log is opened once the packet socket is bound
            return self.log.exists() if sniff else _udp_port_open(self.proc.pid, 67)

        lab.wait_for(ready, 30, what="hostile server listening")

    def set(self, **changes: Any) -> None:
        """Change the behaviour (also resets the NAK counter)."""
        self.conf.update(changes)
        write_control(self.control, **self.conf)

    def messages(self, mtype: str | None = None) -> list[dict[str, Any]]:
        return [m for m in read_log(self.log) if mtype is None or m["type"] == mtype]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def tool(self, cmd: str, *args: str, timeout: float = 120.0) -> str:
        """Run ``flood``/``garbage`` against the client to completion; its stdout."""
        lab = self.lab
        argv = [
            sys.executable, "-m", "tests.integration.hostile", cmd,
            "--iface", lab.srv_ifname, "--server-ip", str(lab.server_ip),
            "--dst-mac", lab.mac(), *args,
        ]  # fmt: skip
        done = subprocess.run(
            [IP_TOOL, "netns", "exec", lab.srv_ns, *argv], capture_output=True, text=True,
            timeout=timeout, env=lab.client_env(), cwd=str(REPO), check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"hostile {cmd} failed: {done.stderr}")
        return done.stdout


def write_control(path: Path, **conf: Any) -> None:
    """Replace the control file atomically (the server must never read half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(conf))
    os.replace(tmp, path)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The client messages the server saw, oldest first."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fix_udp_checksum(frame: bytearray) -> None:
    """Recompute the UDP checksum of an Ethernet/IPv4(ihl 5)/UDP frame in place."""
    ulen = struct.unpack_from("!H", frame, 38)[0]
    frame[40:42] = b"\0\0"
    pseudo = bytes(frame[26:34]) + struct.pack("!BBH", 0, 17, ulen)
    c = checksum(pseudo + bytes(frame[34 : 34 + ulen])) or 0xFFFF
    struct.pack_into("!H", frame, 40, c)


def reply(
    *,
    kind: str,
    xid: int,
    chaddr: bytes,
    server_mac: str,
    server_ip: str,
    address: str,
    conf: dict[str, Any],
    dst_ip: str | None = None,
) -> bytes:
    """One OFFER/ACK/NAK as the control settings describe it."""
    opts: list[Any] = [("message-type", kind), ("server_id", server_ip)]
    yiaddr = "0.0.0.0"
    if kind != "nak":
        yiaddr = address
        for key, name in (
            ("lease", "lease_time"),
            ("t1", "renewal_time"),
            ("t2", "rebinding_time"),
        ):
            if conf.get(key) is not None:
                opts.append((name, int(conf[key])))
        if conf.get("mask", "255.255.255.0") is not None:
            opts.append(("subnet_mask", conf.get("mask", "255.255.255.0")))
        if conf.get("routers"):
            opts.append(("router", *conf["routers"]))
        if conf.get("dns"):
            opts.append(("name_server", *conf["dns"]))
    raw = b""
    if kind != "nak":
        if conf.get("v6only") is not None:
            raw += bytes([108, 4]) + struct.pack("!I", int(conf["v6only"]))
        for code, value in conf.get("extra", []):
            raw += bytes.fromhex(value) if code is None else _opt(code, bytes.fromhex(value))
    pkt = (
        Ether(src=server_mac, dst=BROADCAST if kind == "nak" else chaddr[:6])
        / IP(src=server_ip, dst=dst_ip or ("255.255.255.255" if kind == "nak" else yiaddr))
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, xid=xid, yiaddr=yiaddr, siaddr=server_ip, chaddr=chaddr.ljust(16, b"\0"))
        / DHCP(options=opts)
        / Raw(raw + b"\xff")
    )
    return bytes(pkt)


def _opt(code: int, value: bytes) -> bytes:
    """Long values are split into several instances (RFC 3396), as servers do."""
    out = b""
    for i in range(0, max(len(value), 1), 255):
        chunk = value[i : i + 255]
        out += bytes([code, len(chunk)]) + chunk
    return out


def malformed(good: bytes, *, evil_ip: str) -> Iterator[tuple[str, bytes]]:
    """Broken variants of a good reply; every one of them must be dropped.

    ``good`` is a whole Ethernet frame with a 20-byte IP header; its yiaddr is replaced by
    ``evil_ip`` first, so a variant that slipped through would show up on the interface.
    """
    base = bytearray(good)
    base[14 + 28 + 16 : 14 + 28 + 20] = socket.inet_aton(evil_ip)
    fix_udp_checksum(base)
    opts = 14 + 28 + 236 + 4

    def variant(edit: Any) -> bytes:
        f = bytearray(base)
        edit(f)
        return bytes(f)

    def keep_csum(edit: Any) -> bytes:
        f = bytearray(base)
        edit(f)
        fix_udp_checksum(f)
        return bytes(f)

    def options(raw: bytes) -> bytes:
        return _fixed(bytes(base[:opts]) + raw)

    def bad_udp_sum(f: bytearray) -> None:
        c = struct.unpack_from("!H", f, 40)[0] ^ 0x0101
        struct.pack_into("!H", f, 40, c or 0x1234)

    good_opts = bytes(base[opts:])
    yield "wrong xid", keep_csum(lambda f: f.__setitem__(slice(46, 50), b"\xde\xad\xbe\xef"))
    yield "wrong cookie", keep_csum(lambda f: f.__setitem__(slice(opts - 4, opts), b"c\x82Sd"))
    yield "bad IP checksum", variant(lambda f: f.__setitem__(24, f[24] ^ 0xFF))
    yield "bad UDP checksum", variant(bad_udp_sum)
    yield "not a BOOTREPLY", keep_csum(lambda f: f.__setitem__(42, 1))
    # an option whose length runs past the end of the packet, one without a length byte
    yield "option overruns packet", options(good_opts[:-1] + b"\x01\xf0\xff\xff")
    yield "option without length", options(good_opts[:-1] + b"\x01")
    yield "message type length 2", options(b"\x35\x02\x02\x00" + good_opts[3:])
    yield "server id length 3", options(b"\x36\x03\x01\x02\x03" + good_opts)
    yield "DNS length 5", options(good_opts[:-1] + b"\x06\x05" + b"\x01" * 5 + b"\xff")
    # the IP total length and UDP length claim more (or less) than the frame holds
    yield "lying IP length", variant(lambda f: _set_ip_len(f, len(f) - 14 + 40))
    yield (
        "lying UDP length",
        variant(lambda f: f.__setitem__(slice(38, 40), struct.pack("!H", len(f) - 26))),
    )
    yield "short UDP length", variant(lambda f: f.__setitem__(slice(38, 40), b"\x00\x04"))
    yield "IP header length 3", variant(lambda f: _set_ihl(f, 3))
    yield "IP fragment", variant(lambda f: _set_frag(f, 0x2000))
    yield "truncated BOOTP", _fixed(bytes(base[: 14 + 28 + 100]))
    yield "truncated Ethernet", bytes(base[:10])
    # option 121 nonsense: a prefix longer than 32, a destination cut short
    yield (
        "option 121 prefix 33",
        options(good_opts[:-1] + _opt(121, b"\x21" + b"\x0a" * 8) + b"\xff"),
    )
    # (a broken 119, 26 or 42 costs only that option, as in the original: not here, see
    # tests/unit/test_packet_options.py and test_engine_lab.py)
    yield "option 121 truncated", options(good_opts[:-1] + _opt(121, b"\x18\x0a\x00") + b"\xff")


# The malformed() variants whose flaw is in the headers (not an option): on a NAK, each is
# a NAK the client would act on but for that one flaw.
BROKEN_NAKS = (
    "wrong xid", "wrong cookie", "bad IP checksum", "bad UDP checksum", "not a BOOTREPLY",
    "lying IP length", "lying UDP length", "short UDP length", "IP header length 3",
    "IP fragment", "truncated BOOTP", "truncated Ethernet",
)  # fmt: skip


def _fixed(frame: bytes) -> bytes:
    f = bytearray(frame)
    _set_ip_len(f, len(f) - 14)
    struct.pack_into("!H", f, 38, len(f) - 34)
    fix_udp_checksum(f)
    return bytes(f)


def _set_ip_len(f: bytearray, n: int) -> None:
    struct.pack_into("!H", f, 16, n)
    f[24:26] = b"\0\0"
    struct.pack_into("!H", f, 24, checksum(bytes(f[14:34])))


def _set_ihl(f: bytearray, ihl: int) -> None:
    f[14] = 0x40 | ihl
    f[24:26] = b"\0\0"
    struct.pack_into("!H", f, 24, checksum(bytes(f[14:34])))


def _set_frag(f: bytearray, frag: int) -> None:
    struct.pack_into("!H", f, 20, frag)
    f[24:26] = b"\0\0"
    struct.pack_into("!H", f, 24, checksum(bytes(f[14:34])))


def packet_socket(iface: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((iface, ETH_P_IP))
    return s


class Server:
    """The ``serve`` command: one client, one address, behaviour from the control file."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.sock = packet_socket(args.iface)
        self.mac = Path(f"/sys/class/net/{args.iface}/address").read_text().strip()
        self.server_ip = args.server_ip
        self.control = Path(args.control)
        self.log = open(args.log, "a", buffering=1)  # noqa: SIM115 - lives as long as we do
        self.stamp: tuple[int, int] | None = None
        self.conf: dict[str, Any] = {}
        self.naks_left = 0
        # bound to :67 so that unicast renewals do not draw ICMP port unreachables
        self.udp: socket.socket | None = None
        if not args.sniff:
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.udp.bind(("0.0.0.0", 67))

    def reload(self) -> None:
        try:
            st = self.control.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self.stamp:
            self.stamp = stamp
            self.conf = json.loads(self.control.read_text())
            self.naks_left = int(self.conf.get("nak_requests", 0))

    def run(self) -> None:
        while True:
            ready, _, _ = select.select([s for s in (self.sock, self.udp) if s], [], [])
            if self.udp is not None and self.udp in ready:
                self.udp.recv(2048)
            if self.sock in ready:
                try:
                    data, addr = self.sock.recvfrom(4096)
                except OSError:  # ENETDOWN once after our link went down: keep serving
                    continue
                if addr[2] != PACKET_OUTGOING:
                    self.handle(data)

    def handle(self, data: bytes) -> None:
        pkt = Ether(data)
        if not pkt.haslayer(DHCP) or pkt[UDP].dport != 67:
            return
        self.reload()
        opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
        mtype = {1: "discover", 3: "request"}.get(opts.get("message-type", (0,))[0], "other")
        bootp = pkt[BOOTP]
        record = {
            "t": time.monotonic(),
            "type": mtype,
            "xid": bootp.xid,
            "ciaddr": bootp.ciaddr,
            "src_ip": pkt[IP].src,
            "dst_ip": pkt[IP].dst,
            "dst_mac": pkt.dst,
            "requested": _first(opts.get("requested_addr")),
            "server_id": _first(opts.get("server_id")),
            "client_id": _hex(opts.get("client_id")),
            "host_name": _hex(opts.get("hostname")),
            "vendor_class": _hex(opts.get("vendor_class_id")),
            "params": list(_first(opts.get("param_req_list")) or []),
        }
        answer = self.answer(mtype, bootp)
        record["answer"] = answer
        self.log.write(json.dumps(record) + "\n")

    def answer(self, mtype: str, bootp: Any) -> str | None:
        conf = self.conf
        if conf.get("mode", "serve") != "serve" or mtype not in ("discover", "request"):
            return None
        kind = "offer" if mtype == "discover" else "ack"
        if kind == "ack" and self.naks_left > 0:
            self.naks_left -= 1
            kind = "nak"
        chaddr = bytes(bootp.chaddr)[:6]
        frame = reply(
            kind=kind,
            xid=bootp.xid,
            chaddr=chaddr,
            server_mac=self.mac,
            server_ip=self.server_ip,
            address=conf["address"],
            conf=conf,
        )
        if conf.get("garbage_first"):
            evil = conf["address"].rsplit(".", 1)[0] + f".{EVIL_LAST_OCTET}"
            good = reply(
                kind="offer" if kind == "nak" else kind, xid=bootp.xid, chaddr=chaddr,
                server_mac=self.mac, server_ip=self.server_ip, address=conf["address"], conf=conf,
            )  # fmt: skip
            for _name, bad in malformed(good, evil_ip=evil):
                _send(self.sock, bad)
        if conf.get("broken_naks") and kind != "offer":
            nak = reply(
                kind="nak", xid=bootp.xid, chaddr=chaddr, server_mac=self.mac,
                server_ip=self.server_ip, address=conf["address"], conf=conf,
            )  # fmt: skip
            for name, bad in malformed(nak, evil_ip="0.0.0.0"):
                if name in BROKEN_NAKS:
                    _send(self.sock, bad)
        _send(self.sock, frame)
        return kind


def _send(sock: socket.socket, frame: bytes) -> None:
    try:
        sock.send(frame)
    except OSError:  # link down (carrier tests): the client is not listening anyway
        pass


def _first(value: Any) -> Any:
    return value[0] if value else None


def _hex(value: Any) -> str | None:
    v = _first(value)
    return bytes(v).hex() if isinstance(v, bytes | bytearray) else None


def flood(args: argparse.Namespace) -> None:
    """N forged replies with random xids (never ``--avoid-xid``), paced in small bursts."""
    sock = packet_socket(args.iface)
    mac = Path(f"/sys/class/net/{args.iface}/address").read_text().strip()
    chaddr = bytes.fromhex(args.dst_mac.replace(":", ""))
    kinds = args.kinds.split(",")
    conf = {"lease": 3600, "routers": [args.server_ip], "dns": ["198.18.0.66"]}
    templates = [
        bytearray(
            reply(
                kind=k,
                xid=0,
                chaddr=chaddr,
                server_mac=mac,
                server_ip=args.server_ip,
                address=args.address,
                conf=conf,
            )
        )
        for k in kinds
    ]
    rng = random.Random(args.seed)
    avoid = {int(x, 0) for x in args.avoid_xid}
    for i in range(args.count):
        f = templates[i % len(templates)]
        xid = rng.getrandbits(32)
        while xid in avoid:
            xid = rng.getrandbits(32)
        struct.pack_into("!I", f, 46, xid)
        fix_udp_checksum(f)
        _send(sock, bytes(f))
        if i % args.burst == args.burst - 1:
            time.sleep(args.pause)
    print(args.count)


def garbage(args: argparse.Namespace) -> None:
    sock = packet_socket(args.iface)
    mac = Path(f"/sys/class/net/{args.iface}/address").read_text().strip()
    chaddr = bytes.fromhex(args.dst_mac.replace(":", ""))
    conf = {"lease": 3600, "routers": [args.server_ip], "dns": ["198.18.0.66"]}
    names = []
    for kind in ("offer", "ack", "nak"):
        good = reply(kind=kind, xid=int(args.xid, 0), chaddr=chaddr, server_mac=mac,
                     server_ip=args.server_ip, address=args.address, conf=conf)  # fmt: skip
        for _ in range(args.repeat):
            for name, frame in malformed(good, evil_ip=args.address):
                _send(sock, frame)
                names.append(name)
            if args.with_good:  # well-formed, but not what the client's state accepts
                _send(sock, good)
                names.append(f"good {kind}")
    print(json.dumps(sorted(set(names))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hostile")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--iface", required=True)
    s.add_argument("--server-ip", required=True)
    s.add_argument("--control", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--sniff", action="store_true", help="log only: no answers, no UDP :67")
    for name in ("flood", "garbage"):
        f = sub.add_parser(name)
        f.add_argument("--iface", required=True)
        f.add_argument("--server-ip", required=True)
        f.add_argument("--dst-mac", required=True)
        f.add_argument("--address", required=True)
    fl = sub.choices["flood"]
    fl.add_argument("--count", type=int, default=10_000)
    fl.add_argument("--kinds", default="offer,ack,nak")
    fl.add_argument("--avoid-xid", action="append", default=[])
    fl.add_argument("--burst", type=int, default=100)
    fl.add_argument("--pause", type=float, default=0.01)
    fl.add_argument("--seed", type=int, default=1)
    g = sub.choices["garbage"]
    g.add_argument("--xid", default="0")
    g.add_argument("--repeat", type=int, default=1)
    g.add_argument("--with-good", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "serve":
        Server(args).run()
    elif args.cmd == "flood":
        flood(args)
    else:
        garbage(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
