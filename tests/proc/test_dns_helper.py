"""The DNS helper process as the parent spawns it: sandboxed, serving, and how it ends.

Fake resolvconf/resolvectl scripts stand in for the programs (the real ones run in
tests/system/test_dns.py and tests/integration/test_dns_handoff.py).  Each fake also
tries to write outside what the helper's Landlock rules allow, and says how it went.
"""

from __future__ import annotations

import asyncio
import os
import sys
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
    await bad_request_ends_it(r, lost, raw)


async def bad_request_ends_it(r: Resolver, lost: list[str], raw: bytes) -> None:
    """Send ``raw`` past the parent's own checks: the helper exits 1, the parent hears."""
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


# --- NTP: the same helper, widened only as far as the time daemon needs ---------------------

BIND = "import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind(sys.argv[1])"
CHRONYC = """
sock=$(dirname "$2")/chronyc.$$.sock
if {python} -c '{bind}' "$sock" 2>/dev/null; then made=made; rm -f "$sock"; else made=refused; fi
if ( : > "$(dirname "$2")/file" ) 2>/dev/null; then file=made; else file=refused; fi
echo "$where socket $made file $file $*" >> {log}
"""


def ntp_resolver(tmp_path: Path, mode: str, tool: str, body: str, **kw: str) -> Resolver:
    (tmp_path / "chrony").mkdir()  # chronyd "runs"
    return Resolver(
        path=fake(tmp_path, tool, body),
        ntp_mode=mode,
        ntp_dir=str(tmp_path / "ntp.d"),
        run_dir=str(tmp_path / "run"),
        chronyd_socket=str(tmp_path / "chrony" / "chronyd.sock"),
        **kw,
    )


async def test_chrony_helper_keeps_dac_override_and_writes_two_directories(
    tmp_path: Path,
) -> None:
    """Beside resolvconf: CAP_DAC_OVERRIDE (chronyd's 0700 run directory), Landlock: the
    sources directory, and sockets (no file) in its own directory for chronyc's reply."""
    (tmp_path / "run").mkdir()
    log = tmp_path / "ntp.d" / "calls"  # where the helper may write
    body = CHRONYC.format(python=sys.executable, bind=BIND, log=log)
    fake(tmp_path, "resolvconf", "exit 0")
    r = ntp_resolver(tmp_path, "chrony", "chronyc", body, resolv_conf=str(tmp_path / "rc"))
    assert (r.mode, r.ntp_mode) == ("resolvconf", "chrony")
    lost = await start(r)
    assert r.helper is not None
    st = status(r.helper.pid)
    dac = caps.mask([caps.CAP_DAC_OVERRIDE])
    assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == int(st["CapBnd"], 16) == dac
    await r.propose_ntp("eth0", [A("192.0.2.123")])
    sources = tmp_path / "ntp.d" / "eth0.sources"
    assert sources.read_text() == f"{HEADER}server 192.0.2.123 iburst\n"
    await r.withdraw_ntp("eth0")
    assert not sources.exists()
    link = tmp_path / "run" / "chronyc" / "chronyd.sock"
    assert (
        log.read_text().splitlines()
        == [f"confined socket made file refused -h {link} reload sources"] * 2
    )
    assert not (tmp_path / "escape").exists()
    await r.propose("eth0", [A("198.18.0.1")], "", [])  # DNS still goes its own way
    await stop(r, lost)


async def test_timesyncd_helper_has_no_capability(tmp_path: Path) -> None:
    log = tmp_path / "ntp.d" / "calls"  # where the helper may write
    r = ntp_resolver(tmp_path, "timesyncd", "systemctl", f'echo "$where $*" >> {log}')
    assert (r.mode, r.ntp_mode) == ("file", "timesyncd")  # DNS is not the helper's here
    lost = await start(r)
    assert r.helper is not None
    st = status(r.helper.pid)
    assert int(st["CapEff"], 16) == int(st["CapBnd"], 16) == 0
    await r.propose_ntp("eth0", [A("192.0.2.123"), A("192.0.2.124")])
    drop_in = tmp_path / "ntp.d" / "dhcpleased-eth0.conf"
    assert drop_in.read_text() == f"{HEADER}[Time]\nNTP=192.0.2.123 192.0.2.124\n"
    assert log.read_text() == "confined --no-block try-restart systemd-timesyncd.service\n"
    await stop(r, lost)


async def test_a_hand_off_the_helper_was_not_started_for_ends_it(tmp_path: Path) -> None:
    r = Resolver(mode="resolved", ntp_mode="none", path=fake(tmp_path, "resolvectl", "exit 0"))
    lost = await start(r)
    assert r.helper is not None
    raw = dnshelper.Request(dnshelper.OP_NTP_PROPOSE, "eth0", (A("192.0.2.123"),)).pack()
    await bad_request_ends_it(r, lost, raw)
