"""``make bench`` (as root): dhcpleased side by side with dhcpcd, dhclient and udhcpc.

Each measurement runs every client in turn, run by run (ours, dhcpcd -A, dhcpcd,
dhclient, udhcpc, ours, ...), so that noise from a shared machine hits all alike, and
prints median (min-max, n) and our ratio to each peer.  ``python -m bench.run [--quick]
[--only cold,link,rapid,mem,scale,idle,flood,imsg] [--out FILE] [--baseline PYTHON]``;
the table goes to stdout and, with --out, to a Markdown file.  ``--baseline`` runs a
second dhcpleased (another checkout's venv) as one more client, for before/after in one
run.  Not part of ``make check``: nothing here asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import harness as h
from bench.scale import scale_bench
from tests.integration.lab import Lab, missing_requirements

OURS = "dhcpleased"
Table = list[tuple[str, ...]]


class Report:
    """Markdown sections, printed as they come."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def section(self, title: str, note: str, header: tuple[str, ...], rows: Table) -> None:
        lines = [f"### {title}", "", note, "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]  # fmt: skip
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        text = "\n".join(lines) + "\n"
        self.parts.append(text)
        print(text, flush=True)


def ratio(ours: list[float], theirs: list[float]) -> str:
    a, b = h.summary(ours), h.summary(theirs)
    if a is None or b is None or b[0] == 0:
        return "—"
    return f"{a[0] / b[0]:.3g}x"


# --- 1. cold start ---------------------------------------------------------------------------
def cold_once(lab: Lab, c: h.Client, timeout: float = 30.0) -> float | None:
    h.wipe_state(lab, c)
    h.flush(lab, [lab.ifname])
    w = h.Watcher(lab, 1, timeout, [lab.ifname])
    p, stamp = h.launch(lab, c, [lab.ifname], f"cold-{c.name.replace(' ', '')}.log")
    try:
        ok = w.wait()
        t0 = h.read_stamp(stamp)
        return (w.addrs[lab.ifname] - t0) / 1e6 if ok else None
    finally:
        w.close()
        h.stop(lab, p, [lab.ifname])


def interleave(
    cs: list[h.Client], runs: int, once: Callable[[h.Client], float | None]
) -> dict[str, tuple[list[float], int]]:
    res: dict[str, tuple[list[float], int]] = {c.name: ([], 0) for c in cs}
    for i in range(runs):
        for c in cs:
            v = once(c)
            vals, fails = res[c.name]
            if v is None:
                res[c.name] = (vals, fails + 1)
            else:
                vals.append(v)
            print(f"  run {i + 1}/{runs} {c.name}: {v if v is None else round(v, 1)} ms",
                  file=sys.stderr, flush=True)  # fmt: skip
    return res


def timing_rows(res: dict[str, tuple[list[float], int]]) -> Table:
    ours = res[OURS][0]
    return [
        (name, h.fmt_ms(vals, fails), "1" if name == OURS else ratio(ours, vals))
        for name, (vals, fails) in res.items()
    ]


ARP_CONF = "/etc/dhcpleased-arp.conf"  # in the lab's /etc overlay, so the client sees it


def with_arp_probing(cs: list[h.Client]) -> list[h.Client]:
    """Each client that can check its address with ARP once more, right after itself:
    dhcpleased with ``arp probe`` (RFC 5227), udhcpc -a (one ARP request, 2 s wait);
    dhcpcd probes by default (dhcpcd -A does not), dhclient cannot."""
    out = []
    for c in cs:
        out.append(c)
        if c.name == OURS:
            out.append(
                h.Client(
                    f"{OURS} + arp probe",
                    lambda ifs, c=c: [*c.argv([]), "-f", ARP_CONF, *ifs],
                    c.state,
                )
            )
        elif c.name == "udhcpc":
            out.append(
                h.Client(
                    "udhcpc -a",
                    lambda ifs, c=c: [*c.argv(ifs), "-a"],
                    c.state,
                    watches_link=False,
                    multi=False,
                )
            )
    return out


def cold_bench(rep: Report, cs: list[h.Client], runs: int) -> None:
    with Lab() as lab:
        (lab.etc_dir / ARP_CONF.rsplit("/", 1)[1]).write_text(
            f"interface {lab.ifname} {{\n\tarp probe\n}}\n"
        )
        res = interleave(with_arp_probing(cs), runs, lambda c: cold_once(lab, c))
    rep.section(
        "1. Cold start → address configured (ms)",
        "From the client's execve(2) (stamped just before it, inside the lab's namespaces) to "
        "the kernel's RTM_NEWADDR for the interface (rtnetlink listener in the client netns). "
        "No lease state; link up. Target for dhcpleased: ≤ 250 ms median. Rows with ARP "
        "checks: dhcpleased + arp probe probes from the OFFER, beside the REQUEST (RFC 5227: "
        "U(0,1) + U(1,2) + U(1,2) + 2 s, 4-7 s); dhcpcd probes by default, after the ACK; "
        "udhcpc -a sends one ARP request and waits 2 s.",
        ("client", "median (min-max, n)", "dhcpleased / peer"),
        timing_rows(res),
    )


# --- 2. link up → address ------------------------------------------------------------------
def link_once(lab: Lab, c: h.Client, reboot: bool, timeout: float) -> float | None:
    """Daemon running; carrier comes back; time from RTM_NEWLINK(LOWER_UP) to RTM_NEWADDR."""
    h.wipe_state(lab, c)
    h.flush(lab, [lab.ifname])
    if reboot:  # get a lease first, then lose carrier and the address
        w = h.Watcher(lab, 1, 30, [lab.ifname])
        p, _ = h.launch(lab, c, [lab.ifname], f"link-{c.name.replace(' ', '')}.log")
        ok = w.wait()
        w.close()
        if not ok:
            h.stop(lab, p, [lab.ifname])
            return None
        time.sleep(0.3)
        lab.server_link(up=False)
        time.sleep(0.7)
        h.flush(lab, [lab.ifname])
    else:  # no lease: start with no carrier, let it settle
        lab.server_link(up=False)
        p, _ = h.launch(lab, c, [lab.ifname], f"link-{c.name.replace(' ', '')}.log")
        time.sleep(1.5)
    w = h.Watcher(lab, 1, timeout, [lab.ifname], down=True)
    try:
        lab.server_link(up=True)
        ok = w.wait()
        if not ok or lab.ifname not in w.ups:
            return None
        return (w.addrs[lab.ifname] - w.ups[lab.ifname]) / 1e6
    finally:
        w.close()
        h.stop(lab, p, [lab.ifname])
        lab.server_link(up=True)


def link_bench(rep: Report, cs: list[h.Client], runs: int) -> None:
    rows: Table = []
    with Lab() as lab:
        for reboot in (True, False):
            pick = [c for c in cs if c.watches_link or not reboot]

            # peers that do not watch the link wait for their retransmission timer:
            def once(c: h.Client, reboot: bool = reboot) -> float | None:
                return link_once(lab, c, reboot, 8.0 if c.watches_link else 25.0)

            res = interleave(pick, runs, once)
            case = "INIT-REBOOT (valid lease)" if reboot else "full DORA (no lease)"
            rows += [(case, *r) for r in timing_rows(res)]
    rep.section(
        "2. Link up → address configured, client already running (ms)",
        "Carrier returns (the server end of the veth goes up): from the kernel's RTM_NEWLINK "
        "with IFF_LOWER_UP to RTM_NEWADDR. INIT-REBOOT: the client was bound, lost carrier, "
        "and the address was flushed while the link was down (so that a real add is timed). "
        "DORA: started without lease state and without carrier, 1.5 s before the carrier "
        "came up. dhclient and udhcpc do not watch the link: they keep a stale address and "
        "are left out of INIT-REBOOT; their DORA row is the wait for their next "
        "retransmission. Target for dhcpleased: ≤ 10 ms median, ahead of every peer.",
        ("case", "client", "median (min-max, n)", "dhcpleased / peer"),
        rows,
    )


# --- 2b. rapid commit ----------------------------------------------------------------------
RAPID_CONF = "/etc/dhcpleased-rapid.conf"  # in the lab's /etc overlay, so the client sees it


def rapid_clients(cs: list[h.Client]) -> list[h.Client]:
    """dhcpleased and dhcpcd -A, each without and with rapid commit (RFC 4039); dhcpcd's
    shipped configuration asks for it, ``-O rapid_commit`` turns that off."""
    ours = next(c for c in cs if c.name == OURS)
    dhcpcd = next(c for c in cs if c.name == "dhcpcd -A")
    return [
        ours,
        h.Client(f"{OURS} + send rapid commit",
                 lambda ifs: [*ours.argv([]), "-f", RAPID_CONF, *ifs], ours.state),
        h.Client("dhcpcd -A -O rapid_commit",
                 lambda ifs: [*dhcpcd.argv([]), "-O", "rapid_commit", *ifs], dhcpcd.state),
        dhcpcd,  # Debian's /etc/dhcpcd.conf has "option rapid_commit"
    ]  # fmt: skip


def rapid_bench(rep: Report, cs: list[h.Client], runs: int) -> None:
    """Cold start and link-up DORA against a dnsmasq that answers option 80 with an ACK."""
    rcs = rapid_clients(cs)
    rows: Table = []
    with Lab(dnsmasq_args=("--dhcp-rapid-commit",)) as lab:
        (lab.etc_dir / RAPID_CONF.rsplit("/", 1)[1]).write_text(
            f"interface {lab.ifname} {{\n\tsend rapid commit\n}}\n"
        )
        res = interleave(rcs, runs, lambda c: cold_once(lab, c))
        rows += [("cold start", *r) for r in timing_rows(res)]
        res = interleave(rcs, runs, lambda c: link_once(lab, c, False, 8.0))
        rows += [("link up, full DORA", *r) for r in timing_rows(res)]
        acks = lab.dnsmasq_log_text().count("DHCPACK")
        offers = lab.dnsmasq_log_text().count("DHCPOFFER")
    rep.section(
        "2b. Rapid commit (RFC 4039): cold start and link up → address (ms)",
        "One lab whose dnsmasq runs with --dhcp-rapid-commit: a DISCOVER carrying option 80 "
        "is answered by a committed DHCPACK (two messages instead of four); one without it "
        "gets the usual OFFER. Cold start and link-up DORA as in sections 1 and 2 (INIT-REBOOT "
        "sends no DISCOVER, so rapid commit cannot change it). dhcpcd -A asks for rapid "
        "commit by default (Debian's dhcpcd.conf: option rapid_commit; it costs nothing in "
        "sections 1-2, whose dnsmasq does not offer it); -O rapid_commit turns it off. Rows "
        "interleaved run by run. "
        f"dnsmasq answered {offers} OFFERs and {acks} ACKs over the whole section.",
        ("case", "client", "median (min-max, n)", "dhcpleased / this"),
        rows,
    )


# --- 3. memory -----------------------------------------------------------------------------
def mem_once(lab: Lab, c: h.Client) -> h.Mem | None:
    h.wipe_state(lab, c)
    h.flush(lab, [lab.ifname])
    w = h.Watcher(lab, 1, 30, [lab.ifname])
    p, _ = h.launch(lab, c, [lab.ifname], f"mem-{c.name.replace(' ', '')}.log")
    try:
        if not w.wait():
            return None
        time.sleep(1.5)  # hooks and scripts done, steady state
        pids = h.tree(p.pid)
        m = h.mem(pids)
        names = h.sched(pids).comm
        m.per = [(names.get(q, "?"), h.mem([q]).pss) for q in pids]
        return m
    finally:
        w.close()
        h.stop(lab, p, [lab.ifname])


def floor_mem() -> h.Mem:
    """Three bare interpreters that imported asyncio, alive together."""
    code = "import asyncio, sys; print(flush=True); sys.stdin.read()"
    ps = [
        subprocess.Popen(
            [sys.executable, "-I", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(3)
    ]
    try:
        for p in ps:
            assert p.stdout is not None
            p.stdout.readline()
        m = h.mem([p.pid for p in ps])
        m.per = [("python", h.mem([p.pid]).pss) for p in ps]
        return m
    finally:
        for p in ps:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.close()
            p.wait()
            p.stdout.close()


def fmt_mem(ms: list[h.Mem]) -> tuple[str, str, str, str]:
    def med(key: str) -> str:
        vals = sorted(getattr(m, key) for m in ms)
        return f"{vals[len(vals) // 2] / 1024:.1f}" if vals else "—"

    return med("rss"), med("pss"), med("uss"), (str(ms[0].procs) if ms else "—")


def mem_bench(rep: Report, cs: list[h.Client], runs: int) -> dict[str, h.Mem]:
    res: dict[str, list[h.Mem]] = {c.name: [] for c in cs}
    with Lab() as lab:
        for _ in range(runs):
            for c in cs:
                m = mem_once(lab, c)
                if m is not None:
                    res[c.name].append(m)
    floor = [floor_mem() for _ in range(runs)]
    ours_pss = sorted(m.pss for m in res[OURS])
    rows: Table = []
    for name, ms in [*res.items(), ("3 x python -c 'import asyncio' (floor)", floor)]:
        theirs = sorted(m.pss for m in ms)
        r = (f"{ours_pss[len(ours_pss) // 2] / theirs[len(theirs) // 2]:.2f}x"
             if ours_pss and theirs else "—")  # fmt: skip
        per = ", ".join(f"{n} {k / 1024:.1f}" for n, k in ms[len(ms) // 2].per) if ms else ""
        rows.append((name, *fmt_mem(ms), per, "1" if name == OURS else r))
    rep.section(
        "3. Memory, bound on one interface (MiB, median of runs)",
        "Summed over every process of the client (the process and its descendants) from "
        "/proc/PID/smaps_rollup, 1.5 s after the address appeared: RSS, PSS, USS = "
        "Private_Clean + Private_Dirty. PSS divides shared pages among every process "
        "mapping them on the machine (other Python processes included). Target for "
        "dhcpleased: total PSS ≤ 48 MB.",
        (
            "client",
            "RSS",
            "PSS",
            "USS",
            "processes",
            "PSS per process",
            "PSS dhcpleased / this",
        ),
        rows,
    )
    return {name: sorted(ms, key=lambda m: m.pss)[len(ms) // 2] for name, ms in res.items() if ms}


# --- 5. idle -------------------------------------------------------------------------------
def idle_bench(rep: Report, cs: list[h.Client], secs: float) -> None:
    """All clients at once, each in its own lab, over the same window."""
    with contextlib.ExitStack() as stack:
        runs = []
        for c in cs:
            lab = stack.enter_context(Lab(lease_time=3600))
            w = h.Watcher(lab, 1, 30, [lab.ifname])
            p, _ = h.launch(lab, c, [lab.ifname], "idle.log")
            ok = w.wait()
            w.close()
            runs.append((c, lab, p, ok))
        time.sleep(3)
        before = {c.name: h.sched(h.tree(p.pid)) for c, _, p, _ in runs}
        time.sleep(secs)
        rows: Table = []
        for c, lab, p, ok in runs:
            pids = h.tree(p.pid)
            after, b = h.sched(pids), before[c.name]
            per = []
            tot_w = 0
            tot_cpu = 0.0
            for pid in pids:
                if pid not in b.vol or pid not in after.vol:
                    continue
                wk = after.vol[pid] + after.invol[pid] - b.vol[pid] - b.invol[pid]
                cpu = after.cpu_ms[pid] - b.cpu_ms[pid]
                tot_w += wk
                tot_cpu += cpu
                per.append(f"{after.comm[pid]} {wk}")
            bound = "yes" if ok and lab.addresses() else "NO"
            rows.append((c.name, str(tot_w), f"{tot_cpu:.0f}", ", ".join(per), bound))
            h.stop(lab, p, [lab.ifname])
    rep.section(
        f"5. Idle, bound, over {secs:.0f} s",
        "All clients bound at once (each in its own lab; lease 3600 s, so T1 = 1800 s: no "
        "protocol timer falls in the window). Wakeups = voluntary + involuntary context "
        "switches of all threads (/proc/PID/task/*/status deltas): every time a process "
        "was scheduled after sleeping. CPU = utime + stime delta (10 ms ticks). Target "
        "for dhcpleased: 0 wakeups that are not a protocol timer.",
        ("client", "wakeups", "CPU ms", "per process", "still bound"),
        rows,
    )


# --- 6. hostile load -----------------------------------------------------------------------
def flood_once(lab: Lab, c: h.Client, rate: int, secs: float) -> tuple[str, ...]:
    h.wipe_state(lab, c)
    h.flush(lab, [lab.ifname])
    w = h.Watcher(lab, 1, 30, [lab.ifname])
    p, _ = h.launch(lab, c, [lab.ifname], f"flood-{c.name.replace(' ', '')}.log")
    try:
        if not w.wait():
            return (c.name, "not bound", "", "", "")
        time.sleep(1.0)
        addr_before = lab.addresses()
        pids = h.tree(p.pid)
        b = h.sched(pids)
        r = lab.exec_in(lab.srv_ns, [sys.executable, "-I", "-S", str(h.BENCH / "flood.py"),
                                     lab.srv_ifname, lab.mac(), addr_before[0].split("/")[0],
                                     str(rate), str(secs)], timeout=secs + 30)  # fmt: skip
        sent = int(r.stdout.split()[-1])
        a = h.sched(pids)
        per = [f"{a.comm[q]} {100 * (a.cpu_ms[q] - b.cpu_ms[q]) / (secs * 1000):.0f}%"
               for q in pids if q in a.cpu_ms and q in b.cpu_ms]  # fmt: skip
        total = sum(a.cpu_ms[q] - b.cpu_ms[q] for q in pids if q in a.cpu_ms and q in b.cpu_ms)
        time.sleep(0.5)
        alive = p.poll() is None
        held = "yes" if alive and lab.addresses() == addr_before else (
            "died" if not alive else f"NO: {lab.addresses()}")  # fmt: skip
        return (c.name, f"{sent / secs:,.0f}", f"{100 * total / (secs * 1000):.0f}%",
                ", ".join(per), held)  # fmt: skip
    finally:
        w.close()
        h.stop(lab, p, [lab.ifname])


def flood_bench(rep: Report, cs: list[h.Client], rate: int, secs: float) -> None:
    rows: Table = []
    with Lab(lease_time=3600) as lab:
        for c in cs:
            rows.append(flood_once(lab, c, rate, secs))
    rep.section(
        f"6. Hostile load: forged DHCPACKs, {rate:,}/s for {secs:.0f} s",
        "Bound client; from the server netns an AF_PACKET sender floods the client's MAC "
        "with DHCPACKs from a made-up server (random xid, hijacking router/DNS). CPU = "
        "utime+stime over the flood / wall time (100% = one core). 'lease holds' = the "
        "client is alive and the interface has exactly the address it had before.",
        ("client", "frames/s sent", "CPU total", "per process", "lease holds"),
        rows,
    )


# --- 7. imsg -------------------------------------------------------------------------------
def imsg_bench(rep: Report, quick: bool) -> None:
    r = subprocess.run([sys.executable, str(h.BENCH / "imsg_throughput.py"),
                        "20000" if quick else "100000"], capture_output=True, text=True,
                       check=True, cwd=h.BENCH.parent)  # fmt: skip
    rows = [tuple(x.strip() for x in line.split("|")) for line in r.stdout.splitlines()
            if line.count("|") == 3]  # fmt: skip
    rep.section(
        "7. imsg throughput (messages/s, 64-byte payload)",
        "bench/imsg_throughput.py: one SOCK_SEQPACKET socketpair, ipc.Channel at both ends; "
        "'1 process' = both ends in one event loop, '2 processes' = a forked receiver in its "
        "own loop acknowledges the last message. Best of 3.",
        ("mode", "descriptors", "best", "runs"),
        rows,
    )


# --- main ----------------------------------------------------------------------------------
def header() -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
            platform.processor(),
        )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    vers = []
    for cmd in (["dhcpcd", "--version"], ["dhclient", "--version"], ["busybox"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([h.which(cmd[0]), *cmd[1:]], capture_output=True,
                                 text=True, timeout=5, check=False)  # fmt: skip
            vers.append((out.stdout + out.stderr).strip().splitlines()[0])
    return (
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}\n"
        f"- kernel: {platform.release()}\n- CPU: {cpu}, {os.cpu_count()} cores\n"
        f"- load average at start: {load}\n- Python: {platform.python_version()}\n"
        f"- peers: {'; '.join(vers)}\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few runs, short windows")
    ap.add_argument("--only", default="cold,link,rapid,mem,scale,idle,flood,imsg")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--scale-n", type=int, default=256)
    ap.add_argument("--clients", help="only these clients, comma-separated (default: all)")
    ap.add_argument("--runs", type=int, help="runs per client for cold, link and mem")
    ap.add_argument("--baseline", metavar="PYTHON",
                    help="interpreter of another dhcpleased install, run side by side")  # fmt: skip
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # labs clean up on the way out
    why = missing_requirements()
    if why is not None:
        print(f"bench: {why}", file=sys.stderr)
        return 1
    h.install_peers()
    only = set(args.only.split(","))
    q = args.quick
    cs = h.clients(args.baseline)
    if args.clients:
        cs = [c for c in cs if c.name in args.clients.split(",")]
    rep = Report()
    head = header()
    print(head, flush=True)
    mems: dict[str, h.Mem] = {}
    if "cold" in only:
        cold_bench(rep, cs, args.runs or (3 if q else 10))
    if "link" in only:
        link_bench(rep, cs, args.runs or (2 if q else 6))
    if "rapid" in only:
        rapid_bench(rep, cs, args.runs or (3 if q else 10))
    if "mem" in only:
        mems = mem_bench(rep, cs, args.runs or (1 if q else 3))
    if "scale" in only:
        scale_bench(rep, [c for c in cs if c.name in (OURS, h.BASELINE, "dhcpcd -A")],
                    16 if q else args.scale_n, 1 if q else 2)  # fmt: skip
    if "idle" in only:
        idle_bench(rep, cs, 10 if q else 60)
    if "flood" in only:
        flood_bench(rep, cs, 10_000, 3 if q else 10)
    if "imsg" in only:
        imsg_bench(rep, q)
    end = f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    if args.out:
        args.out.write_text("## Benchmark results\n\n" + head + end + "\n" + "\n".join(rep.parts))
    print(end)
    del mems
    return 0


if __name__ == "__main__":
    sys.exit(main())
