"""Run a snippet of Python inside a running, sandboxed process of the daemon (a test tool).

How: ``gdb -p PID -batch`` attaches (root's CAP_SYS_PTRACE reaches a child running as
``_dhcp`` with no_new_privs, a seccomp filter and a deleted root; this kernel has no
Yama, and Yama's ``ptrace_scope`` 1 would not stop root either), then calls
``PyGILState_Ensure``, ``PyRun_SimpleString`` and ``PyGILState_Release`` in the target,
reads the result out of the target's memory and detaches.  gdb reads the interpreter
and its libraries from the host (``set sysroot /``): the child's own root is empty.

What the injection itself makes the target do (measured with ``perf record -e
raw_syscalls:sys_enter -p PID`` around an injection into each of the three processes):
only calls every process's sandbox allows.  ``PyGILState_Ensure``, ``PyRun_SimpleString``
and ``PyGILState_Release`` make none; memory for gdb's string literal (gdb calls
``malloc`` in the target) and for the snippet comes from ``brk``/``mmap`` (read-write);
the harness asks for the running loop (``getpid``, asyncio's fork check) and wakes it
with ``call_soon_threadsafe`` (one ``sendto`` on the loop's self-pipe, read back with
``recvfrom``); the ``epoll_wait`` that the attach interrupted is restarted after the
detach.  So the snippet runs under exactly the process's own filter: a forbidden call in
it kills the process as it would kill the daemon's own code (``Result.killed ==
"SIGSYS"``), and Landlock refusals surface as the snippet's ``PermissionError``.

Two ways to run a snippet:

* **direct** (default): inside ``PyRun_SimpleString``, while the loop sits in
  ``epoll_wait``.  ``print()`` is captured and returned, so is any exception (type,
  message and a traceback of the snippet's frames, formatted without reading any file:
  a lazy ``linecache`` read would be a forbidden ``stat`` in a child), and ``result``, if
  the snippet sets it, comes back as its ``repr``.  ``asyncio.get_running_loop()``
  works; whatever the snippet schedules on it runs right after the detach.
* **on the loop** (``on_loop=True``): the snippet becomes a callback scheduled with
  ``call_soon_threadsafe``, so it runs as the process's own code does and an exception
  in it takes the process's own error path (the point of the crash tests).
  Fire-and-forget: nothing comes back; look at the log and the exit status.

Rules for snippets: use only modules the process already imported (``sys.modules``):
an import that has to find a file is a ``stat``, and that kills a child.  Never block: a
pure-Python loop is stopped with ``TimeoutError`` at ``timeout`` (a trace function
checks the clock), but a blocking syscall cannot be interrupted; gdb is then
interrupted and unwinds the call, which leaves the interpreter in an undefined state
(:class:`InjectTimeout`; treat the process as lost).  One injection at a time per
process (a second tracer is refused).

Command line: ``python -m tests.integration.inject PID 'print(1)'`` (``--loop``).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

GDB = shutil.which("gdb") or "/usr/bin/gdb"
RESULT_ATTR = "_dhcpleased_inject"
GRACE = 10.0  # for gdb itself: attach, symbol loading, detach

# Runs in the target: only builtins and modules every daemon process has loaded.
_HARNESS = r"""
def _dhcpleased_inject(src, deadline_after, on_loop):
    import sys
    out = []

    def _print(*args, sep=" ", end="\n", file=None, flush=False):
        sep = " " if sep is None else sep
        out.append(sep.join(map(str, args)) + ("\n" if end is None else end))

    code = compile(src, "<inject>", "exec")
    scope = {"__name__": "__inject__", "print": _print}
    asyncio = sys.modules.get("asyncio")
    loop = asyncio._get_running_loop() if asyncio is not None else None
    if on_loop:
        loop.call_soon_threadsafe(exec, code, scope)
        return {"scheduled": True}
    monotonic = sys.modules["time"].monotonic
    deadline = monotonic() + deadline_after

    def _trace(frame, event, arg):
        frame.f_trace_opcodes = True  # "while 1: pass" has no line events
        if monotonic() > deadline:
            raise TimeoutError("snippet still running at its deadline")
        return _trace

    lines = src.splitlines()
    error = None
    sys.settrace(_trace)
    try:
        exec(code, scope)
    except BaseException as e:
        sys.settrace(None)
        frames = []
        tb = e.__traceback__.tb_next  # skip the exec() above
        while tb is not None:
            c = tb.tb_frame.f_code
            n = tb.tb_lineno
            tb = tb.tb_next
            if c.co_filename == "<string>":  # the harness's own _trace
                continue
            frames.append(f'  File "{c.co_filename}", line {n}, in {c.co_name}')
            if c.co_filename == "<inject>" and 0 < n <= len(lines) and lines[n - 1].strip():
                frames.append(f"    {lines[n - 1].strip()}")
        last = f"{type(e).__name__}: {e}"
        error = "\n".join(["Traceback (most recent call last):", *frames, last])
    finally:
        sys.settrace(None)
    if loop is not None:
        loop.call_soon_threadsafe(int)  # wake epoll_wait: run what the snippet scheduled
    value = scope.get("result", None)
    return {"output": "".join(out), "error": error, "value": None if value is None else repr(value)}

"""
_HARNESS_CALL = """
import sys
try:
    _r = _dhcpleased_inject({src!r}, {deadline!r}, {on_loop!r})
except BaseException as _e:
    _r = {{"error": f"inject harness: {{type(_e).__name__}}: {{_e}}"}}
