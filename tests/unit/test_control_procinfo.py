"""procinfo: what a process reports of itself, and that a broken probe never flatters it."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from dhcpleased import procinfo, sandbox

STATUS = """Name:\tpython3
Umask:\t0022
State:\tS (sleeping)
Pid:\t4242
Uid:\t995\t995\t995\t995
Gid:\t996\t996\t996\t996
CapInh:\t0000000000000000
CapPrm:\t0000000000003000
CapEff:\t0000000000003000
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
"""


def status_fd(text: str) -> int:
    fd = os.memfd_create("status")  # seekable, like /proc/self/status
    os.write(fd, text.encode())
    return fd


def test_parse_status() -> None:
    fields = procinfo.parse_status(STATUS)
    assert fields["Uid"] == "995\t995\t995\t995"
    assert fields["CapEff"] == "0000000000003000"


def test_snapshot_reads_the_status_file_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "STATUS", SimpleNamespace(landlock_abi=5, landlock_applied=True))
    fd = status_fd(STATUS)
    info = procinfo.snapshot(fd, "engine")
    assert (info.name, info.pid, info.uid, info.gid) == ("engine", os.getpid(), 995, 996)
    assert (info.cap_eff, info.no_new_privs, info.seccomp) == (0x3000, True, 2)
    assert (info.landlock_abi, info.landlock_status) == (5, procinfo.LANDLOCK_ENFORCED)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, STATUS.replace("Seccomp:\t2", "Seccomp:\t0").encode())
    assert procinfo.snapshot(fd, "engine").seccomp == 0  # re-read, not cached
    os.close(fd)


def test_an_unreadable_status_file_is_reported_pessimistically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "STATUS", SimpleNamespace(landlock_abi=5, landlock_applied=False))
    info = procinfo.snapshot(-1, "main")
    assert (info.uid, info.gid) == (os.geteuid(), os.getegid())
    assert info.cap_eff == 0xFFFFFFFFFFFFFFFF
    assert (info.no_new_privs, info.seccomp) == (False, 0)
    assert (info.landlock_abi, info.landlock_status) == (0, procinfo.LANDLOCK_OFF)
    monkeypatch.delattr(sandbox, "STATUS")
    assert procinfo.landlock_state() == (0, procinfo.LANDLOCK_UNKNOWN)


def test_open_status_is_cached_per_process() -> None:
    fd = procinfo.open_status()
    assert fd >= 0
    assert procinfo.open_status() == fd
    info = procinfo.snapshot(fd, "main")
    assert info.pid == os.getpid()
    assert info.uid == os.geteuid()
