"""What a process can tell about its own identity and sandbox (``dhcpleasectl -p``).

Each process reads this of itself, so that a user can check at run time that the sandbox
is really on, instead of trusting the code that was meant to put it up. The facts come
from ``/proc/self/status``, opened once *before* the sandbox (afterwards Landlock hides
``/proc``) and re-read through that descriptor on every query with ``lseek`` + ``read``:
both are already in the children's seccomp allowlist, unlike ``pread64``.

Landlock has no ``/proc`` field: its state comes from what :mod:`dhcpleased.sandbox`
recorded in ``sandbox.STATUS`` (``landlock_abi``, ``landlock_applied``), read with
``getattr`` so that this module works whatever shape that record takes.

What a process can send: the kernel's Seccomp mode says whether a filter is in force;
what that filter admits (how many calls, whether ``socket`` is one, whether a send can
name a destination address) is read from the policy the process installed,
``seccomp.POLICIES[role]``, so it holds for the parent too once it has one.  The sockets
the frontend holds are counted by the frontend, and a packet socket counts as receive
only when the kernel says it is bound to no interface (``bpf.receive_only``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from dhcpleased import imsg, sandbox, seccomp

STATUS_PATH = "/proc/self/status"
_STATUS_MAX = 16384  # /proc/self/status is about 1.5 kB
_ALL_CAPS = 0xFFFFFFFFFFFFFFFF
# ProcInfo.landlock_status
LANDLOCK_UNKNOWN = -1  # the sandbox module records nothing
LANDLOCK_OFF = 0  # not applied (the kernel has no Landlock, or it was not asked for)
LANDLOCK_ENFORCED = 1  # a ruleset restricts this process
SECCOMP_FILTER = 2  # /proc/PID/status Seccomp: 0 off, 1 strict, 2 filter

_fd: int | None = None
_fd_pid = 0


def open_status() -> int:
    """The descriptor of this process's ``/proc/self/status``; -1 if it cannot be opened.

    Opened once per process (a fork, as ``daemonize`` does, opens it again: the old one
    would describe the parent that exited). Call it before the sandbox goes up.
    """
    global _fd, _fd_pid
    if _fd is not None and _fd_pid == os.getpid():
        return _fd
    try:
        _fd = os.open(STATUS_PATH, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        _fd = -1
    _fd_pid = os.getpid()
    return _fd


def parse_status(text: str) -> dict[str, str]:
    """``Key:\\tvalue`` lines of /proc/PID/status as a dict (values stripped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


def _read(fd: int) -> str:
    if fd < 0:
        return ""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, _STATUS_MAX).decode("ascii", "replace")
    except OSError:
        return ""


def _int(
    fields: dict[str, str], key: str, index: int, base: int, default: Callable[[], int]
) -> int:
    """A number from the status file; ``default()`` (a system call) only when it is missing:
    seccomp may forbid that call, and then the status file must have the answer."""
    try:
        return int(fields[key].split()[index], base)
    except (KeyError, IndexError, ValueError):
        return default()


def _i32(value: object, default: int) -> int:
    """A sandbox fact as the C int ProcInfo carries, or ``default`` if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return value
    return default


@dataclass(frozen=True, slots=True)
class Sockets:
    """The frontend's sending sockets, counted (ProcInfo's packet_* and udp_* fields)."""

    packet_rx_only: int = 0
    packet_tx: int = 0
    udp_broadcast: int = 0
    udp_unicast: int = 0
    arp_rx_only: int = 0


def snapshot(
    fd: int,
    name: str,
    *,
    frames_read: int = 0,
    frames_dropped: int = 0,
    read_pauses: int = 0,
    sockets: Sockets = Sockets(),
) -> imsg.ProcInfo:
    """This process's ProcInfo, read now through ``fd`` (from :func:`open_status`).

    Unknown facts err on the pessimistic side: without a readable status file the ids
    come from the system calls, CapEff reads as every capability and no_new_privs and
    seccomp as off, so a broken probe can never make a process look sandboxed.  The frame
    and socket counters are the frontend's to give.
    """
    fields = parse_status(_read(fd))
    mode = _int(fields, "Seccomp", 0, 10, lambda: 0)
    ours = mode == SECCOMP_FILTER and getattr(sandbox.STATUS, "seccomp", False) is True
    calls, opens, names = filter_facts(name if ours else None)  # not systemd's filter
    abi, status = landlock_state()
    return imsg.ProcInfo(
        name=name,
        pid=os.getpid(),
        uid=_int(fields, "Uid", 1, 10, os.geteuid),
        gid=_int(fields, "Gid", 1, 10, os.getegid),
        cap_eff=_int(fields, "CapEff", 0, 16, lambda: _ALL_CAPS),
        no_new_privs=_int(fields, "NoNewPrivs", 0, 10, lambda: 0) == 1,
        seccomp=mode if 0 <= mode <= SECCOMP_FILTER else 0,
        landlock_abi=abi,
        landlock_status=status,
        frames_read=frames_read,
        frames_dropped=frames_dropped,
        read_pauses=read_pauses,
        seccomp_calls=calls,
        opens_sockets=opens,
        names_dest=names,
        packet_rx_only=sockets.packet_rx_only,
        packet_tx=sockets.packet_tx,
        udp_broadcast=sockets.udp_broadcast,
        udp_unicast=sockets.udp_unicast,
        arp_rx_only=sockets.arp_rx_only,
    )


def filter_facts(role: str | None) -> tuple[int, bool, bool]:
    """(calls admitted, may call socket(), may send to an address of its choosing) under
    the seccomp policy of ``role``; (0, True, True) without a filter or a known policy."""
    policy = seccomp.POLICIES.get(role) if role is not None else None
    if policy is None:
        return 0, True, True
    table = seccomp.native_arch().table
    calls = sum(1 for call in policy if call in table)
    opens = any(call in policy for call in ("socket", "socketpair"))
    return calls, opens, seccomp.names_destination(policy)


def landlock_state() -> tuple[int, int]:
    """(ABI in force or 0, LANDLOCK_* status) from what :mod:`sandbox` recorded."""
    state = getattr(sandbox, "STATUS", None)
    if state is None:
        return 0, LANDLOCK_UNKNOWN
    applied = getattr(state, "landlock_applied", False) is True
    abi = _i32(getattr(state, "landlock_abi", 0), 0)
    return (abi, LANDLOCK_ENFORCED) if applied and abi > 0 else (0, LANDLOCK_OFF)
