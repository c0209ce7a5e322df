"""The parent process and the command line (dhcpleased.c).

The parent keeps just enough privilege to change the network: it opens the packet,
UDP and netlink sockets the frontend uses, writes addresses, routes, lease files and
DNS, and never parses a byte from the network. It re-executes itself for the two
children (``-E`` engine, ``-F`` frontend) so that each starts with a fresh address space
and its channel on fd 3, and it serves each child only the requests that child has a
reason to make. A child that dies or misbehaves ends the whole daemon.

Heavy, parent-only modules (lark, pyroute2's message classes) are imported in
:func:`parent_main`, never at module level: the children import this module too, to
parse their command line.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import getopt
import os
import pwd
import signal
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from dhcpleased import defs, imsg, sdnotify
from dhcpleased.imsg import ImsgError, ImsgType, type_name
from dhcpleased.ipc import Channel, Imsg
from dhcpleased.log import (
    crash_report,
    exception_handler,
    install_hooks,
    log,
    log_init,
    log_setverbose,
)

if TYPE_CHECKING:
    from dhcpleased.kroute import KRoute
    from dhcpleased.packet import Route
    from dhcpleased.parse import Config, IfaceConf
    from dhcpleased.resolver import Resolver

USAGE = "usage: dhcpleased [-dnv] [-f file] [-s socket] [interface ...]"


class UsageError(Exception):
    """Bad command line: print the usage line and exit 1."""


@dataclass
class Options:
    debug: bool = False
    verbose: int = 0
    conffile: str = defs.CONF_FILE
    default_conf: bool = True
    csock: str = defs.CONTROL_SOCKET
    configtest: bool = False
    role: str = "main"  # "engine" or "frontend" for the re-executed children
    ifaces: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> Options:
    """getopt ``dEFf:ns:v`` as the original, plus interfaces named after the options."""
    try:
        opts, args = getopt.getopt(argv, "dEFf:ns:v")
    except getopt.GetoptError as err:
        raise UsageError(str(err)) from None
    o = Options()
    for flag, value in opts:
        if flag == "-d":
            o.debug = True
        elif flag == "-E":
            if o.role != "main":
                raise UsageError("-E and -F are exclusive")
            o.role = "engine"
        elif flag == "-F":
            if o.role != "main":
                raise UsageError("-E and -F are exclusive")
            o.role = "frontend"
        elif flag == "-f":
            o.conffile = value
            o.default_conf = False
        elif flag == "-n":
            o.configtest = True
        elif flag == "-s":
            o.csock = value
        elif flag == "-v":
            o.verbose += 1
    if o.role != "main" and args:
        raise UsageError("children take no interfaces")
    for name in args:
        if imsg.ifname_problem(name) is not None:  # the config parser's test too
            raise UsageError(f"invalid interface name {name!r}")
    o.ifaces = list(dict.fromkeys(args))
    return o


def child_argv(role: str, opts: Options) -> list[str]:
    """The re-exec command line of a child: same interpreter, isolated mode, fd 3 implied."""
    argv = [sys.executable, "-I", "-m", "dhcpleased", "-E" if role == "engine" else "-F"]
    if opts.debug:
        argv.append("-d")
    argv.extend(["-v"] * opts.verbose)
    return argv


def err(message: str) -> int:
    sys.stderr.write(f"dhcpleased: {message}\n")
    return 1


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError:
        sys.stderr.write(USAGE + "\n")
        return 1
    if opts.role == "engine":
        from dhcpleased import engine  # noqa: PLC0415 - only the engine child needs it

        return engine.engine_main(opts.debug, opts.verbose)
    if opts.role == "frontend":
        from dhcpleased import frontend  # noqa: PLC0415 - only the frontend child needs it

        return frontend.frontend_main(opts.debug, opts.verbose)
    return parent_main(opts)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


# --------------------------------------------------------------------------------------------
# The parent process
# --------------------------------------------------------------------------------------------

# What each child may ask of the parent; anything else means the child is compromised.
ALLOWED: dict[str, frozenset[ImsgType]] = {
    "frontend": frozenset(
        {
            ImsgType.OPEN_BPFSOCK,
            ImsgType.UPDATE_IF,
            ImsgType.CTL_RELOAD,
            ImsgType.CTL_LOG_VERBOSE,
            ImsgType.CTL_PROCINFO,
            ImsgType.MANAGE_IF,
            ImsgType.SANDBOX_UP,
        }
    ),
    "engine": frozenset(
        {
            ImsgType.CONFIGURE_INTERFACE,
            ImsgType.DECONFIGURE_INTERFACE,
            ImsgType.WITHDRAW_ROUTES,
            ImsgType.PROPOSE_RDNS,
            ImsgType.WITHDRAW_RDNS,
            ImsgType.RELEASED,
            ImsgType.SANDBOX_UP,
            ImsgType.ARP_WATCH,
            ImsgType.ARP_PROBE,
            ImsgType.ARP_ANNOUNCE,
            ImsgType.SET_MTU,
            ImsgType.RESTORE_MTU,
            ImsgType.PROPOSE_NTP,
            ImsgType.WITHDRAW_NTP,
        }
    ),
}
CHILD_EXIT_GRACE = 3.0
CONFIG_HEADROOM = 256  # RECONF_* messages queued towards a child before the parent waits
# SIGTERM with "release on exit": longest wait for the leases to be given back (the
# engine's own wait for the DHCPRELEASE to leave, defs.RELEASE_WAIT, plus netlink work).
RELEASE_EXIT_WAIT = 5.0


def take_lock(path: str) -> int | None:
    """flock the lock file; None when another instance holds it."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def make_run_dir(path: str) -> None:
    """The lock's and control socket's directory: systemd makes it (RuntimeDirectory=),
    other inits leave it to us; 0755 whatever the umask, so dhcpleasectl can reach in."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o755)


def note_pid(lockfd: int) -> None:
    """The lock names its holder (after daemonize: the pid that stays): init scripts use
    it as their pid file, with the process name checked against a stale number."""
    os.ftruncate(lockfd, 0)
    os.pwrite(lockfd, f"{os.getpid()}\n".encode(), 0)


def daemonize() -> None:
    """Detach before any event loop or thread exists (fork is only safe then)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def is_unicast(addr: IPv4Address) -> bool:
    return not (
        addr.is_unspecified
        or addr.is_multicast
        or addr.is_loopback
        or addr == IPv4Address("255.255.255.255")
        or addr in _CLASS_E
    )


