"""A bug says why: an unexpected exception in any process of the running daemon.

Each case raises an exception the daemon's code does not expect inside one process of the
real daemon, sandboxed as it runs (the children under seccomp, as ``_dhcp``): from outside
with gdb (:mod:`tests.integration.inject`) in a loop callback, a task nobody awaits and a
dispatch handler, and at start-up through a wrapper that replaces one method before the
real entry point runs.  Each must end with the exception and its traceback in the log,
status 1, the parent naming the child that died (not ``signal 31``: formatting a traceback
the stock way reads the source file, which seccomp punishes with SIGSYS), and no process
left behind.  Warnings and exceptions in finalizers are logged the same safe way and
cost nothing else.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from tests.integration.inject import inject, require_gdb
from tests.integration.lab import IP, Lab
from tests.integration.test_daemon import alive, children, comm, daemon_log
from tests.integration.test_sandbox import status

pytestmark = pytest.mark.integration

LIMIT = 15.0
ROLES = ("main", "engine", "frontend")
MARK = "injected by the test"
# What makes the dispatch handler of each process raise: the snippet replaces it on the
# live object, the trigger makes the other side send it a message.
# (class, method replaced, the real code that calls it)
HANDLER = {
    "main": ("Main", "dispatch_frontend", "dispatch"),
    "engine": ("Engine", "_dispatch_main", "guarded"),
    "frontend": ("Frontend", "_dispatch_main", "guarded"),
}

BOOM = f"""
import asyncio, gc
def boom(*args):
    raise LookupError({MARK!r})
async def aboom():
    boom()
loop = asyncio.get_running_loop()
"""
SNIPPETS = {
    "callback": BOOM + "loop.call_soon(boom)\n",
    "task": BOOM + "loop.create_task(aboom())\n",  # no reference kept: "never retrieved"
    "dispatch": BOOM
    + """
[target] = [o for o in gc.get_objects() if type(o).__name__ == CLASS]
setattr(target, METHOD, boom)
""",
}


def start(lab: Lab) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """The daemon, up with both children in their sandbox; no server needed."""
    require_gdb()
    daemon = lab.start_daemon("-d", lab.ifname)

    def sandboxed() -> dict[str, int] | None:
        if daemon.poll() is not None:
            raise AssertionError(f"daemon exited {daemon.returncode}:\n{daemon_log(lab)}")
        kids = {comm(k): k for k in children(daemon.pid)}
        if set(kids) != {"dhcp-engine", "dhcp-frontend"}:
            return None
        if not all(status(k)["Seccomp"] == "2" for k in kids.values()):
            return None
        return {
            "main": daemon.pid,
            "engine": kids["dhcp-engine"],
            "frontend": kids["dhcp-frontend"],
        }

    pids = lab.wait_for(sandboxed, LIMIT, what="children sandboxed")
    lab.wait_for(lambda: "main: startup" in daemon_log(lab), LIMIT, what="startup")
    return daemon, pids


def check_crash(lab: Lab, daemon: subprocess.Popen[bytes], role: str, pids: dict[str, int]) -> str:
    """Status 1, the report and its traceback in the log, the parent's verdict, no leftover."""
    try:
        assert daemon.wait(LIMIT) == 1, daemon_log(lab)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"daemon still running:\n{daemon_log(lab)}") from None
    log = daemon_log(lab)
    lines = log.splitlines()
    fatal = [i for i, line in enumerate(lines) if line.startswith(f"{role}: fatal in {role}: ")]
    assert len(fatal) == 1, log
    assert lines[fatal[0]].endswith(f"LookupError: {MARK}"), log
    tb = lines[fatal[0] + 1 :]
    assert tb[0] == f"{role}: Traceback (most recent call last):", log
    end = tb.index(f"{role}: LookupError: {MARK}")
    frames = [
        line for line in tb[:end] if re.match(rf'{role}:   File "[^"]+", line \d+, in ', line)
    ]
    assert frames and frames[-1].endswith("in boom"), log
    if role != "main":
        assert f"main: fatal in main: {role} exited with status 1" in lines, log
    assert "signal" not in log, log
    for pid in pids.values():
        lab.wait_for(lambda pid=pid: not alive(pid), LIMIT, what=f"{pid} gone")
    return log


