"""Reloads against the running daemon: interfaces added and removed, configs saved by rename.

The daemon runs with no interface on its command line, so the config's ``interface``
blocks are what it manages; the scapy server of :mod:`hostile` answers at once and
records what each client message carried (host name included).  Each step is judged by
what the kernel and the files say (address, default route, resolv.conf) or by what went
on the wire, never by a log line alone; and the daemon must be alive, with the same
children, after every step.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.hostile import HostileServer
from tests.integration.lab import Lab
from tests.integration.test_daemon import alive, children, daemon_log
from tests.integration.test_faults import (
    LIMIT,
    default_route,
    dns_proposed,
    dns_withdrawn,
    has_addr,
    wait_msg,
)
from tests.integration.test_service import NotifySocket, kinds, start

pytestmark = pytest.mark.integration


def save(path: Path, text: str) -> None:
    """Write a new file and rename it over the old one, as editors and config tools do."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def block(lab: Lab, *options: str) -> str:
    body = "".join(f"\t{o}\n" for o in options or ("send host name reload",))
    return f"interface {lab.ifname} {{\n{body}}}\n"


def configured(lab: Lab, h: HostileServer) -> bool:
    return has_addr(lab, h.address) and default_route(lab) is not None and dns_proposed(lab)


def deconfigured(lab: Lab, h: HostileServer) -> bool:
    return not has_addr(lab, h.address) and default_route(lab) is None and dns_withdrawn(lab)


class Daemon:
    """The daemon under test and the children it started with (which must never change)."""

    def __init__(self, lab: Lab, proc: subprocess.Popen[bytes], log: str = "dhcpleased.log"):
        self.lab, self.proc, self.log = lab, proc, log
        self.lab.wait_for(lambda: len(children(proc.pid)) == 2, LIMIT, what="two children")
        self.kids = children(proc.pid)

    def check(self) -> None:
        if self.proc.poll() is not None or not all(alive(k) for k in self.kids):
            raise AssertionError(f"daemon or a child died:\n{daemon_log(self.lab, self.log)}")
        assert children(self.proc.pid) == self.kids
        assert "fatal" not in daemon_log(self.lab, self.log)

    def wait(self, pred: object, what: str) -> None:
        def ok() -> bool:
            self.check()
            return bool(pred())  # type: ignore[operator]

        try:
            self.lab.wait_for(ok, LIMIT, what=what)
        except TimeoutError:
            raise AssertionError(f"{what}: timed out\n{daemon_log(self.lab)}") from None


def start_bound(lab: Lab, h: HostileServer, conf: Conf) -> Daemon:
    """Started with no interface named: the config's block is all it manages."""
    d = Daemon(lab, lab.start_daemon("-d", "-v", "-f", conf.path))
    d.wait(lambda: configured(lab, h), "bound through the config's block")
    return d


class Conf:
    """The config in a directory of its own, where only the config's Landlock rule lets
    the parent read: under the client's /run (lab.tmp itself, the daemon's working
    directory, is on its sys.path and so readable anyway)."""

    def __init__(self, lab: Lab) -> None:
        (lab.run_dir / "dlconf").mkdir(exist_ok=True)
        self.host = lab.run_dir / "dlconf" / "dhcpleased.conf"  # where the test writes
        self.path = "/run/dlconf/dhcpleased.conf"  # where the daemon reads

    def save(self, text: str) -> None:
        save(self.host, text)


# --- item 2: a reload that removes an interface --------------------------------------------