_CLASS_E = IPv4Network("240.0.0.0/4")


def _if_index(name: str) -> int:
    """The kernel's index for an interface name now, 0 if there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def prefixlen(mask: IPv4Address) -> int:
    return bin(int(mask)).count("1")


def check_routes(routes: tuple[Route, ...]) -> str | None:
    """Why a route list from the engine is unacceptable, or None."""
    for r in routes:
        if int(r.dst) & ~int(r.mask) & 0xFFFFFFFF:
            return f"route {r.dst}/{r.prefixlen} has host bits set"
        if not r.gw.is_unspecified and not is_unicast(r.gw):
            return f"route gateway {r.gw} is not unicast"
    return None


def managed_ifaces(
    conf: Config, names: list[str], extra: Sequence[str] = ()
) -> dict[str, IfaceConf]:
    """Interfaces named on the command line, else every interface block of the config;
    plus ``extra``, those dhcpleasectl asked about since (MANAGE_IF)."""
    from dhcpleased.parse import IfaceConf  # noqa: PLC0415 - parent only

    if names:
        managed = {n: conf.iface(n) or IfaceConf(name=n) for n in names}
    else:
        managed = {ic.name: ic for ic in conf.ifaces}
    for n in extra:
        managed.setdefault(n, conf.iface(n) or IfaceConf(name=n))
    return managed


# Engine messages that undo what the engine did: still carried out for an interface a
# reload stopped managing (the engine sends them as it forgets the interface).
REMOVALS: frozenset[ImsgType] = frozenset(
    {
        ImsgType.DECONFIGURE_INTERFACE,
        ImsgType.WITHDRAW_ROUTES,
        ImsgType.WITHDRAW_RDNS,
        ImsgType.RELEASED,
        ImsgType.RESTORE_MTU,
        ImsgType.WITHDRAW_NTP,
    }
)
Messages = dict[str, list[tuple[ImsgType, bytes]]]


def reconf_messages(ifaces: Iterable[IfaceConf]) -> Messages:
    """The whole RECONF_* stream for each child, built before any of it is sent.

    Building is where a value could be refused (ImsgError): doing it all first means a
    reload either goes out whole or not at all, never half-sent.  The parser checks each
    value with these same payloads, so a config ``-n`` accepts never fails here.
    """
    out: Messages = {"frontend": [], "engine": []}
    for ic in ifaces:
        ignore = (defs.IGN_DNS if ic.ignore_dns else 0) | (
            defs.IGN_ROUTES if ic.ignore_routes else 0
        )
        ignore |= (defs.IGN_MTU if ic.ignore_mtu else 0) | (defs.IGN_NTP if ic.ignore_ntp else 0)
        common = [
            (
                ImsgType.RECONF_IFACE,
                imsg.IfaceConf(
                    ic.name,
                    ignore,
                    ic.ignore_servers,
                    ic.prefer_ipv6,
                    ic.rapid_commit,
                    ic.arp_probe,
                ).pack(),
            )
        ]
        if ic.vc_id is not None:
            vc_id = imsg.OptionBytes(defs.DHO_DHCP_CLASS_IDENTIFIER, ic.vc_id)
            common.append((ImsgType.RECONF_VC_ID, vc_id.pack()))
        if ic.c_id is not None:
            c_id = imsg.OptionBytes(defs.DHO_DHCP_CLIENT_IDENTIFIER, ic.c_id)
            common.append((ImsgType.RECONF_C_ID, c_id.pack()))
        out["engine"] += common
        out["frontend"] += common  # only the frontend needs the host name
        if ic.h_name is not None:
            h_name = imsg.HostName(ic.h_name.encode("utf-8", "surrogateescape"))
            out["frontend"].append((ImsgType.RECONF_H_NAME, h_name.pack()))
    for stream in out.values():
        stream.insert(0, (ImsgType.RECONF_CONF, b""))
        stream.append((ImsgType.RECONF_END, b""))
    return out


def printable(text: str) -> str:
    """A config's bytes as they may reach a log or a terminal: escapes for the rest."""
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def reload_report(errors: Sequence[str]) -> imsg.ReloadResult:
    """The dhcpleasectl answer of a failed reload: as many lines as fit, then a count."""
    lines: list[str] = []
    size = 0
    for i, line in enumerate(errors):
        more = f"... and {len(errors) - i} more"
        if size + len(line.encode()) + len(more) + 2 >= imsg.RELOAD_TEXT_SIZE:
            lines.append(more)
            break
        lines.append(line)
        size += len(line.encode()) + 1
    return imsg.ReloadResult(False, "\n".join(lines))


