"""The parent's seccomp program, decision by decision, on both architectures (no kernel).

The same classic-BPF interpreter as the children's tests runs the program built from
:func:`seccomp.parent_policy`; tests/integration/test_parent_seccomp.py shows the kernel
agrees and that the parent's real day passes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dhcpleased import seccomp
from dhcpleased.seccomp import ARCHES, SECCOMP_RET_ERRNO
from tests.unit.test_sandbox_policy import ALLOW, KILL, TRAP, run_bpf

ARCH_NAMES = tuple(ARCHES)
CHANNELS, DATAGRAMS = (5, 6), (7, 9)
# (x86_64, aarch64); None where the call does not exist
FORBIDDEN = {
    "execve": (59, 221), "execveat": (322, 281), "memfd_create": (319, 279),
    "fork": (57, None), "vfork": (58, None), "clone": (56, 220), "clone3": (435, 435),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "bpf": (321, 280), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "setns": (308, 268), "unshare": (272, 97), "keyctl": (250, 219), "add_key": (248, 217),
    "request_key": (249, 218), "kill": (62, 129), "tgkill": (234, 131), "prctl": (157, 167),
    "socketpair": (53, 199), "accept4": (288, 242), "listen": (50, 201),
    "sendmmsg": (307, 269), "chmod": (90, None), "fchmod": (91, 52), "fchmodat": (268, 53),
    "chown": (92, None), "fchown": (93, 55), "fchownat": (260, 54), "link": (86, None),
    "linkat": (265, 37), "symlink": (88, None), "symlinkat": (266, 36), "mknod": (133, None),
    "mknodat": (259, 33), "mkdir": (83, None), "mkdirat": (258, 34), "dup": (32, 23),
    "dup2": (33, None), "dup3": (292, 24), "getdents64": (217, 61), "getcwd": (79, 17),
    "setuid": (105, 146), "capset": (126, 91), "pidfd_open": (434, 434),
    "pidfd_getfd": (438, 438), "seccomp": (317, 277), "landlock_restrict_self": (446, 446),
    "uname": (63, 160), "timerfd_settime": (286, 86), "truncate": (76, 45),
    "io_uring_setup": (425, 425), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
}  # fmt: skip


def decide(arch: str, name: str | int, *args: int, trap: bool = False) -> int:
    a = ARCHES[arch]
    nr = name if isinstance(name, int) else a.table[name]
    argv = [x & 0xFFFFFFFFFFFFFFFF for x in (*args, 0, 0, 0, 0, 0, 0)[:6]]
    data = struct.pack("=IIQ6Q", nr, a.audit_arch, 0, *argv)
    policy = seccomp.parent_policy(CHANNELS, DATAGRAMS)
    return run_bpf(seccomp.build("main", trap=trap, arch=a, policy=policy), data)


PLAIN = {  # arguments under which each checked call is allowed
    "ioctl": (3, seccomp.SIOCGIFINDEX), "fcntl": (3, seccomp.F_GETFL),
    "newfstatat": (3, 0, 0, seccomp.AT_EMPTY_PATH), "sendmsg": (CHANNELS[0],),
    "connect": (11,), "socket": (seccomp.AF_INET, seccomp.SOCK_DGRAM, 0),
    "setsockopt": (3, seccomp.SOL_SOCKET, seccomp.SO_LOCK_FILTER),
    "getsockopt": (3, seccomp.SOL_SOCKET, seccomp.SO_PEERCRED),
}  # fmt: skip


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_every_listed_call_is_allowed(arch: str) -> None:
    for name in seccomp.PARENT:
        if name in ARCHES[arch].table:
            assert decide(arch, name, *PLAIN.get(name, ())) == ALLOW, name


@pytest.mark.parametrize(
    ("arch", "name", "nr"),
    [
        (a, n, nrs[i])
        for i, a in enumerate(ARCH_NAMES)
        for n, nrs in sorted(FORBIDDEN.items())
        if nrs[i] is not None
    ],
)
def test_forbidden_calls_kill(arch: str, name: str, nr: int) -> None:
    assert decide(arch, nr) == KILL
    assert decide(arch, nr, trap=True) == TRAP


def test_the_parent_list_is_the_childrens_plus_what_it_measured() -> None:
    extra = set(seccomp.PARENT) - set(seccomp.FRONTEND)
    assert extra == {
        "socket", "connect", "bind", "shutdown", "setsockopt", "getpeername", "openat",
        "pwrite64", "fsync", "ftruncate", "rename", "renameat", "unlink", "unlinkat",
        "wait4", "pidfd_send_signal",
    }  # fmt: skip
    assert set(seccomp.FRONTEND) - set(seccomp.PARENT) == {"accept4", "uname"}
    assert not {"execve", "execveat", "memfd_create", "clone", "clone3"} & set(seccomp.PARENT)


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_sockets_by_family_type_and_protocol(arch: str) -> None:
    af, nl, pk = seccomp.AF_INET, seccomp.AF_NETLINK, seccomp.AF_PACKET
    dgram, raw, flags = seccomp.SOCK_DGRAM, seccomp.SOCK_RAW, 0o4000 | seccomp.SOCK_CLOEXEC
    for family, stype, proto in seccomp.PARENT_SOCKETS:
        assert decide(arch, "socket", family, stype, proto) == ALLOW
        assert decide(arch, "socket", family, stype | flags, proto) == ALLOW
    others = (
        (af, 1, 0), (af, raw, 17), (af, dgram, 1), (10, dgram, 0), (pk, dgram, 0),
        (pk, raw, 0x0300), (nl, raw, 0), (nl, raw, 12), (nl, raw, 16), (1, 1, 0),
        (1, 5, 0), (1, dgram, 0), (1, dgram | 0o4000, 0), (38, 5, 0),
    )  # fmt: skip
    for args in others:
        assert decide(arch, "socket", *args) == KILL, args
    # glibc's if_nametoindex probe, exactly: refused with EAFNOSUPPORT, and only it
    probe = (seccomp.AF_UNIX, dgram | seccomp.SOCK_CLOEXEC, 0)
    assert decide(arch, "socket", *probe) == SECCOMP_RET_ERRNO | seccomp.EAFNOSUPPORT
    assert decide(arch, "socket", *probe, trap=True) == SECCOMP_RET_ERRNO | 97
    assert decide(arch, "socket", seccomp.AF_UNIX, dgram | seccomp.SOCK_CLOEXEC, 1) == KILL


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_socket_options_by_level_and_name(arch: str) -> None:
    allowed = set(seccomp.PARENT_SOCKOPTS)
    levels = {level for level, _ in allowed} | {6, 41, 255}
    for level in levels:
        for name in range(0, 70):
            want = ALLOW if (level, name) in allowed else KILL
            assert decide(arch, "setsockopt", 3, level, name) == want, (level, name)
    assert (seccomp.SOL_SOCKET, 27) not in allowed  # SO_DETACH_FILTER
    reads = set(seccomp.PARENT_GETSOCKOPTS)
    for name in range(0, 70):
        want = ALLOW if (seccomp.SOL_SOCKET, name) in reads else KILL
        assert decide(arch, "getsockopt", 3, seccomp.SOL_SOCKET, name) == want, name
    assert decide(arch, "getsockopt", 3, seccomp.SOL_PACKET, seccomp.PACKET_STATISTICS) == KILL


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_no_destination_of_its_own_on_a_unix_socket(arch: str) -> None:
    """send() yes, sendto with an address no; sendmsg on the channels only; connect on
    anything but the datagram sockets it held (sd_notify, syslog)."""
    buf = 0x7F0000001000
    assert decide(arch, "sendto", 7, buf, 10, 0, 0, 0) == ALLOW
    for dest in (0x7FFF12345678, 1 << 32, 0x10):
        assert decide(arch, "sendto", 7, buf, 10, 0, dest, 20) == KILL
    for fd in CHANNELS:
        assert decide(arch, "sendmsg", fd, buf) == ALLOW
    for fd in (0, 1, 2, 3, 4, 7, 8, 9, 10):  # (an int: the kernel reads the low half)
        assert decide(arch, "sendmsg", fd, buf) == KILL, fd
    for fd in DATAGRAMS:
        assert decide(arch, "connect", fd, buf, 16) == KILL
    for fd in (3, 4, 8, 10, 12):
        assert decide(arch, "connect", fd, buf, 16) == ALLOW
    assert seccomp.names_destination(seccomp.PARENT) is False


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_argument_checks_kept_from_the_childrens_list(arch: str) -> None:
    assert decide(arch, "mmap", 0, 4096, 0x3) == ALLOW
    assert decide(arch, "mmap", 0, 4096, 0x5) == KILL
    assert decide(arch, "mprotect", 0, 4096, 0x7) == KILL
    assert decide(arch, "ioctl", 3, seccomp.SIOCGIFNAME) == ALLOW
    for cmd in (0x8914, 0x8916, 0x8922, 0x890B, 0x5413):  # SIOCSIF*, SIOCADDRT, TIOCGWINSZ
        assert decide(arch, "ioctl", 3, cmd) == KILL, hex(cmd)
    assert decide(arch, "fcntl", 3, 0) == KILL  # F_DUPFD
    assert decide(arch, "fcntl", 3, 1030) == KILL  # F_DUPFD_CLOEXEC


def test_readme_states_the_parents_list() -> None:
    counts = [sum(1 for c in seccomp.PARENT if c in ARCHES[a].table) for a in ARCH_NAMES]
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"allowlist of {counts[0]} calls ({counts[1]} on aarch64)" in text
