"""DNS hand-off to the resolver programs users run: systemd-resolved, openresolv, resolvconf.

Each back end in its own container (they conflict with each other), installed from the
Debian packages fetched once with ``apt-get download`` (never on the host), the daemon
installed by ``make install`` and started by systemd with its unit as shipped: the
parent's sandbox is on.  One scenario for all three, every step checked with the back
end's own tools: the lease's servers and domains appear; they go on ``ignore dns`` (reload),
come back, go when a reload removes the interface, come back, and go when the lease runs
out (a scripted server gives a 6 s lease, then falls silent).  dnsmasq on the server side
also answers DNS, so that systemd-resolved's stub is asked a real question.  Once the
lease's DNS is in, Python injected into the parent and into its DNS helper tries to
create /etc/ld.so.preload, append to /etc/passwd and replace resolv.conf
(tests/integration/test_parent_reach.py): each is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from tests.integration.hostile import HostileServer
from tests.integration.lab import Lab
from tests.integration.test_daemon import children, comm
from tests.integration.test_parent_reach import assert_refused, reach
from tests.system.conftest import DEBS, make_install, source_binds, write_conf
from tests.system.containers import Container, debs, host_package_version

RECORD = ("www.lab.test", "198.51.100.7")  # served by dnsmasq on the lab's server side
DOMAINS = ("lab.test", "example.test")  # option 15, then option 119
WITH_DNS = 'interface dl0 { send host name "dns" }\n'
IGNORE_DNS = "interface dl0 { ignore dns }\n"
NO_INTERFACE = ""


class DnsLab(Lab):
    """The lab's dnsmasq also answers DNS (port 53) for one name, and is the only server
    the lease names."""

    def __init__(self) -> None:
        super().__init__()
        self.dns = (str(self.server_ip),)

    def dnsmasq_argv(self) -> list[str]:
        argv = [a for a in super().dnsmasq_argv() if a != "--port=0"]
        return [*argv, "--port=53", f"--host-record={','.join(RECORD)}"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with DnsLab() as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def packages() -> str:
    """systemd-resolved pinned to the host's systemd (it must match PID 1 exactly)."""
    resolved = f"systemd-resolved={host_package_version('systemd')}"
    return str(debs([resolved, "openresolv", "resolvconf", "lsb-base"]))


Check = Callable[[Container, Lab, bool, bool], str | None]


def wait(c: Container, lab: Lab, check: Check, present: bool, domains: bool = True) -> str:
    """Until the back end shows the lease's DNS (present) or nothing of it; what it showed."""
    what = "the lease's DNS" if present else "no DNS from the lease"

    def shown() -> str | None:
        if c.run(["systemctl", "is-failed", "dhcpleased"], check=False).returncode == 0:
            raise TimeoutError("the daemon died")  # no use waiting any longer
        return check(c, lab, present, domains)

    try:
        return c.wait_for(shown, 30, interval=0.3, what=what)
    except TimeoutError as e:
        log = c.journal("dhcpleased", "-o", "cat")[-3000:]
        raise AssertionError(f"{e}\nresolv.conf:\n{c.run(['cat', '/etc/resolv.conf']).stdout}"
                             f"\njournal:\n{log}") from None  # fmt: skip


def reload_with(c: Container, conf: str) -> None:
    write_conf(c, conf)
    r = c.systemctl("reload", "dhcpleased")
    assert r.returncode == 0, r.stderr + c.journal("dhcpleased", "-o", "cat")[-3000:]


def scenario(c: Container, lab: Lab, check: Check, resolvconf: bool = True) -> None:
    lab.exec_in(lab.cli_ns, ["ip", "addr", "flush", "dev", lab.ifname])  # the last test's
    make_install(c)
    write_conf(c, WITH_DNS)
    c.systemctl("start", "dhcpleased", check=True)
    wait(c, lab, check, True)
    # the parent's sandbox, as shipped, did the hand-off
    procs = c.run(["dhcpleasectl", "-p", "-j"]).stdout
    assert re.search(r'"name": "main".*?"landlock_status": 1', procs, re.S), procs
    probe_reach(c, resolvconf)

    reload_with(c, IGNORE_DNS)
    wait(c, lab, check, False)
    reload_with(c, WITH_DNS)
    wait(c, lab, check, True)

    # a lease that runs out: 6 s from a scripted server, taken on the reload (a changed
    # interface is asked again), then the server falls silent
    lab.stop_dnsmasq()
    addr = lab.addresses()[0].split("/")[0]
    hostile = HostileServer(lab, address=addr, lease=6, dns=[str(lab.server_ip)])
    reload_with(c, WITH_DNS.replace('"dns"', '"short"'))
    wait(c, lab, check, True, domains=False)
    hostile.set(mode="silent")
    wait(c, lab, check, False)
    hostile.stop()
    lab.start_dnsmasq()
    c.run(["dhcpleasectl", "-w", "30", "dl0"])  # ask now, not at the next back-off
    wait(c, lab, check, True)
    log = c.journal("dhcpleased", "-o", "cat")
    assert not re.search(r"main: (resolvconf|resolvectl) .*(exit|timed out)", log), log

    reload_with(c, NO_INTERFACE)
    wait(c, lab, check, False)


