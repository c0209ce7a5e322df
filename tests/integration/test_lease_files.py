"""Lease files that are not files, on the running daemon against dnsmasq.

At the lease path: a FIFO (reading it would block the parent, and with it the daemon, for
ever), a directory (no lease could ever be written over it), a symbolic link to
/etc/passwd (read through, the daemon would send that file to the engine), a device node
(/dev/zero's numbers).  Each is moved aside with a warning and the daemon carries on: at
start-up (the read) and when one appears while the daemon runs (the next write, here after
``dhcpleasectl IF``).
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.lab import Lab
from tests.integration.test_daemon import daemon_log, leased, wait_leased

pytestmark = pytest.mark.integration

LIMIT = 20.0
MAKE = {  # shell, run in the daemon's mount namespace
    "fifo": "mkfifo {p}",
    "directory": "mkdir {p} && echo kept > {p}/inside",
    "symlink": "ln -s /etc/passwd {p}",
    "device": "mknod {p} c 1 5",
}
CHECK: dict[str, Callable[[int], bool]] = {
    "fifo": stat.S_ISFIFO,
    "directory": stat.S_ISDIR,
    "symlink": stat.S_ISLNK,
    "device": stat.S_ISCHR,
}
KIND = {
    "fifo": "a FIFO",
    "directory": "a directory",
    "symlink": "a symbolic link",
    "device": "a character device",
}


def asides(lab: Lab) -> list[Path]:
    return sorted(lab.lease_dir.glob(f"{lab.ifname}.aside-*"))


def check_moved_aside(lab: Lab, what: str, count: int) -> None:
    moved = asides(lab)
    assert len(moved) == count, (moved, daemon_log(lab))
    for p in moved:
        assert CHECK[what](p.lstat().st_mode), p
        if what == "directory":
            assert (p / "inside").read_text() == "kept\n"
        if what == "symlink":
            assert os.readlink(p) == "/etc/passwd"
    path = f"/var/lib/dhcpleased/{lab.ifname}"
    warnings = [
        line for line in daemon_log(lab).splitlines()
        if line.startswith(f"main: lease file {path} is {KIND[what]}: moved aside to {path}.aside-")
    ]  # fmt: skip
    assert len(warnings) == count, daemon_log(lab)


def lease_written(lab: Lab) -> bool:
    f = lab.lease_file()
    address = leased(lab)
    return (
        address is not None
        and stat.S_ISREG(f.lstat().st_mode)
        and f"ip: {address.ip}" in f.read_text()
    )


@pytest.mark.parametrize("what", sorted(MAKE))
def test_odd_object_at_the_lease_path_is_moved_aside(daemon_lab: Lab, what: str) -> None:
    lab = daemon_lab
    # before the start: the daemon's mount namespace sees the overlay's upper layer as is
    subprocess.run(["sh", "-c", MAKE[what].format(p=lab.lease_file())], check=True)
    daemon = lab.start_daemon("-d", lab.ifname)
    wait_leased(lab, daemon)  # a FIFO read would have blocked the daemon before this
    lab.wait_for(lambda: lease_written(lab), LIMIT, what="lease file written")
    check_moved_aside(lab, what, 1)

    # the same object appears while the daemon runs: the next lease write moves it aside
    make = f"rm {{p}} && {MAKE[what]}".format(p=f"/var/lib/dhcpleased/{lab.ifname}")
    subprocess.run(["nsenter", "-t", str(daemon.pid), "-m", "sh", "-c", make], check=True)
    assert lab.ctl(lab.ifname).returncode == 0  # request again: a new ACK, a new lease file
    lab.wait_for(lambda: len(asides(lab)) == 2 and lease_written(lab), LIMIT, what="rewrite")
    check_moved_aside(lab, what, 2)
    assert not (lab.etc_dir / "passwd").exists()  # nothing written through the link
    assert "cannot" not in daemon_log(lab)
    assert daemon.poll() is None
