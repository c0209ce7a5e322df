"""DNS hand-off in the parent: the Linux stand-in for RTM_PROPOSAL and resolvd(8).

Linux has no kernel channel for DNS proposals, so the parent hands them to whatever
manages resolv.conf on this host, chosen once at startup:

* ``resolvconf``: resolvconf(8) is on PATH (openresolv or Debian's resolvconf).  Each
  interface is one record, ``IFNAME.dhcpleased``, fed a resolv.conf fragment on stdin;
  withdraw is ``resolvconf -d IFNAME.dhcpleased -f``.  When ``resolvconf`` is systemd's
  compatibility link to resolvectl, the ``resolved`` mode is used instead.
* ``resolved``: systemd-resolved runs (its varlink socket exists) and resolvectl is on
  PATH: ``resolvectl dns IF A B`` + ``resolvectl domain IF D S...``, withdraw is
  ``resolvectl revert IF``.  No ``~.`` routing domain is added: resolved already sends
  queries for other names to every link with DNS servers unless some link claims ``~.``,
  and claiming it here would steal all DNS from a VPN that set it.
* ``file``: write resolv.conf ourselves, in one of two ways chosen at start-up:

  - **linked** (the admin's opt-in, as resolvconf and systemd-resolved ask for it):
    ``/etc/resolv.conf`` is a symbolic link to ``/run/dhcpleased/resolv.conf``.  That
    file is written atomically (temp file in the run directory, fsync, rename) and
    removed when the last proposal is withdrawn, so the link dangles (no nameserver
    from us) while there is none, and after the service stops (systemd removes the run
    directory).  The parent writes nothing outside its run directory;
  - **in place** (anything else): the existing file is rewritten, never replaced.  The
    parent may write that one file and create nothing in its directory: a new file in
    /etc (``/etc/ld.so.preload``) is out of its reach.  The new text, padded with
    newlines to the old length, goes out in one write at offset 0, then the padding is
    cut: a reader sees the old text or the new one (with or without blank lines at the
    end), never a mix of their lines.  What rename gave and this does not: after a
    power cut in the middle, the file may hold part of each; and a reader racing the
    kernel's copy of those few hundred bytes could see a torn line.  Acceptable for a
    file that is rewritten only when a lease's DNS changes, and that resolvers read
    again at their next lookup.  A resolv.conf that does not exist is not created (log
    line at start-up), and one replaced by another file while the daemon runs is left
    alone until it restarts (the sandbox names the file it started with).

  Proposals of several interfaces are merged in first-come order: at most 3 nameservers
  (glibc's MAXNS), ``search`` = each interface's domain then its search list,
  duplicates dropped; ``options`` lines of the original file are kept.  The file as it
  was before our first write is restored when the last interface withdraws.  If someone
  else rewrites the file while we own it, we back off: no more writes and no restore
  over their file until every proposal is withdrawn; a later proposal then starts afresh.
* ``none``: do nothing (e.g. the admin manages DNS by hand).

In the ``resolvconf`` and ``resolved`` modes the programs are run by the DNS helper
process (:mod:`dhcpleased.dnshelper`), spawned before the parent's sandbox: the parent
itself never executes anything.  It sends the helper a checked request and logs the
failure the helper answers.  Domain names come from the network and stay data:
resolvconf reads them on stdin, resolvectl gets ``--`` before its arguments, so a name
such as ``--help`` or ``-i`` is a name to its getopt, not an option.  A name that starts
with ``~`` is dropped: resolved would take it as a routing-only domain (``~.`` would
route every query to this link's servers, a VPN's included).

NTP servers (option 42) take the same road to the time daemon found at start-up
(:func:`detect_ntp_mode`): ``chrony`` when chronyd runs, else ``timesyncd`` when
systemd-timesyncd runs (it starts before the network, so before us), else ``chrony``
when chronyc is installed (chronyd starts after the network and reads its sourcedir
then), else ``none``.  The helper writes the file and tells the daemon
(:class:`dnshelper.NtpHandOff`); the parent gains no right for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final

from dhcpleased import defs, dnshelper
from dhcpleased.dnshelper import (
    HEADER,
    HELPER_MODES,
    SAFE_PATH,
    TIMEOUT,
    NtpHandOff,
    Request,
    write_atomic,
)

log = logging.getLogger("dhcpleased.resolver")

MAXNS: Final = 3  # glibc reads at most three nameserver lines
MODES: Final = ("resolvconf", "resolved", "file", "none")
RESOLVED_SOCKET: Final = "/run/systemd/resolve/io.systemd.Resolve"
LINKED_NAME: Final = "resolv.conf"  # /etc/resolv.conf -> /run/dhcpleased/resolv.conf
NTP_MODES: Final = (*dnshelper.NTP_MODES, "none")
TIMESYNCD_RUN: Final = "/run/systemd/timesync"  # timesyncd's RuntimeDirectory: it runs
HELPER_EXIT_WAIT: Final = 3.0


@dataclass(frozen=True, slots=True)
class Proposal:
    nameservers: tuple[IPv4Address, ...]
    domain: str
    search: tuple[str, ...]

    def domains(self) -> list[str]:
        return [d for d in (self.domain, *self.search) if d]


@dataclass(frozen=True, slots=True)
class _Original:
    """resolv.conf (or the linked file) before our first write: "file" or "absent"."""

    kind: str
    content: bytes = b""
    mode: int = 0o644


def _names(p: Proposal) -> list[str]:
    """The proposal's domains as they may be handed on, in order, without duplicates."""
    names = []
    for name in dict.fromkeys(map(dnshelper.clean, p.domains())):
        if name.startswith("~"):
            log.warning("ignoring domain name %s: it would be a routing domain", name)
        elif name:
            names.append(name)
    return names


