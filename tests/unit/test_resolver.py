"""dhcpleased.resolver on temp files and with fake resolvconf/resolvectl executables."""

from __future__ import annotations

import errno
import os
import stat
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dhcpleased import resolver
from dhcpleased.resolver import HEADER, Resolver, detect_mode

A = IPv4Address
ORIGINAL = "# the distribution's file\nnameserver 192.0.2.53\noptions edns0 trust-ad\n"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "resolv.conf"
    path.parent.mkdir()
    path.write_text(ORIGINAL)
    path.chmod(0o644)
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# --- file mode ---------------------------------------------------------------------------------


async def test_file_propose_merge_withdraw_restore(conf: Path) -> None:
    r = Resolver(resolv_conf=str(conf), mode="file")
    await r.propose("eth0", [A("198.18.0.1"), A("198.18.0.2")], "a.test", ["s.a.test"])
    assert lines(conf) == [
        HEADER.strip(),
        "search a.test s.a.test",
        "nameserver 198.18.0.1",
        "nameserver 198.18.0.2",
        "options edns0 trust-ad",
    ]
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644

    await r.propose("eth1", [A("198.18.1.1"), A("198.18.0.2"), A("198.18.1.2")], "b.test", [])
    assert lines(conf) == [
        HEADER.strip(),
        "search a.test s.a.test b.test",
        "nameserver 198.18.0.1",  # first come, duplicates once, three at most
        "nameserver 198.18.0.2",
        "nameserver 198.18.1.1",
        "options edns0 trust-ad",
    ]
    # a renewal of eth0 with new servers keeps eth0 first
    await r.propose("eth0", [A("198.18.0.9")], "a.test", [])
    assert [x for x in lines(conf) if x.startswith("nameserver")] == [
        "nameserver 198.18.0.9",
        "nameserver 198.18.1.1",
        "nameserver 198.18.0.2",
    ]

    await r.withdraw("eth0")
    assert lines(conf)[1:] == [
        "search b.test",
        "nameserver 198.18.1.1",
        "nameserver 198.18.0.2",
        "nameserver 198.18.1.2",
        "options edns0 trust-ad",
    ]
    await r.withdraw("eth0")  # twice is harmless
    await r.withdraw("eth1")
    assert conf.read_text() == ORIGINAL
    assert leftovers(conf) == []


