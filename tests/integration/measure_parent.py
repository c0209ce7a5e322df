"""Measure what the parent really calls once its sandbox is up (issue 12.4), in the lab.

``python -m tests.integration.measure_parent [--linked] [--out FILE]`` (root) runs the
real daemon under ``strace -f`` in a lab and walks it through what the parent serves:
a lease from dnsmasq with an MTU and NTP servers (options 26, 42: the interface's MTU set
and put back) (a second interface, down, added by ``dhcpleasectl IF``), renewals and a
rebind (T1 3 s, T2 6 s), ``dhcpleasectl`` show, ``-p``, ``log``, a reload by SIGHUP and
one by ``dhcpleasectl reload`` that drops and adds back an interface, a config saved by
rename, a link down and up, a DHCPRELEASE by ``dhcpleasectl release``, the DNS hand-off
in file mode (in place, or ``--linked`` into the run directory), a bad reload, an
exception in the parent's loop (the crash report reads source files), and shutdown by
SIGTERM with ``release on exit``.  It prints, for the parent's pid only and only after
its ``landlock_restrict_self``, each system call with the arguments a filter could look
at (socket family and type, setsockopt level and name, ioctl and fcntl commands, mmap
and mprotect protections) and how often it was seen.  The DNS helper's modes are
measured in their containers (``--help``).  Nothing here is a test: its output is what
``seccomp.PARENT`` was written from, and the tests then prove the list is enough.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.inject import inject
from tests.integration.lab import Lab
from tests.integration.test_daemon import daemon_log, wait_leased

STRACE = shutil.which("strace") or "/usr/bin/strace"
# args of interest, by syscall: indices into the argument list strace prints
KEY_ARGS = {
    "socket": (0, 1), "socketpair": (0, 1), "setsockopt": (1, 2), "getsockopt": (1, 2),
    "ioctl": (1,), "fcntl": (1,), "mmap": (2,), "mprotect": (2,), "prctl": (0,),
    "openat": (2,), "rt_sigaction": (0,), "kill": (1,), "pidfd_send_signal": (1,),
    "sendmsg": (), "clone": (1,), "clone3": (), "shutdown": (1,),
}  # fmt: skip
_LINE = re.compile(r"^(\d+) +(?:<\.\.\. )?(\w+)(?:\(| resumed>)(.*)$")


def split_args(text: str) -> list[str]:
    """strace's argument list, split at top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def summarise(
    trace: Path, pid: int, sandboxed: bool = False
) -> dict[str, collections.Counter[str]]:
    """syscall -> Counter of key-argument strings, for ``pid`` after its Landlock (or
    from the start: ``sandboxed``, strace attached later)."""
    calls: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for raw in trace.read_text(errors="replace").splitlines():
        line = raw if raw[:1].isdigit() else f"{pid} {raw}"  # strace -p: no pid column
        m = _LINE.match(line)
        if m is None or int(m.group(1)) != pid or "resumed>" in line:
            continue
        name, rest = m.group(2), m.group(3)
        if name == "landlock_restrict_self":
            sandboxed = True
            continue
        if not sandboxed:
            continue
        args = split_args(rest)
        key = " ".join(args[i] for i in KEY_ARGS.get(name, ()) if i < len(args))
        calls[name][key] += 1
    return calls


def ctl(lab: Lab, *args: str) -> str:
    r = lab.ctl(*args)
    return r.stdout + r.stderr


