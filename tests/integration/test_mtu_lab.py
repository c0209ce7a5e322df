"""Issue 15.3 against dnsmasq, from the kernel's side: the lease's MTU (option 26) on the
interface, as ``ip link`` shows it, and the MTU it replaced back when the lease goes (a
release, the lease running out, ``ignore mtu`` or the interface's removal by a reload);
what is refused (below 576, above the device's maximum) changes nothing.  dnsmasq's log
shows what was asked for (options 26 and 42 in the request list, unless ignored);
dhcpleasectl shows the MTU and the NTP servers (the NTP hand-off itself is tested against
the real timesyncd and chrony in tests/system/test_ntp.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.hostile import HostileServer
from tests.integration.lab import Lab
from tests.integration.test_daemon import daemon_log, wait_leased
from tests.integration.xdp import cap_client_mtu, mtu

pytestmark = pytest.mark.integration

NTP = "198.18.0.123"
OFFER = ("--dhcp-option=26,1400", f"--dhcp-option=42,{NTP}")
LIMIT = 20.0


def wait_mtu(lab: Lab, value: int, daemon: subprocess.Popen[bytes], what: str = "") -> None:
    def check() -> bool:
        assert daemon.poll() is None, daemon_log(lab)
        return mtu(lab) == value

    try:
        lab.wait_for(check, LIMIT, what=what or f"MTU {value}")
    except TimeoutError as e:
        raise AssertionError(f"{e}: MTU is {mtu(lab)}\n{daemon_log(lab)}") from None


def requests(lab: Lab) -> list[str]:
    """What each client message asked for, in order (dnsmasq spreads a request list over
    consecutive "requested options:" lines)."""
    out: list[str] = []
    joining = False
    for line in lab.dnsmasq_log_text().splitlines():
        m = re.search(r"requested options: (.*)", line)
        if m and joining:
            out[-1] += " " + m.group(1)
        elif m:
            out.append(m.group(1))
        joining = m is not None
    return out


def acks(lab: Lab) -> int:
    return lab.dnsmasq_log_text().count("DHCPACK(")


def test_the_leases_mtu_goes_on_the_interface_and_back_on_release() -> None:
    with Lab(dnsmasq_args=OFFER) as lab:
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        wait_leased(lab, daemon)
        wait_mtu(lab, 1400, daemon)
        assert all("26:mtu" in r and "42:ntp-server" in r for r in requests(lab))
        assert "setting MTU of dl0 to 1400 (was 1500)" in daemon_log(lab)
        text = lab.ctl("-l", lab.ifname).stdout
        assert f"\tmtu 1400\n\tntp servers {NTP}\n" in text, text
        obj = json.loads(lab.ctl("-j", "-l", lab.ifname).stdout)
        assert (obj["mtu"], obj["ntp"]) == (1400, [NTP])

        # a NIC that resets its link on an MTU change: the lease is confirmed again, the
        # MTU stays and is not set again (no loop)
        before = acks(lab)
        lab.server_link(up=False)
        lab.wait_for(lambda: "[Down]" in lab.ctl("-l", lab.ifname).stdout, LIMIT)
        lab.server_link(up=True)
        lab.wait_for(lambda: acks(lab) > before, LIMIT, what="the lease confirmed")
        lab.wait_for(lambda: "[Bound]" in lab.ctl("-l", lab.ifname).stdout, LIMIT)
        assert mtu(lab) == 1400 and daemon_log(lab).count("setting MTU") == 1

        assert lab.ctl("release", lab.ifname).returncode == 0
        wait_mtu(lab, 1500, daemon, "the MTU restored")
        assert "restoring MTU of dl0 to 1500 (was 1400)" in daemon_log(lab)
        obj = json.loads(lab.ctl("-j", "-l", lab.ifname).stdout)
        assert (obj["state"], obj["mtu"], obj["ntp"]) == ("Released", None, [])


def test_the_lease_running_out_puts_the_mtu_back() -> None:
    """A 6 s lease from the scripted server, which then falls silent."""
    with Lab(start_dnsmasq=False) as lab:
        server = HostileServer(lab, lease=6, t1=2, t2=4, extra=[[26, "0578"]])  # 1400
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        wait_mtu(lab, 1400, daemon)
        server.set(mode="silent")
        wait_mtu(lab, 1500, daemon, "the lease's end")
        assert "restoring MTU of dl0 to 1500 (was 1400)" in daemon_log(lab)
        server.stop()


def save(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_reloads_ignore_restore_and_remove() -> None:
    """dnsmasq sends 26 whether asked or not (--dhcp-option-force): with "ignore mtu" it is
    neither asked for nor applied; the reload that sets it puts the old MTU back, the one
    that unsets it takes the lease's again, the one that drops the interface restores."""
    with Lab(dnsmasq_args=("--dhcp-option-force=26,1400",)) as lab:
        conf = lab.tmp / "dhcpleased.conf"
        conf.write_text(f"interface {lab.ifname} {{\n\tsend host name one\n}}\n")
        daemon = lab.start_daemon("-d", "-v", "-f", str(conf))
        wait_mtu(lab, 1400, daemon)

        before = acks(lab)
        save(conf, f"interface {lab.ifname} {{\n\tignore mtu\n}}\n")
        daemon.send_signal(signal.SIGHUP)
        wait_mtu(lab, 1500, daemon, "the MTU restored by 'ignore mtu'")
        # the changed interface asks again: without 26, and the forced 26 is ignored
        lab.wait_for(lambda: acks(lab) > before, LIMIT, what="the ACK after the reload")
        assert "26:mtu" not in requests(lab)[-1] and "42:ntp-server" in requests(lab)[-1]
        assert mtu(lab) == 1500
        assert json.loads(lab.ctl("-j", "-l", lab.ifname).stdout)["mtu"] is None

        save(conf, f"interface {lab.ifname} {{\n\tsend host name two\n}}\n")
        daemon.send_signal(signal.SIGHUP)
        wait_mtu(lab, 1400, daemon, "the lease's MTU again")

        save(conf, "")
        daemon.send_signal(signal.SIGHUP)
        wait_mtu(lab, 1500, daemon, "the MTU restored by the interface's removal")
        assert daemon.poll() is None and "fatal" not in daemon_log(lab)