def probe_reach(c: Container, resolvconf: bool) -> None:
    """Python injected into the parent and its DNS helper: no new file in /etc, no
    /etc/passwd (the unit's read-only /etc answers EROFS before Landlock is asked); what
    the unit leaves writable, Landlock refuses: resolv.conf to the parent (the helper runs
    resolvconf for it) and a unit file in /run/systemd/system to both but the resolvconf
    helper, whose programs' hooks keep their state in /run."""
    main = c.host_pid(c.pidof_unit("dhcpleased"))
    helpers = [k for k in children(main) if comm(k) == "dhcp-dns"]
    assert len(helpers) == 1, [comm(k) for k in children(main)]
    for pid in (main, *helpers):
        got = reach(pid)
        assert_refused(got, errs=("EROFS", "EACCES"))
        landlock = ["write /etc/resolv.conf", "create in /run/systemd/system"]
        if pid != main and resolvconf:
            landlock = []
        assert_refused(got, tuple(landlock))
    assert c.run(["test", "!", "-e", "/etc/ld.so.preload"], check=False).returncode == 0


def resolved_check(c: Container, lab: Lab, present: bool, domains: bool) -> str | None:
    """resolvectl's view of dl0; present: also the stub resolver answers for the lease."""
    servers = c.run(["resolvectl", "dns", "dl0"]).stdout
    names = c.run(["resolvectl", "domain", "dl0"]).stdout
    status = c.run(["resolvectl", "status", "dl0"]).stdout
    if not present:
        empty = servers.split(":", 1)[1].strip() == "" and names.split(":", 1)[1].strip() == ""
        return status if empty and "DNS Servers" not in status else None
    if servers.split(":", 1)[1].split() != [str(lab.server_ip)]:
        return None
    if domains and names.split(":", 1)[1].split() != list(DOMAINS):
        return None
    assert f"DNS Servers: {lab.server_ip}" in status, status
    if domains:
        assert f"DNS Domain: {' '.join(DOMAINS)}" in status, status
        # the stub (127.0.0.53, what resolv.conf names) answers from the lease's server
        assert "nameserver 127.0.0.53" in c.run(["cat", "/etc/resolv.conf"]).stdout
        answer = c.run(["getent", "ahostsv4", RECORD[0]], check=False).stdout
        assert answer.split()[:1] == [RECORD[1]], answer
    return status


def test_systemd_resolved(lab: Lab, packages: str) -> None:
    with Container(netns=lab.cli_ns, binds=source_binds((packages, DEBS, True))) as c:
        c.sh(f"dpkg -i {DEBS}/systemd-resolved_*.deb >/dev/null")
        c.systemctl("start", "systemd-resolved", check=True)
        scenario(c, lab, resolved_check, resolvconf=False)


def record_check(listing: list[str]) -> Check:
    """resolvconf's record dl0.dhcpleased (``listing`` prints it) and the regenerated
    resolv.conf, for openresolv and Debian's resolvconf alike."""

    def check(c: Container, lab: Lab, present: bool, domains: bool) -> str | None:
        record = c.run([*listing], check=False).stdout
        conf = c.run(["cat", "/etc/resolv.conf"]).stdout
        server = f"nameserver {lab.server_ip}"
        if not present:
            return conf if server not in record and server not in conf else None
        want = [server, *([f"search {' '.join(DOMAINS)}"] if domains else [])]
        if not all(line in record.splitlines() for line in want):
            return None
        return conf if all(line in conf.splitlines() for line in want) else None

    return check


def test_openresolv(lab: Lab, packages: str) -> None:
    with Container(netns=lab.cli_ns, binds=source_binds((packages, DEBS, True))) as c:
        c.sh(f"dpkg -i {DEBS}/openresolv_*.deb >/dev/null")
        assert "openresolv" in c.run(["resolvconf", "--version"]).stdout
        before = c.run(["cat", "/etc/resolv.conf"]).stdout
        scenario(c, lab, record_check(["resolvconf", "-l", "dl0.dhcpleased"]))
        # withdrawn: resolv.conf is regenerated by openresolv, not ours
        after = c.run(["cat", "/etc/resolv.conf"]).stdout
        assert "Generated by resolvconf" in after and after != before


def test_debian_resolvconf(lab: Lab, packages: str) -> None:
    with Container(netns=lab.cli_ns, binds=source_binds((packages, DEBS, True))) as c:
        c.sh(f"dpkg -i {DEBS}/lsb-base_*.deb {DEBS}/resolvconf_*.deb >/dev/null")
        c.systemctl("start", "resolvconf", check=True)
        c.run(["resolvconf", "-d", "original.resolvconf"])  # the image's own servers
        link = c.run(["readlink", "/etc/resolv.conf"]).stdout.strip()
        assert link == "../run/resolvconf/resolv.conf", link
        scenario(c, lab, record_check(["cat", "/run/resolvconf/interface/dl0.dhcpleased"]))