def render_merged(proposals: Sequence[Proposal], options: Sequence[str] = ()) -> str:
    """The whole resolv.conf for the file mode, proposals in first-come order."""
    servers: dict[IPv4Address, None] = {}
    domains: dict[str, None] = {}
    for p in proposals:
        servers.update(dict.fromkeys(p.nameservers))
        domains.update(dict.fromkeys(_names(p)))
    text = dnshelper.render_fragment(tuple(servers)[:MAXNS], tuple(domains))
    return text + "".join(f"{o}\n" for o in options)


def detect_mode(path: str, resolved_socket: str = RESOLVED_SOCKET) -> str:
    """resolvconf if on PATH (unless it is resolvectl in disguise), else resolved, else file."""
    resolvconf = shutil.which("resolvconf", path=path)
    resolvectl = shutil.which("resolvectl", path=path)
    resolved_up = os.path.exists(resolved_socket) and resolvectl is not None
    if resolvconf is not None:
        is_shim = os.path.basename(os.path.realpath(resolvconf)) == "resolvectl"
        if not (is_shim and resolved_up):
            return "resolvconf"
    if resolved_up:
        return "resolved"
    return "file"


def detect_ntp_mode(
    path: str,
    timesyncd_run: str = TIMESYNCD_RUN,
    chronyd_socket: str = dnshelper.CHRONYD_SOCKET,
) -> str:
    """The time daemon that takes NTP servers here (module doc), or "none"."""
    chronyc = shutil.which("chronyc", path=path)
    if chronyc is not None and os.path.isdir(os.path.dirname(chronyd_socket)):
        return "chrony"
    if shutil.which("systemctl", path=path) is not None and os.path.isdir(timesyncd_run):
        return "timesyncd"
    return "chrony" if chronyc is not None else "none"


def file_target(resolv_conf: str, run_dir: str = defs.RUN_DIR) -> tuple[str, bool]:
    """(the file the file mode writes, True if it is the linked one, written by rename)."""
    if os.path.islink(resolv_conf):
        real = os.path.realpath(resolv_conf)
        if real == os.path.join(os.path.realpath(run_dir), LINKED_NAME):
            return real, True
    return resolv_conf, False


