"""What dhcpleasectl prints: the original's report, and JSON for scripts.

Pure functions of the engine's answer and the clocks passed in, so every rounding rule
is unit-tested without a daemon.

The text report is show_interface_msg() of dhcpleasectl.c (v1.13), line for line:

* ``IFNAME [State]``; the name is ``unknown`` when the index no longer maps to one.
* Only while an address is held (requested_ip is not 0.0.0.0): ``inet A netmask M``,
  then each route, as ``default gateway G`` (dst and mask 0) or ``route D/LEN gateway G``
  with LEN = 33 - ffs(mask) (the prefix length of a contiguous mask; 33 for a zero mask
  with a non-zero destination, as the original prints it), ``nameservers …`` (up to the
  first 0.0.0.0), then two lines the original does not have, ``mtu N`` (option 26 as
  taken: not with "ignore mtu" or below 576) and ``ntp servers …`` (option 42), then the
  lease left, then ``rapid commit`` when the lease came from a two-message exchange
  (RFC 4039; a line the original does not have either).
* Lease left: s = lease_time - whole seconds since the ACK, at least 0. Above a day it
  is shown in days (rounded up when more than half a day remains over), above an hour in
  hours (> 30 min), above a minute in minutes (> 30 s), else in seconds; the unit is
  plural only for N > 1, so ``lease 0 second`` and ``lease 1 hour``.
* With ``arp probe`` (RFC 5227; lines the original does not have): ``arp probe: …`` says
  what conflict detection does (probing an address, N of 3 probes sent; announcing or
  defending the address in use...), then, once there was one, ``arp conflicts: N, last
  ADDR claimed by MAC, T ago`` (T in the lease's units, rounded the same way).
* ``dhcp server S`` from the server identifier, else the unicast target, even without a
  lease (after an OFFER).

One deliberate difference: when neither server address is known the original prints its
scratch buffer, i.e. the last address it printed (a nameserver, a route's destination),
as the "dhcp server". That is a bug that lies to the reader; here the line is left out.

The JSON object (``-j``) carries the same facts with stable keys and ``"version": 1``;
keys are only ever added. Lease facts are ``null`` (lists empty) while no address is
held, exactly where the text report leaves its lines out.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any, Final

from dhcpleased.imsg import CtlEngineInfo, MonitorEvent, ProcInfo

JSON_VERSION: Final = 1
DAY: Final = 86400
HOUR: Final = 3600
MINUTE: Final = 60
ZERO: Final = IPv4Address(0)

# capability(7) numbers, for ``-p``
CAP_NAMES: Final = (
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
)
SECCOMP_MODES: Final = ("off", "strict", "filter")  # the kernel's modes, as -j shows them
CAP_NET_RAW: Final = 13
PROCESS_ORDER: Final = ("main", "frontend", "engine")


# --- the report ---------------------------------------------------------------------------
def lease_left(info: CtlEngineInfo, now: float) -> int:
    """Seconds of lease left at boot-clock ``now`` (the original's timespecsub + tv_sec)."""
    elapsed = math.floor(now - info.request_time)
    return max(0, info.lease_time - elapsed)


def _unit(n: int, unit: str) -> str:
    return f"{n} {unit}{'s' if n > 1 else ''}"


def format_lease(s: int) -> str:
    """``12 hours``, ``1 day``, ``0 second``: the original's units and rounding."""
    if s > DAY:
        d = s // DAY
        return _unit(d + 1 if s - d * DAY > DAY // 2 else d, "day")
    if s > HOUR:
        h = s // HOUR
        return _unit(h + 1 if s - h * HOUR > HOUR // 2 else h, "hour")
    if s > MINUTE:
        m = s // MINUTE
        return _unit(m + 1 if s - m * MINUTE > MINUTE // 2 else m, "minute")
    return _unit(s, "second")


def ffs(v: int) -> int:
    """C ffs(): 1-based index of the lowest set bit, 0 for 0."""
    return (v & -v).bit_length()


def route_len(mask: IPv4Address) -> int:
    """LEN in ``route D/LEN``: 33 - ffs(ntohl(mask)), as the original computes it."""
    return 33 - ffs(int(mask))


def server_of(info: CtlEngineInfo) -> IPv4Address | None:
    if info.server_identifier != ZERO:
        return info.server_identifier
    if info.dhcp_server != ZERO:
        return info.dhcp_server
    return None


def nameservers_of(info: CtlEngineInfo) -> list[IPv4Address]:
    """The list up to the first 0.0.0.0, as the original walks it."""
    out = []
    for ns in info.nameservers:
        if ns == ZERO:
            break
        out.append(ns)
    return out


def render_text(info: CtlEngineInfo, ifname: str | None, now: float) -> str:
    """show_interface_msg(): the report, newline-terminated lines."""
    lines = [f"{ifname or 'unknown'} [{info.state}]"]
    if info.requested_ip != ZERO:
        lines.append(f"\tinet {info.requested_ip} netmask {info.mask}")
        for r in info.routes:
            if r.dst == ZERO and r.mask == ZERO:
                lines.append(f"\tdefault gateway {r.gw}")
            else:
                lines.append(f"\troute {r.dst}/{route_len(r.mask)} gateway {r.gw}")
        nameservers = nameservers_of(info)
        if nameservers:
            lines.append("\tnameservers " + " ".join(map(str, nameservers)))
        if info.mtu:
            lines.append(f"\tmtu {info.mtu}")
        if info.ntp:
            lines.append("\tntp servers " + " ".join(map(str, info.ntp)))
        lines.append(f"\tlease {format_lease(lease_left(info, now))}")
        if info.rapid_commit:
            lines.append("\trapid commit")
    lines += arp_lines(info, now)
    server = server_of(info)
    if server is not None:
        lines.append(f"\tdhcp server {server}")
    return "\n".join(lines) + "\n"


_ARP_PHASES: Final = {
    "idle": "arp probe: idle",
    "probing": "arp probe: probing {a}, {n} of 3 probes sent",
    "clear": "arp probe: no one else has {a}",
    "conflict": "arp probe: {a} is in use by another host",
    "announcing": "arp probe: announcing {a}",
    "defending": "arp probe: defending {a}",
}


def _mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def conflict_age(info: CtlEngineInfo, now: float) -> int:
    """Whole seconds since the last conflict (boot clock), at least 0."""
    return max(0, math.floor(now - info.conflict_time))


def arp_lines(info: CtlEngineInfo, now: float) -> list[str]:
    """What address conflict detection is doing, and the conflicts it met."""
    lines = []
    if info.arp_probe:
        lines.append("\t" + _ARP_PHASES[info.arp_phase].format(
            a=info.arp_address, n=info.arp_probes_sent
        ))  # fmt: skip
    if info.arp_conflicts:
        lines.append(
            f"\tarp conflicts: {info.arp_conflicts}, last {info.conflict_address} claimed by "
            f"{_mac(info.conflict_mac)} {format_lease(conflict_age(info, now))} ago"
        )
    return lines


def _iso(wall: float, timespec: str = "seconds") -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec=timespec)


def _prefixlen(mask: IPv4Address) -> int:
    m = int(mask)
    return 33 - ffs(m) if m else 0


def render_json(info: CtlEngineInfo, ifname: str | None, now: float, wall: float) -> dict[str, Any]:
    """The report as one JSON-ready object; ``now`` CLOCK_BOOTTIME, ``wall`` the epoch."""
    held = info.requested_ip != ZERO
    server = server_of(info)
    left = lease_left(info, now) if held else None
    acked = held and info.request_time > 0 and info.lease_time > 0
    return {
        "version": JSON_VERSION,
        "ifname": ifname,
        "if_index": info.if_index,
        "state": info.state,
        "running": info.running,
        "link_state": info.link_state,
        "address": str(info.requested_ip) if held else None,
        "netmask": str(info.mask) if held else None,
        "prefixlen": _prefixlen(info.mask) if held else None,
        "routes": [
            {"dst": f"{r.dst}/{_prefixlen(r.mask)}", "gateway": str(r.gw)}
            for r in (info.routes if held else ())
        ],
        "nameservers": [str(ns) for ns in nameservers_of(info)] if held else [],
        "domain": (info.domain or None) if held else None,
        "search": list(info.search) if held else [],
        "mtu": (info.mtu or None) if held else None,
        "ntp": [str(a) for a in info.ntp] if held else [],
        "server": str(server) if server is not None else None,
        "lease_time": info.lease_time if held else None,
        "renewal_time": info.renewal_time if held else None,
        "rebinding_time": info.rebinding_time if held else None,
        "lease_expires_in": left,
        "rapid_commit": info.rapid_commit if held else None,
        "requested_at": _iso(wall - (now - info.request_time)) if acked else None,
        "arp": arp_json(info, now, wall),
    }


def arp_json(info: CtlEngineInfo, now: float, wall: float) -> dict[str, Any] | None:
    """``arp probe``'s state; null when it is off and never saw a conflict."""
    if not (info.arp_probe or info.arp_conflicts):
        return None
    watched = info.arp_address != ZERO
    last = None
    if info.arp_conflicts:
        last = {
            "address": str(info.conflict_address),
            "mac": _mac(info.conflict_mac),
            "seconds_ago": conflict_age(info, now),
            "at": _iso(wall - (now - info.conflict_time)),
        }
    return {
        "probe": info.arp_probe,
        "phase": info.arp_phase,
        "address": str(info.arp_address) if watched else None,
        "probes_sent": info.arp_probes_sent if info.arp_phase == "probing" else None,
        "conflicts": info.arp_conflicts,
        "last_conflict": last,
    }


# --- dhcpleasectl -m ----------------------------------------------------------------------
def render_event(ev: MonitorEvent) -> dict[str, Any]:
    """One state change as one JSON line's object."""
    return {
        "version": JSON_VERSION,
        "time": _iso(ev.time, "milliseconds"),
        "interface": ev.if_name,
        "if_index": ev.if_index,
        "old_state": ev.old_state,
        "new_state": ev.new_state,
        "address": str(ev.address) if ev.address != ZERO else None,
        "reason": ev.reason,
    }


# --- dhcpleasectl -p ----------------------------------------------------------------------
def cap_names(mask: int) -> list[str]:
    return [
        f"cap_{CAP_NAMES[bit]}" if bit < len(CAP_NAMES) else f"cap_{bit}"
        for bit in range(64)
        if mask >> bit & 1
    ]


def seccomp_name(mode: int) -> str:
    return SECCOMP_MODES[mode] if 0 <= mode < len(SECCOMP_MODES) else str(mode)


def seccomp_text(p: ProcInfo) -> str:
    """``none``, ``strict`` or ``filter (N calls)``: the kernel's mode, the policy's size."""
    if p.seccomp == 0:
        return "none"
    name = seccomp_name(p.seccomp)
    return f"{name} ({p.seccomp_calls} calls)" if p.seccomp == 2 and p.seccomp_calls else name


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def can_send(p: ProcInfo) -> str:
    """What the process can put on the network, from the facts it reported of itself."""
    if p.opens_sockets:
        raw = "with" if p.cap_eff >> CAP_NET_RAW & 1 else "without"
        return f"anything: it may open sockets, {raw} cap_net_raw"
    held = [
        text
        for count, text in (
            (p.packet_tx, _n(p.packet_tx, "packet socket") + " that can send any frame"),
            (p.packet_rx_only, _n(p.packet_rx_only, "packet socket") + ", receive only"),
            (p.arp_rx_only, _n(p.arp_rx_only, "ARP packet socket") + ", receive only"),
            (p.udp_broadcast, "UDP 68->255.255.255.255:67 on " + _n(p.udp_broadcast, "interface")),
            (p.udp_unicast, "UDP 68->its server:67 on " + _n(p.udp_unicast, "interface")),
        )
        if count
    ]
    if not held:
        return "nothing but its channels to the other processes (no network socket)"
    if not p.names_dest:
        held.append("no destination of its own choosing")
    return "; ".join(held)


def landlock_name(abi: int) -> str:
    if abi > 0:
        return f"ABI {abi}"
    return "off" if abi == 0 else "unsupported"


def sort_procs(procs: list[ProcInfo]) -> list[ProcInfo]:
    def key(p: ProcInfo) -> int:
        return PROCESS_ORDER.index(p.name) if p.name in PROCESS_ORDER else len(PROCESS_ORDER)

    return sorted(procs, key=key)


def render_procs_text(procs: list[ProcInfo]) -> str:
    rows = [("process", "pid", "uid", "gid", "no_new_privs", "seccomp", "landlock", "capabilities")]
    for p in sort_procs(procs):
        caps = ",".join(cap_names(p.cap_eff)) or "none"
        rows.append(
            (
                p.name,
                str(p.pid),
                str(p.uid),
                str(p.gid),
                "yes" if p.no_new_privs else "no",
                seccomp_text(p),
                landlock_name(p.landlock_abi),
                caps,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    table = "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True))
        + "  "
        + r[-1]
        + "\n"
        for r in rows
    )
    return (
        table
        + "".join(f"{p.name} can send: {can_send(p)}\n" for p in sort_procs(procs))
        + "".join(
            f"packet sockets: {p.frames_read} frames read, {p.frames_dropped} dropped by the "
            f"kernel while the engine was busy (reading paused {p.read_pauses} times)\n"
            for p in procs
            if p.name == "frontend"
        )
    )


def render_procs_json(procs: list[ProcInfo]) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "processes": [
            {
                "name": p.name,
                "pid": p.pid,
                "uid": p.uid,
                "gid": p.gid,
                "cap_eff": f"{p.cap_eff:#018x}",
                "capabilities": cap_names(p.cap_eff),
                "no_new_privs": p.no_new_privs,
                "seccomp": seccomp_name(p.seccomp),
                "seccomp_calls": p.seccomp_calls,
                "landlock_abi": p.landlock_abi,
                "landlock_status": p.landlock_status,
                "frames_read": p.frames_read,
                "frames_dropped": p.frames_dropped,
                "read_pauses": p.read_pauses,
                "opens_sockets": p.opens_sockets,
                "names_destination": p.names_dest,
                "packet_sockets": {
                    "receive_only": p.packet_rx_only,
                    "can_send": p.packet_tx,
                    "arp_receive_only": p.arp_rx_only,
                },
                "udp_sockets": {"broadcast": p.udp_broadcast, "unicast": p.udp_unicast},
                "can_send": can_send(p),
            }
            for p in sort_procs(procs)
        ],
    }
