"""Tests that need root, counted: under CI none of them may go unrun.

``@pytest.mark.root`` marks a test (outside tests/integration, whose conftest marks its
own ``integration``) that needs root; without it the test is skipped, or fails under
``DHCPLEASED_REQUIRE_INTEGRATION=1`` like an integration test (:func:`lab.skip_or_fail`).

With ``DHCPLEASED_REQUIRE_INTEGRATION=1`` the session also counts: every collected test
marked ``integration`` or ``root`` must have run its body (a skip from inside a test, a
missing fixture or an error in setup all count as not run), or the session fails. With
``DHCPLEASED_REQUIRED_COUNT=FILE`` the two numbers are written there, so that .ci/run can
check that this guard ran at all.
"""

from __future__ import annotations

import os

import pytest

from tests.integration.lab import skip_or_fail

REQUIRED = ("integration", "root")
_collected: set[str] = set()
_ran: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root (skipped without, fails CI)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        skip_or_fail("needs root")


def _required(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) is not None for m in REQUIRED)


def pytest_collection_finish(session: pytest.Session) -> None:
    """After every conftest added its markers and -k/-m deselected: what must run."""
    _collected.update(item.nodeid for item in session.items if _required(item))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and not report.skipped and report.nodeid in _collected:
        _ran.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("DHCPLEASED_REQUIRE_INTEGRATION") != "1":
        return
    path = os.environ.get("DHCPLEASED_REQUIRED_COUNT")
    if path:
        with open(path, "w") as f:
            f.write(f"{len(_collected)} {len(_ran)}\n")
    if len(_ran) < len(_collected) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get("DHCPLEASED_REQUIRE_INTEGRATION") != "1":
        return
    missing = sorted(_collected - _ran)
    line = f"root/integration tests: {len(_ran)} of {len(_collected)} collected ran"
    terminalreporter.write_line(line, red=bool(missing), green=not missing)
    for nodeid in missing:
        terminalreporter.write_line(f"  did not run: {nodeid}", red=True)
