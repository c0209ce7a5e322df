"""Landlock's abstract-socket scoping (ABI 6) of the children, on the real kernel.

The test listens on abstract unix sockets (a stream and a datagram one); a fresh
interpreter reaches both, then applies the children's ruleset exactly as
:func:`sandbox.child_landlock` does (no seccomp, so only Landlock can say no) and tries
again: the kernel must refuse with EPERM. No root needed: no_new_privs suffices.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from pathlib import Path

from dhcpleased import landlock
from tests.integration.lab import skip_or_fail

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import errno, os, socket, sys
from dhcpleased import landlock, sandbox

stream_name, dgram_name = (b"\0" + n.encode() for n in sys.argv[1:3])


def attempt(when, what, fn):
    try:
        fn()
    except OSError as e:
        print(when, what, errno.errorcode.get(e.errno, str(e.errno)))
    else:
        print(when, what, "ok")


def connect():
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(stream_name)


def sendto():
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", dgram_name)


for when in ("before", "after"):
    if when == "after":
        sandbox._prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
        sandbox.child_landlock(landlock.abi_version())
    attempt(when, "connect", connect)
    attempt(when, "sendto", sendto)
"""


def test_children_cannot_reach_abstract_sockets_outside_their_domain() -> None:
    abi = landlock.abi_version()
    if abi < 6:
        skip_or_fail(f"Landlock ABI {abi}: abstract-socket scoping needs ABI 6 (Linux 6.12)")
    stream_name, dgram_name = (f"dhcpleased-test-{secrets.token_hex(6)}" for _ in range(2))
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram,
    ):
        stream.bind("\0" + stream_name)
        stream.listen(8)
        dgram.bind("\0" + dgram_name)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
        r = subprocess.run(
            [sys.executable, "-c", PROBE, stream_name, dgram_name],
            capture_output=True, text=True, timeout=60, env=env, cwd="/", check=False,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = {" ".join(line.split()[:2]): line.split()[2] for line in r.stdout.splitlines()}
    assert got == {
        "before connect": "ok",
        "before sendto": "ok",
        "after connect": "EPERM",
        "after sendto": "EPERM",
    }
