"""Timestamp the kernel's link and address events in the current network namespace.

Run inside the namespace under test (``ip netns exec NS python -I -S addrwatch.py ...``)
*before* the client starts, so that no event can be missed.  It prints ``ready`` once
its rtnetlink socket is bound, then one line per event of interest, each stamped with
``time.monotonic_ns()`` as it is read (CLOCK_MONOTONIC is machine-wide, so the launcher
can subtract its own stamp of the exec):

    addr <ns> <ifindex> <ifname> <address>/<prefixlen>   first RTM_NEWADDR (IPv4) per interface
    up <ns> <ifindex> <ifname>                            first RTM_NEWLINK with IFF_LOWER_UP

``addrwatch.py [-d] COUNT TIMEOUT [IFNAME...]`` exits after COUNT interfaces got an address
(or TIMEOUT seconds, printing ``timeout``).  Only IFNAMEs are watched when given.  ``up``
lines are printed only for interfaces seen down first (a carrier that comes back); ``-d``
says that the watched interfaces are down now (the launcher just took their carrier).
Stdlib only, no imports beyond the interpreter's core, so it starts in a few ms.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWLINK, RTM_NEWADDR = 16, 20
IFF_LOWER_UP = 0x10000
IFLA_IFNAME, IFA_LOCAL, IFA_ADDRESS = 3, 2, 1


def attrs(data: bytes, off: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= len(data):
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4:
            break
        out.setdefault(atype & 0x3FFF, data[off + 4 : off + alen])
        off += (alen + 3) & ~3
    return out


def main() -> int:
    args = sys.argv[1:]
    assume_down = args[:1] == ["-d"]
    if assume_down:
        args = args[1:]
    count, timeout = int(args[0]), float(args[1])
    names = set(args[2:])
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
    ifnames: dict[int, str] = {}
    down: set[int] = {socket.if_nametoindex(n) for n in names} if assume_down else set()
    upped: set[int] = set()
    got: set[int] = set()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            out.write("timeout\n")
            out.flush()
            return 1
        data = s.recv(1 << 20)
        now = time.monotonic_ns()
        off = 0
        while off + 16 <= len(data):
            mlen, mtype = struct.unpack_from("=IH", data, off)
            if mlen < 16:
                break
            body = data[off + 16 : off + mlen]
            off += (mlen + 3) & ~3
            if mtype == RTM_NEWLINK and len(body) >= 16:
                _, _, _, index, flags, _ = struct.unpack_from("=BBHiII", body)
                name = attrs(body, 16).get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
                ifnames[index] = name
                if names and name not in names:
                    continue
                if not flags & IFF_LOWER_UP:
                    down.add(index)
                elif index in down and index not in upped:
                    upped.add(index)
                    out.write(f"up {now} {index} {name}\n")
                    out.flush()
            elif mtype == RTM_NEWADDR and len(body) >= 8:
                family, plen, _, _, index = struct.unpack_from("=BBBBi", body)
                if family != socket.AF_INET or index in got:
                    continue
                name = ifnames.get(index) or socket.if_indextoname(index)
                if names and name not in names:
                    continue
                a = attrs(body, 8)
                raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS) or b"\0\0\0\0"
                got.add(index)
                out.write(f"addr {now} {index} {name} {socket.inet_ntoa(raw)}/{plen}\n")
                out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
