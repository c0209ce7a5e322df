"""The parent's real seccomp filter against forbidden calls (issue 12.4), as the children's.

A subprocess in a private network namespace (lo up) builds what the parent holds when
it locks itself down (its two channels, an sd_notify-like datagram socket, a netlink
connection, a spawned child, a lease directory and a resolv.conf), enters the parent's
sandbox exactly as the daemon does (:func:`sandbox.enter_parent`), says "sandboxed",
then does one thing.  ``normal`` is the parent's day: packet, broadcast and renewal
sockets opened through bpf.py, interface names and indexes (glibc's AF_UNIX probe is
refused, its AF_INET fallback works), an address and a route through kroute, a lease
and resolv.conf written, a descriptor passed down a channel, the config parsed again,
a traceback formatted from the sources, a child reaped and another killed; it must
exit 0.  Every other action must be killed with SIGSYS: what Landlock cannot stop
(executing a memfd, forking, the kernel's big levers), and the neighbours of each
call the parent's list admits (another socket family, a send with an address, a connect
of the datagram socket, fchmod, another setsockopt or ioctl).
"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dhcpleased import seccomp
from tests.integration.inject import inject
from tests.integration.lab import Lab
from tests.integration.test_daemon import alive, children, daemon_log
from tests.integration.test_parent_reach import LIMIT, start

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

PARENT = r"""
import asyncio, ctypes, errno, os, socket, sys, threading, mmap, time
from ipaddress import IPv4Address
from dhcpleased import bpf, defs, kroute, log as dlog, parse, resolver, sandbox
from dhcpleased.log import log, log_init
from dhcpleased.packet import Route

action, tmp, numbers = sys.argv[1], sys.argv[2], dict(a.split("=") for a in sys.argv[3:])
defs.LEASE_DIR = f"{tmp}/leases"
libc = ctypes.CDLL(None, use_errno=True)
ppid = os.getppid()
fe, fe_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
en, en_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
notify_peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify_peer.bind(f"{tmp}/notify")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
notify.connect(f"{tmp}/notify")
other_peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
other_peer.bind(f"{tmp}/other")  # a daemon's datagram socket elsewhere
quiet = [(os.POSIX_SPAWN_CLOSE, 1), (os.POSIX_SPAWN_CLOSE, 2)]  # our pipes stay ours
sleeper = os.posix_spawn("/bin/sleep", ["sleep", "60"], {}, file_actions=quiet)
quick = os.posix_spawn("/bin/true", ["true"], {}, file_actions=quiet)
pidfd = os.pidfd_open(sleeper)
log_init(True, 1, "main")
dlog.install_hooks()  # as parent_main: a traceback is formatted by log.py, not by C
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
kr = kroute.KRoute()
loop.run_until_complete(kr.open())
res = resolver.Resolver(resolv_conf=f"{tmp}/etc/resolv.conf", mode="file", run_dir=f"{tmp}/run")
conf = f"{tmp}/dhcpleased.conf"
parse.load_config(conf, default=False, regular=True)  # as parent_main does, before
sandbox.enter_parent(conf, *res.writable())
assert sandbox.STATUS.seccomp and sandbox.STATUS.landlock_applied
os.write(1, b"sandboxed\n")
LO = socket.if_nametoindex("lo")
SOCK_CLOEXEC = socket.SOCK_CLOEXEC


async def normal():
    pkt = bpf.open_bpfsock(LO)
    bcast = bpf.open_bcastsock(LO)
    udp = bpf.open_udpsock(LO, IPv4Address("127.0.0.1"), IPv4Address("127.0.0.2"))
    assert socket.if_indextoname(LO) == "lo"
    await kr.configure(LO, IPv4Address("10.9.9.9"), IPv4Address("255.255.255.0"),
                       (Route(IPv4Address("10.9.8.0"), IPv4Address("255.255.255.0"),
                              IPv4Address("10.9.9.1")),))
    await kr.deconfigure(LO, IPv4Address("10.9.9.9"), IPv4Address("255.255.255.0"), ())
    assert await kr.set_up(socket.if_nametoindex("dlx0"))  # dhcpleasectl IF on a down one
    resolver.write_atomic(f"{tmp}/leases/lo", b"lease\n", 0o644)
    os.rename(f"{tmp}/leases/lo", f"{tmp}/leases/lo.old")
    os.unlink(f"{tmp}/leases/lo.old")
    await res.propose("lo", [IPv4Address("198.18.0.1")], "a.test", [])
    await res.withdraw("lo")
    fe.sendmsg([b"fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(memoryview(
        __import__("array").array("i", [pkt.fileno()]))))])
    for s in (pkt, bcast, udp):
        s.close()
    notify.send(b"READY=1")
    parse.load_config(conf, default=False, regular=True)
    try:
        IPv4Address("not an address")  # raised in ipaddress.py: its source is read
    except ValueError as e:
        assert "raise AddressValueError" in dlog.crash_report("test", e)
    os.urandom(8), time.time(), bytearray(32 << 20)
    os.waitpid(quick, 0)
    signal = __import__("signal")
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    os.waitpid(sleeper, 0)
    got = loop.create_future()
    loop.call_later(0.01, got.set_result, 1)
    assert await got == 1


