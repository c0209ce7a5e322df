"""Logging for all three processes (log.c).

stderr with ``-d`` (journald-friendly ``<N>`` priority prefixes when ``$JOURNAL_STREAM``
is set), syslog (facility daemon) otherwise. The syslog handler writes to a datagram
socket connected before the sandbox goes up and never reconnects: a reconnect would call
``socket()``, which the children's seccomp filter forbids. Every line names its process
so that ``journalctl -u dhcpleased`` shows who spoke; ``fatal``/``fatalx`` end the process
with status 1 as the original's do.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import NoReturn

log = logging.getLogger("dhcpleased")

_SYSLOG_PATH = "/dev/log"
_LOG_DAEMON = 3 << 3
# logging level -> syslog severity
_SEVERITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

_procname = "main"
_verbose = 0


def _severity(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _SEVERITY[level]
    return _SEVERITY[logging.DEBUG]


class _ProcFormatter(logging.Formatter):
    """Prefix the process name, and the sd-daemon priority when journald reads stderr."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_procname}: {record.getMessage()}"
        if self.journal:
            return f"<{_severity(record.levelno)}>{text}"
        return text


class SyslogHandler(logging.Handler):
    """RFC 3164 lines over a pre-connected /dev/log socket; errors are swallowed."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        pri = _LOG_DAEMON | _severity(record.levelno)
        stamp = time.strftime("%b %d %H:%M:%S")
        line = f"<{pri}>{stamp} dhcpleased[{self.pid}]: {_procname}: {record.getMessage()}"
        try:
            self.sock.send(line.encode("utf-8", "replace")[:2048])
        except OSError:
            pass  # no syslogd: there is nowhere better to report it


def _open_syslog() -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(_SYSLOG_PATH)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def log_init(debug: bool, verbose: int, procname: str) -> None:
    """Set up the handler once per process, before any sandbox (it may open /dev/log)."""
    log_procinit(procname)
    for old in list(log.handlers):
        log.removeHandler(old)
        old.close()
    handler: logging.Handler
    sock = None if debug else _open_syslog()
    if sock is not None:
        handler = SyslogHandler(sock)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_ProcFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    log.addHandler(handler)
    log.propagate = False
    log_setverbose(verbose)
    # logging would otherwise read source files for a traceback: forbidden in a sandbox
    logging.raiseExceptions = False


def log_procinit(name: str) -> None:
    global _procname
    _procname = name


def log_setverbose(verbose: int) -> None:
    global _verbose
    _verbose = verbose
    log.setLevel(logging.DEBUG if verbose > 0 else logging.INFO)


def log_getverbose() -> int:
    return _verbose


def procname() -> str:
    return _procname


def fatalx(message: str) -> NoReturn:
    """Log at LOG_CRIT and exit 1; raised as SystemExit so asyncio unwinds the loop."""
    log.critical("fatal in %s: %s", _procname, message)
    raise SystemExit(1)


def fatal(message: str, err: OSError) -> NoReturn:
    fatalx(f"{message}: {err.strerror or err}")
