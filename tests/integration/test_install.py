"""make install / uninstall into a DESTDIR, and the installed files checked by their tools.

One real ``make install DESTDIR=... PREFIX=/usr`` per module (pip builds the package and
fetches its two dependencies, as an admin's install would), then: the tree is the one
the README describes, the installed interpreter runs the daemon, the unit passes
``systemd-analyze verify`` against the installed binary and man pages, the man pages
render without a warning, and ``make uninstall`` takes it all away again.  Integration
only because CI must run it (it needs neither root nor a namespace).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhcpleased import defs
from tests.integration.lab import REPO, skip_or_fail

pytestmark = pytest.mark.integration

MAKE_TIMEOUT = 600  # pip on a shared machine

EXPECTED = {
    "usr/sbin/dhcpleased": 0o755,
    "usr/sbin/dhcpleasectl": 0o755,
    "usr/lib/dhcpleased/pyvenv.cfg": 0o644,
    "usr/lib/systemd/system/dhcpleased.service": 0o644,
    "usr/lib/sysusers.d/dhcpleased.conf": 0o644,
    "usr/lib/tmpfiles.d/dhcpleased.conf": 0o644,
    "usr/share/man/man5/dhcpleased.conf.5": 0o644,
    "usr/share/man/man8/dhcpleased.8": 0o644,
    "usr/share/man/man8/dhcpleasectl.8": 0o644,
    "usr/share/bash-completion/completions/dhcpleased": 0o644,
    "usr/share/bash-completion/completions/dhcpleasectl": 0o644,
    "usr/share/doc/dhcpleased/dhcpleased.conf.example": 0o644,
    "etc/dhcpleased.conf": 0o644,
    "etc/init.d/dhcpleased": 0o755,
}
EXPECTED_CONF = "etc/dhcpleased.conf"
MAN_PAGES = ("man5/dhcpleased.conf.5", "man8/dhcpleased.8", "man8/dhcpleasectl.8")


def make(
    target: str, destdir: Path, *extra: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """make TARGET into destdir; the interpreter is the Makefile's own choice unless given."""
    r = subprocess.run(
        ["make", "-C", str(REPO), "--no-print-directory", target, f"DESTDIR={destdir}",
         "PREFIX=/usr", *extra],
        capture_output=True, text=True, timeout=MAKE_TIMEOUT, check=False,
    )  # fmt: skip
    if ok:
        assert r.returncode == 0, f"make {target} failed:\n{r.stdout}\n{r.stderr}"
    return r


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not installed (tests/integration/prepare.sh installs it)")
        raise AssertionError  # not reached
    return path


@pytest.fixture(scope="module")
def destdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if shutil.which("make") is None:
        skip_or_fail("make not installed")
    d = tmp_path_factory.mktemp("destdir")
    make("install", d, "INIT=sysv")
    yield d


def installed_python(destdir: Path) -> str:
    return str(destdir / "usr/lib/dhcpleased/bin/python3")


HIDDEN = ("/home/", "/root/", "/run/user/")  # what the unit's ProtectHome= hides


def base_interpreter(python: str) -> str:
    """The real file a (venv's) interpreter runs: what the service must be able to see."""
    code = "import os, sys; print(os.path.realpath(sys._base_executable))"
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def test_the_environment_is_built_on_an_interpreter_the_service_can_see(destdir: Path) -> None:
    """On this machine python3 on PATH may be a pyenv shim under /root: make picks another."""
    base = base_interpreter(installed_python(destdir))
    assert not base.startswith(HIDDEN), base


def test_an_interpreter_under_home_is_refused(tmp_path: Path) -> None:
    """Named explicitly, an interpreter ProtectHome= would hide fails the install with advice.

    The test's own interpreter is the example where it lives under /root (pyenv); elsewhere
    its directory is declared hidden, which runs the same check."""
    python = base_interpreter(sys.executable)
    hidden = [] if python.startswith(HIDDEN) else [f"HIDDEN_DIRS={os.path.dirname(python)}"]
    r = make("install", tmp_path, f"PYTHON_SYS={python}", *hidden, ok=False)
    assert r.returncode != 0
    assert f"the daemon's interpreter would be {python}" in r.stderr, r.stderr
    assert "make install PYTHON_SYS=/usr/bin/python3" in r.stderr
    assert not (tmp_path / "usr/lib/dhcpleased").exists()


def test_tree(destdir: Path) -> None:
    for rel, mode in EXPECTED.items():
        path = destdir / rel
        assert path.is_file(), f"{rel} missing"
        assert stat.S_IMODE(path.stat().st_mode) == mode, rel
    assert (REPO / "etc/dhcpleased.conf").read_text() == (destdir / EXPECTED_CONF).read_text()


