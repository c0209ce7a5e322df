"""log.py: tracebacks that read no file, and one record line per output line."""

from __future__ import annotations

import linecache
import logging
import socket
import sys
import traceback
import warnings
from collections.abc import Iterator

import pytest

from dhcpleased import log as logmod
from dhcpleased.imsg import ImsgError


@pytest.fixture
def as_child() -> Iterator[None]:
    logmod.log_procinit("engine")
    try:
        yield
    finally:
        logmod.log_procinit("main")


def chained() -> BaseException:
    def inner() -> None:
        raise KeyError("inner")

    def outer() -> None:
        try:
            inner()
        except KeyError as e:
            raise ValueError("from") from e

    try:
        try:
            outer()
        except ValueError:
            dict[str, int]()["missing"]  # raised while handling: an implicit context
    except KeyError as e:
        return e
    raise AssertionError("not reached")


def python_layout(exc: BaseException) -> list[str]:
    """traceback's own text without source lines and position carets."""
    lines = "".join(traceback.format_exception(exc)).splitlines()
    return [line for line in lines if not line.startswith("    ")]


def test_layout_is_pythons_without_reading_files(
    as_child: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object) -> list[str]:
        raise AssertionError("a child must not read source files")

    exc = chained()
    with monkeypatch.context() as m:  # undone before pytest reports (it reads sources)
        for name in ("getline", "getlines", "updatecache", "checkcache"):
            m.setattr(linecache, name, forbidden)
        try:
            ours: list[str] | BaseException = logmod.format_exception(exc)
        except AssertionError as e:
            ours = e
    assert ours == python_layout(exc)


def test_the_parent_gets_source_lines() -> None:
    exc = chained()
    ours = logmod.format_exception(exc)
    assert '    dict[str, int]()["missing"]  # raised while handling: an implicit context' in ours
    assert [line for line in ours if not line.startswith("    ")] == python_layout(exc)


def test_exception_line_names_module_and_handles_empty_and_broken_str() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError

    assert logmod.exception_line(ValueError("x")) == "ValueError: x"
    assert logmod.exception_line(ValueError()) == "ValueError"
    assert logmod.exception_line(ImsgError("t")) == "dhcpleased.imsg.ImsgError: t"
    name = f"{__name__}.test_exception_line_names_module_and_handles_empty_and_broken_str"
    assert logmod.exception_line(Broken()) == f"{name}.<locals>.Broken: <str() failed>"


def test_a_cycle_in_the_chain_ends() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert logmod.format_exception(a)[-1] == "ValueError: a"


def record(
    msg: str, level: int = logging.CRITICAL, exc: BaseException | None = None
) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("dhcpleased", level, __file__, 1, msg, (), info)


def test_journal_prefix_on_every_line(as_child: None) -> None:
    fmt = logmod._ProcFormatter(journal=True)
    assert fmt.format(record("one", logging.INFO)) == "<6>engine: one"
    assert fmt.format(record("dbg", logging.DEBUG)) == "<7>engine: dbg"
    assert fmt.format(record("warn", logging.WARNING)) == "<4>engine: warn"
    assert fmt.format(record("a\nb")) == "<2>engine: a\n<2>engine: b"
    plain = logmod._ProcFormatter(journal=False)
    assert plain.format(record("a\nb")) == "engine: a\nengine: b"


def test_exc_info_is_formatted_safely(as_child: None) -> None:
    exc = chained()
    text = logmod._ProcFormatter(journal=False).format(record("boom", exc=exc))
    assert text.splitlines() == [
        "engine: boom",
        *(f"engine: {line}" for line in python_layout(exc)),
    ]


def test_syslog_sends_one_datagram_per_line() -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with mine, theirs:
        handler = logmod.SyslogHandler(mine)
        handler.emit(record("first\nsecond", logging.ERROR))
        theirs.settimeout(1)
        got = [theirs.recv(4096).decode(), theirs.recv(4096).decode()]
    for line, text in zip(got, ("first", "second"), strict=True):
        assert line.startswith("<27>")  # LOG_DAEMON | LOG_ERR
        assert line.endswith(f" dhcpleased[{handler.pid}]: main: {text}")


def test_hooks_route_to_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, r: logging.LogRecord) -> None:
            seen.append(r)

    for name in ("excepthook", "unraisablehook"):
        monkeypatch.setattr(sys, name, getattr(sys, name))
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    keep = Keep()
    logmod.log.addHandler(keep)
    try:
        logmod.install_hooks()
        exc = chained()
        sys.excepthook(type(exc), exc, exc.__traceback__)
        warnings.showwarning("careful", UserWarning, "/x.py", 3)
    finally:
        logmod.log.removeHandler(keep)
    first = seen[0].getMessage().splitlines()
    assert first[0] == "fatal in main: unexpected exception: KeyError: 'missing'"
    assert first[1:] == logmod.format_exception(exc)
    assert seen[1].getMessage() == "/x.py:3: UserWarning: careful"
