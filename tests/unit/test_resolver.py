"""dhcpleased.resolver on temp files; the DNS helper's requests and commands, in process,
with fake resolvconf/resolvectl executables (tests/proc/test_dns_helper.py: the process)."""

from __future__ import annotations

import errno
import os
import stat
import threading
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dhcpleased import dnshelper, resolver
from dhcpleased.dnshelper import OP_PROPOSE, OP_WITHDRAW, Request
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


async def test_file_in_place_keeps_inode_and_mode(tmp_path: Path) -> None:
    """The sandbox names the file, not its directory: it is rewritten, never replaced."""
    path = tmp_path / "resolv.conf"
    path.write_text(ORIGINAL)
    path.chmod(0o600)
    inode = path.stat().st_ino
    r = Resolver(resolv_conf=str(path), mode="file", run_dir=str(tmp_path / "run"))
    assert r.writable() == ([str(path)], [])
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert lines(path)[1:] == ["nameserver 198.18.0.1", "options edns0 trust-ad"]
    assert (path.stat().st_ino, stat.S_IMODE(path.stat().st_mode)) == (inode, 0o600)
    await r.withdraw("eth0")
    assert path.read_text() == ORIGINAL
    assert path.stat().st_ino == inode
    assert leftovers(path) == []


async def test_file_absent_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    r = Resolver(resolv_conf=str(path), mode="file", run_dir=str(tmp_path / "run"))
    assert r.writable() == ([], [])  # and a warning: nothing for the sandbox to allow
    with pytest.raises(OSError) as e:
        await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert e.value.errno == errno.ENOENT
    assert not path.exists()
    await r.withdraw("eth0")
    assert not path.exists()


async def test_file_symlink_elsewhere_is_written_through(tmp_path: Path) -> None:
    """A link to a file that is not the run directory's: that file, in place."""
    path = tmp_path / "resolv.conf"
    target = tmp_path / "stub-resolv.conf"
    target.write_text("nameserver 127.0.0.53\n")
    path.symlink_to(target)
    r = Resolver(resolv_conf=str(path), mode="file", run_dir=str(tmp_path / "run"))
    assert not r.linked
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert path.is_symlink() and "nameserver 198.18.0.1" in lines(target)
    await r.withdraw("eth0")
    assert path.is_symlink() and target.read_text() == "nameserver 127.0.0.53\n"


async def test_file_linked_into_the_run_directory(tmp_path: Path) -> None:
    """The admin's opt-in: resolv.conf -> RUN_DIR/resolv.conf, written there by rename."""
    run = tmp_path / "run"
    run.mkdir()
    path = tmp_path / "resolv.conf"
    path.symlink_to(run / "resolv.conf")  # dangling until the first lease
    r = Resolver(resolv_conf=str(path), mode="file", run_dir=str(run))
    assert r.linked and r.writable() == ([], [str(run)])
    await r.propose("eth0", [A("198.18.0.1")], "a.test", [])
    first = (run / "resolv.conf").stat().st_ino
    assert lines(path) == [HEADER.strip(), "search a.test", "nameserver 198.18.0.1"]
    assert stat.S_IMODE((run / "resolv.conf").stat().st_mode) == 0o644
    await r.propose("eth1", [A("198.18.1.1")], "", [])
    assert (run / "resolv.conf").stat().st_ino != first  # replaced, not rewritten
    assert "nameserver 198.18.1.1" in lines(path)
    await r.withdraw("eth0")
    await r.withdraw("eth1")
    assert path.is_symlink() and not (run / "resolv.conf").exists()
    assert os.listdir(run) == []


@pytest.mark.parametrize("target", ["lock", "sub/resolv.conf"])
def test_only_the_run_directory_resolv_conf_is_linked(tmp_path: Path, target: str) -> None:
    path = tmp_path / "resolv.conf"
    path.symlink_to(tmp_path / "run" / target)
    assert resolver.file_target(str(path), str(tmp_path / "run")) == (str(path), False)