def syscall(name, *args):
    return libc.syscall(int(numbers[name]), *args)


actions = {
    "normal": lambda: loop.run_until_complete(normal()),
    "opensock_probe": lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | SOCK_CLOEXEC),
    "exec": lambda: os.execv("/bin/true", ["true"]),
    "execveat": lambda: syscall("execveat", -1, b"", 0, 0, 0x1000),
    "memfd_create": lambda: os.memfd_create("elf"),
    "fork": lambda: os.fork(),
    "thread": lambda: threading.Thread(target=lambda: None).start(),
    "ptrace": lambda: libc.ptrace(0, 0, 0, 0),
    "process_vm_writev": lambda: syscall("process_vm_writev", ppid, 0, 0, 0, 0, 0),
    "mount": lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
    "bpf": lambda: syscall("bpf", 0, 0, 0),
    "init_module": lambda: syscall("init_module", 0, 0, b""),
    "finit_module": lambda: syscall("finit_module", -1, b"", 0),
    "kexec_load": lambda: syscall("kexec_load", 0, 0, 0, 0),
    "kexec_file_load": lambda: syscall("kexec_file_load", -1, -1, 0, b"", 0),
    "setns": lambda: libc.setns(-1, 0),
    "unshare": lambda: libc.unshare(0),
    "keyctl": lambda: syscall("keyctl", 0, 0, 0, 0, 0),
    "kill": lambda: os.kill(ppid, 0),
    "prctl": lambda: libc.prctl(15, b"x", 0, 0, 0),
    "socketpair": lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM),
    "unix_stream": lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
    "unix_dgram_other_flags": lambda: libc.socket(1, 2, 0),  # Python adds SOCK_CLOEXEC
    "inet6": lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM),
    "tcp": lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
    "raw_ip": lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP),
    "netlink_route": lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0),
    "netlink_netfilter": lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12),
    "netlink_generic": lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16),
    "connect_datagram": lambda: notify.connect(f"{tmp}/other"),
    "sendto_address": lambda: notify.sendto(b"x", f"{tmp}/other"),
    "sendmsg_other": lambda: notify.sendmsg([b"x"]),
    "detach_filter": lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).setsockopt(
        socket.SOL_SOCKET, 27, 0),  # SO_DETACH_FILTER
    "getsockopt_other": lambda: fe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    "ioctl_set": lambda: __import__("fcntl").ioctl(fe.fileno(), 0x8914, bytes(40)),  # SIOCSIFFLAGS
    "fchmod": lambda: os.fchmod(os.open(conf, os.O_RDONLY), 0o666),
    "chmod": lambda: os.chmod(conf, 0o666),
    "chown": lambda: os.chown(conf, 0, 0),
    "mmap_exec": lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC),
    "symlink": lambda: os.symlink("/etc/passwd", f"{tmp}/leases/x"),
}
actions[action]()
loop.run_until_complete(kr.close())
loop.close()
assert not sandbox.late_imports(), sandbox.late_imports()
os.write(1, b"survived\n")
"""

NUMBERS = {  # not in any table of seccomp.py: (x86_64, aarch64)
    "execveat": (322, 281), "process_vm_writev": (311, 271), "bpf": (321, 280),
    "init_module": (175, 105), "finit_module": (313, 273), "kexec_load": (246, 104),
    "kexec_file_load": (320, 294), "keyctl": (250, 219),
}  # fmt: skip


def run(
    action: str, tmp: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    for d in ("leases", "etc", "run"):
        (tmp / d).mkdir(exist_ok=True)
    (tmp / "etc" / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    (tmp / "dhcpleased.conf").write_text("interface lo { ignore dns }\n")
    col = 0 if platform.machine() == "x86_64" else 1
    numbers = [f"{k}={v[col]}" for k, v in NUMBERS.items()]
    script = (
        "ip link set lo up && ip link add dlx0 type veth peer name dlx1 && "
        f'exec {sys.executable} -c "$0" "$@"'
    )
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script, PARENT, action, str(tmp), *numbers],
        capture_output=True, text=True, timeout=60, cwd="/", check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO),
             "LANG": "C.UTF-8", **(env or {})},
    )  # fmt: skip


FORBIDDEN = (
    "exec", "execveat", "memfd_create", "fork", "thread", "ptrace", "process_vm_writev",
    "mount", "bpf", "init_module", "finit_module", "kexec_load", "kexec_file_load",
    "setns", "unshare", "keyctl", "kill", "prctl", "socketpair", "unix_stream",
    "unix_dgram_other_flags", "inet6", "tcp", "raw_ip", "netlink_route", "netlink_netfilter",
    "netlink_generic", "connect_datagram", "sendto_address", "sendmsg_other",
    "detach_filter", "getsockopt_other", "ioctl_set", "fchmod", "chmod", "chown",
    "mmap_exec", "symlink",
)  # fmt: skip


def test_the_parents_day_runs_clean(tmp_path: Path) -> None:
    r = run("normal", tmp_path, {"DHCPLEASED_SECCOMP_TRAP": "1"})  # a stack if it fails
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["sandboxed", "survived"]


@pytest.mark.parametrize("action", FORBIDDEN)
def test_forbidden_call_kills_the_parent(tmp_path: Path, action: str) -> None:
    r = run(action, tmp_path)
    assert r.stdout.split() == ["sandboxed"], r.stderr
    assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)


def test_glibc_unix_probe_is_refused_not_killed(tmp_path: Path) -> None:
    """socket(AF_UNIX, SOCK_DGRAM|SOCK_CLOEXEC, 0), exactly glibc's __opensock probe."""
    r = run("opensock_probe", tmp_path)
    assert r.returncode == 1 and r.stdout.split() == ["sandboxed"], r.stderr
    assert "OSError: [Errno 97] Address family not supported by protocol" in r.stderr


