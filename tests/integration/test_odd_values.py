"""Odd config values through ``-n``, start-up and reload of the real daemon (item 3).

The table of tests/odd_values.py, slot by slot: the values it accepts in one file, the
ones it refuses in another (one value per line, so each refusal names its line).  For
each file ``dhcpleased -n``, a start-up and a ``dhcpleasectl reload`` must agree: the
accepted file passes all three (the daemon starts, runs and reloads; no traceback), the
refused one fails all three with the same ``file:line: message`` lines, and the daemon
that refused the reload keeps its config (judged by the host name a new request
carries).  Then each accepted host name, vendor class id and client id alone, by reload:
the bytes the table promises are the bytes on the wire.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from dhcpleased.main import printable
from tests.integration.hostile import HostileServer
from tests.integration.lab import Lab
from tests.integration.test_daemon import daemon_log
from tests.integration.test_faults import wait_msg
from tests.integration.test_reload import Conf, Daemon, configured
from tests.odd_values import EXPECTED, SLOTS, VALUES, Refused, config

pytestmark = pytest.mark.integration

DL0 = b'interface dl0 { send host name "marker-%s" }\n'
OPTION = {"host name": "host_name", "vendor class id": "vendor_class", "client id": "client_id"}


def odd_file(slot: str, refused: bool) -> tuple[bytes, dict[int, str]]:
    """dl0's block first (a marker host name per slot), then the slot's values."""
    names = [n for n in VALUES if isinstance(EXPECTED[slot][n], Refused) == refused]
    text, lines = config(slot, names)
    head = DL0 % slot.replace(" ", "-").encode()
    return head + text, {line + 1: name for line, name in lines.items()}


def install(conf: Conf, data: bytes) -> None:
    """Rename a new file over the config, as editors do."""
    tmp = conf.host.with_name(".next")
    tmp.write_bytes(data)
    tmp.rename(conf.host)


def ctl_reload(lab: Lab) -> tuple[int, list[str]]:
    return run(lab, sys.executable, "-m", "dhcpleasectl", "reload")


def run(lab: Lab, *args: str) -> tuple[int, list[str]]:
    """A command in the client, its status and stderr lines (bytes kept: surrogateescape)."""
    p = lab.run_in_client(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = p.communicate(timeout=60)
    return p.returncode, err.decode("utf-8", "surrogateescape").splitlines()


def dhcpleased(lab: Lab, *args: str) -> tuple[int, list[str]]:
    return run(lab, sys.executable, "-m", "dhcpleased", *args)


def started(lab: Lab, slot: str, path: str) -> None:
    """The daemon starts on the file, runs (children up, READY logged), stops cleanly."""
    log = f"{slot}.log"
    d = Daemon(lab, lab.start_daemon("-d", "-v", "-f", path, log=log), log)

    def up() -> bool:
        d.check()
        return "startup" in daemon_log(lab, log)

    lab.wait_for(up, 30, what=f"{slot}: start-up")
    d.check()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0, daemon_log(lab, log)
    assert "Traceback" not in daemon_log(lab, log)


def expected_lines(path: str, lines: dict[int, str], slot: str) -> list[str]:
    out = []
    for line, name in sorted(lines.items()):
        outcome = EXPECTED[slot][name]
        assert isinstance(outcome, Refused)
        out.append(f"{path}:{line}: {outcome.message}")
    return out


def test_n_startup_and_reload_agree_on_every_odd_value() -> None:
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        conf = Conf(lab)
        files = {}
        for slot in SLOTS:
            for refused in (False, True):
                text, lines = odd_file(slot, refused)
                host = conf.host.with_name(f"{slot.replace(' ', '-')}-{int(refused)}.conf")
                host.write_bytes(text)
                files[slot, refused] = (f"/run/dlconf/{host.name}", text, lines)

        # -n and start-up, file by file
        for slot in SLOTS:
            path, _, _ = files[slot, False]
            assert dhcpleased(lab, "-n", "-f", path) == (0, ["configuration OK"]), slot
            started(lab, slot, path)

            path, _, lines = files[slot, True]
            want = expected_lines(path, lines, slot)
            assert dhcpleased(lab, "-n", "-f", path) == (1, want), slot
            assert dhcpleased(lab, "-d", "-f", path) == (1, want), slot

        # reload: each accepted file takes, each refused one is reported and changes nothing
        conf.save(DL0.decode() % "start")
        d = Daemon(lab, lab.start_daemon("-d", "-v", "-f", conf.path))
        d.wait(lambda: configured(lab, h), "bound")
        for slot in SLOTS:
            marker = f"marker-{slot.replace(' ', '-')}".encode().hex()
            n = len(h.messages())
            install(conf, files[slot, False][1])
            assert ctl_reload(lab) == (0, []), slot
            wait_msg(h, lambda m: m["host_name"] == marker, f"{slot}: reloaded", n)  # noqa: B023

            _, text, lines = files[slot, True]
            install(conf, text)
            status, err = ctl_reload(lab)
            assert status == 1, slot
            assert err[:-1] == [printable(e) for e in expected_lines(conf.path, lines, slot)]
            assert err[-1].startswith("dhcpleasectl: reload failed")
            n = len(h.messages())
            assert lab.ctl("-w", "5", lab.ifname).returncode == 0
            got = wait_msg(h, lambda m: m["type"] == "request", f"{slot}: request", n)
            assert got["host_name"] == marker  # the last good config is still in force
            d.check()

        # each carried value alone, on dl0, judged on the wire
        for slot, field in OPTION.items():
            for name in VALUES:
                value = EXPECTED[slot][name]
                if not isinstance(value, bytes):
                    continue
                n = len(h.messages())
                install(conf, b"interface dl0 { send %s %s }\n" % (slot.encode(), VALUES[name]))
                assert ctl_reload(lab) == (0, [])
                # an empty host name or vendor class id is not sent; an empty client id is
                want = None if not value and slot != "client id" else value.hex()
                got = wait_msg(h, lambda m: m["type"] == "request", f"{slot} {name}", n)
                assert got[field] == want, (slot, name, got)
            d.check()
