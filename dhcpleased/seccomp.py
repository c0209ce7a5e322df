"""A seccomp-BPF allowlist, the Linux twin of pledge(2), assembled by hand.

No libseccomp: the policy is a dict from syscall name to argument conditions, compiled
here into one linear classic-BPF program (``reference/sandbox-linux.md`` §1).  The
program kills any foreign ``AUDIT_ARCH`` and, on x86_64, the x32 ABI (``nr & 0x40000000``)
before looking at the number, so a 32-bit or x32 entry cannot reach a different table.
Argument checks compare the low 32 bits: most checked arguments are an ``int`` or
``unsigned int`` in the kernel, which ignores the upper half.  A pointer is compared in
both halves (``ArgIn(high=True)`` for the upper one): a page mapped at an address whose
low half is zero would pass a low-only check for NULL.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

# --- classic BPF -------------------------------------------------------------------------
BPF_LD_W_ABS: Final = 0x20
BPF_ALU_AND_K: Final = 0x54
BPF_JMP_JA: Final = 0x05
BPF_JMP_JEQ_K: Final = 0x15
BPF_JMP_JSET_K: Final = 0x45
BPF_RET_K: Final = 0x06

SECCOMP_RET_KILL_PROCESS: Final = 0x80000000
SECCOMP_RET_TRAP: Final = 0x00030000
SECCOMP_RET_ALLOW: Final = 0x7FFF0000
SECCOMP_RET_ERRNO: Final = 0x00050000

SECCOMP_SET_MODE_FILTER: Final = 1
SECCOMP_GET_ACTION_AVAIL: Final = 2
SECCOMP_FILTER_FLAG_TSYNC: Final = 1
PR_GET_SECCOMP: Final = 21

AUDIT_ARCH_X86_64: Final = 0xC000003E
AUDIT_ARCH_AARCH64: Final = 0xC00000B7
X32_SYSCALL_BIT: Final = 0x40000000

# struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64)
OFF_NR: Final = 0
OFF_ARCH: Final = 4


def arg_low(index: int) -> int:
    """Offset of the low 32 bits of args[index] (little-endian on both arches)."""
    return 16 + 8 * index


# --- syscall tables (asm/unistd_64.h and asm-generic/unistd.h) ------------------------------
_X86_64: Final = {
    "read": 0, "write": 1, "close": 3, "fstat": 5, "lseek": 8, "mmap": 9, "mprotect": 10,
    "munmap": 11, "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14, "rt_sigreturn": 15,
    "ioctl": 16, "pread64": 17, "mremap": 25, "madvise": 28, "getpid": 39, "sendto": 44,
    "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "getsockname": 51, "getsockopt": 55,
    "exit": 60, "fcntl": 72, "gettimeofday": 96, "gettid": 186, "futex": 202,
    "restart_syscall": 219, "clock_gettime": 228, "clock_nanosleep": 230, "exit_group": 231,
    "epoll_wait": 232, "epoll_ctl": 233, "newfstatat": 262, "epoll_pwait": 281,
    "accept4": 288, "seccomp": 317, "getrandom": 318, "epoll_pwait2": 441, "uname": 63,
    "timerfd_settime": 286,
}  # fmt: skip
_AARCH64: Final = {
    "read": 63, "write": 64, "close": 57, "fstat": 80, "lseek": 62, "mmap": 222,
    "mprotect": 226, "munmap": 215, "brk": 214, "rt_sigaction": 134, "rt_sigprocmask": 135,
    "rt_sigreturn": 139, "ioctl": 29, "pread64": 67, "mremap": 216, "madvise": 233,
    "getpid": 172, "sendto": 206, "recvfrom": 207, "sendmsg": 211, "recvmsg": 212,
    "getsockname": 204, "getsockopt": 209, "exit": 93, "fcntl": 25, "gettimeofday": 169,
    "gettid": 178, "futex": 98, "restart_syscall": 128, "clock_gettime": 113,
    "clock_nanosleep": 115, "exit_group": 94, "epoll_ctl": 21, "newfstatat": 79,
    "epoll_pwait": 22, "accept4": 242, "seccomp": 277, "getrandom": 278, "epoll_pwait2": 441,
    "uname": 160, "timerfd_settime": 86,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Arch:
    name: str
    audit_arch: int
    table: Mapping[str, int]
    x32_bit: bool


# the parent's calls beyond the children's (glibc calls rename and unlink on x86_64,
# renameat and unlinkat on aarch64, which has no others)
_X86_64_PARENT: Final = {
    "socket": 41, "connect": 42, "getpeername": 52, "sigaltstack": 131, "bind": 49,
    "shutdown": 48, "setsockopt": 54,
    "openat": 257, "rename": 82, "unlink": 87,
    "fsync": 74, "ftruncate": 77, "pwrite64": 18, "wait4": 61, "pidfd_send_signal": 424,
}  # fmt: skip
_AARCH64_PARENT: Final = {
    "socket": 198, "connect": 203, "getpeername": 205, "sigaltstack": 132, "bind": 200,
    "shutdown": 210, "setsockopt": 208,
    "openat": 56, "renameat": 38, "unlinkat": 35, "fsync": 82, "ftruncate": 46,
    "pwrite64": 68, "wait4": 260, "pidfd_send_signal": 424,
}  # fmt: skip
ONLY_SOME_ARCHES: Final = frozenset({"epoll_wait", "rename", "unlink", "renameat", "unlinkat"})

ARCHES: Final = {
    "x86_64": Arch("x86_64", AUDIT_ARCH_X86_64, {**_X86_64, **_X86_64_PARENT}, True),
    "aarch64": Arch("aarch64", AUDIT_ARCH_AARCH64, {**_AARCH64, **_AARCH64_PARENT}, False),
}


def native_arch() -> Arch:
    machine = platform.machine()
    arch = ARCHES.get("aarch64" if machine == "arm64" else machine)
    if arch is None:
        raise OSError(f"seccomp: no syscall table for {machine}")
    return arch


# --- policies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArgIn:
    """Allow only if ``args[arg] & mask`` is (or, with ``negate``, is not) one of ``values``;
    ``high`` compares the argument's upper 32 bits instead of its lower."""

    arg: int
    values: tuple[int, ...]
    mask: int = 0xFFFFFFFF
    negate: bool = False
    high: bool = False


