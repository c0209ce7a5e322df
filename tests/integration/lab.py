"""A throwaway DHCP lab: two network namespaces, a veth pair and dnsmasq.

Everything the lab creates has a random suffix and lives in its own namespaces and in
one temp directory; teardown ends only the processes the lab started (by PID, plus
whatever is still running inside its own namespaces) and deletes the namespaces,
which removes the veth pair with them.

Processes started with :meth:`Lab.run_in_client` run in the client netns *and* in a
private mount namespace where ``/etc`` and ``/var/lib`` are overlays whose upper layer is
a test directory and ``/run`` is a test directory: whatever the daemon writes there
(resolv.conf, lease files, control socket, lock) lands in :attr:`Lab.etc_dir`,
:attr:`Lab.lease_dir` and :attr:`Lab.run_dir`, never on the host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

T = TypeVar("T")

IP = shutil.which("ip") or "/usr/sbin/ip"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
CLIENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ORIGINAL_RESOLV_CONF = "# lab resolv.conf (original)\nnameserver 198.18.0.99\n"
REPO = Path(__file__).resolve().parents[2]

# Runs as: sh -c SCRIPT sh ETC_UPPER ETC_WORK VARLIB_UPPER VARLIB_WORK RUN argv...
_MOUNT_SCRIPT = """set -e
mount -t overlay dlt-etc -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc
mount -t overlay dlt-varlib -o "lowerdir=/var/lib,upperdir=$3,workdir=$4" /var/lib
mount --bind "$5" /run
shift 5
exec "$@"
"""


DHCP_USER = "_dhcp"


def skip_or_fail(reason: str) -> None:
    """Skip, or fail when DHCPLEASED_REQUIRE_INTEGRATION=1 (CI: skips must not pass)."""
    if os.environ.get("DHCPLEASED_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{reason} (DHCPLEASED_REQUIRE_INTEGRATION=1)", pytrace=False)
    pytest.skip(reason)


def require_dhcp_user() -> pwd.struct_passwd:
    """The daemon's user; created by .ci/run or prepare.sh, never by the tests."""
    try:
        return pwd.getpwnam(DHCP_USER)
    except KeyError:
        skip_or_fail(f"user {DHCP_USER} missing (run tests/integration/prepare.sh)")
        raise  # not reached


