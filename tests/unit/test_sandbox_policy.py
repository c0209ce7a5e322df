"""The seccomp programs and the parent's Landlock rules, checked without a kernel.

The filter is run through a small classic-BPF interpreter on hand-made ``seccomp_data``
records, for both architectures, so every allow and deny decision is tested here; the
integration tests then show the kernel agrees.
"""

from __future__ import annotations

import functools
import operator
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from dhcpleased import caps, landlock, sandbox, seccomp
from dhcpleased.seccomp import (
    ARCHES,
    AT_EMPTY_PATH,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_KILL_PROCESS,
    SECCOMP_RET_TRAP,
)

ALLOW, KILL, TRAP = SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_TRAP
AT_FDCWD = -100


def run_bpf(program: bytes, data: bytes) -> int:
    """Interpret the classic-BPF subset the assembler emits."""
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    a, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == seccomp.BPF_LD_W_ABS:
            (a,) = struct.unpack_from("=I", data, k)
        elif code == seccomp.BPF_ALU_AND_K:
            a &= k
        elif code == seccomp.BPF_JMP_JA:
            pc += k
        elif code == seccomp.BPF_JMP_JEQ_K:
            pc += jt if a == k else jf
        elif code == seccomp.BPF_JMP_JSET_K:
            pc += jt if a & k else jf
        elif code == seccomp.BPF_RET_K:
            return int(k)
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def decide(
    role: str, arch: str, name: str | int, *args: int, trap: bool = False, audit: int = 0
) -> int:
    a = ARCHES[arch]
    nr = name if isinstance(name, int) else a.table[name]
    argv = [x & 0xFFFFFFFFFFFFFFFF for x in (*args, 0, 0, 0, 0, 0, 0)[:6]]
    data = struct.pack("=IIQ6Q", nr, audit or a.audit_arch, 0, *argv)
    return run_bpf(seccomp.build(role, trap=trap, arch=a), data)


ROLES = ("engine", "frontend")
ARCH_NAMES = tuple(ARCHES)
# syscall numbers that exist in no allowlist (x86_64, aarch64)
FORBIDDEN = {
    "openat": (257, 56),
    "socket": (41, 198),
    "connect": (42, 203),
    "bind": (49, 200),
    "execve": (59, 221),
    "clone": (56, 220),
    "clone3": (435, 435),
    "kill": (62, 129),
    "tgkill": (234, 131),
    "ptrace": (101, 117),
    "prctl": (157, 167),
    "setsockopt": (54, 208),
    "getpeername": (52, 205),
    "landlock_create_ruleset": (444, 444),
    # neighbours of the engine's timerfd_settime and the frontend's uname
    "timerfd_create": (283, 85),
    "timerfd_gettime": (287, 87),
    "timer_create": (222, 107),
    "timer_settime": (223, 110),
    "clock_settime": (227, 112),
    "clock_adjtime": (305, 266),
    "settimeofday": (164, 170),
    "adjtimex": (159, 171),
    "sethostname": (170, 161),
    "setdomainname": (171, 162),
}


@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("role", ROLES)
def test_every_listed_syscall_is_allowed_with_plain_arguments(role: str, arch: str) -> None:
    for name in seccomp.POLICIES[role]:
        if name not in ARCHES[arch].table:
            continue
        args = [0, 0, 0, 0, 0, 0]
        if name == "ioctl":
            args[1] = seccomp.FIONBIO
        elif name == "fcntl":
            args[1] = seccomp.F_GETFL
        elif name == "newfstatat":
            args[0], args[3] = 3, AT_EMPTY_PATH
        elif name == "getsockopt":
            args[1], args[2] = seccomp.SOL_SOCKET, seccomp.SO_PEERCRED
        elif name == "sendmsg":
            args[0] = seccomp.PARENT_CHANNEL_FD
        assert decide(role, arch, name, *args) == ALLOW, name


