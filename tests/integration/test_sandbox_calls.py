"""Each child's real sandbox against forbidden calls, in a fresh interpreter (root).

A subprocess imports dhcpleased, builds its event loop, enters the engine's or the
frontend's sandbox exactly as the daemon does (:func:`sandbox.enter_child`), says
"sandboxed", then does one forbidden thing.  Seccomp must kill it with SIGSYS; a control
run that does only what a child normally does must exit 0.  The Landlock-only runs show
that Landlock alone, for root and without chroot, answers EACCES/EPERM.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, ctypes, logging, os, socket, sys, threading, time
from dhcpleased import boottime, sandbox, seccomp
SENDTO = seccomp.native_arch().table["sendto"]
from dhcpleased.log import log, log_init

role, action = sys.argv[1], sys.argv[2]
ppid = os.getppid()
mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
pkt = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # as the frontend holds one
log_init(True, 1, role)
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
clock = boottime.BootClock()  # the engine's lease timer, made before the sandbox
sandbox.enter_child(role)
assert sandbox.STATUS.seccomp and sandbox.STATUS.landlock_applied and sandbox.STATUS.chroot
os.write(1, b"sandboxed\n")


async def normal():
    # what a child does all day: timers, a channel, logging, randomness, memory
    got = loop.create_future()
    loop.add_reader(theirs.fileno(), lambda: got.done() or got.set_result(theirs.recv(64)))
    loop.call_later(0.01, mine.send, b"ping")
    assert await got == b"ping"
    loop.remove_reader(theirs.fileno())
    log.info("logging works, %s", os.urandom(4).hex())
    bytearray(32 << 20)
    time.time(), time.monotonic()
    if role == "engine":  # the lease timer: re-armed, and it wakes the loop
        woke = loop.create_future()
        clock.start(loop, lambda: woke.done() or woke.set_result(clock.now()))
        clock.arm(clock.now() + 0.01)
        assert await woke > 0
        clock.stop()
    else:  # the host name, read for every packet
        assert socket.gethostname()


actions = {
    "normal": lambda: loop.run_until_complete(normal()),
    "open": lambda: open("/etc/hostname"),
    "socket": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
    "connect": lambda: mine.connect("\0dhcpleased-test"),
    "exec": lambda: os.execv("/bin/true", ["true"]),
    "fork": lambda: os.fork(),
    "thread": lambda: threading.Thread(target=lambda: None).start(),
    "ptrace": lambda: sandbox._libc.ptrace(0, 0, 0, 0),
    "kill": lambda: os.kill(ppid, 0),
    "import": lambda: __import__("xml.dom.minidom"),
    "timerfd_create": lambda: boottime.BootClock(),
    "sethostname": lambda: socket.sethostname("dhcpleased-test"),
    "uname": lambda: os.uname(),
    "timerfd_settime": lambda: clock.arm(time.clock_gettime(time.CLOCK_BOOTTIME) + 60),
    "packet_stats": lambda: pkt.getsockopt(263, 6, 8),  # SOL_PACKET, PACKET_STATISTICS
    "packet_option": lambda: pkt.getsockopt(263, 8, 4),  # SOL_PACKET, PACKET_AUXDATA
    "crossed_option": lambda: pkt.getsockopt(socket.SOL_SOCKET, 6),  # SO_BROADCAST
    # what the frontend may send: never to an address of its choosing
    "send": lambda: mine.send(b"no address"),
    "sendto_addr": lambda: pkt.sendto(b"\xff" * 60, ("lo", 0x0806)),
    "sendto_high_addr": lambda: sandbox._libc.syscall(
        ctypes.c_long(SENDTO), mine.fileno(), b"x", 1, 0, ctypes.c_void_p(1 << 32), 16
    ),
    "sendmsg_fd3": lambda: mine.sendmsg([b"as the channel"]) if mine.fileno() == 3 else sys.exit(2),
    "sendmsg": lambda: theirs.sendmsg([b"not fd 3"]),
    "sendmmsg": lambda: sandbox._libc.sendmmsg(mine.fileno(), None, 0, 0),
}
actions[action]()
mine.close()
theirs.close()
pkt.close()
loop.close()
assert not sandbox.late_imports(), sandbox.late_imports()
os.write(1, b"survived\n")
"""

LANDLOCK_ONLY = r"""
import errno, os, socket, sys
from dhcpleased import landlock, sandbox

ppid = os.getppid()
sandbox._prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
sandbox.child_landlock(landlock.abi_version())


def attempt(name, fn):
    try:
        fn()
    except (OSError, ImportError) as e:
        print(name, errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__))
    else:
        print(name, "ALLOWED")


attempt("open", lambda: open("/etc/hostname"))
attempt("listdir", lambda: os.listdir("/"))
attempt("exec", lambda: os.execv("/bin/true", ["true"]))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", 9)))
attempt("kill", lambda: os.kill(ppid, 0))
attempt("import", lambda: __import__("xml.dom.minidom"))
print("uid", os.getuid())
"""


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
        check=False,
    )


