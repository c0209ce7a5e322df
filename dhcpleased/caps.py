"""Capabilities through ctypes: the bounding set, capget/capset, ambient set, securebits.

capset(2) acts on the calling thread only (glibc's setresuid broadcasts, capset does
not): call these while the process has a single thread.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from typing import Final

CAP_DAC_OVERRIDE: Final = 1
CAP_SETPCAP: Final = 8
CAP_NET_BIND_SERVICE: Final = 10
CAP_NET_ADMIN: Final = 12
CAP_NET_RAW: Final = 13
NAMES: Final = {
    CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE",
    CAP_NET_BIND_SERVICE: "CAP_NET_BIND_SERVICE",
    CAP_NET_ADMIN: "CAP_NET_ADMIN",
    CAP_NET_RAW: "CAP_NET_RAW",
}

PR_CAPBSET_READ: Final = 23
PR_CAPBSET_DROP: Final = 24
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
_VERSION_3: Final = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _Header(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _Data(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def mask(caps: Iterable[int]) -> int:
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def last_cap() -> int:
    """Highest capability the kernel knows, probed (no /proc inside a chroot)."""
    n = 40
    while _libc.prctl(PR_CAPBSET_READ, n + 1, 0, 0, 0) >= 0:
        n += 1
    while n > 0 and _libc.prctl(PR_CAPBSET_READ, n, 0, 0, 0) < 0:
        n -= 1
    return n


def bounding() -> int:
    """The bounding set as a mask."""
    return mask(c for c in range(last_cap() + 1) if _libc.prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1)


def drop_bounding(keep: Iterable[int] = ()) -> None:
    """Empty the bounding set except ``keep`` (needs CAP_SETPCAP, so do this first)."""
    kept = mask(keep)
    for c in range(last_cap() + 1):
        if not kept & (1 << c) and _libc.prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1:
            _check(_libc.prctl(PR_CAPBSET_DROP, c, 0, 0, 0), f"PR_CAPBSET_DROP {c}")


def clear_ambient() -> None:
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "PR_CAP_AMBIENT")


def get() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread as 64-bit masks."""
    hdr = _Header(_VERSION_3, 0)
    data = (_Data * 2)()
    _check(_libc.capget(ctypes.byref(hdr), data), "capget")
    eff, prm, inh = (
        int(getattr(data[0], f)) | int(getattr(data[1], f)) << 32
        for f in ("effective", "permitted", "inheritable")
    )
    return eff, prm, inh


def set_caps(effective: int, permitted: int, inheritable: int = 0) -> None:
    hdr = _Header(_VERSION_3, 0)
    data = (_Data * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(hdr), data), "capset")


def keep_only(keep: Iterable[int]) -> None:
    """Bounding, permitted and effective = keep; inheritable and ambient empty."""
    kept = mask(keep)
    drop_bounding(keep)
    clear_ambient()
    set_caps(kept, kept, 0)
    if get() != (kept, kept, 0) or bounding() != kept:
        raise OSError(0, "capabilities did not stick")