def scenario(lab: Lab, trace: Path, linked: bool) -> int:
    """Drive the daemon through the parent's work; the parent's pid."""
    conf = lab.tmp / "dhcpleased.conf"
    conf.write_text(f"interface {lab.ifname} {{\n\trelease on exit\n}}\n")
    if linked:
        lab.resolv_conf.unlink()
        lab.resolv_conf.symlink_to("/run/dhcpleased/resolv.conf")
    lab.exec_in(lab.cli_ns, ["ip", "link", "add", "dlx0", "type", "veth", "peer", "name", "dlx1"])
    # left down: dhcpleasectl dlx0 has the parent set IFF_UP (kroute.set_up)
    out = open(lab.tmp / "dhcpleased.log", "ab")  # noqa: SIM115 - the lab closes it
    argv = [STRACE, "-f", "-qq", "-s", "32", "-o", str(trace),
            sys.executable, "-m", "dhcpleased", "-d", "-v", "-f", str(conf)]  # fmt: skip
    strace = lab.run_in_client(argv, stdout=out, stderr=subprocess.STDOUT)
    wait_leased(lab, strace)
    lab.wait_for(lambda: "main: startup" in daemon_log(lab), 30, what="startup")
    pid = int(trace.read_text().split(None, 1)[0])  # the first traced: the parent
    assert f"{pid} landlock_restrict_self" in trace.read_text()
    for args in (["show"], ["-p"], ["-p", "-j"], ["log", "verbose"], ["log", "brief"]):
        ctl(lab, *args)
    ctl(lab, "dlx0")  # MANAGE_IF: a packet socket on an interface without a server
    time.sleep(7)  # T1 (renewal, unicast UDP socket) and T2 (rebind)
    os.kill(pid, signal.SIGHUP)
    conf.write_text(
        f"interface {lab.ifname} {{\n\trelease on exit\n\tignore dns\n\tignore mtu\n}}\n"
    )
    ctl(lab, "reload")
    new = lab.tmp / "dhcpleased.conf.new"  # saved by rename, as editors do
    new.write_text(f"interface {lab.ifname} {{\n\trelease on exit\n}}\n")
    new.rename(conf)
    ctl(lab, "reload")
    conf.write_text("interface {\n")  # a reload that fails
    ctl(lab, "reload")
    conf.write_text(f"interface {lab.ifname} {{\n\trelease on exit\n}}\n")
    ctl(lab, "reload")
    wait_leased(lab, strace)
    lab.client_link(up=False)
    time.sleep(1)
    lab.client_link(up=True)
    wait_leased(lab, strace)
    ctl(lab, "release", lab.ifname)
    time.sleep(1)
    ctl(lab, lab.ifname)  # ask again
    wait_leased(lab, strace)
    time.sleep(1)
    os.kill(pid, signal.SIGTERM)  # release on exit
    strace.wait(30)
    return pid


def crash(lab: Lab, trace: Path) -> int:
    """A second run: an exception in the parent's loop, whose report reads the sources.
    The exception is planted with gdb (inject.py), then strace attaches: one tracer at
    a time."""
    daemon = lab.start_daemon("-d", lab.ifname)
    wait_leased(lab, daemon)
    lab.wait_for(lambda: "main: startup" in daemon_log(lab), 30, what="startup")
    plant = (
        "import asyncio\n"
        "def boom():\n    raise RuntimeError('measure_parent')\n"
        "asyncio.get_running_loop().call_later(3.0, boom)\n"
    )
    assert inject(daemon.pid, plant).alive
    strace = subprocess.Popen(
        [STRACE, "-qq", "-s", "32", "-o", str(trace), "-p", str(daemon.pid)],
        stdout=subprocess.DEVNULL,
    )
    try:
        daemon.wait(30)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the crash did not end the daemon:\n{daemon_log(lab)}") from None
    strace.wait(30)
    return daemon.pid


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--linked", action="store_true", help="resolv.conf linked into /run")
    p.add_argument("--out", type=Path, help="also write the table here")
    opts = p.parse_args()
    total: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    with Lab(t1=3, t2=6, dnsmasq_args=("--dhcp-option=26,1400", "--dhcp-option=42,0.0.0.0")) as lab:
        for run in (scenario, crash):
            trace = lab.tmp / f"strace-{run.__name__}.txt"
            pid = run(lab, trace) if run is crash else scenario(lab, trace, opts.linked)
            for name, keys in summarise(trace, pid, run is crash).items():
                total[name].update(keys)
        log = daemon_log(lab)
    text = "".join(
        f"{name:20s} {sum(keys.values()):7d}  "
        + "; ".join(f"{k} x{n}" for k, n in sorted(keys.items()) if k)
        + "\n"
        for name, keys in sorted(total.items())
    )
    sys.stdout.write(text)
    if "measure_parent" not in log:
        sys.stderr.write("the crash run did not crash as planned\n")
    if opts.out:
        opts.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