ROLES = ("engine", "frontend")
FORBIDDEN = (
    "open", "socket", "connect", "exec", "fork", "thread", "ptrace", "kill", "import",
    "timerfd_create", "sethostname", "packet_option", "crossed_option",
)  # fmt: skip
# What one child may call and the other not: uname (frontend), timerfd_settime (engine).
ONLY = {"engine": "timerfd_settime", "frontend": "uname"}


@pytest.mark.parametrize("role", ROLES)
def test_normal_work_runs_clean(role: str, dhcp_user: pwd.struct_passwd) -> None:
    r = run(CHILD, role, "normal")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["sandboxed", "survived"]
    assert "logging works" in r.stderr


@pytest.mark.parametrize("action", FORBIDDEN)
@pytest.mark.parametrize("role", ROLES)
def test_forbidden_call_kills(role: str, action: str, dhcp_user: pwd.struct_passwd) -> None:
    r = run(CHILD, role, action)
    assert r.stdout.split() == ["sandboxed"], r.stderr
    assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)


@pytest.mark.parametrize("role", ROLES)
def test_the_other_childs_extra_call_kills(role: str, dhcp_user: pwd.struct_passwd) -> None:
    other = ONLY["frontend" if role == "engine" else "engine"]
    r = run(CHILD, role, other)
    assert r.stdout.split() == ["sandboxed"], r.stderr
    assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)
    r = run(CHILD, role, ONLY[role])
    assert r.returncode == 0, r.stderr


def test_packet_statistics_for_the_frontend_only(dhcp_user: pwd.struct_passwd) -> None:
    """The one getsockopt the flood counters need; its neighbours are in FORBIDDEN."""
    r = run(CHILD, "frontend", "packet_stats")
    assert (r.returncode, r.stdout.split()) == (0, ["sandboxed", "survived"]), r.stderr
    r = run(CHILD, "engine", "packet_stats")
    assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)


@pytest.mark.parametrize("action", ["sendto_addr", "sendto_high_addr", "sendmsg", "sendmmsg"])
def test_frontend_sends_only_without_an_address(action: str, dhcp_user: pwd.struct_passwd) -> None:
    """send() (sendto with a NULL address) passes; a destination address kills, also one
    whose low 32 bits are zero, and so do sendmsg off the parent channel and sendmmsg."""
    for allowed in ("send", "sendmsg_fd3"):
        r = run(CHILD, "frontend", allowed)
        assert (r.returncode, r.stdout.split()) == (0, ["sandboxed", "survived"]), r.stderr
    r = run(CHILD, "frontend", action)
    assert r.stdout.split() == ["sandboxed"], r.stderr
    assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)


def test_trap_switch_prints_the_stack_then_dies(dhcp_user: pwd.struct_passwd) -> None:
    env_code = "import os; os.environ['DHCPLEASED_SECCOMP_TRAP'] = '1'\n" + CHILD
    r = run(env_code, "engine", "socket")
    assert r.returncode == -signal.SIGSYS
    assert "Stack (most recent call first)" in r.stderr
    assert "in <lambda>" in r.stderr


def test_landlock_alone_binds_root() -> None:
    r = run(LANDLOCK_ONLY)
    assert r.returncode == 0, r.stderr
    got = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert got["uid"] == "0"
    assert got["open"] == "EACCES"
    assert got["listdir"] == "EACCES"
    assert got["exec"] == "EACCES"
    assert got["connect"] == "EACCES"  # Landlock ABI 4: no TCP at all
    assert got["kill"] == "EPERM"  # ABI 6: no signal out of the domain
    assert got["import"] != "ALLOWED"


def test_status_before_any_sandbox() -> None:
    r = run("from dhcpleased import sandbox; print(sandbox.STATUS)")
    assert "landlock_applied=False" in r.stdout and "seccomp=False" in r.stdout


def test_child_without_user_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "from dhcpleased import sandbox\n"
        "try:\n    sandbox.drop_child_privileges('no-such-user-dhcpleased')\n"
        "except sandbox.SandboxError as e:\n    print('fatal', e)\n"
    )
    r = run(code)
    assert r.stdout.strip() == "fatal unknown user no-such-user-dhcpleased"
    assert os.geteuid() == 0


