"""NTP servers (option 42) handed to the time daemons users run: systemd-timesyncd, chrony.

Each in its own container (they conflict), installed from the Debian packages fetched once
with ``apt-get download`` (timesyncd pinned to the host's systemd, as it must match PID 1),
the daemon installed by ``make install`` and started by systemd with its unit as shipped.
The lab's server side runs dnsmasq, which offers itself as the NTP server (option 42), and
chronyd as that NTP server (from the same chrony package, unpacked, never installed; with
``-x`` and without CAP_SYS_TIME: it serves time, it never sets a clock), so each time
daemon is seen to take the lease's server *and get answers from it*: timesyncd's
``timedatectl timesync-status`` counts packets, ``chronyc sources`` shows the source
reached.  Neither container may set the clock either (no CAP_SYS_TIME in them; chronyd
runs with ``-x``).  One scenario for both: the server appears; it goes on ``ignore ntp``
(reload), comes back, goes on ``dhcpleasectl release``, comes back, goes when the lease
runs out (a scripted server gives a 6 s lease, then falls silent), comes back, goes when a
reload removes the interface.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.hostile import HostileServer
from tests.integration.lab import Lab
from tests.integration.test_daemon import children, comm
from tests.system.conftest import DEBS, make_install, source_binds, write_conf
from tests.system.containers import Container, debs, host_enabled_services, host_package_version
from tests.system.test_dns import reload_with

WITH_NTP = 'interface dl0 { send host name "ntp" }\n'
IGNORE_NTP = "interface dl0 { ignore ntp }\n"
NO_INTERFACE = ""
SERVER_CONF = """allow all
local stratum 8
cmdport 0
bindcmdaddress /
pidfile {tmp}/ntp-server.pid
"""


class NtpLab(Lab):
    """dnsmasq offers itself (0.0.0.0: its own address) as the NTP server."""

    def __init__(self) -> None:
        super().__init__(dnsmasq_args=("--dhcp-option=42,0.0.0.0",))


@pytest.fixture(scope="module")
def packages() -> str:
    timesyncd = f"systemd-timesyncd={host_package_version('systemd')}"
    return str(debs([timesyncd, "chrony"]))


@pytest.fixture(scope="module")
def lab(packages: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The lab, with chronyd serving NTP on the server side."""
    root = tmp_path_factory.mktemp("chrony")
    deb = next(Path(packages).glob("chrony_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=60)
    with NtpLab() as the_lab:
        conf = the_lab.tmp / "ntp-server.conf"
        conf.write_text(SERVER_CONF.format(tmp=the_lab.tmp))
        log = open(the_lab.tmp / "ntp-server.log", "ab")  # noqa: SIM115 - closed with the lab
        the_lab._logs.append(log)
        the_lab.spawn_in(
            the_lab.srv_ns,
            ["setpriv", "--bounding-set=-sys_time", "--inh-caps=-all", "--",
             str(root / "usr/sbin/chronyd"), "-f", str(conf), "-x", "-d", "-u", "root", "-U"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        yield the_lab


Check = Callable[[Container, Lab, bool], str | None]


def wait(c: Container, lab: Lab, check: Check, present: bool) -> str:
    """Until the time daemon shows the lease's server (present) or not; what it showed."""
    what = "the lease's NTP server" if present else "no NTP server from the lease"

    def shown() -> str | None:
        if c.run(["systemctl", "is-failed", "dhcpleased"], check=False).returncode == 0:
            raise TimeoutError("the daemon died")
        return check(c, lab, present)

    try:
        return c.wait_for(shown, 45, interval=0.5, what=what)
    except TimeoutError as e:
        log = c.journal("dhcpleased", "-o", "cat")[-3000:]
        raise AssertionError(f"{e}\njournal:\n{log}") from None


def scenario(c: Container, lab: Lab, check: Check, unit: str, helper_caps: int) -> None:
    lab.exec_in(lab.cli_ns, ["ip", "addr", "flush", "dev", lab.ifname])  # the last test's
    make_install(c)
    write_conf(c, WITH_NTP)
    c.systemctl("start", "dhcpleased", check=True)
    wait(c, lab, check, True)
    shown = c.run(["dhcpleasectl", "-l", "dl0"]).stdout
    assert f"\tntp servers {lab.server_ip}\n" in shown, shown
    # the hand-off helper, and only it, holds what the time daemon needs
    main = c.host_pid(c.pidof_unit("dhcpleased"))
    helpers = [k for k in children(main) if comm(k) == "dhcp-dns"]
    assert len(helpers) == 1, [comm(k) for k in children(main)]
    status = Path(f"/proc/{helpers[0]}/status").read_text()
    assert re.search(rf"^CapEff:\s+0*{helper_caps:x}$", status, re.M), status

    reload_with(c, IGNORE_NTP)
    wait(c, lab, check, False)
    reload_with(c, WITH_NTP)
    wait(c, lab, check, True)
    c.run(["dhcpleasectl", "release", "dl0"])
    wait(c, lab, check, False)
    c.run(["dhcpleasectl", "-w", "30", "dl0"])
    wait(c, lab, check, True)

    # a lease that runs out: 6 s from a scripted server, then silence
    lab.stop_dnsmasq()
    addr = lab.addresses()[0].split("/")[0]
    hostile = HostileServer(
        lab, address=addr, lease=6, dns=[], extra=[[42, lab.server_ip.packed.hex()]]
    )
    reload_with(c, WITH_NTP.replace('"ntp"', '"short"'))  # a changed interface asks again
    wait(c, lab, check, True)
    hostile.set(mode="silent")
    wait(c, lab, check, False)
    hostile.stop()
    lab.start_dnsmasq()
    c.run(["dhcpleasectl", "-w", "30", "dl0"])
    wait(c, lab, check, True)

    reload_with(c, NO_INTERFACE)
    wait(c, lab, check, False)
    log = c.journal("dhcpleased", "-o", "cat")
    assert not re.search(r"(systemctl|chronyc) .*(exit|timed out)", log), log
    assert "fatal" not in log, log
    # the time daemon took every hand-off and still runs: restarts stayed under systemd's
    # start limit (dnshelper.RESTART_SPACING)
    assert c.run(["systemctl", "is-active", unit], check=False).stdout.strip() == "active"
    assert "start-limit-hit" not in c.journal(unit)


def timesync(c: Container, lab: Lab, present: bool) -> str | None:
    """timesyncd's own view (over D-Bus) and our drop-in; present: it got answers too.
    Asked only while it runs: timedatectl would start it by D-Bus activation."""
    if c.run(["systemctl", "is-active", "systemd-timesyncd"], check=False).returncode:
        return None
    servers = c.run(
        ["timedatectl", "show-timesync", "-p", "SystemNTPServers", "--value"], check=False
    ).stdout.split()
    drop_in = c.run(["cat", "/run/systemd/timesyncd.conf.d/dhcpleased-dl0.conf"], check=False)
    if not present:
        return "gone" if str(lab.server_ip) not in servers and drop_in.returncode else None
    if servers != [str(lab.server_ip)]:
        return None
    assert f"NTP={lab.server_ip}\n" in drop_in.stdout, drop_in.stdout
    status = c.run(["timedatectl", "timesync-status"], check=False).stdout
    served = re.search(rf"Server: {lab.server_ip} ", status) and not re.search(
        r"Packet count: 0\b", status
    )
    return status if served else None


def test_systemd_timesyncd(lab: Lab, packages: str) -> None:
    masked = [u for u in host_enabled_services() if u != "systemd-timesyncd.service"]
    with Container(
        netns=lab.cli_ns, binds=source_binds((packages, DEBS, True)), masked=masked
    ) as c:
        c.sh(f"dpkg -i {DEBS}/systemd-timesyncd_*.deb >/dev/null")
        # a container is not where timesyncd runs (ConditionVirtualization=!container),
        # and it has no CAP_SYS_TIME: run it anyway, without (it cannot set the clock)
        c.sh(
            "mkdir -p /run/systemd/system/systemd-timesyncd.service.d && printf "
            "'[Unit]\\nConditionVirtualization=\\n[Service]\\nAmbientCapabilities=\\n' "
            "> /run/systemd/system/systemd-timesyncd.service.d/lab.conf && "
            "systemctl daemon-reload"
        )
        c.systemctl("start", "systemd-timesyncd", check=True)
        scenario(c, lab, timesync, "systemd-timesyncd", helper_caps=0)


def chrony_sources(c: Container, lab: Lab, present: bool) -> str | None:
    """chronyc's list of sources; present: the lease's server, reached (Reach > 0)."""
    out = c.run(["chronyc", "-n", "sources"], check=False).stdout
    line = next((ln for ln in out.splitlines() if f" {lab.server_ip} " in ln), None)
    sources = Path("/run/chrony-dhcp/dl0.sources")
    have = c.run(["test", "-e", str(sources)], check=False).returncode == 0
    if not present:
        return out if line is None and not have else None
    if line is None or not have:
        return None
    reach = line.split()[3]  # MS Name Stratum Poll Reach ...
    return out if reach != "0" else None


def test_chrony(lab: Lab, packages: str) -> None:
    with Container(netns=lab.cli_ns, binds=source_binds((packages, DEBS, True))) as c:
        c.sh(
            "dpkg -r systemd-timesyncd >/dev/null 2>&1; "  # the host's: they conflict
            f"dpkg -i {DEBS}/chrony_*.deb >/dev/null 2>&1"
        )
        # no CAP_SYS_TIME here (ConditionCapability=): run chronyd without clock control;
        # no Internet in the lab: no pool
        c.sh(
            "mkdir -p /run/systemd/system/chrony.service.d && printf "
            "'[Unit]\\nConditionCapability=\\n' > /run/systemd/system/chrony.service.d/lab.conf"
            " && echo 'DAEMON_OPTS=\"-F 1 -x\"' > /etc/default/chrony"
            " && sed -i '/^pool /d' /etc/chrony/chrony.conf && systemctl daemon-reload"
        )
        c.systemctl("start", "chrony", check=True)
        scenario(c, lab, chrony_sources, "chrony", helper_caps=1 << 1)  # CAP_DAC_OVERRIDE