def test_in_place_write_is_one_padded_write_then_a_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader sees the old text or the new one, never old lines after new ones."""
    path = tmp_path / "resolv.conf"
    path.write_bytes(b"nameserver 192.0.2.1\nnameserver 192.0.2.2\n")
    seen: list[bytes] = []
    real_ftruncate = os.ftruncate

    def ftruncate(fd: int, size: int) -> None:
        seen.append(path.read_bytes())  # what a reader sees between the two calls
        real_ftruncate(fd, size)

    monkeypatch.setattr(resolver.os, "ftruncate", ftruncate)
    resolver._write_in_place(str(path), b"nameserver 9.9.9.9\n")
    assert seen == [b"nameserver 9.9.9.9\n" + b"\n" * 23]
    assert path.read_bytes() == b"nameserver 9.9.9.9\n"
    resolver._write_in_place(str(path), b"nameserver 198.18.0.1\nnameserver 198.18.0.2\n")
    assert path.read_bytes() == b"nameserver 198.18.0.1\nnameserver 198.18.0.2\n"


def test_in_place_readers_rarely_see_a_torn_file(tmp_path: Path) -> None:
    """A reader thread racing the writer, reading as glibc's stdio does (one read() of
    4 KiB): each read is one of the texts (bar padding) but for the few that race the
    kernel's copy of the bytes.  Measured: 10 torn of 709,095 reads over 20,000 writes;
    truncating and writing: 370,221 of 1,155,730."""
    path = tmp_path / "resolv.conf"
    texts = [b"nameserver 192.0.2.1\n" * 6, b"search a.test\nnameserver 198.18.0.1\n"]
    path.write_bytes(texts[0])
    stop = threading.Event()
    reads, torn = [0], [0]

    def reader() -> None:
        while not stop.is_set():
            fd = os.open(path, os.O_RDONLY)
            got = os.read(fd, 4096)
            os.close(fd)
            reads[0] += 1
            torn[0] += got.rstrip(b"\n") + b"\n" not in texts

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(3000):
            resolver._write_in_place(str(path), texts[i % 2])
    finally:
        stop.set()
        t.join()
    assert reads[0] > 100
    assert torn[0] < reads[0] // 100, (torn, reads)


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


async def test_none_mode_touches_nothing(conf: Path) -> None:
    r = Resolver(resolv_conf=str(conf), mode="none")
    await r.propose("eth0", [A("198.18.0.1")], "", [])
    await r.withdraw("eth0")
    assert conf.read_text() == ORIGINAL


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown DNS mode"):
        Resolver(mode="resolvd")


# --- resolvconf / resolved: the helper's side, in process, with fake executables -------------

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


def propose(ifname: str, servers: list[str], names: tuple[str, ...] = ()) -> Request:
    return Request(OP_PROPOSE, ifname, tuple(map(A, servers)), names)


def test_resolvconf_commands(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    exe = str(fake(tmp_path / "bin", "resolvconf", log))
    dnshelper.serve("resolvconf", exe, propose("eth0", ["198.18.0.1", "198.18.0.2"], NAMES))
    dnshelper.serve("resolvconf", exe, Request(OP_WITHDRAW, "eth0"))
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


NAMES = ("a.test", "b.test")


def test_resolvconf_failure_and_timeout(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    exe = str(fake(tmp_path / "bin", "resolvconf", log, extra="echo 'no way' >&2; exit 3"))
    with pytest.raises(OSError) as e:
        dnshelper.serve("resolvconf", exe, propose("eth0", ["198.18.0.1"]))
    assert e.value.strerror == "resolvconf -a eth0.dhcpleased: exit 3: no way"

    # a hook that leaves a child behind holding stderr: the whole group goes
    exe = str(fake(tmp_path / "bin", "resolvconf", log, extra="sleep 30 & exec sleep 30"))
    with pytest.raises(OSError) as e:
        dnshelper.serve("resolvconf", exe, propose("eth0", ["198.18.0.1"]), timeout=0.3)
    assert e.value.errno == errno.ETIMEDOUT


def test_resolved_commands(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    exe = str(fake(tmp_path / "bin", "resolvectl", log))
    dnshelper.serve("resolved", exe, propose("eth0", ["198.18.0.1", "198.18.0.2"], NAMES))
    dnshelper.serve("resolved", exe, propose("eth0", ["198.18.0.1"]))
    dnshelper.serve("resolved", exe, Request(OP_WITHDRAW, "eth0"))
    assert log.read_text().splitlines() == [
        "resolvectl [--] [dns] [eth0] [198.18.0.1] [198.18.0.2]",
        "resolvectl [--] [domain] [eth0] [a.test] [b.test]",
        "resolvectl [--] [dns] [eth0] [198.18.0.1]",
        "resolvectl [--] [domain] [eth0] []",
        "resolvectl [--] [revert] [eth0]",
    ]


@pytest.mark.parametrize(
    "req",
    [
        Request(OP_PROPOSE, "-x", (A("198.18.0.1"),)),
        Request(OP_PROPOSE, "a/b", (A("198.18.0.1"),)),
        Request(OP_PROPOSE, "eth0", ()),
        Request(OP_PROPOSE, "eth0", (A("198.18.0.1"),), ("~.",)),
        Request(OP_PROPOSE, "eth0", (A("198.18.0.1"),), ("a b",)),
        Request(OP_PROPOSE, "eth0", (A("198.18.0.1"),), ("a.test", "")),
        Request(OP_WITHDRAW, "eth0", (A("198.18.0.1"),)),
        Request(9, "eth0"),
    ],
)
def test_requests_the_helper_refuses(req: Request) -> None:
    refused_both_ways(req)


def refused_both_ways(req: Request) -> None:
    """The parent cannot pack it, and the helper refuses its bytes packed by hand."""
    with pytest.raises(ValueError):
        req.pack()
    raw = dnshelper._REQUEST.pack(req.op, req.ifname.encode(), len(req.nameservers))
    raw += b"".join(a.packed for a in req.nameservers) + "\n".join(req.names).encode()
    with pytest.raises(ValueError):
        Request.unpack(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x01eth0" + b"\0" * 12 + b"\x02" + bytes(4),  # says 2 servers, carries 1
        b"\x01eth0\0x" + b"\0" * 10 + b"\x01" + bytes(4),  # junk after the name's NUL
        b"\x01eth0" + b"\0" * 12 + b"\x09" + bytes(36),  # more than MAX_RDNS_COUNT
        b"\x01eth0" + b"\0" * 12 + b"\x01" + bytes(4) + b"\xff",  # not UTF-8
        b"\x01eth0" + b"\0" * 12 + b"\x01" + bytes(4) + b"x" * (dnshelper.MAX_NAMES + 1),
    ],
)
def test_malformed_requests(raw: bytes) -> None:
    with pytest.raises(ValueError):
        Request.unpack(raw)


def test_request_round_trip() -> None:
    req = propose("eth0", ["198.18.0.1", "198.18.0.2"], NAMES)
    assert Request.unpack(req.pack()) == req
    assert Request.unpack(Request(OP_WITHDRAW, "wlp2s0").pack()) == Request(OP_WITHDRAW, "wlp2s0")


class FakeHelper:
    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def ask(self, data: bytes) -> None:
        self.requests.append(Request.unpack(data))


ODD = ("--help", ["-i", "~.", "~corp.test", "b.test", "-i"])  # option-like, routing-like


async def test_parent_side_requests(tmp_path: Path, conf: Path) -> None:
    """What the parent asks: names cleaned, "~" names dropped, no revert of others'."""
    bindir = tmp_path / "bin"
    fake(bindir, "resolvectl", tmp_path / "log")
    r = Resolver(mode="resolved", path=str(bindir))
    r.helper = helper = FakeHelper()  # type: ignore[assignment]
    await r.withdraw("eth1")  # never proposed: nothing to revert
    await r.propose("eth0", [A("198.18.0.1")], *ODD)
    await r.withdraw("eth0")
    assert helper.requests == [
        propose("eth0", ["198.18.0.1"], ("--help", "-i", "b.test")),
        Request(OP_WITHDRAW, "eth0"),
    ]
    with pytest.raises(OSError, match="refusing interface name"):
        await r.propose("-x", [A("198.18.0.1")], "", [])
    assert len(helper.requests) == 2

    fake(bindir, "resolvconf", tmp_path / "log")
    r = Resolver(path=str(bindir))
    assert r.mode == "resolvconf" and r.exe == str(bindir / "resolvconf")
    r.helper = helper = FakeHelper()  # type: ignore[assignment]
    await r.withdraw("eth1")  # resolvconf -d -f: harmless if absent
    assert helper.requests == [Request(OP_WITHDRAW, "eth1")]
    assert r.writable() == ([], [])  # the parent writes nothing for DNS


async def test_domains_are_data_in_every_mode(tmp_path: Path, conf: Path) -> None:
    """resolvectl gets "--" first, resolvconf reads names on stdin, "~" names go nowhere.

    tests/integration/test_dns_handoff.py runs the real resolvectl's getopt on this.
    """
    log = tmp_path / "calls"
    names = ("--help", "-i", "b.test")
    exe = str(fake(tmp_path / "bin", "resolvectl", log))
    dnshelper.serve("resolved", exe, propose("eth0", ["198.18.0.1"], names))
    assert log.read_text().splitlines()[1] == (
        "resolvectl [--] [domain] [eth0] [--help] [-i] [b.test]"
    )
    log.unlink()
    exe = str(fake(tmp_path / "rc", "resolvconf", log))
    dnshelper.serve("resolvconf", exe, propose("eth0", ["198.18.0.1"], names))
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
    assert dnshelper.render_fragment((A("198.18.0.1"),), ()) == HEADER + "nameserver 198.18.0.1\n"
