"""Locking a child down before it reads an untrusted byte.

This is the first layer: a process name that ps and the kernel's audit lines show, the
switch to the unprivileged user, and no_new_privs. Capabilities, Landlock and seccomp
(the Linux twins of pledge and unveil) are added on top of it, in that order.
"""

from __future__ import annotations

import ctypes
import os
import pwd

from dhcpleased import defs

PR_SET_NAME = 15
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    """The sandbox could not be put in place: fatal, never silently skipped."""


def _prctl(option: int, arg: int | bytes) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise SandboxError(f"prctl({option}): {os.strerror(errno)}")


def set_procname(name: str) -> None:
    """``dhcpleased: engine`` is too long for comm (15 bytes): comm gets ``dhcp-engine``."""
    _prctl(PR_SET_NAME, f"dhcp-{name}".encode()[:15])


def drop_privileges(user: str = defs.DHCPLEASED_USER) -> None:
    """setgroups/setresgid/setresuid to the unprivileged user, then verify it stuck."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise SandboxError(f"unknown user {user}") from None
    try:
        os.setgroups([pw.pw_gid])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    except OSError as e:
        raise SandboxError(f"cannot drop privileges: {e.strerror}") from None
    if os.getresuid() != (pw.pw_uid,) * 3 or os.getresgid() != (pw.pw_gid,) * 3:
        raise SandboxError("privilege drop did not stick")


def enter_child(role: str) -> None:
    """Everything a child does to itself once its imports and its event loop exist."""
    set_procname(role)
    os.chdir("/")
    if os.geteuid() == 0:
        drop_privileges()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