PARENT_ONLY = r"""
import errno, os, socket, subprocess, sys
sys.path.insert(0, "/")  # as "python -m" started from / leaves it: must not matter
from dhcpleased import defs, sandbox

mode, tmp = sys.argv[1], sys.argv[2]
defs.LEASE_DIR = f"{tmp}/leases"
files, dirs = {"file": ([f"{tmp}/etc/resolv.conf"], []), "linked": ([], [f"{tmp}/run"])}.get(
    mode, ([], [])
)
# Landlock and capabilities alone: the seccomp filter would kill at the first refusal
# (test_parent_seccomp_* below)
sandbox.kernel_support = lambda: (sandbox.landlock.abi_version(), False)
sandbox.enter_parent(f"{tmp}/dhcpleased.conf", files, dirs)


def attempt(name, fn):
    try:
        fn()
    except OSError as e:
        print(name, errno.errorcode.get(e.errno or 0, "?"))
    else:
        print(name, "ok")


def write(path, how="w"):
    with open(path, how) as f:
        f.write("x")


def replace(d, name):
    write(f"{d}/.{name}.tmp")
    os.rename(f"{d}/.{name}.tmp", f"{d}/{name}")


attempt("conf", lambda: open(f"{tmp}/dhcpleased.conf").read())
attempt("conf_write", lambda: write(f"{tmp}/dhcpleased.conf"))
attempt("lease", lambda: replace(f"{tmp}/leases", "eth0"))
attempt("resolv_in_place", lambda: write(f"{tmp}/etc/resolv.conf", "r+"))
attempt("resolv_replace", lambda: replace(f"{tmp}/etc", "resolv.conf"))
attempt("etc_new_file", lambda: write(f"{tmp}/etc/ld.so.preload"))
attempt("etc_append", lambda: write(f"{tmp}/etc/passwd", "a"))
attempt("run_dir", lambda: replace(f"{tmp}/run", "resolv.conf"))
attempt("other_dir", lambda: write(f"{tmp}/elsewhere"))
attempt("passwd", lambda: open("/etc/passwd").read())
attempt("root_dir", lambda: os.listdir("/"))
attempt("status", lambda: open("/proc/self/status").read())
attempt("other_proc", lambda: open("/proc/self/environ").read())
attempt("source", lambda: open(sandbox.__file__).read())  # tracebacks show source lines
attempt("exec", lambda: subprocess.run(["/bin/true"], check=True))
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close())
attempt("bind68", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("0.0.0.0", 68)))
attempt("tcp", lambda: socket.create_connection(("127.0.0.1", 9), timeout=1))
attempt("setuid", lambda: os.setuid(1))
attempt("chown", lambda: os.chown(f"{tmp}/leases/eth0", 1, 1))
print("sandbox", sandbox.STATUS.role, sandbox.STATUS.landlock_applied)
"""


@pytest.mark.parametrize("mode", ["file", "linked", "resolved"])
def test_parent_sandbox(tmp_path: Path, mode: str) -> None:
    """The parent's capabilities and Landlock, in a private network namespace: it writes
    its leases and, in file mode, resolv.conf itself or the run directory's; nothing else
    (no new file beside resolv.conf, no other file of its directory), executes nothing."""
    for d in ("leases", "etc", "run"):
        (tmp_path / d).mkdir()
    (tmp_path / "dhcpleased.conf").write_text("")
    (tmp_path / "etc" / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
    r = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", PARENT_ONLY, mode, str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=env, cwd="/", check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert got["conf"] == "ok"
    assert got["conf_write"] == "EACCES"
    assert got["lease"] == "ok"
    assert got["resolv_in_place"] == ("ok" if mode == "file" else "EACCES")
    assert got["resolv_replace"] == "EACCES"
    assert got["etc_new_file"] == "EACCES"
    assert got["etc_append"] == "EACCES"
    assert got["run_dir"] == ("ok" if mode == "linked" else "EACCES")
    assert got["other_dir"] == "EACCES"
    assert got["passwd"] == "EACCES"
    assert got["root_dir"] == "EACCES"
    assert got["exec"] == "EACCES"
    assert got["status"] == "ok"  # its own /proc/self/status, for dhcpleasectl
    assert got["other_proc"] == "EACCES"
    assert got["source"] == "ok"
    assert got["packet"] == "ok"  # CAP_NET_RAW
    assert got["bind68"] == "ok"  # CAP_NET_BIND_SERVICE
    assert got["tcp"] == "EACCES"  # Landlock: no TCP
    assert got["setuid"] == "EPERM"  # no CAP_SETUID
    assert got["chown"] == "EPERM"  # no CAP_CHOWN
    assert got["sandbox"] == "main True"


def test_nothing_is_imported_from_the_working_directory(tmp_path: Path) -> None:
    """``python -m dhcpleased`` from a directory holding a module the parent imports:
    that module is never the one imported (it would run as root, before any sandbox)."""
    (tmp_path / "lark.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n")
    (tmp_path / "dhcpleased.conf").write_text("")
    r = subprocess.run(
        [sys.executable, "-m", "dhcpleased", "-n", "-f", str(tmp_path / "dhcpleased.conf")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    assert (r.returncode, r.stderr) == (0, "configuration OK\n")
    assert not (tmp_path / "pwned").exists()
