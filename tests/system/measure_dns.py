"""The parent's calls in the DNS helper modes, under the unit as shipped (issue 12.4).

``python -m tests.system.measure_dns [resolved|openresolv|resolvconf]`` (root) runs
tests/system/test_dns.py's scenario in its container, with ``strace -f -p`` attached
from the host to the unit's main process once its first lease's DNS is in (where that
scenario probes the parent's reach): ignore dns on reload, back, a lease that runs out,
a new one, an interface removed by reload, then the container's halt stops the daemon.
It prints the parent's calls as tests/integration/measure_parent.py does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.measure_parent import STRACE, summarise
from tests.system import test_dns
from tests.system.conftest import DEBS, source_binds
from tests.system.containers import Container, debs, host_package_version


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else "resolved"
    tmp = Path(tempfile.mkdtemp(prefix="measure-dns-"))
    trace = tmp / "strace.txt"
    traced: dict[str, int] = {}
    strace: list[subprocess.Popen[bytes]] = []

    def attach(c: Container, resolvconf: bool) -> None:
        pid = c.host_pid(c.pidof_unit("dhcpleased"))
        traced["pid"] = pid
        argv = [STRACE, "-f", "-qq", "-s", "32", "-o", str(trace), "-p", str(pid)]
        strace.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
        c.wait_for(lambda: trace.exists() and trace.stat().st_size > 0, 10, what="strace")

    test_dns.probe_reach = attach  # type: ignore[assignment]
    resolved = f"systemd-resolved={host_package_version('systemd')}"
    pkgs = str(debs([resolved, "openresolv", "resolvconf", "lsb-base"]))
    with (
        test_dns.DnsLab() as lab,
        Container(netns=lab.cli_ns, binds=source_binds((pkgs, DEBS, True))) as c,
    ):
        if which == "resolved":
            c.sh(f"dpkg -i {DEBS}/systemd-resolved_*.deb >/dev/null")
            c.systemctl("start", "systemd-resolved", check=True)
            test_dns.scenario(c, lab, test_dns.resolved_check, resolvconf=False)
        elif which == "openresolv":
            c.sh(f"dpkg -i {DEBS}/openresolv_*.deb >/dev/null")
            check = test_dns.record_check(["resolvconf", "-l", "dl0.dhcpleased"])
            test_dns.scenario(c, lab, check)
        else:
            c.sh(f"dpkg -i {DEBS}/lsb-base_*.deb {DEBS}/resolvconf_*.deb >/dev/null")
            c.systemctl("start", "resolvconf", check=True)
            c.run(["resolvconf", "-d", "original.resolvconf"])
            path = "/run/resolvconf/interface/dl0.dhcpleased"
            test_dns.scenario(c, lab, test_dns.record_check(["cat", path]))
        c.systemctl("stop", "dhcpleased")
    for p in strace:
        p.wait(30)
    for name, keys in sorted(summarise(trace, traced["pid"], sandboxed=True).items()):
        shown = "; ".join(f"{k} x{n}" for k, n in sorted(keys.items()) if k)
        print(f"{name:20s} {sum(keys.values()):7d}  {shown}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
