"""Logging for all three processes (log.c).

stderr with ``-d`` (journald-friendly ``<N>`` priority prefixes when ``$JOURNAL_STREAM``
is set), syslog (facility daemon) otherwise. The syslog handler writes to a datagram
socket connected before the sandbox goes up and never reconnects: a reconnect would call
``socket()``, which the children's seccomp filter forbids. Every line names its process
so that ``journalctl -u dhcpleased`` shows who spoke; ``fatal``/``fatalx`` end the process
with status 1 as the original's do.

A traceback is formatted here, never by :mod:`traceback`: that module reads the source
through ``linecache``, whose ``stat()`` the children's seccomp filter answers with
SIGSYS, so a crash would die without saying why.  The children's tracebacks carry no
source lines (keeping the sources in memory would cost each child ~0.5 MiB and ~20 ms
at start-up, measured); the parent, which may read its sources, gets them.  A message of
several lines goes out as one line per record, each with the process name and priority.
"""

from __future__ import annotations

import linecache
import logging
import os
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    import asyncio

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
_source_lines = True  # only the parent reads source files for a traceback


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
        prefix = f"<{_severity(record.levelno)}>" if self.journal else ""
        return "\n".join(f"{prefix}{_procname}: {line}" for line in record_lines(record))


def record_lines(record: logging.LogRecord) -> list[str]:
    """The message (and ``exc_info``'s traceback, formatted safely) as separate lines."""
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text = "\n".join([text, *format_exception(record.exc_info[1])])
    return text.splitlines() or [""]


class SyslogHandler(logging.Handler):
    """RFC 3164 lines over a pre-connected /dev/log socket; errors are swallowed."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        pri = _LOG_DAEMON | _severity(record.levelno)
        stamp = time.strftime("%b %d %H:%M:%S")
        for text in record_lines(record):
            line = f"<{pri}>{stamp} dhcpleased[{self.pid}]: {_procname}: {text}"
            try:
                self.sock.send(line.encode("utf-8", "replace")[:2048])
            except OSError:
                return  # no syslogd: there is nowhere better to report it


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
    root = logging.getLogger()  # asyncio's own logger too: never the stock formatting
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    log_setverbose(verbose)
    # logging would otherwise read source files for a traceback: forbidden in a sandbox
    logging.raiseExceptions = False


def log_procinit(name: str) -> None:
    global _procname, _source_lines
    _procname = name
    _source_lines = name == "main"


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


# --- the unexpected -----------------------------------------------------------------------
_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


def exception_line(exc: BaseException) -> str:
    """``module.Type: message`` as Python prints it, without ``traceback``'s machinery."""
    t = type(exc)
    name = (
        t.__qualname__
        if t.__module__ in ("builtins", "__main__")
        else f"{t.__module__}.{t.__qualname__}"
    )
    try:
        text = str(exc)
    except Exception:
        text = "<str() failed>"
    return f"{name}: {text}" if text else name


def format_exception(exc: BaseException) -> list[str]:
    """Python's traceback layout, chained exceptions included, opening no file in a child."""
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    how: str | None = None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append((e, how))
        if e.__cause__ is not None:
            e, how = e.__cause__, _CAUSE
        elif e.__context__ is not None and not e.__suppress_context__:
            e, how = e.__context__, _CONTEXT
        else:
            e = None
    lines: list[str] = []
    for e, how in reversed(chain):
        if e.__traceback__ is not None:
            lines.append("Traceback (most recent call last):")
            for frame, lineno in traceback.walk_tb(e.__traceback__):
                code = frame.f_code
                lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}')
                source = linecache.getline(code.co_filename, lineno) if _source_lines else ""
                if source.strip():
                    lines.append(f"    {source.strip()}")
        lines.append(exception_line(e))
        if how is not None:
            lines += ["", how, ""]
    return lines


def crash_report(what: str, exc: BaseException) -> str:
    """What ``fatal in PROC:`` says of an unexpected exception: one line, then the traceback."""
    return "\n".join([f"{what}: {exception_line(exc)}", *format_exception(exc)])


def exception_handler(
    crash: Callable[[str], None],
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """The loop's exception handler: an exception that reached asyncio (a callback, a
    task nobody awaited) is a bug; ``crash`` gets the report and ends the process."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        what = context.get("message") or "unexpected exception in the event loop"
        if isinstance(exc, BaseException):
            crash(crash_report(what, exc))
        else:  # asyncio's own complaint, e.g. a task destroyed while pending
            log.error("%s", what)

    return handle


def install_hooks() -> None:
    """Route what Python would print with ``traceback`` (and kill a child doing so) here.

    Uncaught exceptions at the top level, exceptions in finalizers (unraisable) and
    warnings; the caller still decides the exit status.
    """

    def excepthook(_t: type[BaseException], exc: BaseException, _tb: Any) -> None:
        log.critical("fatal in %s: %s", _procname, crash_report("unexpected exception", exc))

    def unraisablehook(u: Any) -> None:
        where = u.err_msg or "Exception ignored in"
        if u.object is not None:
            where = f"{where}: {u.object!r}"
        if isinstance(u.exc_value, BaseException):
            log.error("%s", "\n".join([where, *format_exception(u.exc_value)]))

    def showwarning(  # noqa: PLR0917 - warnings.showwarning's signature
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        log.warning("%s:%d: %s: %s", filename, lineno, category.__name__, message)

    sys.excepthook = excepthook
    sys.unraisablehook = unraisablehook
    warnings.showwarning = showwarning