@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_forbidden_syscalls_kill(role: str, arch: str, name: str) -> None:
    nr = FORBIDDEN[name][ARCH_NAMES.index(arch)]
    assert decide(role, arch, nr) == KILL
    assert decide(role, arch, nr, trap=True) == TRAP


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_engine_is_narrower_than_frontend(arch: str) -> None:
    """Apart from re-arming its lease timer, the engine may do less than the frontend."""
    assert set(seccomp.ENGINE) - {"timerfd_settime"} < set(seccomp.FRONTEND)
    assert decide("frontend", arch, "timerfd_settime") == KILL
    assert decide("engine", arch, "uname") == KILL
    assert decide("engine", arch, "timerfd_settime") == ALLOW
    assert decide("frontend", arch, "uname") == ALLOW
    for name in ("sendmsg", "accept4", "getsockopt"):
        assert decide("engine", arch, name, 3, seccomp.SOL_SOCKET, seccomp.SO_PEERCRED) == KILL
    assert decide("frontend", arch, "sendmsg", seccomp.PARENT_CHANNEL_FD) == ALLOW
    assert decide("engine", arch, "ioctl", 3, seccomp.SIOCGIFNAME) == KILL
    assert decide("frontend", arch, "ioctl", 3, seccomp.SIOCGIFNAME) == ALLOW


@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("role", ROLES)
def test_argument_checks(role: str, arch: str) -> None:
    prot_rw, prot_rx = 0x3, 0x5
    assert decide(role, arch, "mmap", 0, 4096, prot_rw) == ALLOW
    assert decide(role, arch, "mmap", 0, 4096, prot_rx) == KILL
    assert decide(role, arch, "mprotect", 0, 4096, prot_rx) == KILL
    assert decide(role, arch, "ioctl", 3, 0x5413) == KILL  # TIOCGWINSZ
    assert decide(role, arch, "ioctl", 3, 0x8914) == KILL  # SIOCSIFFLAGS
    assert decide(role, arch, "fcntl", 3, 0) == KILL  # F_DUPFD
    # fstat of a descriptor, yes; a path from the cwd (a lazy import's stat), no
    assert decide(role, arch, "newfstatat", 3, 0, 0, AT_EMPTY_PATH) == ALLOW
    assert decide(role, arch, "newfstatat", AT_FDCWD, 0, 0, AT_EMPTY_PATH) == KILL
    assert decide(role, arch, "newfstatat", 3, 0, 0, 0) == KILL
    if role == "frontend":
        assert decide(role, arch, "getsockopt", 3, seccomp.SOL_SOCKET, 4) == KILL  # SO_TYPE
        assert decide(role, arch, "getsockopt", 3, 0, seccomp.SO_PEERCRED) == KILL


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_getsockopt_only_in_the_two_allowed_pairs(arch: str) -> None:
    """(SOL_SOCKET, SO_PEERCRED) and (SOL_PACKET, PACKET_STATISTICS); not the crossed pairs,
    nor a neighbouring option of either level, nor anything for the engine."""
    sol_socket, sol_packet = seccomp.SOL_SOCKET, seccomp.SOL_PACKET
    peercred, stats = seccomp.SO_PEERCRED, seccomp.PACKET_STATISTICS
    allowed = {(sol_socket, peercred), (sol_packet, stats)}
    for level in (sol_socket, sol_packet, 0, sol_packet | 1 << 32):
        for name in (peercred, stats, stats + 1, stats + 2, peercred + 1, 0):
            want = ALLOW if (level & 0xFFFFFFFF, name) in allowed else KILL
            assert decide("frontend", arch, "getsockopt", 3, level, name) == want, (level, name)
    assert decide("engine", arch, "getsockopt", 3, sol_packet, stats) == KILL


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_frontend_sends_name_no_destination(arch: str) -> None:
    """sendto only with a NULL dest_addr, in both halves of the pointer (a page mapped at
    an address whose low half is zero must not pass); sendmsg only on the parent channel;
    sendmmsg never.  A packet socket bound to no interface then cannot send at all."""
    fd, buf, flags = 5, 0x7F0000001000, 0
    assert decide("frontend", arch, "sendto", fd, buf, 300, flags, 0, 0) == ALLOW
    assert decide("frontend", arch, "sendto", fd, buf, 300, flags, 0, 20) == ALLOW  # len ignored
    for dest in (0x7FFF12345678, 0x7FFF00000000, 1 << 32, 0x10):
        assert decide("frontend", arch, "sendto", fd, buf, 300, flags, dest, 20) == KILL, dest
        assert decide("frontend", arch, "sendto", fd, buf, 300, flags, dest, 20, trap=True) == TRAP
    assert decide("frontend", arch, "sendmsg", seccomp.PARENT_CHANNEL_FD, buf, 0) == ALLOW
    for other in (0, 1, 2, 4, 5, 9):
        assert decide("frontend", arch, "sendmsg", other, buf, 0) == KILL, other
    sendmmsg = {"x86_64": 307, "aarch64": 269}[arch]
    assert decide("frontend", arch, sendmmsg, fd, buf, 1, 0) == KILL
    # the engine keeps the plain STDIO sendto: it holds no socket that an address could aim
    assert decide("engine", arch, "sendto", fd, buf, 300, flags, 0x7FFF12345678, 20) == ALLOW