def test_reload_removes_an_interface_and_adds_it_back() -> None:
    """Removing the block is ``ifconfig -autoconf4``: the address, its routes and the DNS
    go, the daemon stays; named again, the interface is bound again."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        conf = Conf(lab)
        conf.save(block(lab))
        d = start_bound(lab, h, conf)

        conf.save("")
        d.proc.send_signal(signal.SIGHUP)
        d.wait(lambda: deconfigured(lab, h), "address, route and DNS removed")

        conf.save(block(lab))
        r = lab.ctl("reload")
        assert (r.returncode, r.stderr) == (0, "")
        d.wait(lambda: configured(lab, h), "bound again after the block came back")

        conf.save("# nothing managed\n")
        assert lab.ctl("reload").returncode == 0
        d.wait(lambda: deconfigured(lab, h), "removed a second time")
        time.sleep(1)  # nothing comes back on its own, nothing dies later
        assert deconfigured(lab, h)
        d.check()


def test_reload_storm_while_the_link_flaps() -> None:
    """Reloads that add and remove the interface, as fast as signals go, while both ends
    of the link flap: UPDATE_IF, OPEN_BPFSOCK, CONFIGURE... in flight when a reload lands
    are stale, not hostile.  Afterwards the state follows the last config, both ways."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        conf = Conf(lab)
        conf.save(block(lab))
        d = start_bound(lab, h, conf)
        rng = random.Random(11)
        stop = threading.Event()

        def flap() -> None:
            while not stop.is_set():
                for link in (lab.server_link, lab.client_link):
                    link(up=False)
                    link(up=True)

        flapper = threading.Thread(target=flap)
        flapper.start()
        try:
            deadline = time.monotonic() + 8
            reloads = 0
            while time.monotonic() < deadline:
                conf.save(block(lab) if reloads % 2 else "")
                d.proc.send_signal(signal.SIGHUP)
                reloads += 1
                time.sleep(rng.uniform(0, 0.08))
                d.check()
        finally:
            stop.set()
            flapper.join()
        lab.server_link(up=True)
        lab.client_link(up=True)
        assert reloads > 50
        # with a steady link, reloads at about the pace of a lease exchange: CONFIGURE and
        # PROPOSE_RDNS are in flight when the interface goes
        for i in range(40):
            conf.save(block(lab) if i % 2 == 0 else "")
            d.proc.send_signal(signal.SIGHUP)
            time.sleep(rng.uniform(0, 0.15))
            d.check()

        conf.save(block(lab))
        d.proc.send_signal(signal.SIGHUP)
        d.wait(lambda: configured(lab, h), "bound after the storm")
        conf.save("")
        d.proc.send_signal(signal.SIGHUP)
        d.wait(lambda: deconfigured(lab, h), "removed after the storm")
        d.check()


# --- item 10: configs saved by rename; a failed reload -------------------------------------


def host_names(h: HostileServer, start: int = 0) -> list[str]:
    return [bytes.fromhex(m["host_name"]).decode() for m in h.messages()[start:] if m["host_name"]]


def test_config_saved_with_sed_is_read_again_and_a_broken_one_is_refused() -> None:
    """``sed -i`` renames a new file over the config: the reload reads it and the new host
    name goes on the wire.  A broken file: ``dhcpleasectl reload`` prints the parser's
    ``file:line: message`` and exits 1, the old config stays in force, systemd gets
    READY=1 again."""
    with Lab(start_dnsmasq=False) as lab:
        h = HostileServer(lab)
        conf = Conf(lab)
        conf.save(block(lab, "send host name before"))
        notify = NotifySocket(lab.tmp / "notify")
        try:
            proc, log = start(lab, notify, "-d", "-v", "-f", conf.path)
            d = Daemon(lab, proc)
            d.wait(lambda: configured(lab, h), "bound")
            assert host_names(h)[-1] == "before"

            inode = conf.host.stat().st_ino
            sed = ["sed", "-i", "s/host name before/host name after/", str(conf.host)]
            subprocess.run(sed, check=True)
            assert conf.host.stat().st_ino != inode  # a new file, as the daemon will find it
            n = len(h.messages())
            r = lab.ctl("reload")
            assert (r.returncode, r.stderr) == (0, ""), r.stderr
            wait_msg(h, lambda m: m["host_name"] == b"after".hex(), "the new host name", n)

            sed = [
                "sed",
                "-i",
                "s/host name after/host name broken\\n\\tsend bogus/",
                str(conf.host),
            ]
            subprocess.run(sed, check=True)
            r = lab.ctl("reload")
            assert r.returncode == 1
            assert f"{conf.path}:3: syntax error" in r.stderr.splitlines()
            assert "reload failed" in r.stderr
            # the old config is still the one in force: a new request still says "after"
            n = len(h.messages())
            assert lab.ctl("-w", "5", lab.ifname).returncode == 0
            wait_msg(h, lambda m: m["type"] == "request", "a request after the failed reload", n)
            assert set(host_names(h, n)) == {"after"}

            fix = ["sed", "-i", "s/host name broken/host name fixed/;/bogus/d", str(conf.host)]
            subprocess.run(fix, check=True)
            n = len(h.messages())
            assert lab.ctl("reload").returncode == 0
            wait_msg(h, lambda m: m["host_name"] == b"fixed".hex(), "the fixed host name", n)
            d.check()
            # every reload, the failed one too, ended in READY=1 (never left in RELOADING)
            while kinds(notify.messages).count("READY") < 4:
                notify.wait_for(lambda m: "READY" in m, proc, log)
            assert kinds(notify.messages) == ["READY"] + ["RELOADING", "READY"] * 3
        finally:
            notify.close()