def test_no_destdir_in_what_runs(destdir: Path) -> None:
    """Everything installed names its final path, never the staging directory."""
    for rel in ("usr/sbin/dhcpleased", "usr/sbin/dhcpleasectl", "usr/lib/dhcpleased/pyvenv.cfg",
                "usr/lib/systemd/system/dhcpleased.service", "etc/init.d/dhcpleased"):  # fmt: skip
        assert str(destdir) not in (destdir / rel).read_text(), rel
    assert (
        (destdir / "usr/sbin/dhcpleased")
        .read_text()
        .startswith("#!/usr/lib/dhcpleased/bin/python3 -I\n")
    )
    leftovers = [p.name for p in (destdir / "usr/lib/dhcpleased/bin").iterdir()]
    assert not [n for n in leftovers if not n.startswith("python")], leftovers
    pyc = next(
        (destdir / "usr/lib/dhcpleased/lib").glob(
            "python3*/site-packages/dhcpleased/__pycache__/main.*.pyc"
        )
    )
    assert str(destdir).encode() not in pyc.read_bytes()


IMPORTS = "import dhcpleased.netlink, lark; print(dhcpleased.__file__)"


def test_installed_daemon_runs(destdir: Path) -> None:
    """The wrapper, run by the installed interpreter, parses a configuration."""
    for conf in ("tests/data/full.conf", "etc/dhcpleased.conf"):
        r = subprocess.run(
            [installed_python(destdir), "-I", str(destdir / "usr/sbin/dhcpleased"), "-n",
             "-f", str(REPO / conf)],
            capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert (r.returncode, r.stderr) == (0, "configuration OK\n"), conf
    r = subprocess.run(
        [installed_python(destdir), "-I", "-c", IMPORTS],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert r.stdout.startswith(str(destdir / "usr/lib/dhcpleased/lib/")), r.stdout


def test_unit_passes_systemd_analyze_verify(destdir: Path, tmp_path: Path) -> None:
    """verify checks that ExecStart exists and Documentation= pages are found: point it at
    the installed tree (the unit's only change is the install root)."""
    analyze = tool("systemd-analyze")
    unit = (destdir / "usr/lib/systemd/system/dhcpleased.service").read_text()
    assert "ExecStart=/usr/sbin/dhcpleased -d\n" in unit
    (tmp_path / "dhcpleased.service").write_text(unit.replace("/usr/sbin/", f"{destdir}/usr/sbin/"))
    r = subprocess.run(
        [analyze, "verify", str(tmp_path / "dhcpleased.service")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "MANPATH": str(destdir / "usr/share/man")},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dhcpleased.service" not in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_pages_lint_clean(destdir: Path, page: str) -> None:
    path = str(destdir / "usr/share/man" / page)
    r = subprocess.run(
        [tool("mandoc"), "-T", "lint", "-W", "warning", path],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (r.returncode, r.stdout + r.stderr) == (0, "")
    r = subprocess.run(
        [tool("groff"), "-ww", "-mandoc", "-z", "-Tutf8", path],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (r.returncode, r.stderr) == (0, "")
    r = subprocess.run(
        [tool("man"), "-l", path], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_STDERR": "1", "PAGER": "cat"},
    )  # fmt: skip
    assert (r.returncode, r.stderr) == (0, "")
    assert "DHCPLEASE" in r.stdout


@pytest.mark.parametrize(
    "command, option, default",
    [
        ("dhcpleasectl", "-s", defs.CONTROL_SOCKET),
        ("dhcpleased", "-s", defs.CONTROL_SOCKET),
        ("dhcpleased", "-f", defs.CONF_FILE),
    ],
)
def test_bash_completion_offers_the_default_paths(
    destdir: Path, command: str, option: str, default: str
) -> None:
    script = (
        f'source "$1"; COMP_WORDS=({command} {option} ""); COMP_CWORD=2; _{command}; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    path = destdir / "usr/share/bash-completion/completions" / command
    r = subprocess.run(
        [tool("bash"), "-c", script, "bash", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert r.stdout == f"{default}\n"


def test_uninstall_removes_the_tree(tmp_path: Path) -> None:
    """A second DESTDIR, so that the module's tree stays for the other tests."""
    d = tmp_path / "root"
    make("install", d, "INIT=openrc")
    assert (d / "etc/init.d/dhcpleased").read_text().startswith("#!/sbin/openrc-run\n")
    make("uninstall", d)
    files = [str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir()]
    assert files == []


def test_install_keeps_and_uninstall_leaves_a_changed_config(tmp_path: Path) -> None:
    d = tmp_path / "root"
    (d / "etc").mkdir(parents=True)
    (d / "etc/dhcpleased.conf").write_text("interface eth0 { ignore dns }\n")
    make("install", d, "INIT=none")
    assert not (d / "etc/init.d").exists()
    assert (d / "etc/dhcpleased.conf").read_text() == "interface eth0 { ignore dns }\n"
    make("uninstall", d)
    files = [str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir()]
    assert files == ["etc/dhcpleased.conf"]
