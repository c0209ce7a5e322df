"""What the running parent can still write, tried from inside it (issue 12.3), file mode.

The daemon holds a lease in the lab; then Python injected into the parent (inject.py,
the sandbox untouched) tries what an attacker who took it over would: a new file in
/etc (``/etc/ld.so.preload``: code in every process started after), one in
``/etc/cron.d``, ``/etc/passwd`` opened for appending, a file renamed over
resolv.conf.  Each must fail with EACCES while the DNS hand-off still works: in place
(the lab's resolv.conf is a file) and linked (resolv.conf a symbolic link to
``/run/dhcpleased/resolv.conf``).  The same probe runs in the resolved and resolvconf
containers (tests/system/test_dns.py).  The lab's /etc is an overlay: had a probe
succeeded, the file would be in the lab's upper directory, never on the host.
"""

from __future__ import annotations

import ast
import os
import stat

import pytest

from tests.integration.inject import inject, require_gdb
from tests.integration.lab import ORIGINAL_RESOLV_CONF, Lab
from tests.integration.test_daemon import daemon_log, wait_leased

pytestmark = pytest.mark.integration
LIMIT = 15.0

# Runs in the parent: only modules it has imported; opening for append writes nothing.
REACH = r"""
import errno, os

def attempt(fn):
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"

def create(path):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))

def append(path):
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))

def replace(path):
    tmp = path + ".dhcpleased-reach"
    create(tmp)
    os.rename(tmp, path)

result = {
    "create /etc/ld.so.preload": attempt(lambda: create("/etc/ld.so.preload")),
    "append /etc/passwd": attempt(lambda: append("/etc/passwd")),
    "rename over /etc/resolv.conf": attempt(lambda: replace("/etc/resolv.conf")),
    "write /etc/resolv.conf": attempt(lambda: append("/etc/resolv.conf")),
}
for d in ("/etc/cron.d", "/run/systemd/system"):  # cron jobs; units (transient, in /run)
    if os.path.isdir(d):
        result[f"create in {d}"] = attempt(lambda: create(f"{d}/dhcpleased-reach"))
"""


def reach(pid: int) -> dict[str, str]:
    """The probe's verdicts, from inside process ``pid``; it must survive them."""
    r = inject(pid, REACH)
    assert r.alive and r.error is None and r.value is not None, (r.error, r.gdb_output)
    got: dict[str, str] = ast.literal_eval(r.value)
    return got


ETC = ("create /etc/ld.so.preload", "append /etc/passwd", "rename over /etc/resolv.conf")


def assert_refused(
    got: dict[str, str], acts: tuple[str, ...] = ETC, errs: tuple[str, ...] = ("EACCES",)
) -> None:
    """Each of ``acts`` was tried and refused with one of ``errs`` (Landlock: EACCES)."""
    assert {a: got.get(a, "not tried") for a in acts} == {a: got[a] for a in acts}, got
    assert all(got[a] in errs for a in acts), got


def start(lab: Lab) -> int:
    require_gdb()
    daemon = lab.start_daemon("-d", "-v", lab.ifname)
    wait_leased(lab, daemon)
    lab.wait_for(lambda: "main: startup" in daemon_log(lab), LIMIT, what="startup")
    return daemon.pid


def test_in_place(dhcp_user: object) -> None:
    with Lab() as lab:
        inode = lab.resolv_conf.stat().st_ino
        pid = start(lab)
        lab.wait_for(lambda: "nameserver 198.18.0.53" in lab.resolv_conf.read_text(), LIMIT)
        got = reach(pid)
        assert_refused(got, (*ETC, "create in /etc/cron.d"))
        assert got["write /etc/resolv.conf"] == "ok"  # the one file it may rewrite
        assert lab.resolv_conf.stat().st_ino == inode  # rewritten, never replaced
        assert sorted(os.listdir(lab.etc_dir)) == ["resolv.conf"]  # nothing else written
        lab.ctl("release", lab.ifname)
        lab.wait_for(lambda: lab.resolv_conf.read_text() == ORIGINAL_RESOLV_CONF, LIMIT)
        assert lab.resolv_conf.stat().st_ino == inode


def test_linked_into_the_run_directory(dhcp_user: object) -> None:
    with Lab() as lab:
        lab.resolv_conf.unlink()
        lab.resolv_conf.symlink_to("/run/dhcpleased/resolv.conf")
        linked = lab.run_dir / "dhcpleased" / "resolv.conf"
        pid = start(lab)
        lab.wait_for(lambda: linked.exists() and "nameserver 198.18.0.53" in linked.read_text(),
                     LIMIT, what="DNS in the linked file")  # fmt: skip
        seen = lab.run_in_client_wait(["cat", "/etc/resolv.conf"]).stdout  # as a resolver
        assert "nameserver 198.18.0.53" in seen and "search lab.test example.test" in seen
        got = reach(pid)
        assert_refused(got, (*ETC, "create in /etc/cron.d"))
        assert got["write /etc/resolv.conf"] == "ok"  # through the link: the run directory's
        assert sorted(os.listdir(lab.etc_dir)) == ["resolv.conf"]
        assert lab.resolv_conf.is_symlink()
        lab.ctl("release", lab.ifname)
        lab.wait_for(lambda: not linked.exists(), LIMIT, what="the linked file removed")
        assert lab.resolv_conf.is_symlink()


def test_absent_resolv_conf_is_not_created(dhcp_user: object) -> None:
    """No resolv.conf: one warning, a lease without DNS, nothing created in /etc."""
    with Lab() as lab:
        lab.resolv_conf.unlink()
        os.mknod(lab.resolv_conf, stat.S_IFCHR, os.makedev(0, 0))  # overlay whiteout
        start(lab)
        log = daemon_log(lab)
        assert "/etc/resolv.conf does not exist: DNS from leases cannot be written" in log
        lab.wait_for(lambda: "resolv.conf: no such file, not created" in daemon_log(lab), LIMIT)
        assert sorted(os.listdir(lab.etc_dir)) == ["resolv.conf"]
        assert stat.S_ISCHR(os.lstat(lab.resolv_conf).st_mode)
