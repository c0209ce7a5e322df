"""The children's seccomp argument filters on the real kernel, one call per subprocess.

test_sandbox_policy.py runs the programs through a Python BPF interpreter; here a fresh
interpreter sets no_new_privs, installs the real program of :func:`seccomp.build` for a
role, then makes exactly one raw call (ctypes, so no library call makes others) with
arguments on either side of each condition: ``mmap``/``mprotect`` with and without
PROT_EXEC, ``ioctl`` requests, ``getsockopt`` levels and names, ``fcntl`` commands,
``newfstatat`` relative to the cwd. Allowed calls return (their result does not matter);
the others must kill the process with SIGSYS. No root needed: no_new_privs suffices.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dhcpleased import seccomp
from tests.integration.lab import skip_or_fail

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import ctypes, os, socket, sys
from dhcpleased import sandbox, seccomp

role, action = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
libc.getsockopt.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                            ctypes.c_void_p)
libc.fcntl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
PROT_RW, PROT_RX, MAP_ANON_PRIVATE = 0x3, 0x5, 0x22
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
buf = ctypes.create_string_buffer(256)
size = ctypes.c_uint32(64)
newfstatat = seccomp.native_arch().table["newfstatat"]
page = libc.mmap(None, 4096, PROT_RW, MAP_ANON_PRIVATE, -1, 0)


def getsockopt(level, name):
    return libc.getsockopt(a.fileno(), level, name, buf, ctypes.byref(size))


actions = {
    "mmap rw": lambda: libc.mmap(None, 4096, PROT_RW, MAP_ANON_PRIVATE, -1, 0),
    "mmap exec": lambda: libc.mmap(None, 4096, PROT_RX, MAP_ANON_PRIVATE, -1, 0),
    "mprotect rw": lambda: libc.mprotect(page, 4096, PROT_RW),
    "mprotect exec": lambda: libc.mprotect(page, 4096, PROT_RX),
    "ioctl FIONBIO": lambda: libc.ioctl(a.fileno(), 0x5421, buf),
    "ioctl SIOCGIFNAME": lambda: libc.ioctl(a.fileno(), 0x8910, buf),
    "ioctl FIONREAD": lambda: libc.ioctl(a.fileno(), 0x541B, buf),
    "ioctl SIOCSIFADDR": lambda: libc.ioctl(a.fileno(), 0x8916, buf),
    "getsockopt SO_PEERCRED": lambda: getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED),
    "getsockopt SO_TYPE": lambda: getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
    "getsockopt IP level 17": lambda: getsockopt(socket.IPPROTO_IP, socket.SO_PEERCRED),
    "fcntl F_GETFL": lambda: libc.fcntl(a.fileno(), 3, 0),
    "fcntl F_DUPFD": lambda: libc.fcntl(a.fileno(), 0, 0),
    "fstat": lambda: os.fstat(a.fileno()),
    "stat relative to cwd": lambda: os.stat("."),
    "fstatat cwd empty path": lambda: libc.syscall(newfstatat, -100, b"", buf, 0x1000),
}
call = actions[action]
sandbox._prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
seccomp.install(seccomp.build(role))
os.write(1, b"filtered\n")
call()
os.write(1, b"survived\n")
os._exit(0)  # exit_group: interpreter finalisation is not what is tested here
"""

# call -> (engine survives, frontend survives)
EXPECTED = {
    "mmap rw": (True, True),
    "mmap exec": (False, False),
    "mprotect rw": (True, True),
    "mprotect exec": (False, False),
    "ioctl FIONBIO": (True, True),
    "ioctl SIOCGIFNAME": (False, True),
    "ioctl FIONREAD": (False, False),
    "ioctl SIOCSIFADDR": (False, False),
    "getsockopt SO_PEERCRED": (False, True),
    "getsockopt SO_TYPE": (False, False),
    "getsockopt IP level 17": (False, False),
    "fcntl F_GETFL": (True, True),
    "fcntl F_DUPFD": (False, False),
    "fstat": (True, True),
    "stat relative to cwd": (False, False),
    "fstatat cwd empty path": (False, False),
}


@pytest.mark.parametrize("role", ["engine", "frontend"])
@pytest.mark.parametrize("call", list(EXPECTED))
def test_argument_filter_on_the_kernel(role: str, call: str) -> None:
    if not seccomp.supported():
        skip_or_fail("this kernel has no seccomp filters with SECCOMP_RET_KILL_PROCESS")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
    r = subprocess.run(
        [sys.executable, "-c", PROBE, role, call],
        capture_output=True, text=True, timeout=60, env=env, cwd="/", check=False,
    )  # fmt: skip
    survives = EXPECTED[call][role == "frontend"]
    if survives:
        assert (r.returncode, r.stdout.split()) == (0, ["filtered", "survived"]), r.stderr
    else:
        assert r.stdout.split() == ["filtered"], r.stderr
        assert r.returncode == -signal.SIGSYS, (r.returncode, r.stderr)