class Resolver:
    """Where the parent's PROPOSE_RDNS / WITHDRAW_RDNS go."""

    def __init__(
        self,
        *,
        resolv_conf: str = defs.RESOLV_CONF,
        mode: str | None = None,
        path: str | None = None,
        resolved_socket: str = RESOLVED_SOCKET,
        timeout: float = TIMEOUT,
        run_dir: str = defs.RUN_DIR,
        ntp_mode: str | None = None,
        ntp_dir: str | None = None,
        timesyncd_run: str = TIMESYNCD_RUN,
        chronyd_socket: str = dnshelper.CHRONYD_SOCKET,
    ) -> None:
        self.resolv_conf = resolv_conf
        self.path = path if path is not None else os.environ.get("PATH") or SAFE_PATH
        self.mode = mode if mode is not None else detect_mode(self.path, resolved_socket)
        if self.mode not in MODES:
            raise ValueError(f"unknown DNS mode {self.mode!r}")
        self.timeout = timeout
        self.proposals: dict[str, Proposal] = {}  # insertion order = first-come order
        self.exe = ""
        if self.mode in HELPER_MODES:
            tool = "resolvconf" if self.mode == "resolvconf" else "resolvectl"
            found = shutil.which(tool, path=self.path)
            if found is None:
                raise ValueError(f"DNS mode {self.mode}: executable not found on PATH")
            self.exe = os.path.abspath(found)
        self.target, self.linked = file_target(resolv_conf, run_dir)
        self.ntp = self._ntp_hand_off(ntp_mode, ntp_dir, timesyncd_run, chronyd_socket, run_dir)
        self.helper: Helper | None = None
        self._lock = asyncio.Lock()
        self._original: _Original | None = None  # set while we own the file
        self._written: bytes | None = None  # what we last wrote
        self._backed_off = False

    def _ntp_hand_off(
        self,
        mode: str | None,
        directory: str | None,
        timesyncd_run: str,
        chronyd_socket: str,
        run_dir: str,
    ) -> NtpHandOff | None:
        if mode is None:
            mode = detect_ntp_mode(self.path, timesyncd_run, chronyd_socket)
        if mode not in NTP_MODES:
            raise ValueError(f"unknown NTP mode {mode!r}")
        if mode == "none":
            return None
        tool = "systemctl" if mode == "timesyncd" else "chronyc"
        found = shutil.which(tool, path=self.path)
        if found is None:
            raise ValueError(f"NTP mode {mode}: {tool} not found on PATH")
        default = dnshelper.TIMESYNCD_DIR if mode == "timesyncd" else dnshelper.CHRONY_SOURCES_DIR
        return NtpHandOff(
            mode,
            os.path.abspath(found),
            directory or default,
            os.path.join(run_dir, "chronyc"),
            chronyd_socket,
        )

    @property
    def ntp_mode(self) -> str:
        return "none" if self.ntp is None else self.ntp.mode

    def writable(self) -> tuple[list[str], list[str]]:
        """(files rewritten in place, directories written by rename): all the parent's
        sandbox lets it write for DNS."""
        if self.mode != "file":
            return [], []
        if self.linked:
            return [], [os.path.dirname(self.target)]
        if not os.path.isfile(self.target):
            log.warning(
                "%s does not exist: DNS from leases cannot be written (create it, or link "
                "it to %s)", self.resolv_conf, os.path.join(defs.RUN_DIR, LINKED_NAME)
            )  # fmt: skip
            return [], []
        return [self.target], []

    # --- the helper process -----------------------------------------------------------------
    def start(self, lost: Callable[[str], None]) -> None:
        """Spawn the DNS helper (resolvconf, resolved modes; NTP to a time daemon) before
        the parent's sandbox; ``lost`` hears of its death."""
        if (self.mode in HELPER_MODES or self.ntp is not None) and self.helper is None:
            mode = self.mode if self.mode in HELPER_MODES else "none"
            argv = [mode, self.exe, self.resolv_conf, *(self.ntp.argv() if self.ntp else ())]
            self.helper = Helper(argv, lost, self.timeout)

    async def started(self) -> None:
        """Once the helper reports its sandbox (OSError if it never does)."""
        if self.helper is not None:
            await self.helper.up()

    async def close(self) -> None:
        if self.helper is not None:
            await self.helper.close()

    # --- public API -----------------------------------------------------------------------
    async def propose(
        self, ifname: str, nameservers: Sequence[IPv4Address], domain: str, search: Sequence[str]
    ) -> None:
        """Install (or replace) ifname's DNS servers and domains."""
        if not nameservers:
            await self.withdraw(ifname)
            return
        p = Proposal(tuple(nameservers), domain, tuple(search))
        async with self._lock:
            self.proposals[ifname] = p
            if self.mode in HELPER_MODES:
                servers = p.nameservers[: defs.MAX_RDNS_COUNT]
                await self._ask(Request(dnshelper.OP_PROPOSE, ifname, servers, tuple(_names(p))))
            elif self.mode == "file":
                self._update_file()

    async def withdraw(self, ifname: str) -> None:
        """Take ifname's DNS back; in file mode restore the original after the last one."""
        async with self._lock:
            had = self.proposals.pop(ifname, None) is not None
            # resolvconf -d -f is harmless for a record that is not there; resolved's
            # revert would undo what others set on the link
            if self.mode == "resolvconf" or (self.mode == "resolved" and had):
                await self._ask(Request(dnshelper.OP_WITHDRAW, ifname))
            elif self.mode == "file" and had:
                self._update_file()

    async def propose_ntp(self, ifname: str, servers: Sequence[IPv4Address]) -> None:
        """Hand ifname's NTP servers to the time daemon (nothing without one)."""
        if self.ntp is not None:
            servers = tuple(servers)[: defs.MAX_NTP_COUNT]
            async with self._lock:
                await self._ask(Request(dnshelper.OP_NTP_PROPOSE, ifname, servers))

    async def withdraw_ntp(self, ifname: str) -> None:
        """Take them back (the helper does nothing if the interface has no file)."""
        if self.ntp is not None:
            async with self._lock:
                await self._ask(Request(dnshelper.OP_NTP_WITHDRAW, ifname))

    async def _ask(self, req: Request) -> None:
        try:
            data = req.pack()
        except ValueError as e:  # e.g. an interface name that reads as an option
            raise OSError(errno.EINVAL, f"{self._what(req)}: {e}") from None
        if self.helper is None:
            raise OSError(errno.ENOTCONN, f"{self._what(req)}: the DNS helper is not running")
        await self.helper.ask(data)

    def _what(self, req: Request) -> str:
        return self.ntp_mode if req.ntp else self.mode

    # --- file mode ------------------------------------------------------------------------
    def _read_current(self) -> _Original:
        """The file as it is now; never blocks on, nor reads, anything but a regular file."""
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            fd = os.open(self.target, flags)
        except FileNotFoundError:
            return _Original("absent")
        with open(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, f"{self.target}: not a regular file")
            return _Original("file", f.read(), stat.S_IMODE(st.st_mode))

    def _update_file(self) -> None:
        current = self._read_current()
        if self._original is None:
            if not self.proposals:
                return
            if current.kind == "absent" and not self.linked:
                raise OSError(errno.ENOENT, f"{self.target}: no such file, not created")
            if current.kind == "file" and current.content.startswith(HEADER.encode()):
                # left behind by an earlier instance: the real original is unknown
                current = _Original("file", HEADER.encode() + _options(current.content))
            self._original = current
            self._backed_off = False
        elif not self._backed_off and (current.kind != "file" or current.content != self._written):
            log.warning("%s changed by someone else, leaving it alone", self.target)
            self._backed_off = True
        if not self.proposals:
            original, self._original, self._written = self._original, None, None
            if not self._backed_off:
                self._restore(original)
            self._backed_off = False
            return
        if self._backed_off:
            return
        options = _options(self._original.content).decode(errors="replace").splitlines()
        data = render_merged(list(self.proposals.values()), options).encode()
        if data != self._written:
            self._write(data, 0o644)
            self._written = data

    def _write(self, data: bytes, mode: int) -> None:
        if self.linked:
            write_atomic(self.target, data, mode)
        else:
            _write_in_place(self.target, data)

    def _restore(self, original: _Original) -> None:
        if original.kind == "file":
            self._write(original.content, original.mode)
        elif self.linked:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.target)


