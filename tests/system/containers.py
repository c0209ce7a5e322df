"""Throwaway containers with a real init, for tests against the programs users run.

A :class:`Container` boots systemd (the host's own root as a throwaway overlay) or
sysvinit + OpenRC (a cached Debian rootfs, :func:`debian_rootfs`) with
``systemd-nspawn --boot --volatile=overlay``: every write lands in a tmpfs and is gone
at stop.  It can join a lab's network namespace, so a service inside gets its lease
from the lab's dnsmasq.  Commands run inside through ``nsenter`` (:meth:`Container.run`);
there is no D-Bus on the host, so ``machinectl``/``systemctl -M`` cannot be used.

Host hygiene (measured facts: ``/work/shared/reference/real-systems.md``): nspawn runs
in a private mount namespace with a tmpfs over ``/run/systemd`` (its scratch files)
and in cgroup directories of its own (removed after stop, depth first), so nothing
appears at the host's cgroup roots; the network is the lab's namespace or none
(``--private-network``), never the host's; every ``nsenter`` has a timeout; stop is
a clean halt, then SIGKILL if the container hangs, and runs even when the test failed.

Downloads are cached in :data:`CACHE` (``$DHCPLEASED_TEST_CACHE``, default
``/var/cache/dhcpleased-tests``): Debian packages fetched with ``apt-get download``
(:func:`debs`, never installed on the host), the rootfs (:func:`debian_rootfs`), and
the wheels that ``make install`` needs offline (:func:`wheelhouse`).  Each is built once,
under a lock, into a temporary name and renamed into place.

Reusable for any service that needs a real init: start a :class:`Container`, bind in
what it needs, ``run`` its installer, ``systemctl``/``rc-service`` and read the journal
or syslog.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from tests.integration.lab import REPO, Lab, skip_or_fail

T = TypeVar("T")

CACHE = Path(os.environ.get("DHCPLEASED_TEST_CACHE", "/var/cache/dhcpleased-tests"))
NSPAWN = shutil.which("systemd-nspawn") or "/usr/bin/systemd-nspawn"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
MIRROR = os.environ.get("DHCPLEASED_TEST_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# nspawn's own container-wide seccomp filter lacks these: without them the daemon would
# find no Landlock inside and run with a smaller sandbox than the one under test
LANDLOCK_CALLS = "landlock_create_ruleset landlock_add_rule landlock_restrict_self"
BOOT_TIMEOUT = float(os.environ.get("DLT_BOOT_TIMEOUT", "60"))
STOP_TIMEOUT = 30.0

# Runs as: sh -c SCRIPT sh CGROUP_DIRS ROOT_MOUNT nspawn-argv...  (in a private mount ns)
_LAUNCH = """set -e
for d in $1; do echo $$ > "$d/cgroup.procs"; done
[ -d /run/systemd ] || mkdir -m 0755 /run/systemd
mount -t tmpfs -o mode=0755 dlt-run-systemd /run/systemd
if [ -n "$2" ]; then mount --bind / "$2"; fi
shift 2
exec "$@"
"""


def missing_requirements() -> str | None:
    """Why containers cannot run here, or None."""
    if os.geteuid() != 0:
        return "containers need root"
    if not os.access(NSPAWN, os.X_OK):
        return "systemd-nspawn not installed (tests/integration/prepare.sh installs it)"
    if _cgroup_roots() is None:
        return "unknown cgroup layout (neither cgroup2 nor hybrid at /sys/fs/cgroup)"
    return None


def require_containers() -> None:
    why = missing_requirements()
    if why is not None:
        skip_or_fail(why)


def _cgroup_roots() -> list[Path] | None:
    """Where our own cgroup directories go: both hierarchies of a hybrid host, else v2."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    hybrid = [base / "unified", base / "systemd"]
    if all((d / "cgroup.procs").exists() for d in hybrid):
        return hybrid
    return None


def host_enabled_services() -> list[str]:
    """Services the host's admin enabled: masked in a host-root container (boot speed,
    and nothing of the host's, a database say, starts a second time in the overlay)."""
    found = {
        p.name
        for p in Path("/etc/systemd/system").glob("*.wants/*")
        if p.name.endswith(".service") and "@" not in p.name
    }
    return sorted(found | {"console-getty.service"})