def spawn_child(role: str, opts: Options) -> tuple[int, socket.socket]:
    """Re-execute ourselves as a child with its channel on fd 3; needs no event loop, so
    the parent can start both children before its own slow imports."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    pid = os.posix_spawn(
        sys.executable,
        child_argv(role, opts),
        env,
        file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), 3)],
    )
    theirs.close()
    return pid, mine


class Child:
    """A re-executed child: its pid, a pidfd to notice its death, its channel."""

    def __init__(self, role: str, pid: int, channel: Channel) -> None:
        self.role = role
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.channel = channel
        self.status: int | None = None


class Main:
    """The parent's event-driven half: main_dispatch_frontend/main_dispatch_engine."""

    def __init__(
        self,
        *,
        opts: Options,
        conf: Config,
        kroute: KRoute,
        resolver: Resolver,
        load_config: Callable[[], Config],
        open_bpfsock: Callable[[int], socket.socket],
        open_bcastsock: Callable[[int], socket.socket],
        open_udpsock: Callable[[int, IPv4Address, IPv4Address | None], socket.socket],
        open_routesock: Callable[[], socket.socket],
        control_sock: socket.socket | None = None,
        spawned: dict[str, tuple[int, socket.socket]] | None = None,
    ) -> None:
        self.opts = opts
        self.spawned = spawned  # children already started by parent_main, if any
        self.conf = conf
        self.managed = managed_ifaces(conf, opts.ifaces)
        # Every name managed since start-up: a message about one a reload has dropped
        # since may still be in flight (stale, not hostile); any other name is hostile.
        self.ever_managed: set[str] = set(self.managed)
        self.kroute = kroute
        self.resolver = resolver
        self.load_config = load_config
        self.open_bpfsock = open_bpfsock
        self.open_bcastsock = open_bcastsock
        self.open_udpsock = open_udpsock
        self.open_routesock = open_routesock
        self.control_sock = control_sock  # listening, handed to the frontend (CONTROLFD)
        self.ctl_ifaces: list[str] = []  # interfaces dhcpleasectl made us manage
        self.ctl_uid = 0  # whose request tokens MANAGE_IF accepts: root's (tests: their own)
        self.loop = asyncio.get_running_loop()
        self.children: dict[str, Child] = {}
        self.ifnames: dict[int, str] = {}  # if_index -> name, learned from the frontend
        self.udp_absorb: dict[int, socket.socket] = {}  # if_index -> unconnected addr:68
        # if_index -> the server of the renewal socket the frontend holds (none: no entry)
        self.udp_servers: dict[int, IPv4Address] = {}
        self.configured: dict[int, IPv4Address] = {}  # if_index -> the address we put there
        self.done: asyncio.Future[int] = self.loop.create_future()
        self.stopping = False
        self.work: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self.notifier = sdnotify.Notifier()  # connected now, before any sandbox goes up
        self.bound: dict[str, str] = {}  # ifname -> "addr/len", for systemd's STATUS=
        self.loop.set_exception_handler(exception_handler(self.fail))  # a bug ends the daemon
        self.releasing: set[int] | None = None  # on exit: leases still being given back
        from dhcpleased.arp import ParentArp  # noqa: PLC0415 - parent only (bpf, pyroute2)

        self.arp = ParentArp(lambda: self.children["frontend"].channel, self.loop.time)
        self.sandboxed: set[str] = set()  # "main" and each child whose sandbox is up

    # --- life cycle ---------------------------------------------------------------------------
    async def run(self) -> int:
        spawned = self.spawned or {r: spawn_child(r, self.opts) for r in ("frontend", "engine")}
        for role, (pid, mine) in spawned.items():
            self.children[role] = self.adopt(role, pid, mine)
        await self.kroute.open()
        fe, en = self.children["frontend"].channel, self.children["engine"].channel
        fe_end, en_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fe.compose(ImsgType.SOCKET_IPC, fd=fe_end.detach())
        en.compose(ImsgType.SOCKET_IPC, fd=en_end.detach())
        fe.compose(ImsgType.ROUTESOCK, fd=self.open_routesock().detach())
        if self.control_sock is not None:
            fe.compose(ImsgType.CONTROLFD, fd=self.control_sock.detach())
        await self.send_config(reconf_messages(self.managed.values()))
        fe.compose(ImsgType.STARTUP)
        from dhcpleased import sandbox  # noqa: PLC0415 - the parent's half of sandbox.py

        try:  # the one process that may run resolvconf/resolvectl, before our sandbox
            self.resolver.start(self.fail)
        except OSError as e:
            self.fail(f"cannot start the DNS helper: {e.strerror or e}")
        try:  # after the spawns: the children drop root's capabilities themselves
            sandbox.enter_parent(self.opts.conffile, *self.resolver.writable())
        except sandbox.SandboxError as e:
            self.fail(f"sandbox: {e}")  # never READY: systemd sees the failed start
        worker = None
        if not self.done.done():
            try:
                await self.resolver.started()
            except OSError:
                pass  # the helper's end was reported (fail)
        if not self.done.done():
            for signo in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(signo, self.terminate)
            self.loop.add_signal_handler(signal.SIGHUP, self.reload)
            worker = self.loop.create_task(self.worker())
            log.info("startup")
            self.sandbox_up("main")
        code = await self.done
        self.notifier.stopping()
        if worker is not None:
            worker.cancel()
        await self.stop_children()
        await self.resolver.close()
        await self.kroute.close()
        if code == 0:
            log.info("terminating")
        return code

    def adopt(self, role: str, pid: int, mine: socket.socket) -> Child:
        """Watch a spawned child: its channel and a pidfd to learn of its death."""
        channel = Channel(
            mine,
            lambda m: self.dispatch(role, m),
            lambda reason: self.lost(role, reason),
            name=role,
        )
        child = Child(role, pid, channel)
        self.loop.add_reader(child.pidfd, self.reap, child)
        channel.start()
        return child

    def reap(self, child: Child) -> None:
        self.loop.remove_reader(child.pidfd)
        try:
            _, status = os.waitpid(child.pid, 0)
        except ChildProcessError:
            status = 0
        child.status = status
        os.close(child.pidfd)
        if not self.stopping:
            if os.WIFSIGNALED(status):
                how = f"terminated by signal {os.WTERMSIG(status)}"
            else:
                how = f"exited with status {os.waitstatus_to_exitcode(status)}"
            self.fail(f"{child.role} {how}")

    def lost(self, role: str, reason: str) -> None:
        # A dying child closes its channels before it becomes reapable (one that crashed
        # still unwinds its loop and interpreter): give the pidfd time so that the log
        # line says how it died, not just that it did.
        if not self.stopping:
            self.loop.call_later(1.0, self.fail, f"lost connection to {role}: {reason}")

    def fail(self, message: str) -> None:
        """A child died or misbehaved: log once, then end the whole daemon with status 1."""
        if not self.done.done():
            log.critical("fatal in main: %s", message)
            self.done.set_result(1)

    def finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

    def terminate(self) -> None:
        """SIGTERM/SIGINT: exit, once the interfaces with "release on exit" have given their
        lease back (DHCPRELEASE sent, address, routes and DNS gone) or RELEASE_EXIT_WAIT
        has passed; a second signal exits at once."""
        if self.releasing is not None:
            self.finish(0)
            return
        wanted = set()
        for if_index, name in self.ifnames.items():
            ic = self.managed.get(name)
            if ic is not None and ic.release_on_exit and _if_index(name) == if_index:
                wanted.add(if_index)
        if not wanted:
            self.finish(0)
            return
        self.releasing = wanted
        log.info(
            "releasing the leases of %s before exiting",
            " ".join(sorted(self.ifnames[i] for i in wanted)),
        )
        for if_index in sorted(wanted):
            self.children["engine"].channel.compose(
                ImsgType.REQUEST_RELEASE, imsg.IfIndex(if_index).pack()
            )
        self.loop.call_later(RELEASE_EXIT_WAIT, self.release_timeout)

    def release_timeout(self) -> None:
        if self.releasing:
            names = " ".join(sorted(self.ifnames[i] for i in self.releasing))
            log.warning("exiting before the leases of %s were released", names)
        self.finish(0)

    def sandbox_up(self, role: str) -> None:
        """READY=1 once all three sandboxes are in place (a lease may come later)."""
        if role in self.sandboxed:
            self.fail(f"{role} reported its sandbox twice")
            return
        self.sandboxed.add(role)
        if len(self.sandboxed) == 3 and not self.done.done():
            self.notifier.ready(self.status_line())

    def status_line(self) -> str:
        """systemd's STATUS=: the addresses this daemon configured, one line."""
        return ", ".join(f"{n}: {a}" for n, a in self.bound.items()) or "no lease yet"

    async def stop_children(self) -> None:
        """Close the channels (EOF tells each child to exit), then reap; SIGKILL stragglers."""
        self.stopping = True
        for child in self.children.values():
            child.channel.close()
        deadline = self.loop.time() + CHILD_EXIT_GRACE
        while any(c.status is None for c in self.children.values()):
            if self.loop.time() > deadline:
                for c in self.children.values():
                    if c.status is None:
                        log.warning("%s did not exit, killing it", c.role)
                        signal.pidfd_send_signal(c.pidfd, signal.SIGKILL)
                deadline = self.loop.time() + CHILD_EXIT_GRACE
            await asyncio.sleep(0.02)

    async def worker(self) -> None:
        """Privileged work runs in message order, one job at a time."""
        while True:
            job = await self.work.get()
            try:
                await job()
            except OSError as e:  # the kernel said no: log it, keep serving
                log.warning("%s", e)
            except Exception as e:  # a bug here must end the daemon, not stall it
                self.fail(crash_report("unexpected exception in privileged work", e))
                return

    # --- configuration ------------------------------------------------------------------------
    async def send_config(self, messages: Messages) -> None:
        """RECONF_* stream to both children, built whole beforehand (reconf_messages).

        Paced: a config of a thousand interfaces is thousands of messages, more than a
        channel queues before it gives up on its peer (which ends the daemon), so the
        parent waits while a child is that far behind.  Streams go out from the worker,
        one job at a time: two never interleave, and work queued after a reload reaches
        the children after its config.
        """
        for role, child in self.children.items():
            for mtype, data in messages[role]:
                while child.channel.pending >= CONFIG_HEADROOM and not child.channel.closed:
                    await asyncio.sleep(0.01)
                child.channel.compose(mtype, data)

    def set_managed(self, managed: dict[str, IfaceConf]) -> None:
        self.managed = managed
        self.ever_managed.update(managed)

    def reload(self, peerid: int = 0) -> None:
        """Read the config again and send it whole, or keep the old one running.

        Whatever goes wrong (the file, the parser, a value that would not fit an imsg, a
        bug) leaves the running configuration alone and systemd READY again; the client
        of a ``dhcpleasectl reload`` (``peerid``) gets the verdict with the messages.
        """
        from dhcpleased.parse import ConfigError  # noqa: PLC0415 - parent only

        self.notifier.reloading()
        try:
            conf = self.load_config()
            managed = managed_ifaces(conf, self.opts.ifaces, self.ctl_ifaces)
            messages = reconf_messages(managed.values())
        except ConfigError as e:
            errors = [printable(line) for line in e.errors]
        except Exception as e:  # a reload must never take the daemon down
            errors = [printable(f"{self.opts.conffile}: {e!r}")]
        else:
            self.conf = conf
            self.set_managed(managed)
            self.work.put_nowait(partial(self.reloaded, peerid, messages))
            return
        for line in errors:
            log.warning("%s", line)
        log.warning("configuration reload failed, the running configuration is unchanged")
        self.work.put_nowait(partial(self.reloaded, peerid, None, reload_report(errors)))

    async def reloaded(
        self, peerid: int, messages: Messages | None, failed: imsg.ReloadResult | None = None
    ) -> None:
        """The end of a reload, in the worker's order: the config out, then the verdict
        to the dhcpleasectl client (peerid 0: SIGHUP, nobody to answer), then READY=1."""
        if messages is not None:
            await self.send_config(messages)
            log.info("configuration reloaded")
        if peerid:
            result = failed or imsg.ReloadResult(True, "")
            fe = self.children["frontend"].channel
            fe.compose(ImsgType.CTL_RELOAD_RESULT, result.pack(), peerid=peerid)
        self.notifier.ready(self.status_line())

    # --- dispatch -----------------------------------------------------------------------------
    def dispatch(self, role: str, msg: Imsg) -> None:
        """main_dispatch_frontend / main_dispatch_engine: checked, then served in order."""
        if self.done.done():
            return
        try:
            mtype = ImsgType(msg.type)
        except ValueError:
            mtype = None
        if mtype is None or mtype not in ALLOWED[role]:
            self.close_fd(msg)
            self.fail(f"{role} sent {type_name(msg.type)}, which it may not send")
            return
        if (msg.fd is not None) != (role == "frontend" and mtype is ImsgType.MANAGE_IF):
            self.close_fd(msg)
            how = "a descriptor with" if msg.fd is not None else "no descriptor with"
            self.fail(f"{role} sent {how} {type_name(msg.type)}")
            return
        try:
            if mtype is ImsgType.SANDBOX_UP:
                imsg.Empty.unpack(msg.data)
                self.sandbox_up(role)
            elif role == "frontend":
                self.dispatch_frontend(mtype, msg.data, msg.peerid, msg.fd)
            else:
                self.dispatch_engine(mtype, msg.data)
        except ImsgError as e:
            self.fail(f"{role}: invalid {type_name(msg.type)}: {e}")

    @staticmethod
    def close_fd(msg: Imsg) -> None:
        if msg.fd is not None:
            os.close(msg.fd)

    def known_ifname(self, if_index: int) -> str | None:
        """The engine only knows interfaces the parent told it about (UPDATE_IF)."""
        name = self.ifnames.get(if_index)  # only ever names of managed interfaces
        if name is None:
            self.fail(f"engine asked about unmanaged interface index {if_index}")
        return name

    def was_managed(self, role: str, what: str, name: str) -> bool:
        """Managed now or since start-up (a message sent before a reload dropped it)."""
        if name in self.ever_managed:
            return True
        self.fail(f"{role} sent {what} for unmanaged interface {name}")
        return False

    def serve(self, mtype: ImsgType, name: str, job: Callable[[], Awaitable[None]]) -> None:
        """Queue privileged work for an interface, checked again when its turn comes.

        A reload may have stopped managing the interface meanwhile (or before the child
        heard of it): then only the engine's undoing (REMOVALS) is still carried out.
        """

        async def checked() -> None:
            if name in self.managed or mtype in REMOVALS:
                await job()
            else:
                log.debug("%s: %s after a reload dropped it, ignored", name, type_name(mtype))

        self.work.put_nowait(checked)

    def dispatch_frontend(
        self, mtype: ImsgType, data: bytes, peerid: int = 0, fd: int | None = None
    ) -> None:
        """main_dispatch_frontend; ``peerid`` names the dhcpleasectl client of a CTL_*,
        ``fd`` is MANAGE_IF's request token (and only its)."""
        if mtype is ImsgType.OPEN_BPFSOCK:
            if_index = imsg.IfIndex.unpack(data).if_index
            try:
                name = socket.if_indextoname(if_index)
            except OSError:
                log.debug("interface index %d is gone", if_index)
                return
            if self.was_managed("frontend", "OPEN_BPFSOCK", name):
                self.serve(mtype, name, partial(self.send_bpfsock, if_index, name))
        elif mtype is ImsgType.UPDATE_IF:
            info = imsg.IfInfo.unpack(data)
            if self.was_managed("frontend", "UPDATE_IF", info.if_name):
                self.serve(mtype, info.if_name, partial(self.update_if, info))
        elif mtype is ImsgType.CTL_RELOAD:
            imsg.Empty.unpack(data)
            self.reload(peerid)
        elif mtype is ImsgType.CTL_LOG_VERBOSE:
            log_setverbose(imsg.Verbose.unpack(data).verbose)
        elif mtype is ImsgType.CTL_PROCINFO:
            imsg.Empty.unpack(data)
            self.children["frontend"].channel.compose(
                ImsgType.PROCINFO, self.procinfo().pack(), peerid=peerid
            )
        elif mtype is ImsgType.MANAGE_IF:
            assert fd is not None
            self.manage_if(imsg.IfIndex.unpack(data).if_index, fd)

    def procinfo(self) -> imsg.ProcInfo:
        from dhcpleased import procinfo  # noqa: PLC0415 - cheap, but only the parent's concern

        return procinfo.snapshot(procinfo.open_status(), "main")

    def manage_if(self, if_index: int, token: int) -> None:
        """dhcpleasectl asked about an interface we leave alone: manage it from now on.

        The Linux twin of dhcpleasectl setting AUTOCONF4, which only root can set: the
        parent reads root's request itself, from the token the client passed along
        (:func:`control.read_request_token`), so a compromised frontend cannot make it
        manage, and open sockets on, an interface nobody asked for. A token that does not
        prove it, or names another interface, ends the daemon. The interface keeps its
        config block, if it has one, and survives reloads; the new configuration goes to
        both children, whose config diff picks the interface up like any new one.
        """
        from dhcpleased import control  # noqa: PLC0415 - imported by parent_main already

        daemon = {os.getpid(), *(c.pid for c in self.children.values())}
        try:
            asked = control.read_request_token(token, daemon, self.ctl_uid)
        except ImsgError as e:
            self.fail(f"frontend sent MANAGE_IF without a request from root: {e}")
            return
        if asked != if_index:
            self.fail(f"frontend sent MANAGE_IF for index {if_index}, root asked for {asked}")
            return
        try:
            name = socket.if_indextoname(if_index)
        except OSError:
            log.debug("dhcpleasectl asked about interface index %d, which is gone", if_index)
            return
        if name not in self.managed:
            problem = imsg.ifname_problem(name)
            if problem is not None:  # a name the kernel allows but no imsg carries
                log.warning("cannot manage %s: %s", printable(name), problem)
                return
            log.info("managing %s, as dhcpleasectl asked", name)
            self.ctl_ifaces.append(name)
            self.set_managed(managed_ifaces(self.conf, self.opts.ifaces, self.ctl_ifaces))
            self.work.put_nowait(partial(self.send_config, reconf_messages(self.managed.values())))
        self.work.put_nowait(partial(self.set_up, if_index, name))

    async def set_up(self, if_index: int, name: str) -> None:
        """dhcpleasectl IF on a down interface sets IFF_UP, as the original does."""
        if await self.kroute.set_up(if_index):
            log.info("set %s up, as dhcpleasectl asked", name)

    def dispatch_engine(self, mtype: ImsgType, data: bytes) -> None:
        """main_dispatch_engine."""
        if mtype in (
            ImsgType.CONFIGURE_INTERFACE,
            ImsgType.DECONFIGURE_INTERFACE,
            ImsgType.WITHDRAW_ROUTES,
        ):
            ci = imsg.ConfigureInterface.unpack(data)
            name = self.known_ifname(ci.if_index)
            if name is None:
                return
            if mtype is not ImsgType.WITHDRAW_ROUTES and not is_unicast(ci.addr):
                self.fail(f"engine sent a non-unicast address {ci.addr}")
                return
            # Deconfigure may carry mask 0: an address remembered from the lease file
            if mtype is ImsgType.CONFIGURE_INTERFACE and prefixlen(ci.mask) == 0:
                self.fail("engine sent an empty netmask")
                return
            why = check_routes(ci.routes)
            if why is not None:
                self.fail(f"engine sent a bad route: {why}")
                return
            if mtype is ImsgType.CONFIGURE_INTERFACE:
                self.serve(mtype, name, partial(self.configure, name, ci))
            elif mtype is ImsgType.DECONFIGURE_INTERFACE:
                self.serve(mtype, name, partial(self.deconfigure, name, ci))
            else:
                job = partial(self.kroute.withdraw_routes, ci.if_index, ci.routes)
                self.serve(mtype, name, job)
        elif mtype in (ImsgType.PROPOSE_RDNS, ImsgType.WITHDRAW_RDNS):
            rdns = imsg.ProposeRdns.unpack(data)
            name = self.known_ifname(rdns.if_index)
            if name is None:
                return
            if mtype is ImsgType.WITHDRAW_RDNS:
                if rdns.rdns:
                    self.fail("engine sent WITHDRAW_RDNS with nameservers")
                    return
                self.serve(mtype, name, partial(self.withdraw_rdns, name))
                return
            if not all(is_unicast(a) for a in rdns.rdns):
                self.fail("engine proposed a non-unicast nameserver")
                return
            self.serve(mtype, name, partial(self.propose_rdns, name, rdns))
        elif mtype is ImsgType.RELEASED:
            if_index = imsg.IfIndex.unpack(data).if_index
            name = self.known_ifname(if_index)
            if name is not None:  # queued after the DECONFIGURE that came before it
                self.serve(mtype, name, partial(self.released, name, if_index))
        elif mtype in (ImsgType.ARP_WATCH, ImsgType.ARP_PROBE, ImsgType.ARP_ANNOUNCE):
            req = imsg.ArpReq.unpack(data)
            name = self.known_ifname(req.if_index)
            if name is None:
                return
            if mtype is ImsgType.ARP_WATCH and req.address.is_unspecified:  # an undo: always
                self.work.put_nowait(partial(self.arp.unwatch, req.if_index))
            elif not is_unicast(req.address):
                self.fail(f"engine sent {type_name(mtype)} for {req.address}")
            else:
                self.serve(mtype, name, partial(self.arp_request, mtype, name, req))
        elif mtype is ImsgType.SET_MTU:
            mtu = imsg.IfMtu.unpack(data)  # 576..65535; the device's own limits are kroute's
            name = self.known_ifname(mtu.if_index)
            if name is not None:
                self.serve(mtype, name, partial(self.set_mtu, name, mtu.if_index, mtu.mtu))
        elif mtype is ImsgType.RESTORE_MTU:
            if_index = imsg.IfIndex.unpack(data).if_index
            name = self.known_ifname(if_index)
            if name is not None:
                self.serve(mtype, name, partial(self.restore_mtu, name, if_index))
        elif mtype in (ImsgType.PROPOSE_NTP, ImsgType.WITHDRAW_NTP):
            ntp = imsg.NtpServers.unpack(data)
            name = self.known_ifname(ntp.if_index)
            if name is None:
                return
            if mtype is ImsgType.WITHDRAW_NTP:
                if ntp.servers:
                    self.fail("engine sent WITHDRAW_NTP with servers")
                    return
                self.serve(mtype, name, partial(self.withdraw_ntp, name))
                return
            if not ntp.servers or not all(is_unicast(a) for a in ntp.servers):
                self.fail("engine proposed no NTP server or a non-unicast one")
                return
            self.serve(mtype, name, partial(self.propose_ntp, name, ntp.servers))

    async def arp_request(self, mtype: ImsgType, name: str, req: imsg.ArpReq) -> None:
        """ARP_WATCH/PROBE/ANNOUNCE for an interface with ``arp probe`` (arp.py's bounds)."""
        ic = self.managed.get(name)
        if ic is None or not ic.arp_probe:  # a reload turned it off meanwhile
            log.debug("%s: %s without arp probe, ignored", name, type_name(mtype))
        elif mtype is ImsgType.ARP_WATCH:
            await self.arp.watch(req.if_index, name, req.address)
        else:
            configured = self.configured.get(req.if_index, IPv4Address(0))
            announce = mtype is ImsgType.ARP_ANNOUNCE
            await self.arp.send(req.if_index, name, req.address, configured if announce else None)

    # --- privileged work ----------------------------------------------------------------------
    async def send_bpfsock(self, if_index: int, name: str) -> None:
        """The receive-only packet socket and the broadcast socket, both or neither."""
        try:
            bcast = self.open_bcastsock(if_index)
            try:
                sock = self.open_bpfsock(if_index)
            except BaseException:
                bcast.close()
                raise
        except OSError as e:
            log.warning("cannot open packet socket on %s: %s", name, e.strerror)
            return
        fe = self.children["frontend"].channel
        fe.compose(ImsgType.BCASTSOCK, imsg.IfIndex(if_index).pack(), fd=bcast.detach())
        fe.compose(ImsgType.BPFSOCK, imsg.IfIndex(if_index).pack(), fd=sock.detach())

    async def update_if(self, info: imsg.IfInfo) -> None:
        """Check the frontend's word against the kernel, add the lease text, tell the engine."""
        if _if_index(info.if_name) != info.if_index:
            log.debug("%s: index %d is stale, ignoring update", info.if_name, info.if_index)
            return
        self.ifnames[info.if_index] = info.if_name
        lease = self.read_lease(info.if_name)
        self.children["engine"].channel.compose(
            ImsgType.UPDATE_IF,
            imsg.IfInfo(
                info.if_index,
                info.if_name,
                info.rdomain,
                info.running,
                info.link_state,
                info.hw_address,
                lease,
            ).pack(),
        )

    async def configure(self, name: str, ci: imsg.ConfigureInterface) -> None:
        """Every ACK: the address's lifetime starts over at the lease time (a renewal of
        the same address changes nothing else), then the lease file."""
        again = self.configured.get(ci.if_index) == ci.addr
        if again:
            log.debug("%s on %s renewed for %d s", ci.addr, name, ci.lease_time)
        else:
            log.info("adding %s to %s (lease from %s)", ci.addr, name, ci.server)
        await self.kroute.configure(ci.if_index, ci.addr, ci.mask, ci.routes, ci.lease_time)
        self.configured[ci.if_index] = ci.addr
        bound = f"{ci.addr}/{prefixlen(ci.mask)}"
        if self.bound.get(name) != bound:
            self.bound[name] = bound
            self.notifier.status(self.status_line())
        if not again or self.udp_servers.get(ci.if_index) != ci.server:
            self.hand_udpsock(name, ci)
        self.write_lease(name, ci)

    def hand_udpsock(self, name: str, ci: imsg.ConfigureInterface) -> None:
        """The renewal sockets of a new address or server: one kept here (it takes the
        other servers' unicast replies, bpf.open_udpsock), one connected to the server
        for the frontend's unicast renewals."""
        self.close_udpsock(ci.if_index)
        try:
            self.udp_absorb[ci.if_index] = self.open_udpsock(ci.if_index, ci.addr, None)
            if not ci.server.is_unspecified:
                udp = self.open_udpsock(ci.if_index, ci.addr, ci.server)
                self.children["frontend"].channel.compose(
                    ImsgType.UDPSOCK,
                    imsg.UdpSock(ci.if_index, ci.server).pack(),
                    fd=udp.detach(),
                )
                self.udp_servers[ci.if_index] = ci.server
        except OSError as e:
            log.warning("%s: cannot bind %s:%d: %s", name, ci.addr, defs.CLIENT_PORT, e.strerror)

    def close_udpsock(self, if_index: int) -> None:
        """Drop the renewal sockets of an address that is going or being replaced."""
        absorb = self.udp_absorb.pop(if_index, None)
        if absorb is not None:
            absorb.close()
        if self.udp_servers.pop(if_index, None) is not None:  # the frontend holds one
            self.children["frontend"].channel.compose(
                ImsgType.CLOSE_UDPSOCK, imsg.IfIndex(if_index).pack()
            )

    async def deconfigure(self, name: str, ci: imsg.ConfigureInterface) -> None:
        log.info("deleting %s from %s (lease from %s)", ci.addr, name, ci.server)
        self.close_udpsock(ci.if_index)
        self.configured.pop(ci.if_index, None)
        await self.kroute.deconfigure(ci.if_index, ci.addr, ci.mask, ci.routes)
        if self.bound.pop(name, None) is not None:
            self.notifier.status(self.status_line())

    async def released(self, name: str, if_index: int) -> None:
        """The lease was given back: no INIT-REBOOT for it; on exit, one fewer to wait for."""
        log.info("lease on %s released", name)
        try:
            os.unlink(self.lease_path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove lease file of %s: %s", name, e.strerror)
        if self.releasing is not None:
            self.releasing.discard(if_index)
            if not self.releasing:
                self.finish(0)

    async def propose_rdns(self, name: str, rdns: imsg.ProposeRdns) -> None:
        log.info("adding nameservers %s on %s", " ".join(map(str, rdns.rdns)), name)
        await self.resolver.propose(name, rdns.rdns, rdns.domain, rdns.search)

    async def withdraw_rdns(self, name: str) -> None:
        log.info("deleting nameservers on %s", name)
        await self.resolver.withdraw(name)

    def ignores(self, name: str, what: str) -> bool:
        """The interface's block says "ignore mtu"/"ignore ntp" now: what the engine asked
        before it heard of that (a reload) is not done."""
        ic = self.managed.get(name)
        ignored = ic is None or getattr(ic, f"ignore_{what}")
        if ignored:
            log.debug("%s: ignore %s: not applying the lease's %s", name, what, what.upper())
        return ignored

    async def set_mtu(self, name: str, if_index: int, mtu: int) -> None:
        if self.ignores(name, "mtu"):
            return
        try:
            before = await self.kroute.set_mtu(if_index, mtu)
        except OSError as e:
            if e.errno != errno.ERANGE:
                raise
            log.warning("%s: refusing MTU %d from the lease: %s", name, mtu, e.strerror)
            return
        if before != mtu:
            log.info("setting MTU of %s to %d (was %d)", name, mtu, before)

    async def restore_mtu(self, name: str, if_index: int) -> None:
        try:
            done = await self.kroute.restore_mtu(if_index)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            log.warning("%s: not restoring the MTU: %s", name, e.strerror)
            return
        if done is not None and done[0] != done[1]:
            log.info("restoring MTU of %s to %d (was %d)", name, done[1], done[0])

    async def propose_ntp(self, name: str, servers: tuple[IPv4Address, ...]) -> None:
        if self.ignores(name, "ntp"):
            return
        text = " ".join(map(str, servers))
        if self.resolver.ntp_mode == "none":
            log.debug("NTP servers %s on %s: no time daemon takes them", text, name)
            return
        log.info("adding NTP servers %s on %s", text, name)
        await self.resolver.propose_ntp(name, servers)

    async def withdraw_ntp(self, name: str) -> None:
        if self.resolver.ntp_mode != "none":
            log.info("deleting NTP servers on %s", name)
            await self.resolver.withdraw_ntp(name)

    # --- lease files --------------------------------------------------------------------------
    @staticmethod
    def lease_path(name: str) -> str:
        return os.path.join(defs.LEASE_DIR, name)

    def read_lease(self, name: str) -> str:
        """The lease text, or "" when there is none (or none that is a regular file)."""
        fd = open_lease(self.lease_path(name))
        if fd is None:
            return ""
        raw = b""
        try:
            while len(raw) < defs.LEASE_SIZE - 1:
                chunk = os.read(fd, defs.LEASE_SIZE - 1 - len(raw))
                if not chunk:
                    break
                raw += chunk
        except OSError as e:
            log.warning("cannot read lease file for %s: %s", name, e.strerror)
            return ""
        finally:
            os.close(fd)
        # The file is ours, but a damaged one must not make the parent send a bad imsg.
        return "".join(c if c.isascii() and c != "\0" else "?" for c in raw.decode("latin-1"))

    def write_lease(self, name: str, ci: imsg.ConfigureInterface) -> None:
        """A new file (mode 0644) in the lease directory, renamed over: never a torn one."""
        from dhcpleased.dnshelper import write_atomic  # noqa: PLC0415 - parent only
        from dhcpleased.lease import Lease, render_lease  # noqa: PLC0415 - cheap, parent only

        text = render_lease(
            Lease(
                ip=ci.addr,
                next_server=ci.siaddr,
                filename=ci.file.decode("ascii"),
                host_name=ci.host_name,
                domain_name=ci.domain_name,
            )
        )
        path = self.lease_path(name)
        try:
            st = lstat_or_none(path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                move_aside(path, st)  # rename cannot replace a directory
            write_atomic(path, text.encode(), 0o644)
        except OSError as e:
            log.warning("cannot write lease file for %s: %s", name, e.strerror)


# Lease files that are not files: a FIFO would block the parent for ever, a directory make
# every write fail, a link or a device read what it points at.  Such an object is moved
# aside (renamed in place, whatever it is) with a warning and the daemon carries on.
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def move_aside(path: str, st: os.stat_result) -> None:
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
    aside = f"{path}.aside-{os.urandom(4).hex()}"
    try:
        os.rename(path, aside)
    except OSError as e:
        log.warning("lease file %s is %s and cannot be moved aside: %s", path, kind, e.strerror)
    else:
        log.warning("lease file %s is %s: moved aside to %s", path, kind, aside)


def open_lease(path: str) -> int | None:
    """A descriptor of the regular file at path, or None; never follows a link or blocks."""
    try:
        st = lstat_or_none(path)
        if st is None:
            return None
        if not stat.S_ISREG(st.st_mode):  # not even opened: a device may act on open
            move_aside(path, st)
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(path, flags)
    except OSError as e:
        log.warning("cannot read lease file %s: %s", path, e.strerror)
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the lstat: next time
        os.close(fd)
        return None
    return fd


def parent_main(opts: Options) -> int:
    """Startup checks in the original's order, then spawn the children and serve them."""
    from dhcpleased import parse  # noqa: PLC0415 - lark stays out of the children

    if opts.configtest:
        return parse.configtest(opts.conffile, default=opts.default_conf, verbose=opts.verbose)

    # read again on SIGHUP, after daemonize's chdir("/"): the path must not be relative
    opts.conffile = os.path.abspath(opts.conffile)

    def load() -> Config:
        return parse.load_config(opts.conffile, default=opts.default_conf, regular=True)

    try:
        conf = load()
    except parse.ConfigError as e:
        from dhcpleased.printconf import write_errors  # noqa: PLC0415 - parent only

        write_errors(e.errors)
        return 1
    if os.geteuid() != 0:
        return err("need root privileges")
    os.closerange(3, 1 << 16)
    os.umask(0o022)  # leases and resolv.conf are born 0644: the sandboxed parent cannot chmod
    try:
        make_run_dir(defs.RUN_DIR)
        lockfd = take_lock(defs.LOCK_FILE)
    except OSError as e:
        return err(f"{e.filename or defs.LOCK_FILE}: {e.strerror}")
    if lockfd is None:
        return err("already running")
    try:
        pwd.getpwnam(defs.DHCPLEASED_USER)
    except KeyError:
        return err(f"unknown user {defs.DHCPLEASED_USER}")
    for name in opts.ifaces:
        try:
            socket.if_nametoindex(name)
        except OSError:
            return err(f"unknown interface {name}")
    try:
        os.makedirs(defs.LEASE_DIR, 0o755, exist_ok=True)
    except OSError as e:
        return err(f"{defs.LEASE_DIR}: {e.strerror}")
    from dhcpleased import control, procinfo  # noqa: PLC0415 - parent only

    try:  # after the lock: a second instance must not replace the running one's socket
        csock = control.create_socket(opts.csock)
    except OSError as e:
        return err(f"{opts.csock}: {e.strerror}")

    if not opts.debug:
        daemonize()
    note_pid(lockfd)
    log_init(opts.debug, opts.verbose, "main")
    install_hooks()  # from here on stderr may be /dev/null: a traceback goes to the log
    procinfo.open_status()  # after daemonize (a new pid), before any sandbox
    # The children start now: their start-up overlaps the parent's own slow imports.
    spawned = {role: spawn_child(role, opts) for role in ("frontend", "engine")}

    from dhcpleased import bpf, kroute, lease, resolver  # noqa: PLC0415, F401 - parent only

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def serve() -> int:
        m = Main(
            opts=opts,
            conf=conf,
            kroute=kroute.KRoute(),
            resolver=resolver.Resolver(),
            load_config=load,
            open_bpfsock=bpf.open_bpfsock,
            open_bcastsock=bpf.open_bcastsock,
            open_udpsock=bpf.open_udpsock,
            open_routesock=bpf.open_routesock,
            control_sock=csock,
            spawned=spawned,
        )
        return await m.run()

    try:
        return loop.run_until_complete(serve())
    except OSError as e:
        if e.errno == errno.EPERM:
            log.critical("fatal in main: %s (missing CAP_NET_ADMIN or CAP_NET_RAW?)", e)
        else:
            log.critical("fatal in main: %s", e)
        return 1
    except Exception as e:
        log.critical("fatal in main: %s", crash_report("unexpected exception", e))
        return 1
    finally:
        loop.close()
