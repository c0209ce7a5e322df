"""NTP servers to the time daemon: detection, the helper's files and commands (in process,
with fake systemctl/chronyc), its requests (tests/proc/test_dns_helper.py: the process;
tests/system/test_ntp.py: the real timesyncd and chrony)."""

from __future__ import annotations

import os
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dhcpleased.dnshelper import (
    HEADER,
    OP_NTP_PROPOSE,
    OP_NTP_WITHDRAW,
    OP_PROPOSE,
    NtpHandOff,
    Request,
    serve_ntp,
)
from dhcpleased.resolver import Resolver, detect_ntp_mode
from tests.unit.test_resolver import FakeHelper, fake, refused_both_ways

A = IPv4Address
NTP = (A("192.0.2.123"), A("192.0.2.124"))


def hand_off(tmp_path: Path, mode: str, running: bool = True) -> tuple[NtpHandOff, Path]:
    log = tmp_path / "calls"
    tool = "systemctl" if mode == "timesyncd" else "chronyc"
    exe = fake(tmp_path / "bin", tool, log)
    if running:
        (tmp_path / "chrony").mkdir(exist_ok=True)
    h = NtpHandOff(
        mode,
        str(exe),
        str(tmp_path / "ntp.d"),
        str(tmp_path / "run" / "chronyc"),
        str(tmp_path / "chrony" / "chronyd.sock"),
    )
    h.prepare()
    return h, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_detect_ntp_mode(tmp_path: Path) -> None:
    bindir, timesync, sock = tmp_path / "bin", tmp_path / "timesync", tmp_path / "chrony/c.sock"
    bindir.mkdir()

    def mode() -> str:
        return detect_ntp_mode(str(bindir), str(timesync), str(sock))

    assert mode() == "none"
    fake(bindir, "systemctl", tmp_path / "log")
    assert mode() == "none"  # systemd, but no timesyncd running
    timesync.mkdir()
    assert mode() == "timesyncd"
    fake(bindir, "chronyc", tmp_path / "log")
    assert mode() == "timesyncd"  # installed, not running: the running one wins
    sock.parent.mkdir()
    assert mode() == "chrony"
    timesync.rmdir()
    sock.parent.rmdir()
    assert mode() == "chrony"  # chronyd starts after the network, reads its sourcedir then


def test_timesyncd_drop_in_and_restart(tmp_path: Path) -> None:
    h, log = hand_off(tmp_path, "timesyncd")
    path = tmp_path / "ntp.d" / "dhcpleased-eth0.conf"
    started = time.monotonic()
    serve_ntp(h, Request(OP_NTP_PROPOSE, "eth0", NTP), spacing=0.5)
    assert path.read_text() == f"{HEADER}[Time]\nNTP=192.0.2.123 192.0.2.124\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    serve_ntp(h, Request(OP_NTP_PROPOSE, "eth0", NTP), spacing=0.5)  # the same: no restart
    serve_ntp(h, Request(OP_NTP_WITHDRAW, "eth0"), spacing=0.5)
    serve_ntp(h, Request(OP_NTP_WITHDRAW, "eth0"), spacing=0.5)  # nothing there: nothing
    assert not path.exists()
    restart = "systemctl [--no-block] [try-restart] [systemd-timesyncd.service]"
    assert calls(log) == [restart] * 2
    assert time.monotonic() - started >= 0.5  # the second restart waited for the spacing
    assert sorted(os.listdir(tmp_path / "ntp.d")) == []  # no temporary file left


def test_chrony_sources_and_reload(tmp_path: Path) -> None:
    h, log = hand_off(tmp_path, "chrony")
    link = tmp_path / "run" / "chronyc" / "chronyd.sock"
    assert os.readlink(link) == str(tmp_path / "chrony" / "chronyd.sock")
    serve_ntp(h, Request(OP_NTP_PROPOSE, "eth0", NTP))
    serve_ntp(h, Request(OP_NTP_PROPOSE, "eth0", NTP[:1]))
    path = tmp_path / "ntp.d" / "eth0.sources"
    assert path.read_text() == f"{HEADER}server 192.0.2.123 iburst\n"
    serve_ntp(h, Request(OP_NTP_WITHDRAW, "eth0"))
    assert not path.exists()
    reload = f"chronyc [-h] [{link}] [reload] [sources]"
    assert calls(log) == [reload] * 3