class Container:
    """One booted container; use as a context manager (stop and clean-up always run).

    ``root`` None boots the host's root fs as a throwaway overlay with systemd; a
    directory boots that rootfs with whatever ``/sbin/init`` it has (``init`` says
    which: "systemd" or "sysv", for the boot wait and the halt).
    ``binds`` are (host path, container path, read_only).  ``netns`` names a
    ``/run/netns`` entry to join (with CAP_NET_ADMIN for the container), else the
    container gets a private, empty network.
    """

    def __init__(
        self,
        *,
        root: Path | None = None,
        init: str = "systemd",
        netns: str | None = None,
        binds: Sequence[tuple[str | Path, str, bool]] = (),
        masked: Sequence[str] | None = None,
        kernel_args: Sequence[str] = (),
    ) -> None:
        self.name = f"dlt-ct-{secrets.token_hex(3)}"
        self.root = root
        self.init = init
        self.netns = netns
        self.binds = list(binds)
        self.masked = host_enabled_services() if masked is None and root is None else masked
        self.kernel_args = list(kernel_args)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.console = self.tmp / "console.log"
        self.cgroups: list[Path] = []
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    # --- life cycle -----------------------------------------------------------------------
    def __enter__(self) -> Container:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def nspawn_argv(self, directory: Path) -> list[str]:
        argv = [
            NSPAWN, "--quiet", "--volatile=overlay", "-D", str(directory), "--boot",
            "--register=no", "--keep-unit", "--console=passive", "-M", self.name,
            f"--system-call-filter={LANDLOCK_CALLS}",
        ]  # fmt: skip
        if self.netns is not None:
            argv += [f"--network-namespace-path=/run/netns/{self.netns}",
                     "--capability=CAP_NET_ADMIN"]  # fmt: skip
        else:
            argv.append("--private-network")
        for src, dst, read_only in self.binds:
            argv.append(f"--bind{'-ro' if read_only else ''}={src}:{dst}")
        argv.append("--")
        argv += [f"systemd.mask={u}" for u in self.masked or ()]
        return argv + self.kernel_args

    def start(self) -> None:
        roots = _cgroup_roots()
        assert roots is not None, "require_containers() first"
        for r in roots:
            d = r / self.name
            d.mkdir()
            self.cgroups.append(d)
        mountpoint = ""
        directory = self.root
        if directory is None:  # nspawn refuses -D /: a non-recursive bind of it
            directory = self.tmp / "root"
            directory.mkdir()
            mountpoint = str(directory)
        cgroups = " ".join(map(str, self.cgroups))
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _LAUNCH, "sh",
                cgroups, mountpoint, *self.nspawn_argv(directory)]  # fmt: skip
        env = {"PATH": INSIDE_PATH, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1", "LANG": "C.UTF-8"}
        with open(self.console, "wb") as out:
            self.nspawn = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.pid1 = self.wait_for(self._find_pid1, 20, what="the container's init")
        try:
            self.wait_for(self._booted, BOOT_TIMEOUT, interval=0.2, what="boot to finish")
        except TimeoutError as e:
            jobs = ["systemctl", "list-jobs"] if self.init == "systemd" else ["rc-status", "-a"]
            raise TimeoutError(f"{e}\n{self.run(jobs, check=False, timeout=10).stdout}") from None

    def _find_pid1(self) -> int:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {self.nspawn.returncode}: {self.log()}")
        path = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        with contextlib.suppress(OSError, ValueError):
            kids = path.read_text().split()
            # nspawn's first child only sets up and exits: the init is the one that is
            # PID 1 of a namespace of its own
            if len(kids) == 1:
                status = Path(f"/proc/{kids[0]}/status").read_text()
                nspid = next(x for x in status.splitlines() if x.startswith("NSpid:")).split()
                if len(nspid) > 2 and nspid[-1] == "1":
                    return int(kids[0])
        return 0

    def _booted(self) -> bool:
        if self.init == "systemd":
            r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            state = r.stdout.strip()  # empty while PID 1 does not answer yet
            if state in ("maintenance", "stopping"):
                raise RuntimeError(f"container boot: {state}\n{self.log()}")
            return state in ("running", "degraded")
        r = self.run(
            ["sh", "-c", 'test "$(cat /run/openrc/softlevel)" = default && runlevel'],
            check=False,
            timeout=10,
        )
        return r.returncode == 0 and r.stdout.split()[-1:] == ["2"]

    def stop(self) -> None:
        """Halt cleanly, SIGKILL what hangs, remove our cgroups and temp dir."""
        p = self.nspawn
        if p is not None and p.poll() is None:
            if self.init == "systemd" or not self.pid1:
                p.terminate()  # nspawn asks systemd to halt (SIGRTMIN+4)
            else:
                self.run(["/sbin/halt"], check=False, timeout=10)
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(STOP_TIMEOUT)
        self.nspawn = None
        for d in self.cgroups:
            self._remove_cgroup(d)
        self.cgroups.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def _remove_cgroup(top: Path) -> None:
        """Depth first; a directory still busy for a moment after the halt is retried."""
        for _ in range(100):
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*dirs, top]:
                with contextlib.suppress(FileNotFoundError, OSError):
                    d.rmdir()
            if not top.exists():
                return
            time.sleep(0.05)

    def log(self) -> str:
        """The container's console (boot and halt messages)."""
        try:
            return self.console.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # --- inside ---------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """argv in all of the container's namespaces, root and cwd, with a clean env.

        ``timeout`` on the nsenter itself (a killed nsenter leaves a zombie behind that
        holds up the container's halt) and a few seconds more on our wait for it.
        """
        inside = {"PATH": INSIDE_PATH, "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb",
                  "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", **(env or {})}  # fmt: skip
        cmd = ["timeout", "-k", "5", str(timeout), NSENTER, "-t", str(self.pid1), "-a", "-r",
               "-w", "env", "-i", *(f"{k}={v}" for k, v in inside.items()), *argv]  # fmt: skip
        r = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout + 10, check=False
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"in {self.name}: {' '.join(argv)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
            )
        return r

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-ec", script], **kw)  # type: ignore[arg-type]

    def systemctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check, timeout=90)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p P1,P2 UNIT`` as a dict."""
        out = self.systemctl("show", "-p", ",".join(props), unit, check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str, *args: str) -> str:
        """The unit's journal, flushed first so that the last lines are in."""
        self.run(["journalctl", "--sync"], check=False)
        return self.run(["journalctl", "--no-pager", "-u", unit, *args], check=False).stdout

    def pidof_unit(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])

    def host_pid(self, pid: int) -> int:
        """The host's number for the container's process ``pid`` (for gdb, /proc)."""
        ns = os.readlink(f"/proc/{self.pid1}/ns/pid")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, StopIteration):
                if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                    continue
                status = Path(f"/proc/{entry}/status").read_text().splitlines()
                nspid = next(x for x in status if x.startswith("NSpid:")).split()
                if nspid[-1] == str(pid):
                    return int(entry)
        raise LookupError(f"{self.name}: no process {pid}")

    def wait_for(
        self, predicate: Callable[[], T], timeout: float, interval: float = 0.1, *, what: str
    ) -> T:
        """The lab's polling loop (it uses nothing of the lab), the console on a timeout."""
        try:
            return Lab.wait_for(self, predicate, timeout, interval, what=what)  # type: ignore[arg-type]
        except TimeoutError as e:
            raise TimeoutError(f"{self.name}: {e}\n{self.log()}") from None