@pytest.mark.parametrize("kind", sorted(SNIPPETS))
@pytest.mark.parametrize("role", ROLES)
def test_unexpected_exception_is_reported_and_ends_the_daemon(
    daemon_lab: Lab, role: str, kind: str
) -> None:
    lab = daemon_lab
    daemon, pids = start(lab)
    cls, method, caller = HANDLER[role]
    code = SNIPPETS[kind].replace("CLASS", repr(cls)).replace("METHOD", repr(method))
    r = inject(pids[role], code)
    assert r.alive and r.error is None, (r.error, r.gdb_output)
    if kind == "dispatch":  # a message the patched handler has to take
        if role == "main":
            lab.ctl("log", "verbose", timeout=LIMIT)
        else:
            daemon.send_signal(signal.SIGHUP)  # RECONF_* to both children
    log = check_crash(lab, daemon, role, pids)
    if kind == "dispatch":
        assert f"{role}: fatal in {role}: Exception in callback Channel._on_readable()" in log
        assert f", in {caller}\n" in log, log  # it went through the real dispatch path
    if kind == "task":
        assert f"{role}: fatal in {role}: Task exception was never retrieved" in log, log


# The real parent and children, with one method replaced before the real entry point runs.
PARENT = r"""
import sys
from dhcpleased import main
role, mark = sys.argv[1], sys.argv[2]
def boom(*args, **kwargs):
    raise LookupError(mark)
if role == "main":
    from dhcpleased import sandbox
    sandbox.enter_parent = boom  # Main.run calls it once the children are up
else:
    real = main.child_argv
    def child_argv(r, opts):
        argv = real(r, opts)
        if r != role:
            return argv
        return [sys.executable, "-c", CHILD, role, mark, *argv[argv.index("dhcpleased") + 1 :]]
    main.child_argv = child_argv
sys.exit(main.main(sys.argv[3:]))
"""
CHILD = r"""
import sys
from dhcpleased import main
role, mark = sys.argv[1], sys.argv[2]
if role == "engine":
    from dhcpleased.engine import Engine as cls
else:
    from dhcpleased.frontend import Frontend as cls
async def boom(self):  # the first thing serve() does, under the sandbox
    raise LookupError(mark)
cls.run = boom
sys.exit(main.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("role", ROLES)
def test_unexpected_exception_at_startup(daemon_lab: Lab, role: str) -> None:
    lab = daemon_lab
    out = open(lab.tmp / "dhcpleased.log", "ab")  # noqa: SIM115 - closed below
    try:
        code = PARENT.replace("CHILD", repr(CHILD))
        daemon = lab.run_in_client(
            [sys.executable, "-c", code, role, MARK, "-d", "-v", lab.ifname], stdout=out, stderr=out
        )
        try:
            assert daemon.wait(LIMIT) == 1, daemon_log(lab)
        finally:
            out.close()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"daemon still running:\n{daemon_log(lab)}") from None
    log = check_crash(lab, daemon, role, {})
    if role != "main":  # it happened under the sandbox
        sandboxed = log.index(f"{role}: sandbox: chroot yes, Landlock ABI ")
        assert sandboxed < log.index(f"{role}: fatal in {role}"), log
    lab.wait_for(lambda: not lab_pids(lab), LIMIT, what="no process left in the lab")


def lab_pids(lab: Lab) -> list[str]:
    r = subprocess.run(
        [IP, "netns", "pids", lab.cli_ns], capture_output=True, text=True, check=False
    )
    return r.stdout.split()


def test_warnings_and_finalizer_exceptions_are_logged_and_survived(daemon_lab: Lab) -> None:
    """Python prints both with the source line: a file read a sandboxed child dies of."""
    lab = daemon_lab
    daemon, pids = start(lab)
    snippet = f"""
import asyncio, warnings
warnings.warn_explicit({MARK!r}, UserWarning, asyncio.events.__file__, 80)
class Finalized:
    def __del__(self):
        raise LookupError({MARK!r})
Finalized()
"""
    for role in ROLES:
        r = inject(pids[role], snippet)
        assert r.alive and r.error is None, (role, r.error, r.killed)
    lab.ctl("log", "brief", timeout=LIMIT)  # a round trip through all three processes
    assert daemon.poll() is None, daemon_log(lab)
    log = daemon_log(lab)
    for role in ROLES:
        assert re.search(rf"^{role}: /\S+/asyncio/events\.py:80: UserWarning: {MARK}$", log, re.M)
        assert f"{role}: Exception ignored in: <function Finalized.__del__" in log, log
        assert f"{role}: LookupError: {MARK}" in log, log
    assert "fatal" not in log, log
