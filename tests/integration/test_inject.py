"""inject.py against the running daemon: what comes back, and what the sandbox still does.

The tool is only useful if a snippet runs under the process's real sandbox and the tool
says faithfully what happened: output, result, the snippet's own exception, a Python
loop stopped at its deadline with the process intact, a forbidden syscall killing the
process (SIGSYS) as it would kill the daemon's own code, Landlock refusing the parent.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.inject import InjectTimeout, inject
from tests.integration.lab import Lab
from tests.integration.test_crash import LIMIT, ROLES, start
from tests.integration.test_daemon import daemon_log

pytestmark = pytest.mark.integration


def test_output_value_and_exception_come_back(daemon_lab: Lab) -> None:
    lab = daemon_lab
    daemon, pids = start(lab)
    for role in ROLES:
        # no getuid(): not in the children's allowlist; /proc/self/status was opened before
        r = inject(pids[role], "import os\nprint('pid', os.getpid())\nresult = [1, 'two']")
        assert (r.output, r.value, r.error, r.alive) == (
            f"pid {pids[role]}\n",
            "[1, 'two']",
            None,
            True,
        )
        r = inject(pids[role], "def f():\n    raise KeyError('k')\n\nf()")
        assert r.error is not None and r.alive
        assert r.error.splitlines() == [
            "Traceback (most recent call last):",
            '  File "<inject>", line 4, in <module>',
            "    f()",
            '  File "<inject>", line 2, in f',
            "    raise KeyError('k')",
            "KeyError: 'k'",
        ]
    assert daemon.poll() is None, daemon_log(lab)


def test_python_loop_stops_at_its_deadline_and_the_process_lives_on(daemon_lab: Lab) -> None:
    lab = daemon_lab
    daemon, pids = start(lab)
    r = inject(pids["engine"], "n = 0\nwhile True: n += 1", timeout=1.0)
    assert r.alive and r.error is not None
    assert r.error.splitlines()[-1] == "TimeoutError: snippet still running at its deadline"
    assert inject(pids["engine"], "print('still here')").output == "still here\n"
    lab.ctl("log", "brief", timeout=LIMIT)  # the loop still serves: a round trip
    assert daemon.poll() is None, daemon_log(lab)


def test_a_blocking_call_times_out(daemon_lab: Lab) -> None:
    """A syscall that blocks cannot be stopped from inside: gdb gives up the call, the
    caller learns it, and nothing waits for ever (the process is then not to be trusted)."""
    lab = daemon_lab
    _, pids = start(lab)
    started = time.monotonic()
    with pytest.raises(InjectTimeout, match="did not return"):
        inject(pids["main"], "import time\ntime.sleep(60)", timeout=0.5, grace=3.0)
    assert time.monotonic() - started < 10


def test_on_loop_runs_as_the_process_own_code(daemon_lab: Lab) -> None:
    lab = daemon_lab
    daemon, pids = start(lab)
    snippet = "import logging\nlogging.getLogger('dhcpleased').warning('on the loop')"
    for role in ROLES:
        r = inject(pids[role], snippet, on_loop=True)
        assert r.scheduled and r.alive
        lab.wait_for(lambda role=role: f"{role}: on the loop" in daemon_log(lab), LIMIT)
    assert daemon.poll() is None


@pytest.mark.parametrize("role", ["engine", "frontend"])
def test_forbidden_syscall_kills_the_child_as_it_would_the_daemons_code(
    daemon_lab: Lab, role: str
) -> None:
    lab = daemon_lab
    daemon, pids = start(lab)
    r = inject(pids[role], "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)")
    assert r.killed == "SIGSYS" and not r.alive, r.gdb_output
    assert daemon.wait(LIMIT) == 1
    assert f"main: fatal in main: {role} terminated by signal 31" in daemon_log(lab)


def test_landlock_refuses_the_parent(daemon_lab: Lab) -> None:
    lab = daemon_lab
    daemon, pids = start(lab)
    r = inject(pids["main"], "import os\nos.listdir('/usr/share')")
    assert r.alive and r.error is not None
    assert r.error.splitlines()[-1].startswith("PermissionError: [Errno 13]"), r.error
    assert daemon.poll() is None
