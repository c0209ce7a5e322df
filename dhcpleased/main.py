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
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from dhcpleased import defs, imsg, sdnotify
from dhcpleased.imsg import ImsgError, ImsgType, type_name
from dhcpleased.ipc import Channel, Imsg
from dhcpleased.log import log, log_init, log_setverbose

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
        if not name or len(name) >= defs.IF_NAMESIZE or "/" in name or name in (".", ".."):
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
        }
    ),
    "engine": frozenset(
        {
            ImsgType.CONFIGURE_INTERFACE,
            ImsgType.DECONFIGURE_INTERFACE,
            ImsgType.WITHDRAW_ROUTES,
            ImsgType.PROPOSE_RDNS,
            ImsgType.WITHDRAW_RDNS,
        }
    ),
}
CHILD_EXIT_GRACE = 3.0


def take_lock(path: str) -> int | None:
    """flock the lock file; None when another instance holds it."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


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
        open_udpsock: Callable[[str, IPv4Address], socket.socket],
        open_routesock: Callable[[], socket.socket],
        control_sock: socket.socket | None = None,
        spawned: dict[str, tuple[int, socket.socket]] | None = None,
    ) -> None:
        self.opts = opts
        self.spawned = spawned  # children already started by parent_main, if any
        self.conf = conf
        self.managed = managed_ifaces(conf, opts.ifaces)
        self.kroute = kroute
        self.resolver = resolver
        self.load_config = load_config
        self.open_bpfsock = open_bpfsock
        self.open_udpsock = open_udpsock
        self.open_routesock = open_routesock
        self.control_sock = control_sock  # listening, handed to the frontend (CONTROLFD)
        self.ctl_ifaces: list[str] = []  # interfaces dhcpleasectl made us manage
        self.loop = asyncio.get_running_loop()
        self.children: dict[str, Child] = {}
        self.ifnames: dict[int, str] = {}  # if_index -> name, learned from the frontend
        self.udp_held: set[int] = set()
        self.configured: dict[int, IPv4Address] = {}  # if_index -> the address we put there
        self.done: asyncio.Future[int] = self.loop.create_future()
        self.stopping = False
        self.work: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self.notifier = sdnotify.Notifier()  # connected now, before any sandbox goes up
        self.bound: dict[str, str] = {}  # ifname -> "addr/len", for systemd's STATUS=

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
        self.send_config()
        fe.compose(ImsgType.STARTUP)
        from dhcpleased import sandbox  # noqa: PLC0415 - the parent's half of sandbox.py

        try:  # after the spawns: the children drop root's capabilities themselves
            sandbox.enter_parent(self.opts.conffile, self.resolver.mode, self.resolver.resolv_conf)
        except sandbox.SandboxError as e:
            self.fail(f"sandbox: {e}")  # never READY: systemd sees the failed start
        worker = None
        if not self.done.done():
            for signo in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(signo, self.finish, 0)
            self.loop.add_signal_handler(signal.SIGHUP, self.reload)
            worker = self.loop.create_task(self.worker())
            log.info("startup")
            self.notifier.ready(self.status_line())  # processes up; a lease may come later
        code = await self.done
        self.notifier.stopping()
        if worker is not None:
            worker.cancel()
        await self.stop_children()
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
        # A dying child closes its channel just before it becomes reapable: give the
        # pidfd a moment so that the log line says how it died, not just that it did.
        if not self.stopping:
            self.loop.call_later(0.2, self.fail, f"lost connection to {role}: {reason}")

    def fail(self, message: str) -> None:
        """A child died or misbehaved: log once, then end the whole daemon with status 1."""
        if not self.done.done():
            log.critical("fatal in main: %s", message)
            self.done.set_result(1)

    def finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

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
                self.fail(f"internal error: {e!r}")
                return

    # --- configuration ------------------------------------------------------------------------
    def send_config(self) -> None:
        """RECONF_* stream to both children; only the frontend needs the host name."""
        for role, child in self.children.items():
            ch = child.channel
            ch.compose(ImsgType.RECONF_CONF)
            for ic in self.managed.values():
                ignore = (defs.IGN_DNS if ic.ignore_dns else 0) | (
                    defs.IGN_ROUTES if ic.ignore_routes else 0
                )
                ch.compose(
                    ImsgType.RECONF_IFACE,
                    imsg.IfaceConf(ic.name, ignore, ic.ignore_servers, ic.prefer_ipv6).pack(),
                )
                if ic.vc_id is not None:
                    ch.compose(
                        ImsgType.RECONF_VC_ID,
                        imsg.OptionBytes(defs.DHO_DHCP_CLASS_IDENTIFIER, ic.vc_id).pack(),
                    )
                if ic.c_id is not None:
                    ch.compose(
                        ImsgType.RECONF_C_ID,
                        imsg.OptionBytes(defs.DHO_DHCP_CLIENT_IDENTIFIER, ic.c_id).pack(),
                    )
                if role == "frontend" and ic.h_name is not None:
                    ch.compose(ImsgType.RECONF_H_NAME, imsg.HostName(ic.h_name).pack())
            ch.compose(ImsgType.RECONF_END)

    def reload(self) -> None:
        from dhcpleased.parse import ConfigError  # noqa: PLC0415 - parent only

        self.notifier.reloading()
        try:
            conf = self.load_config()
        except ConfigError as e:
            for line in e.errors:
                log.warning("%s", line)
            log.warning("configuration reload failed")
            self.notifier.ready()
            return
        self.conf = conf
        self.managed = managed_ifaces(conf, self.opts.ifaces, self.ctl_ifaces)
        self.send_config()
        log.info("configuration reloaded")
        self.notifier.ready()

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
        if msg.fd is not None:
            self.close_fd(msg)
            self.fail(f"{role} sent a descriptor with {type_name(msg.type)}")
            return
        try:
            if role == "frontend":
                self.dispatch_frontend(mtype, msg.data, msg.peerid)
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
        name = self.ifnames.get(if_index)
        if name is None or name not in self.managed:
            self.fail(f"engine asked about unmanaged interface index {if_index}")
            return None
        return name

    def dispatch_frontend(self, mtype: ImsgType, data: bytes, peerid: int = 0) -> None:
        """main_dispatch_frontend; ``peerid`` names the dhcpleasectl client of a CTL_*."""
        if mtype is ImsgType.OPEN_BPFSOCK:
            if_index = imsg.IfIndex.unpack(data).if_index
            try:
                name = socket.if_indextoname(if_index)
            except OSError:
                log.debug("interface index %d is gone", if_index)
                return
            if name not in self.managed:
                self.fail(f"frontend asked for a packet socket on unmanaged interface {name}")
                return
            self.work.put_nowait(partial(self.send_bpfsock, if_index, name))
        elif mtype is ImsgType.UPDATE_IF:
            info = imsg.IfInfo.unpack(data)
            if info.if_name not in self.managed:
                self.fail(f"frontend sent UPDATE_IF for unmanaged interface {info.if_name}")
                return
            self.work.put_nowait(partial(self.update_if, info))
        elif mtype is ImsgType.CTL_RELOAD:
            imsg.Empty.unpack(data)
            self.reload()
        elif mtype is ImsgType.CTL_LOG_VERBOSE:
            log_setverbose(imsg.Verbose.unpack(data).verbose)
        elif mtype is ImsgType.CTL_PROCINFO:
            imsg.Empty.unpack(data)
            self.children["frontend"].channel.compose(
                ImsgType.PROCINFO, self.procinfo().pack(), peerid=peerid
            )
        elif mtype is ImsgType.MANAGE_IF:
            self.manage_if(imsg.IfIndex.unpack(data).if_index)

    def procinfo(self) -> imsg.ProcInfo:
        from dhcpleased import procinfo  # noqa: PLC0415 - cheap, but only the parent's concern

        return procinfo.snapshot(procinfo.open_status(), "main")

    def manage_if(self, if_index: int) -> None:
        """dhcpleasectl asked about an interface we leave alone: manage it from now on.

        The Linux twin of dhcpleasectl setting AUTOCONF4. The interface keeps its config
        block, if it has one, and survives reloads; the new configuration goes to both
        children, whose config diff picks the interface up like any new one.
        """
        try:
            name = socket.if_indextoname(if_index)
        except OSError:
            log.debug("dhcpleasectl asked about interface index %d, which is gone", if_index)
            return
        if name not in self.managed:
            log.info("managing %s, as dhcpleasectl asked", name)
            self.ctl_ifaces.append(name)
            self.managed = managed_ifaces(self.conf, self.opts.ifaces, self.ctl_ifaces)
            self.send_config()
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
                self.work.put_nowait(partial(self.configure, name, ci))
            elif mtype is ImsgType.DECONFIGURE_INTERFACE:
                self.work.put_nowait(partial(self.deconfigure, name, ci))
            else:
                self.work.put_nowait(partial(self.kroute.withdraw_routes, ci.if_index, ci.routes))
        elif mtype in (ImsgType.PROPOSE_RDNS, ImsgType.WITHDRAW_RDNS):
            rdns = imsg.ProposeRdns.unpack(data)
            name = self.known_ifname(rdns.if_index)
            if name is None:
                return
            if mtype is ImsgType.WITHDRAW_RDNS:
                if rdns.rdns:
                    self.fail("engine sent WITHDRAW_RDNS with nameservers")
                    return
                self.work.put_nowait(partial(self.withdraw_rdns, name))
                return
            if not all(is_unicast(a) for a in rdns.rdns):
                self.fail("engine proposed a non-unicast nameserver")
                return
            self.work.put_nowait(partial(self.propose_rdns, name, rdns))

    # --- privileged work ----------------------------------------------------------------------
    async def send_bpfsock(self, if_index: int, name: str) -> None:
        try:
            sock = self.open_bpfsock(if_index)
        except OSError as e:
            log.warning("cannot open packet socket on %s: %s", name, e.strerror)
            return
        self.children["frontend"].channel.compose(
            ImsgType.BPFSOCK, imsg.IfIndex(if_index).pack(), fd=sock.detach()
        )

    async def update_if(self, info: imsg.IfInfo) -> None:
        """Check the frontend's word against the kernel, add the lease text, tell the engine."""
        try:
            kernel_index = socket.if_nametoindex(info.if_name)
        except OSError:
            kernel_index = 0
        if kernel_index != info.if_index:
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
        if not again or ci.if_index not in self.udp_held:
            self.hand_udpsock(name, ci)
        self.write_lease(name, ci)

    def hand_udpsock(self, name: str, ci: imsg.ConfigureInterface) -> None:
        """A UDP socket bound to the new address for the frontend's unicast renewals."""
        fe = self.children["frontend"].channel
        if ci.if_index in self.udp_held:
            fe.compose(ImsgType.CLOSE_UDPSOCK, imsg.IfIndex(ci.if_index).pack())
            self.udp_held.discard(ci.if_index)
        try:
            udp = self.open_udpsock(name, ci.addr)
        except OSError as e:
            log.warning("%s: cannot bind %s:%d: %s", name, ci.addr, defs.CLIENT_PORT, e.strerror)
        else:
            fe.compose(ImsgType.UDPSOCK, imsg.IfIndex(ci.if_index).pack(), fd=udp.detach())
            self.udp_held.add(ci.if_index)

    async def deconfigure(self, name: str, ci: imsg.ConfigureInterface) -> None:
        log.info("deleting %s from %s (lease from %s)", ci.addr, name, ci.server)
        if ci.if_index in self.udp_held:
            self.children["frontend"].channel.compose(
                ImsgType.CLOSE_UDPSOCK, imsg.IfIndex(ci.if_index).pack()
            )
            self.udp_held.discard(ci.if_index)
        self.configured.pop(ci.if_index, None)
        await self.kroute.deconfigure(ci.if_index, ci.addr, ci.mask, ci.routes)
        if self.bound.pop(name, None) is not None:
            self.notifier.status(self.status_line())

    async def propose_rdns(self, name: str, rdns: imsg.ProposeRdns) -> None:
        log.info("adding nameservers %s on %s", " ".join(map(str, rdns.rdns)), name)
        await self.resolver.propose(name, rdns.rdns, rdns.domain, rdns.search)

    async def withdraw_rdns(self, name: str) -> None:
        log.info("deleting nameservers on %s", name)
        await self.resolver.withdraw(name)

    # --- lease files --------------------------------------------------------------------------
    @staticmethod
    def lease_path(name: str) -> str:
        return os.path.join(defs.LEASE_DIR, name)

    def read_lease(self, name: str) -> str:
        try:
            with open(self.lease_path(name), "rb") as f:
                raw = f.read(defs.LEASE_SIZE - 1)
        except OSError:
            return ""
        # The file is ours, but a damaged one must not make the parent send a bad imsg.
        return "".join(c if c.isascii() and c != "\0" else "?" for c in raw.decode("latin-1"))

    def write_lease(self, name: str, ci: imsg.ConfigureInterface) -> None:
        """mkstemp in the lease directory, fchmod 0644, rename: never a torn lease file."""
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
        tmp = os.path.join(defs.LEASE_DIR, f".{name}.tmp{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, text.encode())
                os.fchmod(fd, 0o644)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.lease_path(name))
        except OSError as e:
            log.warning("cannot write lease file for %s: %s", name, e.strerror)
            try:
                os.unlink(tmp)
            except OSError:
                pass


def parent_main(opts: Options) -> int:
    """Startup checks in the original's order, then spawn the children and serve them."""
    from dhcpleased import parse  # noqa: PLC0415 - lark stays out of the children

    if opts.configtest:
        return parse.configtest(opts.conffile, default=opts.default_conf, verbose=opts.verbose)

    def load() -> Config:
        return parse.load_config(opts.conffile, default=opts.default_conf)

    try:
        conf = load()
    except parse.ConfigError as e:
        for line in e.errors:
            sys.stderr.write(f"{line}\n")
        return 1
    if os.geteuid() != 0:
        return err("need root privileges")
    os.closerange(3, 1 << 16)
    try:
        lockfd = take_lock(defs.LOCK_FILE)
    except OSError as e:
        return err(f"{defs.LOCK_FILE}: {e.strerror}")
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
    log_init(opts.debug, opts.verbose, "main")
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
    finally:
        loop.close()
