"""The engine's clock: CLOCK_BOOTTIME, and one timerfd on it that wakes the event loop.

Lease times must count the hours a laptop spends suspended. asyncio's clock is
CLOCK_MONOTONIC, which stops during suspend on Linux (OpenBSD's, which the original
uses, does not), and epoll_wait's timeout does not advance while suspended either: after a
night asleep the daemon would believe in a lease that ran out hours ago. CLOCK_BOOTTIME
counts suspended time, and a timerfd armed on it with an absolute expiry is readable as
soon as the machine resumes past that time, so the engine acts on T1, T2 or the lease end
at once (systemd-networkd's DHCP client keeps its lease times on the same clock).

The timerfd is made before the sandbox (`BootClock.__init__`, from ``engine_main``);
afterwards only ``timerfd_settime`` and ``read`` are needed, both in the engine's seccomp
list. Python 3.11 has no ``os.timerfd_*``: the two calls go through ctypes.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import time
from collections.abc import Callable
from typing import Final, Protocol

CLOCK_BOOTTIME: Final = time.CLOCK_BOOTTIME
TFD_TIMER_ABSTIME: Final = 1
TFD_NONBLOCK: Final = os.O_NONBLOCK
TFD_CLOEXEC: Final = os.O_CLOEXEC
_NS: Final = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.timerfd_settime.argtypes = (
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(_Itimerspec),
    ctypes.c_void_p,
)


class Clock(Protocol):
    """What the engine needs of a clock: the time, and one wake-up at an absolute time."""

    def now(self) -> float: ...

    def arm(self, deadline: float | None) -> None: ...

    def start(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


class BootClock:
    """CLOCK_BOOTTIME seconds, and a one-shot timerfd calling ``wake`` at the armed time."""

    def __init__(self) -> None:
        fd = _libc.timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd: int = fd
        self.armed: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: Callable[[], None] | None = None

    def now(self) -> float:
        return time.clock_gettime(CLOCK_BOOTTIME)

    def arm(self, deadline: float | None) -> None:
        """Wake at ``deadline`` (this clock's seconds; one in the past wakes at once), or never."""
        if deadline == self.armed:
            return
        self._settime(None if deadline is None else self._host(deadline))
        self.armed = deadline

    def _host(self, deadline: float) -> float:
        """The kernel's CLOCK_BOOTTIME value for ``deadline`` (the same, on this clock)."""
        return deadline

    def _settime(self, when: float | None) -> None:
        spec = _Itimerspec()
        if when is not None:  # rounded up, so the clock reads >= deadline when we wake
            ns = max(math.ceil(when * _NS), 1)  # all zero would disarm
            spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(ns, _NS)
        if _libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def start(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        self._loop, self._wake = loop, wake
        loop.add_reader(self.fd, self._ready)

    def _ready(self) -> None:
        try:
            os.read(self.fd, 8)  # the expiry count; a re-arm since may have reset it
        except BlockingIOError:
            return
        self.armed = None  # one-shot: it is disarmed now
        if self._wake is not None:
            self._wake()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._loop = None

    def close(self) -> None:
        self.stop()
        os.close(self.fd)
