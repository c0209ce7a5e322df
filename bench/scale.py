"""Measurement 4: one client process managing N interfaces (veth pairs on a bridge).

Topology: the lab's server netns gets a bridge ``br0`` carrying the server address of a
/22 and dnsmasq; N veth pairs each have one end (``bN``) in the client netns and the other
(``sN``) enslaved to the bridge.  The same N interfaces are used by every client in turn.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

from bench import harness as h
from tests.integration.lab import IP, Lab

if TYPE_CHECKING:
    from bench.run import Report


class ScaleLab(Lab):
    """Lab with a bridge in the server netns and ``n`` client veths on it."""

    def __init__(self, n: int) -> None:
        super().__init__(start_dnsmasq=False, lease_time=3600)
        self.n = n
        self.subnet = IPv4Network(f"10.214.{4 * secrets.randbelow(64)}.0/22")
        self.server_ip = self.router = self.subnet.network_address + 1
        self.range_start = self.subnet.network_address + 10
        self.range_end = self.subnet.network_address + 1010
        self.names = [f"b{i}" for i in range(n)]

    def start(self) -> None:
        super().start()
        br = "br0"
        srv = [f"link add {br} type bridge forward_delay 0", f"link set {br} up",
               f"addr flush dev {self.srv_ifname}", f"link set {self.srv_ifname} master {br}",
               f"addr add {self.server_ip}/{self.subnet.prefixlen} dev {br}"]  # fmt: skip
        cli = []
        for i in range(self.n):
            srv += [f"link add s{i} type veth peer name b{i} netns {self.cli_ns}",
                    f"link set s{i} master {br}", f"link set s{i} up"]  # fmt: skip
            cli.append(f"link set b{i} up")
        for ns, lines in ((self.srv_ns, srv), (self.cli_ns, cli)):
            subprocess.run([IP, "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n",
                           text=True, check=True, capture_output=True)  # fmt: skip
        self.srv_ifname = br
        self.start_dnsmasq()


def scale_once(lab: ScaleLab, c: h.Client, names: list[str]) -> dict[str, float] | None:
    h.wipe_state(lab, c)
    h.flush(lab, names)
    lab.exec_in(lab.srv_ns, ["true"])
    w = h.Watcher(lab, len(names), 60, names)
    p, stamp = h.launch(lab, c, names, f"scale-{c.name.replace(' ', '')}-{len(names)}.log")
    try:
        ok = w.wait()
        t0 = h.read_stamp(stamp)
        if not ok:  # say why in the run's output: the lab and its logs go away
            log = (lab.tmp / f"scale-{c.name.replace(' ', '')}-{len(names)}.log").read_text()
            alive = "alive" if p.poll() is None else f"exited {p.returncode}"
            why = [line for line in log.splitlines() if " adding " not in line][-15:]
            print(f"  {c.name} x{len(names)}: {alive}; log:", *why,
                  sep="\n    ", file=sys.stderr, flush=True)  # fmt: skip
        if not w.addrs:
            return None
        last = max(w.addrs.values())
        time.sleep(2.0)
        m = h.mem(h.tree(p.pid))
        return {"ms": (last - t0) / 1e6 if ok else float("nan"), "bound": len(w.addrs),
                "rss": m.rss, "pss": m.pss, "uss": m.uss, "procs": m.procs}  # fmt: skip
    finally:
        w.close()
        h.stop(lab, p, names)


def scale_bench(rep: Report, cs: list[h.Client], n: int, runs: int) -> None:
    res: dict[tuple[str, int], list[dict[str, float]]] = {}
    lab = ScaleLab(n)
    with lab:
        for _ in range(runs):
            for c in cs:
                for k in (1, n):
                    r = scale_once(lab, c, lab.names[:k])
                    print(f"  scale {c.name} x{k}: {r}", file=sys.stderr, flush=True)
                    res.setdefault((c.name, k), [])
                    if r is not None:
                        res[(c.name, k)].append(r)
    rows: list[tuple[str, ...]] = []
    for c in cs:
        big, one = res.get((c.name, n), []), res.get((c.name, 1), [])
        if not big:
            rows.append((c.name, "not all bound", "", "", "", "", ""))
            continue

        def med(rs: list[dict[str, float]], key: str) -> float:
            vals = sorted(r[key] for r in rs)
            return vals[len(vals) // 2]

        per = (f"{(med(big, 'pss') - med(one, 'pss')) / (n - 1):.0f} / "
               f"{(med(big, 'uss') - med(one, 'uss')) / (n - 1):.0f}") if one else "—"  # fmt: skip
        done = [r["ms"] for r in big if r["ms"] == r["ms"]]  # NaN: not all bound in 60 s
        partial = [f"{r['bound']:.0f}/{n}" for r in big if r["ms"] != r["ms"]]
        note = f"; only {', '.join(partial)} bound in 60 s" if partial else ""
        rows.append((
            c.name, h.fmt_ms(done) + note,
            f"{med(big, 'rss') / 1024:.1f}", f"{med(big, 'pss') / 1024:.1f}",
            f"{med(big, 'uss') / 1024:.1f}", per, f"{med(big, 'procs'):.0f}",
        ))  # fmt: skip
    rep.section(
        f"4. Scale: one client, {n} interfaces (veth pairs on a bridge, one dnsmasq)",
        "Time from exec to the last of the N RTM_NEWADDRs (a run that bound fewer within "
        "60 s is listed with its count, and its memory still counts); memory summed over "
        "the client's processes 2 s later (MiB); growth per interface = "
        f"(total with {n} - total with 1) / {n - 1}, in KiB. Each client manages the same "
        "interfaces in turn. Targets for dhcpleased: all bound ≤ 3 s, ≤ 32 KiB per "
        "interface, total below dhcpcd's.",
        (
            "client",
            "all bound ms (min-max, n)",
            "RSS",
            "PSS",
            "USS",
            "per interface PSS / USS KiB",
            "processes",
        ),
        rows,
    )
