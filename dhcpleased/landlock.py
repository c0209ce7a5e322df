"""Landlock through ctypes, the Linux twin of unveil(2) (ABI 1 to 7).

A ruleset handles every access right the running kernel knows (so anything not granted
by a rule is denied), optionally TCP bind/connect (ABI 4) and signal / abstract-socket
scoping (ABI 6); rights the kernel does not know are dropped, never sent.  Landlock binds
root as well, survives exec, and cannot be undone.  It does not cover stat(2),
pathname unix-socket connect, UDP, raw or packet sockets, or descriptors opened before:
seccomp covers what matters of those in the children.
"""

from __future__ import annotations

import ctypes
import os
import stat
from typing import Final

SYS_CREATE_RULESET: Final = 444  # the same number on every architecture
SYS_ADD_RULE: Final = 445
SYS_RESTRICT_SELF: Final = 446
CREATE_RULESET_VERSION: Final = 1 << 0
RULE_PATH_BENEATH: Final = 1
RULE_NET_PORT: Final = 2

# filesystem rights (the ABI that introduced them)
EXECUTE: Final = 1 << 0
WRITE_FILE: Final = 1 << 1
READ_FILE: Final = 1 << 2
READ_DIR: Final = 1 << 3
REMOVE_DIR: Final = 1 << 4
REMOVE_FILE: Final = 1 << 5
MAKE_CHAR: Final = 1 << 6
MAKE_DIR: Final = 1 << 7
MAKE_REG: Final = 1 << 8
MAKE_SOCK: Final = 1 << 9
MAKE_FIFO: Final = 1 << 10
MAKE_BLOCK: Final = 1 << 11
MAKE_SYM: Final = 1 << 12
REFER: Final = 1 << 13  # ABI 2
TRUNCATE: Final = 1 << 14  # ABI 3
IOCTL_DEV: Final = 1 << 15  # ABI 5
FS_BY_ABI: Final = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS: Final = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

NET_BIND_TCP: Final = 1 << 0  # ABI 4
NET_CONNECT_TCP: Final = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0  # ABI 6
SCOPE_SIGNAL: Final = 1 << 1

READ: Final = READ_FILE | READ_DIR
_libc = ctypes.CDLL(None, use_errno=True)


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _syscall(nr: int, *args: object) -> int:
    ret = int(_libc.syscall(ctypes.c_long(nr), *args))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock: {os.strerror(err)}")
    return ret


def abi_version() -> int:
    """The kernel's Landlock ABI; 0 when it lacks Landlock or it is disabled at boot."""
    ret = int(_libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), None, 0, CREATE_RULESET_VERSION))
    return max(ret, 0)


def fs_rights(abi: int) -> int:
    return FS_BY_ABI[max(k for k in FS_BY_ABI if k <= abi)]


class Ruleset:
    """Add rules, then :meth:`restrict` the calling thread (and what it starts later)."""

    def __init__(
        self, abi: int, *, net: bool = True, scope_signal: bool = True, scope_abstract: bool = True
    ) -> None:
        if abi < 1:
            raise OSError(0, "landlock: not supported by this kernel")
        self.abi = abi
        self.handled_fs = fs_rights(abi)
        self.handled_net = NET_BIND_TCP | NET_CONNECT_TCP if net and abi >= 4 else 0
        scoped = (SCOPE_SIGNAL if scope_signal else 0) | (
            SCOPE_ABSTRACT_UNIX_SOCKET if scope_abstract else 0
        )
        self.scoped = scoped if abi >= 6 else 0
        attr = _RulesetAttr(self.handled_fs, self.handled_net, self.scoped)
        size = 8 if abi < 4 else 16 if abi < 6 else 24
        self.fd = _syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)

    def allow_path(self, path: str, rights: int) -> None:
        """Grant rights beneath path (a file gets only the file rights among them)."""
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                rights &= FILE_RIGHTS
            rule = _PathBeneath(rights & self.handled_fs, fd)
            _syscall(SYS_ADD_RULE, self.fd, RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        finally:
            os.close(fd)

    def restrict(self) -> None:
        """Enforce on the calling thread; no_new_privs (or CAP_SYS_ADMIN) must be set."""
        try:
            _syscall(SYS_RESTRICT_SELF, self.fd, 0)
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