# --- cached downloads -----------------------------------------------------------------------


@contextlib.contextmanager
def _cache_lock(name: str) -> Iterator[Path]:
    """Exclusive use of CACHE/name while it is built (parallel sessions wait)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield CACHE / name


def _build_into(final: Path, build: Callable[[Path], None]) -> Path:
    """build(tmp) then rename tmp to final; a failed build leaves nothing behind."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(final)
    return final


def _fail_setup(what: str, r: subprocess.CompletedProcess[str]) -> None:
    skip_or_fail(f"{what} failed (exit {r.returncode}): {(r.stderr or r.stdout)[-800:]}")


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def host_package_version(name: str) -> str:
    """The installed version of a host package (a container's package must match it when
    it runs against the host's own files, as systemd-resolved does against systemd)."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True,
                       text=True, timeout=30, check=False)  # fmt: skip
    if r.returncode != 0 or not r.stdout:
        skip_or_fail(f"{name} is not installed on the host")
    return r.stdout


def debs(packages: Sequence[str]) -> Path:
    """A directory of these Debian packages (``apt-get download``: nothing is installed);
    ``name=version`` pins one.

    The host's apt lists name the versions; ``apt-get update`` is run once if they are
    too old to download from.
    """
    with _cache_lock(f"debs-{_key(*packages)}") as final:
        if final.is_dir():
            return final

        def build(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            shutil.chown(tmp, "_apt")  # apt drops to _apt to write the files
            cmd = ["apt-get", "download", "-qq", *packages]
            r = subprocess.run(
                cmd, cwd=tmp, capture_output=True, text=True, timeout=300, check=False
            )
            if r.returncode != 0:
                subprocess.run(
                    ["apt-get", "update", "-qq"], capture_output=True, timeout=300, check=False
                )
                r = subprocess.run(
                    cmd, cwd=tmp, capture_output=True, text=True, timeout=300, check=False
                )
            if r.returncode != 0:
                _fail_setup("apt-get download " + " ".join(packages), r)

        return _build_into(final, build)


# What a rootfs needs to run the daemon as its README installs it (make install with
# the distribution's Python), and a syslog daemon to log to (busybox's: read with logread).
ROOTFS_PACKAGES = ("openrc", "sysvinit-core", "iproute2", "procps", "python3", "python3-venv",
                   "make", "busybox-syslogd")  # fmt: skip
# No getty on ttys a container does not have; OpenRC told it runs in nspawn; the halt
# script must not take the lab's interface down.
_ROOTFS_HOOK = (
    'sed -i "/getty/s/^\\([^#]\\)/#\\1/" "$1/etc/inittab"; '
    'sed -i "s/^#*rc_sys=.*/rc_sys=\\"systemd-nspawn\\"/" "$1/etc/rc.conf"; '
    'echo NETDOWN=no >> "$1/etc/default/halt"'
)


def debian_rootfs(packages: Sequence[str] = ROOTFS_PACKAGES) -> Path:
    """A minimal Debian rootfs (sysvinit + OpenRC by default), built once by mmdebstrap."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        skip_or_fail("mmdebstrap not installed (tests/integration/prepare.sh installs it)")
        raise AssertionError  # not reached
    with _cache_lock(f"rootfs-{SUITE}-{_key(*packages, _ROOTFS_HOOK)}") as final:
        if final.is_dir():
            return final

        def build(tmp: Path) -> None:
            cmd = [mmdebstrap, "--quiet", "--variant=minbase", f"--include={','.join(packages)}",
                   f"--customize-hook={_ROOTFS_HOOK}", SUITE, str(tmp), MIRROR]  # fmt: skip
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            if r.returncode != 0:
                _fail_setup("mmdebstrap", r)

        return _build_into(final, build)