def test_trap_switch_prints_the_parents_stack(tmp_path: Path) -> None:
    r = run("memfd_create", tmp_path, {"DHCPLEASED_SECCOMP_TRAP": "1"})
    assert r.returncode == -signal.SIGSYS
    assert "Stack (most recent call first)" in r.stderr and "in <lambda>" in r.stderr


# Python injected into the running daemon's parent (inject.py), as an attacker's would run
ATTACKS = {
    # the brief's attack: an ELF in a memfd, forked and executed (Landlock does not see it)
    "memfd_create": "import os\nfd = os.memfd_create('elf')\nos.write(fd, b'\\x7fELF')",
    "fork": "import os\nos.fork()",
    "execve": "import os\nos.execv('/bin/sh', ['sh', '-c', 'id'])",
    "inet6": "import socket\nsocket.socket(socket.AF_INET6, socket.SOCK_DGRAM)",
    "kill": "import os\nos.kill(1, 0)",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_running_parent_is_killed(dhcp_user: object, attack: str) -> None:
    with Lab() as lab:
        pid = start(lab)
        kids = children(pid)
        r = inject(pid, ATTACKS[attack])
        assert r.killed == "SIGSYS" and not r.alive, r.gdb_output
        lab.wait_for(lambda: not any(alive(k) for k in kids), LIMIT, what="children gone")
        assert "fatal" not in daemon_log(lab).split("main: startup", 1)[1]  # no time to say


def test_dhcpleasectl_shows_the_parents_filter(dhcp_user: object) -> None:
    """-p reads the parent's filter of itself, as the README's table quotes it."""
    with Lab() as lab:
        pid = start(lab)
        calls = sum(1 for c in seccomp.PARENT if c in seccomp.native_arch().table)
        procs = {p["name"]: p for p in json.loads(lab.ctl("-p", "-j").stdout)["processes"]}
        assert (procs["main"]["seccomp"], procs["main"]["seccomp_calls"]) == ("filter", calls)
        assert "Seccomp:\t2\n" in Path(f"/proc/{pid}/status").read_text()
        [main] = [line.split() for line in lab.ctl("-p").stdout.splitlines()[1:2]]
        assert main[:1] + main[5:8] == ["main", "filter", f"({calls}", "calls)"], main