def null(arg: int) -> Rule:
    """args[arg] is a NULL pointer: both halves zero."""
    return (ArgIn(arg, (0,)), ArgIn(arg, (0,), high=True))


Rule = tuple[ArgIn, ...]  # all must hold; () = allowed unconditionally


@dataclass(frozen=True, slots=True)
class Refuse:
    """Fail with ``errno`` (not kill) when ``rule`` holds: for a probe that a library
    makes and recovers from, e.g. glibc trying AF_UNIX before AF_INET for an ioctl."""

    errno: int
    rule: Rule


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Allow if one of ``rules`` holds: for calls whose arguments go together in pairs.
    ``refuse`` is checked first."""

    rules: tuple[Rule, ...]
    refuse: tuple[Refuse, ...] = ()


Policy = Mapping[str, Rule | AnyOf]

PROT_EXEC: Final = 0x4
AT_FDCWD_LOW: Final = 0xFFFFFF9C  # -100 as u32
AT_EMPTY_PATH: Final = 0x1000
FIONBIO: Final = 0x5421
FIOCLEX: Final = 0x5451
TCGETS: Final = 0x5401
STDIO_IOCTLS: Final = (FIONBIO, FIOCLEX, TCGETS)  # setblocking, set_inheritable, isatty
SIOCGIFNAME: Final = 0x8910
F_GETFD, F_SETFD, F_GETFL, F_SETFL = 1, 2, 3, 4
SOL_SOCKET: Final = 1
SO_PEERCRED: Final = 17
SOL_PACKET: Final = 263
PACKET_STATISTICS: Final = 6

# pledge("stdio") for a Python asyncio process that holds only descriptors it was given.
STDIO: Final[dict[str, Rule]] = {
    # the selector (epoll_create1 happened before the filter)
    "epoll_wait": (), "epoll_pwait": (), "epoll_pwait2": (), "epoll_ctl": (),
    # imsg channels, the loop's self-pipe (recv = recvfrom, send = sendto), stderr
    "recvmsg": (), "recvfrom": (), "sendto": (), "read": (), "write": (), "close": (),
    "pread64": (), "lseek": (),
    # clocks are vDSO; these cover clocksources without one
    "clock_gettime": (), "gettimeofday": (), "clock_nanosleep": (),
    "getpid": (), "gettid": (), "getrandom": (),
    # memory: W^X, no executable mapping can be made
    "mmap": (ArgIn(2, (0,), mask=PROT_EXEC),), "mprotect": (ArgIn(2, (0,), mask=PROT_EXEC),),
    "munmap": (), "mremap": (), "brk": (), "madvise": (), "futex": (),
    # signals: loop.close() and interpreter finalisation restore handlers
    "rt_sigreturn": (), "rt_sigaction": (), "rt_sigprocmask": (), "restart_syscall": (),
    # setblocking(), set_inheritable(), isatty() in open(fd)
    "ioctl": (ArgIn(1, STDIO_IOCTLS),),
    "fcntl": (ArgIn(1, (F_GETFD, F_SETFD, F_GETFL, F_SETFL)),),
    # socket.socket(fileno=) validates with getsockname
    "getsockname": (),
    # fstat(fd) is newfstatat(fd, "", AT_EMPTY_PATH): never relative to the cwd
    "fstat": (),
    "newfstatat": (
        ArgIn(3, (AT_EMPTY_PATH,), mask=AT_EMPTY_PATH),
        ArgIn(0, (AT_FDCWD_LOW,), negate=True),
    ),
    "exit": (), "exit_group": (),
}  # fmt: skip

# The engine never sends a descriptor, so it needs no sendmsg: the narrowest list, plus
# the one call its lease timers need. timerfd_settime re-arms the CLOCK_BOOTTIME timerfd it
# made before the sandbox (boottime.py), so lease times keep counting through a suspend:
# it can only set the expiry of a timer the engine already holds, creates nothing, and
# reaches no file, socket or other process (timerfd_create, timer_create and the
# clock-setting calls stay forbidden).
ENGINE: Final[dict[str, Rule]] = {**STDIO, "timerfd_settime": ()}
# The frontend also holds packet, UDP and netlink sockets, and answers dhcpleasectl
# clients on the control socket: accept4, the client's credentials (SO_PEERCRED only).
# getsockopt is allowed for exactly two (level, name) pairs: SO_PEERCRED and
# PACKET_STATISTICS, the packet sockets' drop counter for dhcpleasectl -p (it reads two
# counters and resets them, on a socket the frontend holds anyway).
#
# What it can send is narrowed here together with bpf.py: no call may carry a destination
# address.  Its packet sockets are bound to no interface, so only an address (sendto's
# dest_addr, sendmsg's msg_name) could make them emit a frame; its UDP sockets are
# connected, so only an address could aim them at another host or port.  So sendto only
# with a NULL dest_addr (send() is sendto(fd, buf, len, flags, NULL, 0)), and sendmsg,
# whose msg_name seccomp cannot read, only on the channel to the parent: fd 3 from exec
# on, a connected unix SEQPACKET socket that ignores msg_name.  It needs sendmsg only
# there, for MANAGE_IF's descriptor (the request token).  fd 3 can never become another
# socket while the channel lives: a received descriptor takes the lowest *free* number,
# and without dup2/dup3/F_DUPFD nothing can be moved onto it.  sendmmsg stays forbidden.
PARENT_CHANNEL_FD: Final = 3
FRONTEND: Final[dict[str, Rule | AnyOf]] = {
    **STDIO,
    "sendto": null(4),
    "sendmsg": (ArgIn(0, (PARENT_CHANNEL_FD,)),),
    # recvmsg() on a packet socket names the interface: CPython asks SIOCGIFNAME
    "ioctl": (ArgIn(1, (*STDIO_IOCTLS, SIOCGIFNAME)),),
    "accept4": (),
    # The host name goes into every DISCOVER/REQUEST as the original's build_packet reads
    # it, at each packet: gethostname() is uname(2). It copies out the names of the
    # process's own UTS namespace and has no other effect; the kernel release it also
    # returns is no secret from code already running here. sethostname and setdomainname
    # stay forbidden. (The alternative, a /proc/sys/kernel/hostname descriptor kept open
    # through the sandbox, would leave a procfs file in a process that has no filesystem.)
    "uname": (),
    "getsockopt": AnyOf(
        (
            (ArgIn(1, (SOL_SOCKET,)), ArgIn(2, (SO_PEERCRED,))),
            (ArgIn(1, (SOL_PACKET,)), ArgIn(2, (PACKET_STATISTICS,))),
        )
    ),
}

# --- the parent ------------------------------------------------------------------------------
#
# Measured, not guessed: tests/integration/measure_parent.py runs the real daemon under
# strace -f in the lab (a lease, renewals and a rebind, an interface added by dhcpleasectl,
# reloads by SIGHUP and dhcpleasectl, a config saved by rename and a broken one, link down
# and up, a DHCPRELEASE, the file DNS mode in place and linked, the crash report of an
# exception in the loop, shutdown with release on exit) and lists each call the parent
# made after its landlock_restrict_self with the arguments a filter can see; the DNS
# helper's modes were traced in their containers (strace -f -p of the unit's main pid).
# What the parent cannot do at all: execve, execveat, fork, clone (so no thread either),
# memfd_create, ptrace, process_vm_*, mount, bpf, init_module, kexec_*, setns, unshare,
# keyctl, kill, prctl, chmod (even fchmod: it could make a file it can merely read
# world-writable), chown, link, mknod, socketpair, accept.
AF_UNIX, AF_INET, AF_NETLINK, AF_PACKET = 1, 2, 16, 17
SOCK_DGRAM, SOCK_RAW, SOCK_TYPE_MASK = 2, 3, 0xF
SOCK_CLOEXEC: Final = 0o2000000
EAFNOSUPPORT: Final = 97
SOL_IP: Final = 0
SO_REUSEADDR, SO_TYPE, SO_BROADCAST, SO_RCVBUF = 2, 3, 6, 8
SO_ATTACH_FILTER, SO_ACCEPTCONN, SO_PROTOCOL, SO_DOMAIN = 26, 30, 38, 39
SO_LOCK_FILTER, SO_BINDTOIFINDEX = 44, 62
IP_TOS, IP_TTL, IP_MTU_DISCOVER = 1, 2, 10
PACKET_AUXDATA: Final = 8
SIOCGIFINDEX: Final = 0x8933

# The sockets the parent opens after its sandbox, as (family, type, protocol); the type
# may carry SOCK_NONBLOCK/SOCK_CLOEXEC.  One line per kind: a new kind is one more line.
PARENT_SOCKETS: Final = (
    (AF_PACKET, SOCK_RAW, 0),  # bpf.open_bpfsock: protocol 0 until bound, filter locked
    (AF_INET, SOCK_DGRAM, 0),  # bpf: broadcast and renewal UDP; glibc's if_nametoindex
)  # (its rtnetlink sockets are opened before the filter: no AF_NETLINK here)
# (level, name) the parent sets on those sockets (bpf.py), one line per level.
PARENT_SOCKOPTS: Final = (
    *((SOL_SOCKET, o) for o in (SO_REUSEADDR, SO_BROADCAST, SO_RCVBUF, SO_ATTACH_FILTER,
                                SO_LOCK_FILTER, SO_BINDTOIFINDEX)),
    *((SOL_IP, o) for o in (IP_TOS, IP_TTL, IP_MTU_DISCOVER)),
    (SOL_PACKET, PACKET_AUXDATA),
)  # fmt: skip
# What it reads of a socket: a request token's kind and peer (control.read_request_token,
# socket(fileno=) asks for the type and protocol); nothing it could change.
PARENT_GETSOCKOPTS: Final = tuple(
    (SOL_SOCKET, o) for o in (SO_TYPE, SO_PROTOCOL, SO_DOMAIN, SO_ACCEPTCONN, SO_PEERCRED)
)


# glibc's if_nametoindex/if_indextoname (__opensock) try socket(AF_UNIX, SOCK_DGRAM|
# SOCK_CLOEXEC, 0) first, then AF_INET: that exact call fails with EAFNOSUPPORT, and any
# other unix socket kills.  The parent never holds a unix socket it did not have before.
OPENSOCK_PROBE: Final = Refuse(
    EAFNOSUPPORT, (ArgIn(0, (AF_UNIX,)), ArgIn(1, (SOCK_DGRAM | SOCK_CLOEXEC,)), ArgIn(2, (0,)))
)


def _pairs(pairs: tuple[tuple[int, int], ...], first: int = 1) -> AnyOf:
    """args[first], args[first + 1] is one of ``pairs`` (level and name, say)."""
    return AnyOf(tuple((ArgIn(first, (x,)), ArgIn(first + 1, (y,))) for x, y in pairs))


def parent_policy(channels: tuple[int, ...] = (), datagrams: tuple[int, ...] = ()) -> Policy:
    """The parent's allowlist, given the descriptors it holds at the time it is installed.

    ``channels``: its unix SEQPACKET sockets (the children's channels), the only ones
    sendmsg may use (it passes descriptors down; seccomp cannot read msg_name, and on a
    connected SEQPACKET socket there is none).  ``datagrams``: its unix datagram sockets
    (sd_notify, syslog), which connect() may not aim elsewhere.  No new unix socket can
    be made (socket() below, no socketpair, no accept, no dup), so these sets hold for
    the life of the process.  Without them (``dhcpleasectl -p``'s count, the tests), the
    policy has the same calls.
    """
    return {
        **STDIO,
        # send() only: sendto with a NULL address, as the frontend (no destination of
        # its choosing on a datagram socket it holds)
        "sendto": null(4),
        "sendmsg": (ArgIn(0, channels or (PARENT_CHANNEL_FD,)),),
        "connect": (ArgIn(0, datagrams, negate=True),) if datagrams else (),
        # if_nametoindex/if_indextoname: SIOCGIFINDEX/SIOCGIFNAME, read only
        "ioctl": (ArgIn(1, (*STDIO_IOCTLS, SIOCGIFINDEX, SIOCGIFNAME)),),
        "socket": AnyOf(
            tuple(
                (ArgIn(0, (f,)), ArgIn(1, (t,), mask=SOCK_TYPE_MASK), ArgIn(2, (p,)))
                for f, t, p in PARENT_SOCKETS
            ),
            refuse=(OPENSOCK_PROBE,),
        ),
        "bind": (), "shutdown": (),
        # a socket object collected unclosed warns with its repr, which asks the kernel
        # for both addresses even when the warning is filtered: read only, own socket
        "getpeername": (),
        "setsockopt": _pairs(PARENT_SOCKOPTS),
        "getsockopt": _pairs(PARENT_GETSOCKOPTS),
        # leases, resolv.conf, the config on reload, the sources of a traceback: what
        # Landlock lets it open, rename and remove (parent_rules); paths may be stat'ed
        "openat": (), "newfstatat": (), "pwrite64": (), "fsync": (), "ftruncate": (),
        "rename": (), "renameat": (), "unlink": (), "unlinkat": (),
        # its children and the DNS helper: reaped, and killed if they outstay their exit
        # (pidfds opened before the filter: no pidfd_open, no kill)
        "wait4": (), "pidfd_send_signal": (),
    }  # fmt: skip


PARENT: Final = parent_policy()
POLICIES: Final[Mapping[str, Policy]] = {"engine": ENGINE, "frontend": FRONTEND, "main": PARENT}


def names_destination(policy: Policy) -> bool:
    """Can a process under ``policy`` send to an address of its choosing?  No when sendto
    needs a NULL dest_addr, sendmsg (whose msg_name seccomp cannot read) is absent or tied
    to given descriptors, and sendmmsg is absent.  For dhcpleasectl -p."""

    def every(call: str, ok: Callable[[Rule], bool]) -> bool:
        rule = policy.get(call)
        return rule is None or all(ok(alt) for alt in _alternatives(rule))

    confined = (
        every("sendto", lambda alt: set(null(4)) <= set(alt))
        and every("sendmsg", lambda alt: any(c.arg == 0 and not c.negate for c in alt))
        and "sendmmsg" not in policy
    )
    return not confined


def _alternatives(rule: Rule | AnyOf) -> tuple[Rule, ...]:
    """The argument conditions of a rule, one tuple per way to pass (() = always)."""
    return rule.rules if isinstance(rule, AnyOf) else (rule,)


# --- the assembler ------------------------------------------------------------------------

Insn = tuple[int, int, int, int]  # struct sock_filter: code, jt, jf, k
_ALLOW: Final = "allow"


class _Asm:
    """Instructions whose jump targets are labels, resolved to relative offsets at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def emit(self, code: int, k: int = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((code, jt, jf, k & 0xFFFFFFFF))

    def resolve(self) -> list[Insn]:
        out: list[Insn] = []
        for i, (code, jt, jf, k) in enumerate(self.code):
            rel = [t if isinstance(t, int) else self.labels[t] - (i + 1) for t in (jt, jf)]
            if code == BPF_JMP_JA and isinstance(jt, str):  # unconditional: offset in k
                out.append((code, 0, 0, rel[0]))
                continue
            if not all(0 <= r <= 255 for r in rel):
                raise ValueError("seccomp: jump out of range, split the policy")
            out.append((code, rel[0], rel[1], k))
        return out


def assemble(policy: Policy, arch: Arch, default: int) -> list[Insn]:
    """The filter program: arch check, one jeq per syscall, then the argument blocks.

    Every block ends in its own return, so no jump reaches past a block: a conditional
    jump spans at most 255 instructions, and a long policy (the parent's) would not fit
    one program laid out with shared returns at the end.
    """
    unknown = [n for n in policy if n not in arch.table and n not in ONLY_SOME_ARCHES]
    if unknown:
        raise ValueError(f"seccomp: unknown syscalls {unknown}")
    a = _Asm()
    a.emit(BPF_LD_W_ABS, OFF_ARCH)
    a.emit(BPF_JMP_JEQ_K, arch.audit_arch, 1, 0)
    a.emit(BPF_RET_K, SECCOMP_RET_KILL_PROCESS)
    a.emit(BPF_LD_W_ABS, OFF_NR)
    if arch.x32_bit:
        a.emit(BPF_JMP_JSET_K, X32_SYSCALL_BIT, 0, 1)
        a.emit(BPF_RET_K, SECCOMP_RET_KILL_PROCESS)
    checked: list[tuple[str, list[tuple[Rule, int]]]] = []
    for name, rule in policy.items():
        nr = arch.table.get(name)
        if nr is None:  # e.g. epoll_wait does not exist on aarch64
            continue
        refuse = rule.refuse if isinstance(rule, AnyOf) else ()
        tries = [(r.rule, SECCOMP_RET_ERRNO | (r.errno & 0xFFFF)) for r in refuse]
        tries += [(alt, SECCOMP_RET_ALLOW) for alt in (_alternatives(rule) if rule else ())]
        if not tries:
            a.emit(BPF_JMP_JEQ_K, nr, _ALLOW, 0)
            continue
        a.emit(BPF_JMP_JEQ_K, nr, 0, 1)
        a.emit(BPF_JMP_JA, 0, f"check_{name}")
        checked.append((name, tries))
    a.emit(BPF_RET_K, default)
    a.label(_ALLOW)
    a.emit(BPF_RET_K, SECCOMP_RET_ALLOW)
    for name, tries in checked:
        a.label(f"check_{name}")
        for k, (alt, outcome) in enumerate(tries):
            fail = f"check_{name}_or{k + 1}"  # the next way to pass; after the last, deny
            for n, cond in enumerate(alt):
                nxt = f"check_{name}_{k}_{n + 1}"
                a.emit(BPF_LD_W_ABS, arg_low(cond.arg) + (4 if cond.high else 0))
                if cond.mask != 0xFFFFFFFF:
                    a.emit(BPF_ALU_AND_K, cond.mask)
                for v in cond.values:
                    a.emit(BPF_JMP_JEQ_K, v, fail if cond.negate else nxt, 0)
                a.emit(BPF_JMP_JA, 0, nxt if cond.negate else fail)
                a.label(nxt)
            a.emit(BPF_RET_K, outcome)
            a.label(fail)
        a.emit(BPF_RET_K, default)
    return a.resolve()


def build(
    role: str, *, trap: bool = False, arch: Arch | None = None, policy: Policy | None = None
) -> bytes:
    """The packed program for a role (or ``policy``); ``trap`` makes violations
    SIGSYS-catchable."""
    default = SECCOMP_RET_TRAP if trap else SECCOMP_RET_KILL_PROCESS
    prog = assemble(POLICIES[role] if policy is None else policy, arch or native_arch(), default)
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


# --- the kernel ---------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _seccomp(op: int, flags: int, arg: object) -> int:
    nr = native_arch().table["seccomp"]
    return int(_libc.syscall(ctypes.c_long(nr), op, flags, arg))


def supported() -> bool:
    """Does the kernel do seccomp filters with SECCOMP_RET_KILL_PROCESS (Linux 4.14)?"""
    if _libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
        return False
    action = ctypes.c_uint32(SECCOMP_RET_KILL_PROCESS)
    return _seccomp(SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(action)) == 0


def install(program: bytes) -> None:
    """Load the filter on every thread (TSYNC); OSError if the kernel refuses.

    no_new_privs must be set first.  After this, nothing outside the policy runs.
    """
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    ret = _seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.pointer(fprog))
    if ret != 0:
        err = ctypes.get_errno() if ret < 0 else 0
        what = os.strerror(err) if err else f"thread {ret} could not be synchronised"
        raise OSError(err, f"seccomp: {what}")
