"""Domain names from the network reach the real resolvectl as data, never as options.

A DHCP server chooses options 15 and 119; a name such as ``--help`` handed to resolvectl
without ``--`` makes it print its help and exit 0 (the proposal silently not applied),
``-i`` or ``-x`` make it fail on its command line.  This runs the real resolvectl
(systemd-resolved's, unpacked by prepare.sh) through the DNS helper's own argv path, in the
lab's mount namespace, whose empty /run has no system bus: a name taken as data gets as
far as connecting to the bus, which is where it fails.  Nothing reaches a real resolved.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.integration.lab import CLIENT_PATH, Lab, skip_or_fail

pytestmark = pytest.mark.integration

UNPACKED = "/var/cache/dhcpleased-test/systemd-resolved/usr/bin"  # tests/integration/prepare.sh
NAMES = ("--help", "-h", "--version", "-x", "-i", "--interface=lo", "-4", "--", "ok.test")

RUN = r"""
import shutil, sys
from ipaddress import IPv4Address
from dhcpleased import dnshelper

exe = shutil.which("resolvectl", path=sys.argv[1])
for name in sys.argv[3:]:
    req = dnshelper.Request(dnshelper.OP_PROPOSE, sys.argv[2], (IPv4Address("192.0.2.1"),), (name,))
    req.check()
    argv, stdin = dnshelper.commands("resolved", exe, req)[1]  # resolvectl -- domain IF NAME
    try:
        dnshelper.run_tool(argv, stdin)
    except OSError as e:
        print(f"{name} -> {e.strerror or e}")
    else:
        print(f"{name} -> exit 0")
"""


def resolvectl_dir() -> str:
    for d in (UNPACKED, *CLIENT_PATH.split(":")):
        if os.access(os.path.join(d, "resolvectl"), os.X_OK):
            return d
    skip_or_fail("resolvectl not found (run tests/integration/prepare.sh)")
    raise AssertionError("not reached")


def test_option_like_domain_names_are_data_to_the_real_resolvectl() -> None:
    bindir = resolvectl_dir()
    with Lab(start_dnsmasq=False) as lab:
        assert not (lab.run_dir / "dbus").exists()
        r = lab.run_in_client_wait([sys.executable, "-c", RUN, bindir, lab.ifname, *NAMES])
        assert r.returncode == 0, r.stderr
        got = r.stdout.splitlines()
    for name, line in zip(NAMES, got, strict=True):
        assert line == (
            f"{name} -> resolvectl domain {lab.ifname} {name}: exit 1: "
            "sd_bus_open_system: No such file or directory"
        ), got