def test_names_destination_reads_the_policy() -> None:
    """What dhcpleasectl -p reports as "no destination of its own choosing"."""
    assert not seccomp.names_destination(seccomp.FRONTEND)
    assert seccomp.names_destination(seccomp.ENGINE)  # sendto unconditional
    loose = {**seccomp.FRONTEND, "sendmsg": ()}
    assert seccomp.names_destination(loose)
    low_only = {**seccomp.FRONTEND, "sendto": (seccomp.ArgIn(4, (0,)),)}
    assert seccomp.names_destination(low_only)
    assert seccomp.names_destination({**seccomp.FRONTEND, "sendmmsg": ()})
    assert not seccomp.names_destination({"read": ()})


@pytest.mark.parametrize("role", ROLES)
def test_foreign_arch_and_x32_are_killed_even_in_trap_mode(role: str) -> None:
    i386 = 0x40000003
    assert decide(role, "x86_64", "read", audit=i386) == KILL
    assert decide(role, "x86_64", "read", audit=seccomp.AUDIT_ARCH_AARCH64, trap=True) == KILL
    assert decide(role, "aarch64", "read", audit=seccomp.AUDIT_ARCH_X86_64) == KILL
    x32_read = seccomp.X32_SYSCALL_BIT | 0
    assert decide(role, "x86_64", x32_read, trap=True) == KILL


def test_unknown_syscall_in_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        seccomp.assemble({"no_such_call": ()}, ARCHES["x86_64"], KILL)


def rights_on(path: str, rules: list[tuple[str, int]]) -> int:
    """What Landlock grants on ``path``: the union of the rules on it and its ancestors."""
    return functools.reduce(
        operator.or_,
        (r for p, r in rules if path == p or path.startswith(p.rstrip("/") + "/")),
        0,
    )


def test_parent_reads_the_config_directory_so_a_saved_config_is_read_again() -> None:
    """A rule on the config file names its inode, and saving by rename (sed -i, editors)
    replaces it: READ_FILE on the directory (no listing, no writing) instead."""
    rules = sandbox.parent_rules("/etc/dhcpleased.conf")
    assert rights_on("/etc/dhcpleased.conf", rules) == landlock.READ_FILE
    assert rights_on("/etc/.dhcpleased.conf.swp", rules) == landlock.READ_FILE
    assert not rights_on("/etc", rules) & landlock.READ_DIR


def test_config_directory_rule_is_the_only_read_of_etc_and_a_directory_confines_it() -> None:
    default = sandbox.parent_rules("/etc/dhcpleased.conf", ["/etc/resolv.conf"])
    assert rights_on("/etc/shadow", default) == landlock.READ_FILE  # the cost, documented
    own = sandbox.parent_rules("/etc/dhcpleased/dhcpleased.conf", ["/etc/resolv.conf"])
    assert rights_on("/etc/shadow", own) == 0
    assert rights_on("/etc/dhcpleased/dhcpleased.conf", own) == landlock.READ_FILE
    assert rights_on("/etc/resolv.conf", own) == sandbox.IN_PLACE_RIGHTS


def test_a_symlinked_config_file_gets_both_directories(tmp_path: Path) -> None:
    real = tmp_path / "real" / "dhcpleased.conf"
    real.parent.mkdir()
    real.write_text("")
    link = tmp_path / "etc" / "dhcpleased.conf"
    link.parent.mkdir()
    link.symlink_to(real)
    assert sandbox.conf_dirs(str(link)) == [str(link.parent), str(real.parent)]
    assert sandbox.conf_dirs(str(real)) == [str(real.parent)]


WRITE = (
    landlock.WRITE_FILE | landlock.TRUNCATE | landlock.MAKE_REG | landlock.MAKE_SYM
    | landlock.REMOVE_FILE | landlock.MAKE_DIR | landlock.REMOVE_DIR | landlock.EXECUTE
)  # fmt: skip


OUT_OF_REACH = (
    "/etc", "/etc/ld.so.preload", "/etc/passwd", "/etc/cron.d/x", "/", "/run",
    "/run/systemd/system/x.service", "/usr/lib/x", "/var/lib/x", "/tmp/x",
)  # fmt: skip


