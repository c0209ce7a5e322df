"""``dhcpleased`` as a command: usage, -n, and the start-up checks that need no network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dhcpleased.main import USAGE, UsageError, main, parse_args

DATA = Path(__file__).resolve().parents[1] / "data"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dhcpleased", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=DATA,
    )


@pytest.mark.parametrize(
    "argv",
    [["-x"], ["-f"], ["-E", "-F"], ["-E", "eth0"], ["a" * 16], ["bad/name"]],
)
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


def test_usage_line_and_exit_code() -> None:
    res = run("-x")
    assert res.returncode == 1
    assert res.stderr == USAGE + "\n"


def test_options_parse() -> None:
    o = parse_args(["-d", "-vv", "-f", "/x.conf", "-s", "/x.sock", "eth0", "eth1", "eth0"])
    assert (o.debug, o.verbose, o.conffile, o.default_conf, o.csock) == (
        True,
        2,
        "/x.conf",
        False,
        "/x.sock",
    )
    assert o.ifaces == ["eth0", "eth1"]


def test_configtest_ok_and_canonical_output() -> None:
    ok = run("-n", "-f", str(DATA / "full.conf"))
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "configuration OK\n")
    verbose = run("-nv", "-f", str(DATA / "full.conf"))
    assert verbose.returncode == 0
    assert verbose.stdout == (DATA / "full.expected").read_text()


def test_configtest_errors() -> None:
    res = run("-n", "-f", "errors.conf")
    assert res.returncode == 1
    assert res.stderr == (DATA / "errors.expected").read_text()
    missing = run("-n", "-f", "/nonexistent/dhcpleased.conf")
    assert missing.returncode == 1
    assert "/nonexistent/dhcpleased.conf" in missing.stderr


def test_needs_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["-d", "-f", str(DATA / "example.conf"), "lo"]) == 1
    assert capsys.readouterr().err == "dhcpleased: need root privileges\n"