def test_chrony_not_running_reads_the_file_when_it_starts(tmp_path: Path) -> None:
    h, log = hand_off(tmp_path, "chrony", running=False)
    serve_ntp(h, Request(OP_NTP_PROPOSE, "eth0", NTP))
    assert (tmp_path / "ntp.d" / "eth0.sources").exists()
    assert calls(log) == []


def test_a_failing_reload_is_reported(tmp_path: Path) -> None:
    h, log = hand_off(tmp_path, "chrony")
    fake(tmp_path / "bin", "chronyc", log, extra="echo '506 Cannot talk to daemon'; exit 1")
    with pytest.raises(OSError, match=r"chronyc -h .* reload sources: exit 1"):
        serve_ntp(h, Request(OP_NTP_PROPOSE, "eth0", NTP))


@pytest.mark.parametrize(
    "req",
    [
        Request(OP_NTP_PROPOSE, "eth0", ()),
        Request(OP_NTP_PROPOSE, "eth0", tuple(A(f"192.0.2.{i}") for i in range(1, 10))),
        Request(OP_NTP_PROPOSE, "eth0", NTP, ("a.test",)),
        Request(OP_NTP_PROPOSE, "eth0", (A("224.0.1.1"),)),
        Request(OP_NTP_PROPOSE, "eth0", (A("0.0.0.0"),)),
        Request(OP_NTP_PROPOSE, "../x", NTP),
        Request(OP_NTP_PROPOSE, "-h", NTP),
        Request(OP_NTP_WITHDRAW, "eth0", NTP),
        Request(OP_PROPOSE, "eth0", (A("127.0.0.1"),)),  # DNS: unicast only too
    ],
)
def test_requests_the_helper_refuses(req: Request) -> None:
    refused_both_ways(req)


def test_request_round_trip() -> None:
    for req in (Request(OP_NTP_PROPOSE, "eth0", NTP), Request(OP_NTP_WITHDRAW, "wlp2s0")):
        assert Request.unpack(req.pack()) == req and req.ntp


@pytest.mark.parametrize(
    "argv",
    [
        ["ntpd", "/bin/true", "/run/x", "/run/y", "/run/z"],
        ["chrony", "chronyc", "/run/x", "/run/y", "/run/z"],  # not an absolute path
        ["chrony", "/usr/bin/chronyc", "/run/x", "/run/y"],
    ],
)
def test_hand_off_command_line(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        NtpHandOff.from_argv(argv)


async def test_parent_side(tmp_path: Path) -> None:
    """What the parent asks, and only with a time daemon."""
    bindir = tmp_path / "bin"
    fake(bindir, "chronyc", tmp_path / "log")
    r = Resolver(mode="none", path=str(bindir), run_dir=str(tmp_path))
    assert r.ntp_mode == "chrony" and r.ntp is not None
    assert r.ntp.argv() == [
        "chrony",
        str(bindir / "chronyc"),
        "/run/chrony-dhcp",
        str(tmp_path / "chronyc"),
        "/run/chrony/chronyd.sock",
    ]
    r.helper = helper = FakeHelper()  # type: ignore[assignment]
    await r.propose_ntp("eth0", NTP)
    await r.withdraw_ntp("eth0")
    assert helper.requests == [
        Request(OP_NTP_PROPOSE, "eth0", NTP),
        Request(OP_NTP_WITHDRAW, "eth0"),
    ]
    none = Resolver(mode="none", ntp_mode="none", path=str(bindir))
    none.helper = helper = FakeHelper()  # type: ignore[assignment]
    await none.propose_ntp("eth0", NTP)
    assert none.ntp is None and helper.requests == []
    with pytest.raises(ValueError, match="systemctl not found"):
        Resolver(mode="none", ntp_mode="timesyncd", path=str(bindir))