@pytest.mark.parametrize(
    ("files", "dirs"), [([], []), (["/etc/resolv.conf"], []), ([], ["/run/dhcpleased"])]
)
def test_the_parent_writes_only_its_own_files(files: list[str], dirs: list[str]) -> None:
    """Every DNS mode: nothing new in /etc (/etc/ld.so.preload, cron.d, sudoers.d), no
    other file of it written, nothing executed anywhere; the lease directory, and
    resolv.conf itself or the run directory's linked file in file mode."""
    rules = sandbox.parent_rules("/etc/dhcpleased.conf", files, dirs)
    for path in OUT_OF_REACH:
        assert not rights_on(path, rules) & WRITE, path
    assert rights_on(sandbox.defs.LEASE_DIR + "/eth0", rules) & landlock.MAKE_REG
    assert bool(rights_on("/etc/resolv.conf", rules) & landlock.WRITE_FILE) == bool(files)
    assert not rights_on("/etc/resolv.conf", rules) & landlock.MAKE_REG
    assert bool(rights_on("/run/dhcpleased/resolv.conf", rules) & WRITE) == bool(dirs)
    # odd objects are moved aside in the lease directory only
    odd = landlock.MAKE_DIR | landlock.REMOVE_DIR | landlock.MAKE_FIFO | landlock.MAKE_CHAR
    assert sandbox.LEASE_DIR_RIGHTS & odd == odd
    assert not rights_on("/run/dhcpleased/x", rules) & odd


def test_the_parent_reads_module_directories_not_sys_path() -> None:
    """``python -m`` from / puts "/" on sys.path: only where modules came from counts."""
    mods = [SimpleNamespace(__file__=f) for f in (
        "/usr/lib/python3.11/os.py", "/usr/lib/python3.11/asyncio/events.py",
        "/venv/lib/site-packages/lark/lark.py", "/venv/lib/site-packages/lark/parsers/x.py",
        "relative.py",
    )] + [SimpleNamespace(), SimpleNamespace(__file__=None)]  # fmt: skip
    assert sandbox.import_dirs(mods) == ["/usr/lib/python3.11", "/venv/lib/site-packages/lark"]
    rules = sandbox.parent_rules("/etc/dhcpleased/dhcpleased.conf")
    assert "/" not in dict(rules) and rights_on("/etc/passwd", rules) == 0


def test_dns_helper_rules() -> None:
    """The helper may read and execute; it writes /run and resolv.conf for resolvconf,
    nothing for resolvectl; never /etc beside resolv.conf."""
    resolved = sandbox.dns_helper_rules("resolved", "/etc/resolv.conf")
    resolvconf = sandbox.dns_helper_rules("resolvconf", "/etc/resolv.conf")
    for rules in (resolved, resolvconf):
        assert rights_on("/usr/sbin/resolvconf", rules) & landlock.EXECUTE
        for path in ("/etc/ld.so.preload", "/etc/passwd", "/usr/lib/x", "/var/lib/x"):
            assert not rights_on(path, rules) & (WRITE & ~landlock.EXECUTE), path
    assert not rights_on("/run/resolvconf/x", resolved) & landlock.WRITE_FILE
    assert rights_on("/run/resolvconf/x", resolvconf) & landlock.MAKE_REG
    assert rights_on("/etc/resolv.conf", resolvconf) & landlock.WRITE_FILE
    assert caps.mask(sandbox.DNS_HELPER_CAPS["resolved"]) == 1 << caps.CAP_NET_ADMIN
    assert sandbox.DNS_HELPER_CAPS["resolvconf"] == ()


def test_landlock_rights_by_abi() -> None:
    assert landlock.fs_rights(1) == (1 << 13) - 1
    assert landlock.fs_rights(4) == landlock.fs_rights(3)
    assert landlock.fs_rights(7) & landlock.IOCTL_DEV


def test_parent_capabilities_and_warning_line() -> None:
    assert caps.mask(sandbox.PARENT_CAPS) == 0x3400
    assert sandbox.missing_features(7, True) is None
    assert sandbox.missing_features(0, True) == "this kernel lacks Landlock: running without it"
    assert sandbox.missing_features(0, False) == (
        "this kernel lacks Landlock and seccomp: running without them"
    )


def test_readme_states_the_childrens_allowlists() -> None:
    """README's security table says how many calls each child may make, and the extras."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"allowlist of {len(seccomp.ENGINE)} calls" in text
    assert f"({len(seccomp.FRONTEND)} calls)" in text
    assert "`timerfd_settime`" in text and "`uname`" in text