def _requirements() -> list[str]:
    """What ``pip install .`` fetches: the build backend and the runtime dependencies."""
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    return [*project["build-system"]["requires"], *project["project"]["dependencies"], "wheel"]


def wheelhouse() -> Path:
    """Wheels for ``make install PIPFLAGS="--no-index --find-links=DIR"`` in a container
    whose network is a lab's (no Internet there)."""
    reqs = _requirements()
    with _cache_lock(f"wheels-{_key(*reqs)}") as final:
        if final.is_dir():
            return final

        def build(tmp: Path) -> None:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                   "--only-binary=:all:", "-d", str(tmp), *reqs]  # fmt: skip
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            if r.returncode != 0:
                _fail_setup("pip download", r)

        return _build_into(final, build)


def copy_source(c: Container, src: str = "/mnt/src", dst: str = "/tmp/src") -> str:
    """The checkout (bound read-only at ``src``) copied inside, as an admin's clone would
    be: pip writes build files into the tree.  Returns ``dst``."""
    c.sh(
        f"mkdir -p {dst}; tar -C {src} --exclude=./.venv --exclude=./.git "
        f"--exclude='*.egg-info' --exclude=./build --exclude='__pycache__' -cf - . "
        f"| tar -C {dst} -xf -"
    )
    return dst