def _options(content: bytes) -> bytes:
    """The ``options`` lines of a resolv.conf (kept across our rewrites)."""
    return b"".join(
        line + b"\n" for line in content.splitlines() if line.split()[:1] == [b"options"]
    )


def _write_in_place(path: str, data: bytes) -> None:
    """Rewrite the existing file without replacing it (see the module doc): one write of
    the new text padded with newlines to the old length, then cut the padding."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{path}: not a regular file")
        padded = data + b"\n" * max(0, st.st_size - len(data))
        done = os.pwrite(fd, padded, 0)
        while done < len(padded):  # a regular file takes it whole; just in case
            done += os.pwrite(fd, padded[done:], done)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


class Helper:
    """The parent's end of the DNS helper process (:mod:`dhcpleased.dnshelper`)."""

    def __init__(self, args: list[str], lost: Callable[[str], None], timeout: float) -> None:
        """``args``: the helper's command line (dnshelper.helper_main)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-I", "-m", "dhcpleased.dnshelper", *args]
        try:
            self.pid = os.posix_spawn(
                sys.executable,
                argv,
                {"PATH": SAFE_PATH, "LC_ALL": "C"},
                file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), 3)],
            )
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
        mine.setblocking(False)
        self.sock = mine
        self.pidfd = os.pidfd_open(self.pid)
        self.status: int | None = None
        self.lost = lost
        # the helper answers within its timeout per program (two for resolved), plus
        # the kill of a program that overran
        self.wait = 2 * timeout + 5.0
        self.closing = False
        asyncio.get_running_loop().add_reader(self.pidfd, self._reap)

    def _reap(self) -> None:
        asyncio.get_running_loop().remove_reader(self.pidfd)
        try:
            _, self.status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            self.status = 0
        os.close(self.pidfd)
        if not self.closing:
            self.lost(f"DNS helper {exit_how(self.status)}")

    async def _reply(self) -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(
                loop.sock_recv(self.sock, dnshelper.MAX_REPLY + 1), self.wait
            )
        except TimeoutError:
            data = None
        except OSError as e:
            data = None
            log.debug("DNS helper channel: %s", e)
        if not data:
            why = "DNS helper did not answer" if data is None else "DNS helper closed its channel"
            self.lost(why)
            raise OSError(errno.EPIPE, why)
        try:
            return dnshelper.unpack_reply(data)
        except ValueError as e:
            self.lost(f"DNS helper sent a bad reply: {e}")
            raise OSError(errno.EPROTO, str(e)) from None

    async def up(self) -> None:
        status, _ = await self._reply()
        if status != dnshelper.UP:
            self.lost("DNS helper answered before its sandbox was up")
            raise OSError(errno.EPROTO, "DNS helper out of step")

    async def ask(self, request: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, request)
        status, text = await self._reply()
        if status == dnshelper.FAILED:
            raise OSError(errno.EIO, text)
        if status != dnshelper.DONE:
            self.lost("DNS helper out of step")
            raise OSError(errno.EPROTO, "DNS helper out of step")

    async def close(self) -> None:
        """Close the channel (the helper exits on EOF), wait for it, SIGKILL if it lingers."""
        self.closing = True
        self.sock.close()
        deadline = asyncio.get_running_loop().time() + HELPER_EXIT_WAIT
        while self.status is None:
            if asyncio.get_running_loop().time() > deadline:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                deadline += HELPER_EXIT_WAIT
            await asyncio.sleep(0.02)


def exit_how(status: int) -> str:
    """A wait status as the parent's log says it."""
    if os.WIFSIGNALED(status):
        return f"terminated by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
