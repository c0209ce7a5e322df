"""The OpenRC and sysvinit scripts, run by the init they are written for.

One container for the module: a minimal Debian rootfs (sysvinit as PID 1, OpenRC as its
rc, busybox syslogd), booted on the lab's client namespace.  The daemon is installed by
``make install`` twice, as an admin of each kind of system would: first ``INIT=openrc``
(``rc-service``), then ``INIT=sysv`` (the LSB script, run as ``service(8)`` runs it).  For
each: a broken configuration refuses the start with its message, start, status, the lease
in the kernel and the daemon's lines in syslog, reload (a changed option takes effect, a
broken one is refused and the daemon keeps running), stop (the address stays).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.integration.lab import Lab, in_range
from tests.system.conftest import make_install, source_binds, write_conf
from tests.system.containers import Container, debian_rootfs

BROKEN = "interface dl0 { bogus }\n"


def conf(host: str) -> str:
    return f'interface dl0 {{ send host name "{host}" }}\n'


@pytest.fixture(scope="module")
def c(lab: Lab) -> Iterator[Container]:
    root = debian_rootfs()
    with Container(root=root, init="sysv", netns=lab.cli_ns, binds=source_binds()) as container:
        yield container


def processes(c: Container) -> list[str]:
    """The daemon's processes by name (comm), as ps sees them."""
    out = c.run(["ps", "-e", "-o", "comm="]).stdout.split()
    return sorted(p for p in out if p in ("dhcpleased", "dhcp-engine", "dhcp-frontend"))


def syslog(c: Container) -> str:
    return c.run(["logread"]).stdout


def wait_host_name(lab: Lab, name: str) -> None:
    lab.wait_for(
        lambda: any(e[3:4] == [name] for e in lab.dnsmasq_lease_entries()),
        30,
        what=f"a request with host name {name}",
    )


def flush(lab: Lab) -> None:
    lab.exec_in(lab.cli_ns, ["ip", "addr", "flush", "dev", lab.ifname])


def check_service(c: Container, lab: Lab, ctl: list[str], *, first: str) -> None:
    """The admin's round: broken config, start, status, lease, syslog, reload, stop."""
    flush(lab)
    write_conf(c, BROKEN)
    r = c.run([*ctl, "start"], check=False)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "/etc/dhcpleased.conf:1: syntax error" in r.stdout + r.stderr
    assert processes(c) == []

    write_conf(c, conf(first))
    r = c.run([*ctl, "start"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert c.run([*ctl, "status"], check=False).returncode == 0
    addr = lab.wait_for(lab.addresses, 30, what="the lease")
    assert len(addr) == 1 and in_range(lab, addr[0])
    assert processes(c) == ["dhcp-engine", "dhcp-frontend", "dhcpleased"]
    ip = addr[0].split("/")[0]
    line = c.wait_for(
        lambda: next((x for x in syslog(c).splitlines() if f"main: adding {ip} to dl0" in x), ""),
        10,
        what="the lease in syslog",
    )
    # the daemon's own syslog line: facility daemon, its priority, its pid
    assert re.search(r" daemon\.info dhcpleased\[\d+\]: main: adding ", line), line

    write_conf(c, conf(f"{first}2"))
    r = c.run([*ctl, "reload"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_host_name(lab, f"{first}2")
    write_conf(c, BROKEN)
    r = c.run([*ctl, "reload"], check=False)
    assert r.returncode != 0
    assert "syntax error" in r.stdout + r.stderr
    assert processes(c) == ["dhcp-engine", "dhcp-frontend", "dhcpleased"]

    r = c.run([*ctl, "stop"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    c.wait_for(lambda: processes(c) == [], 10, what="the daemon gone")
    assert c.run([*ctl, "status"], check=False).returncode != 0
    assert lab.addresses() == addr  # as the original: the address stays
    assert "main: terminating" in syslog(c)


def test_openrc(c: Container, lab: Lab) -> None:
    make_install(c)  # INIT guessed: openrc-run is there
    assert c.run(["head", "-1", "/etc/init.d/dhcpleased"]).stdout == "#!/sbin/openrc-run\n"
    assert c.run(["getent", "passwd", "_dhcp"], check=False).returncode == 0  # useradd
    version = c.run(["openrc", "--version"]).stdout
    assert version.startswith("openrc (OpenRC [SYSTEMD-NSPAWN]) 0.4"), version  # rc_sys
    check_service(c, lab, ["rc-service", "dhcpleased"], first="orc")


def test_sysv(c: Container, lab: Lab) -> None:
    make_install(c, "INIT=sysv")
    assert "### BEGIN INIT INFO" in c.run(["cat", "/etc/init.d/dhcpleased"]).stdout
    check_service(c, lab, ["/etc/init.d/dhcpleased"], first="sysv")