@pytest.mark.parametrize("value", [500, 9000])
def test_refused_mtus_change_nothing(value: int) -> None:
    """500: the engine refuses it (below 576); 9000: the parent does, above the device's
    maximum (lowered by an XDP program on the peer).  Either way the lease is taken."""
    with Lab(dnsmasq_args=(f"--dhcp-option=26,{value}",)) as lab:
        limit = cap_client_mtu(lab) if value > 1500 else 0
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        wait_leased(lab, daemon)
        line = (
            f"dl0: ignoring interface MTU 500 from {lab.mac(lab.srv_ns, lab.srv_ifname)}: below 576"
            if value < 576
            else f"dl0: refusing MTU 9000 from the lease: above the device's maximum {limit}"
        )
        lab.wait_for(lambda: line in daemon_log(lab), LIMIT, what=line)
        assert mtu(lab) == 1500 and daemon.poll() is None
        shown = json.loads(lab.ctl("-j", "-l", lab.ifname).stdout)["mtu"]
        assert shown == (None if value < 576 else 9000)  # the lease's, as the engine took it


def test_an_mtu_the_admin_changed_meanwhile_is_left_alone() -> None:
    with Lab(dnsmasq_args=OFFER) as lab:
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        wait_mtu(lab, 1400, daemon)
        lab.exec_in(lab.cli_ns, ["ip", "link", "set", "dev", lab.ifname, "mtu", "1280"])
        assert lab.ctl("release", lab.ifname).returncode == 0
        line = "dl0: not restoring the MTU: MTU is 1280, not the lease's 1400: left alone"
        lab.wait_for(lambda: line in daemon_log(lab), LIMIT, what=line)
        assert mtu(lab) == 1280
