"""System tests: the installed daemon under a real init, in throwaway containers.

Root, the lab's requirements (network namespaces, dnsmasq) and systemd-nspawn; without
them the tests skip, or fail under ``DHCPLEASED_REQUIRE_INTEGRATION=1`` (CI).  The
container tooling is :mod:`tests.system.containers`; what is specific to this daemon
(installing it the README's way, its configuration) is here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import _no_leaked_namespaces  # noqa: F401 - autouse
from tests.integration.lab import REPO, Lab, missing_requirements, skip_or_fail
from tests.system import containers
from tests.system.containers import Container

HERE = Path(__file__).resolve().parent
SRC = "/mnt/src"  # the checkout, bound read-only
WHEELS = "/mnt/wheels"  # make install's dependencies, for an offline pip
DEBS = "/mnt/debs"
PIPFLAGS = f"PIPFLAGS=--no-index --find-links={WHEELS}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if HERE not in Path(str(item.path)).resolve().parents:
        return
    why = missing_requirements() or containers.missing_requirements()
    if why is not None:
        skip_or_fail(why)


def source_binds(*extra: tuple[str | Path, str, bool]) -> list[tuple[str | Path, str, bool]]:
    """The checkout and the wheelhouse, read-only, plus ``extra``."""
    return [(REPO, SRC, True), (containers.wheelhouse(), WHEELS, True), *extra]


def make_install(c: Container, *args: str) -> str:
    """``make install`` inside, from a copy of the checkout, as the README says (offline:
    the container's network is the lab's).  Returns make's output."""
    src = containers.copy_source(c, SRC)
    r = c.run(["make", "-C", src, "install", PIPFLAGS, *args], timeout=600)
    return r.stdout + r.stderr


def write_conf(c: Container, text: str, path: str = "/etc/dhcpleased.conf") -> None:
    c.run(["sh", "-c", f"cat > {path}"], input=text)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """One lab per module: each module's tests share one booted container."""
    with Lab() as the_lab:
        yield the_lab
