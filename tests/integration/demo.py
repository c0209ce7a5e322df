"""``make demo``: the daemon for real, against dnsmasq, in a throwaway lab.

Builds two network namespaces joined by a veth pair, dnsmasq on one side and
``dhcpleased -d`` on the other, shows what the daemon configured (from the kernel's and
the files' side), then removes everything it created.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.integration.lab import IP, Lab, missing_requirements


def show(title: str, text: str) -> None:
    print(f"\n== {title}")
    print(text.rstrip() or "(nothing)")


def main() -> int:
    why = missing_requirements()
    if why is not None:
        print(f"demo: {why}", file=sys.stderr)
        return 1
    lab = Lab(t1=30, t2=50)
    lab.classless_routes = (
        ("198.51.100.0/24", str(lab.server_ip)),
        ("0.0.0.0/0", str(lab.server_ip)),
    )
    with lab:
        print(
            f"lab: server {lab.server_ip} in netns {lab.srv_ns},"
            f" client {lab.ifname} in {lab.cli_ns}"
        )
        daemon = lab.start_daemon("-d", "-v", lab.ifname)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not lab.addresses():
            if daemon.poll() is not None:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # let routes and DNS land
        out = subprocess.run(
            [IP, "-n", lab.cli_ns, "-4", "addr", "show", "dev", lab.ifname],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        show(f"addresses on {lab.ifname}", out)
        out = subprocess.run(
            [IP, "-n", lab.cli_ns, "-4", "route", "show"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        show("routes", out)
        show(
            "/etc/resolv.conf as the daemon wrote it",
            lab.resolv_conf.read_text() if lab.resolv_conf.exists() else "",
        )
        lease = lab.lease_file()
        show(
            f"lease file /var/lib/dhcpleased/{lab.ifname}",
            lease.read_text() if lease.exists() else "",
        )
        for args in (("-l", lab.ifname), ("-p",)):
            res = lab.ctl(*args) if daemon.poll() is None else None
            show(f"dhcpleasectl {' '.join(args)}", (res.stdout + res.stderr) if res else "")
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)
        show("daemon log", (lab.tmp / "dhcpleased.log").read_text(errors="replace"))
        ok = bool(lab.addresses())
    print("\ndemo: lab removed" + ("" if ok else " (no lease was acquired)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
