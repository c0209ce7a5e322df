"""Integration tests: skip where the lab cannot run, unless CI says they must run.

With ``DHCPLEASED_REQUIRE_INTEGRATION=1`` (set by CI) a test that would be skipped fails
instead, so a broken runner cannot turn the integration suite into a row of skips.
"""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.lab import (
    CREATED,
    Lab,
    all_lab_namespaces,
    missing_requirements,
    require_dhcp_user,
    skip_or_fail,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration carries the integration marker."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("integration") is None:
        return
    why = missing_requirements()
    if why is not None:
        skip_or_fail(why)


@pytest.fixture
def dhcp_user() -> pwd.struct_passwd:
    """The daemon's unprivileged user; created by .ci/run or prepare.sh, never here."""
    return require_dhcp_user()


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab with the default settings (dnsmasq running)."""
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture
def daemon_lab(dhcp_user: pwd.struct_passwd, lab: Lab) -> Lab:
    """The lab, for tests that run the daemon (which needs the _dhcp user)."""
    return lab


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_namespaces() -> Iterator[None]:
    """Fail loudly if a lab of this session left a namespace behind (other sessions'
    labs may be running at the same time: only ours are checked)."""
    yield
    leaked = CREATED & set(all_lab_namespaces())
    assert not leaked, f"lab namespaces left behind: {sorted(leaked)}"