async def test_file_restores_mode_absent_and_symlink(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(ORIGINAL)
    path.chmod(0o600)
    r = Resolver(resolv_conf=str(path), mode="file")
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    await r.withdraw("eth0")
    assert path.read_text() == ORIGINAL
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    path.unlink()
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert "nameserver 198.18.0.1" in lines(path)
    await r.withdraw("eth0")
    assert not path.exists()

    target = tmp_path / "stub-resolv.conf"
    target.write_text("nameserver 127.0.0.53\n")
    path.symlink_to(target)
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert not path.is_symlink()
    assert target.read_text() == "nameserver 127.0.0.53\n"  # the link's target is not ours
    await r.withdraw("eth0")
    assert path.is_symlink()
    assert os.readlink(path) == str(target)
    assert leftovers(path) == ["stub-resolv.conf"]


async def test_file_backs_off_when_someone_else_writes(conf: Path) -> None:
    r = Resolver(resolv_conf=str(conf), mode="file")
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    conf.write_text("nameserver 203.0.113.1\n")  # the admin, or another tool
    await r.propose("eth0", [A("198.18.0.2")], "", [])
    assert conf.read_text() == "nameserver 203.0.113.1\n"
    await r.withdraw("eth0")
    assert conf.read_text() == "nameserver 203.0.113.1\n"  # not restored over theirs
    # after everything was withdrawn, a new proposal starts afresh
    await r.propose("eth0", [A("198.18.0.3")], "", [])
    assert "nameserver 198.18.0.3" in lines(conf)
    await r.withdraw("eth0")
    assert conf.read_text() == "nameserver 203.0.113.1\n"


async def test_file_left_by_earlier_instance(conf: Path) -> None:
    conf.write_text(HEADER + "nameserver 198.18.0.7\noptions rotate\n")
    r = Resolver(resolv_conf=str(conf), mode="file")
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    await r.withdraw("eth0")
    assert conf.read_text() == HEADER + "options rotate\n"


async def test_file_no_injection_through_domain(conf: Path) -> None:
    r = Resolver(resolv_conf=str(conf), mode="file")
    await r.propose("eth0", [A("198.18.0.1")], "a.test\nnameserver 6.6.6.6", ["b\ttest", " "])
    text = conf.read_text()
    assert "nameserver 6.6.6.6" not in text
    assert [x for x in lines(conf) if x.startswith("search")] == [
        "search a.testnameserver6.6.6.6 btest"
    ]


async def test_file_empty_proposal_is_a_withdraw(conf: Path) -> None:
    r = Resolver(resolv_conf=str(conf), mode="file")
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    await r.propose("eth0", [], "x.test", [])
    assert conf.read_text() == ORIGINAL
    assert r.proposals == {}


async def test_file_bind_mount_ebusy_writes_in_place(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inode = conf.stat().st_ino

    def busy(src: str, dst: str) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(resolver.os, "rename", busy)
    r = Resolver(resolv_conf=str(conf), mode="file")
    await r.propose("eth0", [A("198.18.0.1")], "a.test", [])
    assert "nameserver 198.18.0.1" in lines(conf)
    assert conf.stat().st_ino == inode
    await r.withdraw("eth0")
    assert conf.read_text() == ORIGINAL
    assert leftovers(conf) == []


async def test_file_other_rename_error_propagates(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(src: str, dst: str) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(resolver.os, "rename", denied)
    r = Resolver(resolv_conf=str(conf), mode="file")
    with pytest.raises(OSError) as e:
        await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert e.value.errno == errno.EACCES
    assert conf.read_text() == ORIGINAL
    assert leftovers(conf) == []


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES])
async def test_file_only_file_writable_writes_in_place(
    conf: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    """systemd's ReadWritePaths=/etc/resolv.conf or Landlock: no temp file in /etc."""
    inode = conf.stat().st_ino

    def refused(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(resolver.tempfile, "mkstemp", refused)
    r = Resolver(resolv_conf=str(conf), mode="file")
    await r.propose("eth0", [A("198.18.0.1")], "a.test", [])
    assert "nameserver 198.18.0.1" in lines(conf)
    assert conf.stat().st_ino == inode
    await r.withdraw("eth0")
    assert conf.read_text() == ORIGINAL


async def test_none_mode_touches_nothing(conf: Path) -> None:
    r = Resolver(resolv_conf=str(conf), mode="none")
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    await r.withdraw("eth0")
    assert conf.read_text() == ORIGINAL


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown DNS mode"):
        Resolver(mode="resolvd")


# --- resolvconf / resolved through fake executables --------------------------------------------

FAKE = """#!/bin/sh
{{ printf '%s' "$(basename "$0")"; for a in "$@"; do printf ' [%s]' "$a"; done; echo; }} >> {log}
if [ "$(basename "$0")" = resolvconf ]; then cat >> {log}; fi
env | sort > {log}.env
{extra}
"""


def fake(bindir: Path, name: str, log: Path, extra: str = "") -> Path:
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text(FAKE.format(log=log, extra=extra))
    exe.chmod(0o755)
    return exe


async def test_resolvconf_mode(tmp_path: Path, conf: Path) -> None:
    log = tmp_path / "calls"
    fake(tmp_path / "bin", "resolvconf", log)
    r = Resolver(resolv_conf=str(conf), path=str(tmp_path / "bin"))
    assert r.mode == "resolvconf"
    await r.propose("eth0", [A("198.18.0.1"), A("198.18.0.2")], "a.test", ["b.test"])
    await r.withdraw("eth0")
    assert log.read_text().splitlines() == [
        "resolvconf [-a] [eth0.dhcpleased]",
        HEADER.strip(),
        "search a.test b.test",
        "nameserver 198.18.0.1",
        "nameserver 198.18.0.2",
        "resolvconf [-d] [eth0.dhcpleased] [-f]",
    ]
    env = dict(x.split("=", 1) for x in (tmp_path / "calls.env").read_text().splitlines())
    assert env["PATH"] == resolver.SAFE_PATH
    assert set(env) <= {"PATH", "LC_ALL", "PWD", "SHLVL", "_", "OLDPWD"}
    assert conf.read_text() == ORIGINAL


async def test_resolvconf_failure_and_timeout(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    fake(tmp_path / "bin", "resolvconf", log, extra="echo 'no way' >&2; exit 3")
    r = Resolver(path=str(tmp_path / "bin"))
    with pytest.raises(OSError, match=r"resolvconf -a eth0.dhcpleased: exit 3: no way"):
        await r.propose("eth0", [A("198.18.0.1")], "", [])

    fake(tmp_path / "bin", "resolvconf", log, extra="exec sleep 30")
    r = Resolver(path=str(tmp_path / "bin"), timeout=0.3)
    with pytest.raises(OSError) as e:
        await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert e.value.errno == errno.ETIMEDOUT


async def test_option_like_interface_name_refused(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    fake(tmp_path / "bin", "resolvconf", log)
    r = Resolver(path=str(tmp_path / "bin"))
    with pytest.raises(OSError, match="refusing interface name"):
        await r.propose("-x", [A("198.18.0.1")], "", [])
    assert not log.exists()


async def test_resolved_mode(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    fake(tmp_path / "bin", "resolvectl", log)
    sock = tmp_path / "io.systemd.Resolve"
    sock.touch()
    r = Resolver(path=str(tmp_path / "bin"), resolved_socket=str(sock))
    assert r.mode == "resolved"
    await r.withdraw("eth1")  # never proposed: nothing to revert
    await r.propose("eth0", [A("198.18.0.1"), A("198.18.0.2")], "a.test", ["b.test", "a.test"])
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    await r.withdraw("eth0")
    assert log.read_text().splitlines() == [
        "resolvectl [--] [dns] [eth0] [198.18.0.1] [198.18.0.2]",
        "resolvectl [--] [domain] [eth0] [a.test] [b.test]",
        "resolvectl [--] [dns] [eth0] [198.18.0.1]",
        "resolvectl [--] [domain] [eth0] []",
        "resolvectl [--] [revert] [eth0]",
    ]


ODD = ("--help", ["-i", "~.", "~corp.test", "b.test"])  # option-like, routing-domain-like


async def test_domains_are_data_in_every_mode(tmp_path: Path, conf: Path) -> None:
    """resolvectl gets "--" first, resolvconf reads names on stdin, "~" names go nowhere.

    tests/integration/test_dns_handoff.py runs the real resolvectl's getopt on this.
    """
    log = tmp_path / "calls"
    sock = tmp_path / "io.systemd.Resolve"
    sock.touch()
    fake(tmp_path / "bin", "resolvectl", log)
    r = Resolver(path=str(tmp_path / "bin"), resolved_socket=str(sock))
    await r.propose("eth0", [A("198.18.0.1")], *ODD)
    assert (
        log.read_text().splitlines()[1] == "resolvectl [--] [domain] [eth0] [--help] [-i] [b.test]"
    )

    log.unlink()
    fake(tmp_path / "rc", "resolvconf", log)
    r = Resolver(path=str(tmp_path / "rc"))
    await r.propose("eth0", [A("198.18.0.1")], *ODD)
    calls = log.read_text().splitlines()
    assert calls[0] == "resolvconf [-a] [eth0.dhcpleased]"
    assert calls[2] == "search --help -i b.test"

    r = Resolver(resolv_conf=str(conf), mode="file")
    await r.propose("eth0", [A("198.18.0.1")], *ODD)
    assert "search --help -i b.test" in lines(conf)


def test_detect_mode(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    sock = tmp_path / "io.systemd.Resolve"
    assert detect_mode(str(bindir), str(sock)) == "file"
    fake(bindir, "resolvectl", tmp_path / "log")
    assert detect_mode(str(bindir), str(sock)) == "file"  # resolved not running
    sock.touch()
    assert detect_mode(str(bindir), str(sock)) == "resolved"
    (bindir / "resolvconf").symlink_to(bindir / "resolvectl")  # systemd's shim
    assert detect_mode(str(bindir), str(sock)) == "resolved"
    sock.unlink()
    assert detect_mode(str(bindir), str(sock)) == "resolvconf"
    (bindir / "resolvconf").unlink()
    fake(bindir, "resolvconf", tmp_path / "log")  # openresolv wins over resolved
    sock.touch()
    assert detect_mode(str(bindir), str(sock)) == "resolvconf"


def test_render_fragment_without_domains() -> None:
    p = resolver.Proposal((A("198.18.0.1"),), "", ())
    assert resolver.render_fragment(p) == HEADER + "nameserver 198.18.0.1\n"