def missing_requirements() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "integration tests need root"
    for tool in ("ip", "dnsmasq", "unshare", "mount"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not found"
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            return "overlayfs not available"
    return None


CREATED: set[str] = set()  # every namespace a Lab of this process made (leak checks)


class Lab:
    """Server netns (dnsmasq on ``srv_ifname``) <-veth-> client netns (``ifname``).

    Addresses: a random 10.213.N.0/24; the server (also router and DHCP server) is .1,
    dnsmasq hands out .100-.199.  dnsmasq enforces a 120 s minimum lease; T1/T2 can be
    made shorter with ``t1``/``t2``.  ``classless_routes`` (list of (cidr, gateway)) adds
    option 121, in which case RFC 3442 clients ignore option 3.
    """

    def __init__(
        self,
        *,
        ifname: str = "dl0",
        lease_time: int = 120,
        t1: int | None = None,
        t2: int | None = None,
        router: bool = True,
        dns: Sequence[str] = ("198.18.0.53", "198.18.1.53"),
        domain: str | None = "lab.test",
        search: Sequence[str] = ("lab.test", "example.test"),
        classless_routes: Sequence[tuple[str, str]] = (),
        authoritative: bool = True,
        dnsmasq_args: Sequence[str] = (),
        start_dnsmasq: bool = True,
        client_up: bool = True,
    ) -> None:
        suffix = secrets.token_hex(3)
        self.srv_ns = f"dlt-srv-{suffix}"
        self.cli_ns = f"dlt-cli-{suffix}"
        self.ifname = ifname
        self.srv_ifname = "dls0"
        self.subnet = IPv4Network(f"10.213.{secrets.randbelow(256)}.0/24")
        self.server_ip = self.subnet.network_address + 1
        self.router = self.server_ip if router else None
        self.range_start = self.subnet.network_address + 100
        self.range_end = self.subnet.network_address + 199
        self.lease_time = lease_time
        self.t1, self.t2 = t1, t2
        self.dns = tuple(dns)
        self.domain = domain
        self.search = tuple(search)
        self.classless_routes = tuple(classless_routes)
        self.authoritative = authoritative
        self.dnsmasq_args = tuple(dnsmasq_args)
        self._start_dnsmasq = start_dnsmasq
        self._client_up = client_up
        self.tmp = Path(tempfile.mkdtemp(prefix=f"dlt-{suffix}-"))
        self.etc_dir = self.tmp / "etc-upper"  # the client's /etc overlay upper layer
        self.resolv_conf = self.etc_dir / "resolv.conf"
        self.lease_dir = self.tmp / "varlib-upper" / "dhcpleased"
        self.run_dir = self.tmp / "run"
        self.dnsmasq_log = self.tmp / "dnsmasq.log"
        self.dnsmasq_leases = self.tmp / "dnsmasq.leases"
        self.dnsmasq_pidfile = self.tmp / "dnsmasq.pid"
        self.dnsmasq: subprocess.Popen[bytes] | None = None
        self._procs: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []
        self._logs: list[IO[bytes]] = []

    # --- life cycle ---------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        os.chmod(self.tmp, 0o755)
        for d in (self.etc_dir, self.tmp / "etc-work", self.lease_dir, self.tmp / "varlib-work"):
            d.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(mode=0o755)
        os.chmod(self.lease_dir.parent, 0o755)
        os.chmod(self.lease_dir, 0o755)
        self.resolv_conf.write_text(ORIGINAL_RESOLV_CONF)
        os.chmod(self.resolv_conf, 0o644)
        for ns in (self.srv_ns, self.cli_ns):
            self._ip("netns", "add", ns)
            self._namespaces.append(ns)
            CREATED.add(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
        self._ip(
            "-n", self.srv_ns, "link", "add", self.srv_ifname, "type", "veth",
            "peer", "name", self.ifname, "netns", self.cli_ns,
        )  # fmt: skip
        self._ip(
            "-n", self.srv_ns, "addr", "add",
            f"{self.server_ip}/{self.subnet.prefixlen}", "dev", self.srv_ifname,
        )  # fmt: skip
        self._ip("-n", self.srv_ns, "link", "set", self.srv_ifname, "up")
        if self._client_up:
            self.client_link(up=True)
        if self._start_dnsmasq:
            self.start_dnsmasq()

    def close(self) -> None:
        """Stop what we started (by PID), delete our namespaces and the temp dir."""
        for p in reversed(self._procs):
            self._stop(p)
        self._procs.clear()
        self.dnsmasq = None
        for ns in self._namespaces:
            self._kill_netns_pids(ns)
        for ns in reversed(self._namespaces):
            subprocess.run([IP, "netns", "delete", ns], capture_output=True, check=False)
        self._namespaces.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def _stop(p: subprocess.Popen[Any], timeout: float = 5.0) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(timeout)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                stream.close()

    def _kill_netns_pids(self, ns: str) -> None:
        """Leftovers inside our own namespace are descendants of what we started."""
        for _ in range(50):
            r = subprocess.run(
                [IP, "netns", "pids", ns], capture_output=True, text=True, check=False
            )
            pids = [int(x) for x in r.stdout.split() if x.isdigit() and int(x) != os.getpid()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    # --- dnsmasq ------------------------------------------------------------------------
    def dnsmasq_argv(self) -> list[str]:
        mask = self.subnet.netmask
        argv = [
            DNSMASQ,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            f"--interface={self.srv_ifname}",
            "--bind-interfaces",
            "--user=root",
            "--group=root",
            "--no-ping",
            "--no-resolv",
            "--no-hosts",
            f"--pid-file={self.dnsmasq_pidfile}",
            f"--dhcp-leasefile={self.dnsmasq_leases}",
            f"--log-facility={self.dnsmasq_log}",
            "--log-dhcp",
            f"--dhcp-range={self.range_start},{self.range_end},{mask},{self.lease_time}s",
        ]
        argv.append(f"--dhcp-option=3,{self.router}" if self.router else "--dhcp-option=3")
        argv.append("--dhcp-option=6," + ",".join(self.dns) if self.dns else "--dhcp-option=6")
        if self.domain:
            argv.append(f"--dhcp-option=15,{self.domain}")
        if self.search:
            argv.append("--dhcp-option=119," + ",".join(self.search))
        if self.classless_routes:
            flat = ",".join(f"{dst},{gw}" for dst, gw in self.classless_routes)
            argv.append(f"--dhcp-option=121,{flat}")
        # plain --dhcp-option clamps T1/T2 to at least 60 s; forced options go out as given
        if self.t1 is not None:
            argv.append(f"--dhcp-option-force=58,{self.t1}")
        if self.t2 is not None:
            argv.append(f"--dhcp-option-force=59,{self.t2}")
        if self.authoritative:
            argv.append("--dhcp-authoritative")
        argv.extend(self.dnsmasq_args)
        return argv

    def start_dnsmasq(self, timeout: float = 10.0) -> None:
        """Start dnsmasq and wait until it listens on UDP :67 in the server netns."""
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            raise RuntimeError("dnsmasq already running")
        out = open(self.tmp / "dnsmasq.stderr", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(out)
        p = subprocess.Popen(
            [IP, "netns", "exec", self.srv_ns, *self.dnsmasq_argv()],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
        self._procs.append(p)
        self.dnsmasq = p

        def listening() -> bool:
            if p.poll() is not None:
                err = (self.tmp / "dnsmasq.stderr").read_text(errors="replace")
                raise RuntimeError(f"dnsmasq exited with {p.returncode}: {err}")
            return _udp_port_open(p.pid, 67)

        self.wait_for(listening, timeout, what="dnsmasq listening on :67")

    def stop_dnsmasq(self) -> None:
        """Stop dnsmasq (SIGTERM, by PID): the "server gone" case."""
        if self.dnsmasq is not None:
            self._stop(self.dnsmasq)
            self._procs.remove(self.dnsmasq)
            self.dnsmasq = None

    def restart_dnsmasq(self) -> None:
        """Stop and start again; the lease database file is kept."""
        self.stop_dnsmasq()
        self.start_dnsmasq()

    def dnsmasq_log_text(self) -> str:
        try:
            return self.dnsmasq_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def dnsmasq_lease_entries(self) -> list[list[str]]:
        """dnsmasq's lease database: [expiry, mac, ip, hostname, client-id] per line."""
        try:
            return [line.split() for line in self.dnsmasq_leases.read_text().splitlines()]
        except FileNotFoundError:
            return []

    # --- running things -----------------------------------------------------------------
    def _ip(self, *args: str) -> str:
        r = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def client_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Minimal environment: a fixed PATH (no test-user tools) and the repo on PYTHONPATH."""
        env = {"PATH": CLIENT_PATH, "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)}
        env.update(extra or {})
        return env

    def run_in_client(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: Any = subprocess.DEVNULL,
        stdout: Any = None,
        stderr: Any = None,
        text: bool = False,
    ) -> subprocess.Popen[Any]:
        """Popen argv in the client netns + private mount ns (see module docstring).

        The returned process's PID is argv's own (ip, unshare and sh all exec), so
        terminate()/send_signal() reach it directly.  The lab stops it at teardown.
        """
        p = subprocess.Popen(
            self.client_mount_argv(argv),
            env=self.client_env(env),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=text,
            cwd=str(self.tmp),
        )
        self._procs.append(p)
        return p

    def client_mount_argv(self, argv: Sequence[str]) -> list[str]:
        return [
            IP, "netns", "exec", self.cli_ns,
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", _MOUNT_SCRIPT, "sh",
            str(self.etc_dir), str(self.tmp / "etc-work"),
            str(self.lease_dir.parent), str(self.tmp / "varlib-work"),
            str(self.run_dir), *argv,
        ]  # fmt: skip

    def run_in_client_wait(
        self, argv: Sequence[str], *, timeout: float = 30.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """run_in_client to completion; stdout/stderr captured as text."""
        p = self.run_in_client(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = p.communicate(timeout=timeout)
        finally:
            self._stop(p)
            self._procs.remove(p)
        return subprocess.CompletedProcess(list(argv), p.returncode, out, err)

    def start_daemon(self, *args: str, log: str = "dhcpleased.log") -> subprocess.Popen[bytes]:
        """``python -m dhcpleased ARGS`` in the client; stdout+stderr go to tmp/LOG.

        Skips (or fails under DHCPLEASED_REQUIRE_INTEGRATION=1) without the _dhcp user.
        """
        require_dhcp_user()
        out = open(self.tmp / log, "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(out)
        return self.run_in_client(
            [sys.executable, "-m", "dhcpleased", *args], stdout=out, stderr=subprocess.STDOUT
        )

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``python -m dhcpleasectl ARGS`` in the client, to completion."""
        return self.run_in_client_wait(
            [sys.executable, "-m", "dhcpleasectl", *args], timeout=timeout
        )

    def exec_in(
        self, ns: str, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in a lab netns only (no mount tricks), to completion."""
        return subprocess.run(
            [IP, "netns", "exec", ns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env=self.client_env(),
        )

    def spawn_in(self, ns: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Popen argv in a lab netns only; stopped by the lab at teardown."""
        p = subprocess.Popen([IP, "netns", "exec", ns, *argv], env=self.client_env(), **popen)
        self._procs.append(p)
        return p

    def python_in(
        self, ns: str, code: str, *args: str, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet with the project's interpreter in a lab netns."""
        return self.exec_in(ns, [sys.executable, "-c", code, *args], timeout=timeout, check=False)

    def add_neighbour(self, cidr: str) -> tuple[str, str]:
        """Another host on the server's link (a macvlan of its veth end, in a netns of its
        own, removed with the lab) holding ``cidr``: its namespace and interface."""
        ns = self.srv_ns.replace("-srv-", "-nb-") + f"-{len(self._namespaces)}"
        self._ip("netns", "add", ns)
        self._namespaces.append(ns)
        CREATED.add(ns)
        dev = f"nb{len(self._namespaces)}"
        self._ip("-n", self.srv_ns, "link", "add", dev, "link", self.srv_ifname,
                 "type", "macvlan", "mode", "bridge")  # fmt: skip
        self._ip("-n", self.srv_ns, "link", "set", dev, "netns", ns)
        self._ip("-n", ns, "addr", "add", cidr, "dev", dev)
        self._ip("-n", ns, "link", "set", dev, "up")
        return ns, dev

    # --- kernel state in the client netns -----------------------------------------------
    def client_link(self, *, up: bool) -> None:
        self._ip("-n", self.cli_ns, "link", "set", self.ifname, "up" if up else "down")

    def server_link(self, *, up: bool) -> None:
        """Down on the server side = carrier loss on the client side."""
        self._ip("-n", self.srv_ns, "link", "set", self.srv_ifname, "up" if up else "down")

    def addresses(self, ifname: str | None = None) -> list[str]:
        """IPv4 addresses on the client interface as "a.b.c.d/len"."""
        data = json.loads(
            self._ip("-n", self.cli_ns, "-j", "-4", "addr", "show", "dev", ifname or self.ifname)
        )
        return [
            f"{a['local']}/{a['prefixlen']}"
            for link in data
            for a in link.get("addr_info", [])
            if a.get("family") == "inet"
        ]

    def routes(self, table: str = "main") -> list[dict[str, Any]]:
        """``ip -j -4 route show table TABLE`` in the client netns (protocol included)."""
        return list(
            json.loads(self._ip("-n", self.cli_ns, "-j", "-4", "route", "show", "table", table))
        )

    def mac(self, ns: str | None = None, ifname: str | None = None) -> str:
        ns = ns or self.cli_ns
        data = json.loads(self._ip("-n", ns, "-j", "link", "show", "dev", ifname or self.ifname))
        return str(data[0]["address"])

    def lease_file(self, ifname: str | None = None) -> Path:
        return self.lease_dir / (ifname or self.ifname)

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        interval: float = 0.05,
        *,
        what: str = "",
    ) -> T:
        """Poll predicate until it returns something truthy; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate!r}")
            time.sleep(interval)


def _udp_port_open(pid: int, port: int) -> bool:
    """Is a UDP socket bound to port in pid's network namespace? (/proc/PID/net/udp)"""
    try:
        with open(f"/proc/{pid}/net/udp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1].endswith(f":{port:04X}") for line in lines if line.strip())


def in_range(lab: Lab, cidr: str) -> bool:
    """Is "a.b.c.d/len" an address dnsmasq hands out, with the lab's prefix length?"""
    iface = ipaddress.IPv4Interface(cidr)
    return iface.network == lab.subnet and lab.range_start <= iface.ip <= lab.range_end


def all_lab_namespaces(names: Iterable[str] | None = None) -> list[str]:
    """Every dlt-* namespace currently present (for leak checks)."""
    if names is None:
        r = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, check=False)
        names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith("dlt-")]


__all__ = [
    "Lab",
    "all_lab_namespaces",
    "in_range",
    "missing_requirements",
    "require_dhcp_user",
    "skip_or_fail",
]
