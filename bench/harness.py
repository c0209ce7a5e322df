"""The bench's building blocks: the clients under test, launching them in a lab with an
exec stamp and an address watcher, and reading a process tree's memory and CPU.

Every client runs through :meth:`Lab.run_in_client`, i.e. in the lab's client netns and a
private mount namespace whose /etc, /var/lib and /run are the lab's temp dirs: what the
peers' scripts and hooks write (resolv.conf, lease files, pid files) never reaches the
host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.lab import IP, Lab

BENCH = Path(__file__).resolve().parent
ADDRWATCH = str(BENCH / "addrwatch.py")
EXECSTAMP = str(BENCH / "execstamp.py")
UDHCPC_SCRIPT = str(BENCH / "udhcpc.script")
PEER_PACKAGES = {"dhcpcd": "dhcpcd-base", "dhclient": "isc-dhcp-client", "udhcpc": "udhcpc"}


def which(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        raise FileNotFoundError(tool)
    return path


def install_peers() -> None:
    """apt-get install the peers' Debian packages, only those missing."""
    missing = [pkg for tool, pkg in PEER_PACKAGES.items() if not _have(tool)]
    if not missing:
        return
    print(f"bench: installing {' '.join(missing)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def _have(tool: str) -> bool:
    try:
        which(tool)
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Client:
    """A DHCP client under test: how to start it on some interfaces, what state to wipe."""

    name: str
    argv: Callable[[Sequence[str]], list[str]]
    state: Sequence[str]  # paths under the lab's /var/lib upper dir holding its leases
    watches_link: bool = True  # reacts to carrier changes (dhclient, udhcpc do not)
    multi: bool = True  # can manage several interfaces in one process


BASELINE = "dhcpleased (baseline)"


def clients(baseline: str | None = None) -> list[Client]:
    """The clients in running order; ``baseline`` is the interpreter of another dhcpleased
    install (a venv of an older checkout), run as one more client right after ours."""
    dhcpcd, dhclient, udhcpc = which("dhcpcd"), which("dhclient"), which("udhcpc")
    base = []
    if baseline is not None:
        argv = [baseline, "-I", "-m", "dhcpleased", "-d"]  # -I: not the cwd's package
        base.append(Client(BASELINE, lambda ifs: [*argv, *ifs], ("dhcpleased/*",)))
    return [
        Client("dhcpleased", lambda ifs: [sys.executable, "-m", "dhcpleased", "-d", *ifs],
               ("dhcpleased/*",)),
        *base,
        Client("dhcpcd -A",
               lambda ifs: [dhcpcd, "-B", "--nodev", "-4", "-A", "--nodelay", *ifs],
               ("dhcpcd/*.lease",)),
        Client("dhcpcd", lambda ifs: [dhcpcd, "-B", "--nodev", *ifs],
               ("dhcpcd/*.lease", "dhcpcd/*.lease6")),
        Client("dhclient", lambda ifs: [dhclient, "-4", "-d", "-lf", "/var/lib/dhcp/bench.leases",
                                        "-pf", "/run/dhclient.pid", *ifs],
               ("dhcp/bench.leases",), watches_link=False),
        Client("udhcpc", lambda ifs: [udhcpc, "-f", "-i", ifs[0], "-s", UDHCPC_SCRIPT],
               (), watches_link=False, multi=False),
    ]  # fmt: skip


# --- launching and watching ----------------------------------------------------------------
class Watcher:
    """addrwatch.py in the client netns, started and ready before the client."""

    def __init__(self, lab: Lab, count: int, timeout: float, ifnames: Sequence[str] = (),
                 *, down: bool = False):  # fmt: skip
        self.p = subprocess.Popen(
            [IP, "netns", "exec", lab.cli_ns, sys.executable, "-I", "-S", ADDRWATCH,
             *(["-d"] if down else []), str(count), str(timeout), *ifnames],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        if self.p.stdout is None or self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("addrwatch did not start")
        self.ups: dict[str, int] = {}
        self.addrs: dict[str, int] = {}

    def wait(self) -> bool:
        """Read events until done; False on timeout."""
        assert self.p.stdout is not None
        ok = True
        for line in self.p.stdout:
            parts = line.split()
            if parts[0] == "addr":
                self.addrs[parts[3]] = int(parts[1])
            elif parts[0] == "up":
                self.ups[parts[3]] = int(parts[1])
            elif parts[0] == "timeout":
                ok = False
        self.p.wait()
        self.p.stdout.close()
        return ok

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        if self.p.stdout is not None:
            self.p.stdout.close()


def launch(lab: Lab, client: Client, ifnames: Sequence[str], log: str) -> tuple[Any, Path]:
    """run_in_client(client) behind execstamp; returns (Popen, stamp file)."""
    stamp = lab.tmp / f"stamp-{time.monotonic_ns()}"
    out = open(lab.tmp / log, "ab")  # noqa: SIM115 - closed by stop()
    p = lab.run_in_client(
        [sys.executable, "-I", "-S", EXECSTAMP, str(stamp), *client.argv(ifnames)],
        stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    p._bench_log = out  # type: ignore[attr-defined]
    return p, stamp


def read_stamp(stamp: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(stamp.read_text())
        time.sleep(0.01)
    raise TimeoutError(f"no exec stamp in {stamp}")


def stop(lab: Lab, p: Any, ifnames: Sequence[str] = ()) -> None:
    """Stop the client (by PID), anything it left in the client netns, and its address."""
    Lab._stop(p)
    with contextlib.suppress(ValueError):
        lab._procs.remove(p)
    p._bench_log.close()
    lab._kill_netns_pids(lab.cli_ns)
    flush(lab, ifnames)


def flush(lab: Lab, ifnames: Sequence[str]) -> None:
    if not ifnames:
        return
    script = "".join(f"addr flush dev {n} scope global\n" for n in ifnames)
    subprocess.run([IP, "-n", lab.cli_ns, "-batch", "-"], input=script, text=True,
                   capture_output=True, check=False)  # fmt: skip


def wipe_state(lab: Lab, client: Client) -> None:
    varlib = lab.lease_dir.parent
    for pattern in client.state:
        for path in varlib.glob(pattern):
            path.unlink(missing_ok=True)


# --- /proc ---------------------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat parent pids)."""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in parents or p == pid:
            out.append(p)
            todo.extend(c for c, pp in parents.items() if pp == p)
    return sorted(set(out))


@dataclass
class Mem:
    rss: int = 0  # KiB
    pss: int = 0
    uss: int = 0
    procs: int = 0
    per: list[tuple[str, int]] = field(default_factory=list)  # (role, PSS KiB) per process

    def __add__(self, o: Mem) -> Mem:
        return Mem(self.rss + o.rss, self.pss + o.pss, self.uss + o.uss, self.procs + o.procs)


def mem(pids: Sequence[int]) -> Mem:
    """Rss, Pss and USS (Private_Clean + Private_Dirty) summed from smaps_rollup, in KiB."""
    total = Mem()
    for pid in pids:
        fields: dict[str, int] = {}
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1].isdigit():
                        fields[parts[0].rstrip(":")] = int(parts[1])
        except OSError:
            continue
        if "Rss" not in fields:  # a kernel thread or a zombie
            continue
        uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
        total = total + Mem(fields["Rss"], fields.get("Pss", 0), uss, 1)
    return total


@dataclass
class Sched:
    """Per process: CPU ticks (utime+stime, all threads) and context switches."""

    cpu_ms: dict[int, float] = field(default_factory=dict)
    vol: dict[int, int] = field(default_factory=dict)
    invol: dict[int, int] = field(default_factory=dict)
    comm: dict[int, str] = field(default_factory=dict)


_TICK = os.sysconf("SC_CLK_TCK")


def sched(pids: Sequence[int]) -> Sched:
    s = Sched()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            vol = invol = 0
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            vol += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            invol += int(line.split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        s.cpu_ms[pid] = (int(rest[11]) + int(rest[12])) * 1000 / _TICK
        s.vol[pid], s.invol[pid] = vol, invol
        s.comm[pid] = role(cmd)
    return s


def role(cmd: list[bytes]) -> str:
    """A short name for a process of a client: 'dhcpleased -E', 'dhcpcd', ..."""
    words = [w.decode(errors="replace") for w in cmd if w]
    if any(w.endswith("dhcpleased") for w in words) or "dhcpleased" in words:
        for flag in ("-E", "-F"):
            if flag in words:
                return {"-E": "engine", "-F": "frontend"}[flag]
        return "parent"
    return os.path.basename(words[0]) if words else "?"


# --- statistics ----------------------------------------------------------------------------
def summary(values: Sequence[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt_ms(values: Sequence[float], fails: int = 0) -> str:
    s = summary(values)
    extra = f", {fails} timed out" if fails else ""
    if s is None:
        return f"— (n=0{extra})"
    return f"{s[0]:.1f} ({s[1]:.1f}-{s[2]:.1f}, n={len(values)}{extra})"