setattr(sys, {attr!r}, repr(_r).encode().hex().encode())
"""


class InjectError(Exception):
    """gdb could not attach, find the interpreter or run the harness (text: gdb's output)."""


class InjectTimeout(InjectError):
    """The snippet did not return in time; the target's interpreter is in an undefined state."""


@dataclass(frozen=True)
class Result:
    pid: int
    output: str = ""  # what the snippet print()ed
    error: str | None = None  # traceback of the exception the snippet raised, if any
    value: str | None = None  # repr of the snippet's ``result`` variable, if set
    killed: str | None = None  # the process died during the snippet: its signal, e.g. "SIGSYS"
    exited: int | None = None  # ... or its exit status
    scheduled: bool = False  # on_loop: the callback is queued
    gdb_output: str = ""

    @property
    def alive(self) -> bool:
        return self.killed is None and self.exited is None


def _gdb_script(pid: int, harness: str) -> str:
    # The harness travels as hex so that gdb's C string literal needs no escaping.
    call = f"exec(bytes.fromhex('{harness.encode().hex()}').decode(), {{}})"
    return "\n".join(
        [
            "set pagination off",
            "set confirm off",
            "set width 0",
            "set print elements 0",
            "set unwindonsignal on",
            f"attach {pid}",
            "set $dli_gil = (int) PyGILState_Ensure()",
            f'set $dli_rc = (int) PyRun_SimpleString("{call}")',
            f'set $dli_obj = (void *) PySys_GetObject("{RESULT_ATTR}")',
            "if $dli_obj != 0",
            '  printf "DLI-RESULT %s\\n", (char *) PyBytes_AsString($dli_obj)',
            "end",
            f"call (int) PyRun_SimpleString(\"import sys; sys.__dict__.pop('{RESULT_ATTR}', 0)\")",
            "call (void) PyGILState_Release($dli_gil)",
            'printf "DLI-DONE %d\\n", $dli_rc',
            "detach",
            "quit",
            "",
        ]
    )


def require_gdb() -> None:
    """Skip (fail under DHCPLEASED_REQUIRE_INTEGRATION=1) where gdb is missing."""
    if not os.access(GDB, os.X_OK):
        from tests.integration.lab import skip_or_fail

        skip_or_fail("gdb not found (run tests/integration/prepare.sh)")


def inject(
    pid: int, code: str, *, timeout: float = 10.0, on_loop: bool = False, grace: float = GRACE
) -> Result:
    """Run ``code`` in process ``pid`` (see the module docstring); needs root and gdb.

    ``timeout`` bounds the snippet's Python code; ``grace`` is added for gdb itself before
    the call is given up (:class:`InjectTimeout`)."""
    harness = _HARNESS + _HARNESS_CALL.format(
        src=code, deadline=float(timeout), on_loop=on_loop, attr=RESULT_ATTR
    )
    with tempfile.NamedTemporaryFile("w", prefix="dli-", suffix=".gdb") as script:
        script.write(_gdb_script(pid, harness))
        script.flush()
        argv = [
            GDB, "-nx", "-batch",
            # before the attach, or gdb loads the symbols from the child's empty root
            "-iex", "set sysroot /", "-iex", "set auto-load off",
            "-iex", "set debuginfod enabled off",
            "-x", script.name,
        ]  # fmt: skip
        gdb = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            out, _ = gdb.communicate(timeout=timeout + grace)
        except subprocess.TimeoutExpired:
            gdb.send_signal(signal.SIGINT)  # gdb stops the target and unwinds the call
            try:
                out, _ = gdb.communicate(timeout=grace)
            except subprocess.TimeoutExpired:
                gdb.kill()
                out, _ = gdb.communicate()
            raise InjectTimeout(f"pid {pid}: snippet did not return in {timeout}s\n{out}") from None
    return _parse(pid, out)


def _parse(pid: int, out: str) -> Result:
    died = re.search(r"Program terminated with signal (SIG\w+)", out)
    if died:
        return Result(pid, killed=died.group(1), gdb_output=out)
    exited = re.search(r"\[Inferior \d+ \(process \d+\) exited (?:normally|with code (\d+))\]", out)
    if exited:
        return Result(pid, exited=int(exited.group(1) or "0", 8), gdb_output=out)
    found = re.search(r"^DLI-RESULT ([0-9a-f]*)$", out, re.MULTILINE)
    if found is None or "DLI-DONE 0" not in out:
        raise InjectError(f"pid {pid}: injection failed\n{out}")
    fields = ast.literal_eval(bytes.fromhex(found.group(1)).decode())
    if not isinstance(fields, dict):
        raise InjectError(f"pid {pid}: unexpected result {fields!r}")
    if "output" not in fields and not fields.get("scheduled"):
        raise InjectError(f"pid {pid}: {fields.get('error')}\n{out}")
    return Result(pid, gdb_output=out, **fields)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    on_loop = "--loop" in args
    args = [a for a in args if a != "--loop"]
    if len(args) != 2 or os.geteuid() != 0:
        sys.stderr.write("usage (as root): python -m tests.integration.inject [--loop] PID CODE\n")
        return 2
    r = inject(int(args[0]), args[1], on_loop=on_loop)
    sys.stdout.write(r.output)
    if r.value is not None:
        print(f"result = {r.value}")
    if r.error:
        print(r.error, file=sys.stderr)
    if not r.alive:
        print(f"process {r.pid} died: {r.killed or f'exit {r.exited}'}", file=sys.stderr)
    return 0 if r.alive and not r.error else 1


if __name__ == "__main__":
    sys.exit(main())
