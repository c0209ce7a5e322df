"""The DNS helper process as the parent spawns it: sandboxed, serving, and how it ends.

Fake resolvconf/resolvectl scripts stand in for the programs (the real ones run in
tests/system/test_dns.py and tests/integration/test_dns_handoff.py).  Each fake also
tries to write outside what the helper's Landlock rules allow, and says how it went.
"""

from __future__ import annotations

import asyncio
import os
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dhcpleased import caps, dnshelper
from dhcpleased.resolver import HEADER, Resolver

pytestmark = pytest.mark.root  # the helper keeps only its capabilities: it starts as root
A = IPv4Address

FAKE = """#!/bin/sh
if ( : > {tmp}/escape ) 2>/dev/null; then where=escaped; else where=confined; fi
{body}
"""


def fake(tmp: Path, name: str, body: str) -> str:
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text(FAKE.format(tmp=tmp, body=body))
    (bindir / name).chmod(0o755)
    return str(bindir)


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


async def start(r: Resolver) -> list[str]:
    lost: list[str] = []
    r.start(lost.append)
    await asyncio.wait_for(r.started(), 30)
    return lost


async def stop(r: Resolver, lost: list[str]) -> None:
    assert r.helper is not None
    await r.close()
    assert lost == [] and r.helper.status == 0


async def test_resolvconf_helper(tmp_path: Path) -> None:
    """In resolvconf mode the helper may write resolv.conf's own file (here: the log)."""
    log = tmp_path / "resolv.conf"
    log.write_text("")
    body = f'{{ echo "$where $*"; cat; }} >> {log}'
    r = Resolver(path=fake(tmp_path, "resolvconf", body), resolv_conf=str(log))
    assert r.mode == "resolvconf"
    lost = await start(r)
    assert r.helper is not None
    st = status(r.helper.pid)
    assert (st["Name"], st["Uid"].split()) == ("dhcp-dns", ["0"] * 4)
    assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == int(st["CapBnd"], 16) == 0
    assert (st["NoNewPrivs"], st["Seccomp"]) == ("1", "0")  # its programs inherit neither
    cmdline = Path(f"/proc/{r.helper.pid}/cmdline").read_bytes().rstrip(b"\0")
    assert cmdline == b"dhcpleased: dns helper"

    await r.propose("eth0", [A("198.18.0.1")], "a.test", [])
    await r.withdraw("eth0")
    assert log.read_text().splitlines() == [
        "confined -a eth0.dhcpleased",
        HEADER.strip(),
        "search a.test",
        "nameserver 198.18.0.1",
        "confined -d eth0.dhcpleased -f",
    ]
    assert not (tmp_path / "escape").exists()
    await stop(r, lost)


async def test_resolved_helper_and_a_failing_program(tmp_path: Path) -> None:
    """resolved mode: CAP_NET_ADMIN only, nothing writable; a failure comes back as text."""
    body = 'echo "$where $*" >&2; exit 4'
    r = Resolver(mode="resolved", path=fake(tmp_path, "resolvectl", body))
    lost = await start(r)
    assert r.helper is not None
    st = status(r.helper.pid)
    assert int(st["CapEff"], 16) == caps.mask([caps.CAP_NET_ADMIN]) == int(st["CapBnd"], 16)
    with pytest.raises(OSError) as e:
        await r.propose("eth0", [A("198.18.0.1")], "", [])
    assert (
        e.value.strerror
        == "resolvectl dns eth0 198.18.0.1: exit 4: confined -- dns eth0 198.18.0.1"
    )
    assert not (tmp_path / "escape").exists()
    await stop(r, lost)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x01-x" + b"\0" * 14 + b"\x01" + bytes(4),  # an interface name like an option
        b"\x01eth0" + b"\0" * 12 + b"\x01" + bytes(4) + b"~.",  # a routing domain
        b"\x07",
    ],
)
async def test_a_bad_request_ends_the_helper_and_the_parent_hears(
    tmp_path: Path, raw: bytes
) -> None:
    r = Resolver(mode="resolved", path=fake(tmp_path, "resolvectl", "exit 0"))
    lost = await start(r)
    assert r.helper is not None
    await asyncio.get_running_loop().sock_sendall(r.helper.sock, raw)
    for _ in range(500):
        if lost:
            break
        await asyncio.sleep(0.02)
    assert lost == ["DNS helper exited with status 1"]
    await r.close()


async def test_the_helper_exits_with_the_parent(tmp_path: Path) -> None:
    """EOF on its channel (the parent closed it, or died) is its only way out."""
    r = Resolver(mode="resolved", path=fake(tmp_path, "resolvectl", "exit 0"))
    lost = await start(r)
    assert r.helper is not None
    pid = r.helper.pid
    await stop(r, lost)
    assert not os.path.exists(f"/proc/{pid}")


def test_request_limits_fit_the_largest_proposal() -> None:
    """Every proposal an imsg can carry fits one request (domain + search list)."""
    assert dnshelper.MAX_NAMES >= (dnshelper.defs.MAX_DOMAIN - 1) + (dnshelper.defs.MAX_SEARCH - 1)
