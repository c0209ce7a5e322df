"""The frontend process (frontend.c).

The frontend moves packets and never looks inside them: it holds the packet sockets the
parent opened (filter locked, receive only), per interface a UDP socket connected to
255.255.255.255:67 and one connected to the server for unicast renewals, and the netlink
socket for link events; it forwards every received frame to the engine as raw bytes and
builds the DISCOVER/REQUEST/RELEASE messages the engine asks for from plain field values
(a RELEASE only ever unicast, RFC 2131 4.4.4; a DECLINE broadcast).  The kernel adds the
headers: nothing here can choose an address, a port or a frame type (``bpf`` module doc,
``seccomp.FRONTEND``).  For address conflict detection it also holds, per watched address,
a second locked receive-only packet socket (ARP about that address only), whose frames go
to the engine as they come, like DHCP ones; it sends no ARP at all (the parent does).
Interfaces are the ones the parent's configuration names; one that does not exist yet is
picked up when the kernel announces it.

The engine parses more slowly than frames can arrive, and a full queue towards it would
end the daemon, so pressure flows back to the kernel instead: once ``ENGINE_HIGH_WATER``
frames wait for the engine, no packet socket is read until it has taken all but
``ENGINE_LOW_WATER`` of them.  Meanwhile each socket's receive buffer fills and the kernel
drops what does not fit, as BPF does for the original; those drops (PACKET_STATISTICS)
and the frames read are shown by ``dhcpleasectl -p``.  Nothing else the network can
cause grows a queue between the processes: the engine answers a frame with at most a few
messages, and only when it moves the state machine, which takes the current xid.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from dhcpleased import bpf, control, defs, imsg, netlink, packet, procinfo
from dhcpleased.child import ChildProcess, child_main
from dhcpleased.imsg import ImsgError, ImsgType, type_name
from dhcpleased.ipc import Channel, Imsg
from dhcpleased.log import log, log_setverbose

FRAMES_PER_WAKEUP = 64  # bound the work one readable socket can cause before others run
ENGINE_HIGH_WATER = 64  # frames queued towards the engine before the packet sockets pause
ENGINE_LOW_WATER = 16  # ... and resume: well below the high mark, so a pause is worth it
DROP_LOG_INTERVAL = 60.0  # seconds between "engine busy" warnings
ZERO = IPv4Address(0)
_MESSAGE_TYPES = {
    ImsgType.SEND_DISCOVER: defs.DHCPDISCOVER,
    ImsgType.SEND_REQUEST: defs.DHCPREQUEST,
    ImsgType.SEND_RELEASE: defs.DHCPRELEASE,
    ImsgType.SEND_DECLINE: defs.DHCPDECLINE,
}


@dataclass
class FrontendConf:
    """What the frontend needs of an interface block to build its packets."""

    name: str
    ignore: int = 0
    ignore_servers: tuple[IPv4Address, ...] = ()
    prefer_ipv6: bool = False
    rapid_commit: bool = False
    vc_id: bytes | None = None
    c_id: bytes | None = None
    h_name: bytes | None = None  # b"" = send no host name


@dataclass
class LinkDump:
    """An RTM_GETLINK dump under way on the routing socket."""

    seq: int
    parts: bool = False  # its first message has arrived
    intr: bool = False  # the kernel flagged it inconsistent
    seen: set[int] = field(default_factory=set)


@dataclass
class FrontendIface:
    if_index: int
    name: str
    hw_address: bytes
    running: bool
    link_state: int
    bpf: socket.socket | None = None  # receives only
    arp: socket.socket | None = None  # receives only: ARP about the watched address
    bcast: socket.socket | None = None  # 0.0.0.0:68 -> 255.255.255.255:67
    udp: socket.socket | None = None  # leased address:68 -> udp_server:67
    udp_server: IPv4Address | None = None
    pending: tuple[ImsgType, imsg.ReqDhcp] | None = None  # asked for before the socket came


class Frontend(ChildProcess):
    """frontend_dispatch_main / frontend_dispatch_engine and the link watch."""

    role = "frontend"
    sibling = "engine"

    def __init__(
        self, parent_sock: socket.socket, hostname: Callable[[], str] | None = None
    ) -> None:
        super().__init__()
        self.hostname = hostname or short_hostname
        self.main = Channel(parent_sock, self.dispatch_main, self.lost_main, name="main")
        self.engine: Channel | None = None
        self.conf: dict[str, FrontendConf] = {}
        self.nconf: dict[str, FrontendConf] | None = None
        self.cur: FrontendConf | None = None
        self.routesock: socket.socket | None = None
        self.links: dict[int, netlink.LinkEvent] = {}  # every link the kernel told us about
        self.last_dump_seq = 0
        self.dump: LinkDump | None = None
        self.redump = False  # events were lost while it ran: dump again when it ends
        self.ifaces: dict[int, FrontendIface] = {}  # the ones we manage
        self.started = False
        self.control: control.Control | None = None
        self.reading = True  # packet sockets are read (False while the engine is busy)
        self.frames_read = self.frames_dropped = self.read_pauses = 0
        self.next_drop_log = 0.0
        self.status_fd = procinfo.open_status()  # before the sandbox when frontend_main calls it

    async def run(self) -> int:
        self.main.start()
        code = await self.done
        for iface in list(self.ifaces.values()):
            self.close_sockets(iface)
        if self.routesock is not None:
            self.loop.remove_reader(self.routesock.fileno())
            self.routesock.close()
        if self.control is not None:
            self.control.close()
        if self.engine is not None:
            self.engine.close()
        self.main.close()
        return code

    # --- from the parent ----------------------------------------------------------------------
    def dispatch_main(self, msg: Imsg) -> None:
        """frontend_dispatch_main."""
        self.guarded(self._dispatch_main, msg, "frontend_dispatch_main")

    def _dispatch_main(self, msg: Imsg) -> None:
        t = ImsgType(msg.type)
        wants_fd = t in (
            ImsgType.SOCKET_IPC,
            ImsgType.ROUTESOCK,
            ImsgType.BPFSOCK,
            ImsgType.BCASTSOCK,
            ImsgType.UDPSOCK,
            ImsgType.CONTROLFD,
            ImsgType.ARPSOCK,
        )
        if wants_fd != (msg.fd is not None):
            raise ImsgError("descriptor expected" if wants_fd else "unexpected descriptor")
        if t is ImsgType.SOCKET_IPC:
            imsg.Empty.unpack(msg.data)
            if self.engine is not None:
                raise ImsgError("received a second IPC socket")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fileno=msg.fd)
            self.engine = Channel(sock, self.dispatch_engine, self.lost_sibling, name="engine")
            self.engine.watch_pressure(ENGINE_HIGH_WATER, ENGINE_LOW_WATER, self.engine_pressure)
            self.engine.start()
        elif t is ImsgType.ROUTESOCK:
            imsg.Empty.unpack(msg.data)
            if self.routesock is not None:
                raise ImsgError("received a second routing socket")
            self.routesock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE, fileno=msg.fd
            )
            self.routesock.setblocking(False)
            self.loop.add_reader(self.routesock.fileno(), self.route_receive)
        elif t is ImsgType.STARTUP:
            imsg.Empty.unpack(msg.data)
            if self.routesock is None:
                raise ImsgError("STARTUP before ROUTESOCK")
            self.started = True
            self.request_links()
            if self.control is not None:
                self.control.start()
        elif t is ImsgType.CONTROLFD:
            imsg.Empty.unpack(msg.data)
            self.open_control(msg.fd)
        elif t is ImsgType.PROCINFO:
            self.relay_procinfo("main", msg)
        elif t is ImsgType.CTL_RELOAD_RESULT:
            imsg.ReloadResult.unpack(msg.data)  # garbage from a sibling is fatal
            if self.control is not None:
                self.control.sibling_reply(msg.peerid, t, msg.data)
        elif t is ImsgType.BPFSOCK:
            self.set_bpfsock(imsg.IfIndex.unpack(msg.data).if_index, msg.fd)
        elif t is ImsgType.BCASTSOCK:
            self.set_bcastsock(imsg.IfIndex.unpack(msg.data).if_index, msg.fd)
        elif t is ImsgType.UDPSOCK:
            self.set_udpsock(imsg.UdpSock.unpack(msg.data), msg.fd)
        elif t is ImsgType.CLOSE_UDPSOCK:
            iface = self.ifaces.get(imsg.IfIndex.unpack(msg.data).if_index)
            if iface is not None:
                self.close_udp(iface)
        elif t is ImsgType.ARPSOCK:
            self.set_arpsock(imsg.ArpReq.unpack(msg.data).if_index, msg.fd)
        elif t is ImsgType.CLOSE_ARPSOCK:
            iface = self.ifaces.get(imsg.IfIndex.unpack(msg.data).if_index)
            if iface is not None:
                self.close_packet(iface, arp=True)
        elif t in (
            ImsgType.RECONF_CONF,
            ImsgType.RECONF_IFACE,
            ImsgType.RECONF_VC_ID,
            ImsgType.RECONF_C_ID,
            ImsgType.RECONF_H_NAME,
            ImsgType.RECONF_END,
        ):
            self.reconf(t, msg.data)
        else:
            raise ImsgError("not a message main sends to the frontend")

    def reconf(self, t: ImsgType, data: bytes) -> None:
        if t is ImsgType.RECONF_CONF:
            imsg.Empty.unpack(data)
            if self.nconf is not None:
                raise ImsgError("RECONF_CONF already in progress")
            self.nconf, self.cur = {}, None
            return
        if self.nconf is None:
            raise ImsgError(f"{type_name(t)} without RECONF_CONF")
        if t is ImsgType.RECONF_IFACE:
            ic = imsg.IfaceConf.unpack(data)
            self.cur = self.nconf.setdefault(ic.name, FrontendConf(ic.name))
            self.cur.ignore, self.cur.ignore_servers = ic.ignore, ic.ignore_servers
            self.cur.prefer_ipv6 = ic.prefer_ipv6
            self.cur.rapid_commit = ic.rapid_commit
            return
        if t is ImsgType.RECONF_END:
            imsg.Empty.unpack(data)
            old, self.conf = self.conf, self.nconf
            self.nconf, self.cur = None, None
            self.config_changed(old)
            return
        cur = self.cur
        if cur is None:
            raise ImsgError(f"{type_name(t)} without RECONF_IFACE")
        if t is ImsgType.RECONF_H_NAME:
            if cur.h_name is not None:
                raise ImsgError("host name repeated")
            cur.h_name = imsg.HostName.unpack(data).name
            return
        opt = imsg.OptionBytes.unpack(data)
        if t is ImsgType.RECONF_VC_ID:
            if cur.vc_id is not None:
                raise ImsgError("vendor class id repeated")
            cur.vc_id = opt.data
        else:
            if cur.c_id is not None:
                raise ImsgError("client id repeated")
            cur.c_id = opt.data

    def config_changed(self, old: dict[str, FrontendConf]) -> None:
        """Diff old and new: drop removed interfaces, pick up new ones, re-request changed.

        The engine drops a removed interface on the same reload by itself (its
        RECONF_END), in order with the parent's UPDATE_IFs: a REMOVE_IF from here could
        overtake the UPDATE_IF of the interface coming back and remove that instead.
        """
        for iface in list(self.ifaces.values()):
            if iface.name not in self.conf:
                self.remove_iface(iface, tell_engine=False)
            elif old.get(iface.name) != self.conf[iface.name]:
                self.compose_engine(ImsgType.REQUEST_REBOOT, imsg.IfIndex(iface.if_index).pack())
        if self.started:
            for link in list(self.links.values()):
                if link.if_index not in self.ifaces:
                    self.link_event(link)

    def set_bpfsock(self, if_index: int, fd: int | None) -> None:
        if self.set_packet(if_index, fd, arp=False) is not None:
            self.send_pending(self.ifaces[if_index])

    def set_arpsock(self, if_index: int, fd: int | None) -> None:
        """The ARP socket of a newly watched address replaces the last one."""
        self.set_packet(if_index, fd, arp=True)

    def set_packet(self, if_index: int, fd: int | None, *, arp: bool) -> socket.socket | None:
        assert fd is not None
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0, fileno=fd)
        iface = self.ifaces.get(if_index)
        if iface is None:  # went away while the parent was opening it
            sock.close()
            return None
        self.close_packet(iface, arp=arp)
        sock.setblocking(False)
        if arp:
            iface.arp = sock
        else:
            iface.bpf = sock
        if self.reading:
            self.loop.add_reader(sock.fileno(), self.bpf_receive, iface, arp)
        return sock

    def set_bcastsock(self, if_index: int, fd: int | None) -> None:
        """The parent sends it just before the packet socket, which then sends what waits."""
        assert fd is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, fileno=fd)
        iface = self.ifaces.get(if_index)
        if iface is None:
            sock.close()
            return
        if iface.bcast is not None:
            iface.bcast.close()
        sock.setblocking(False)
        iface.bcast = sock
        self.send_pending(iface)

    def send_pending(self, iface: FrontendIface) -> None:
        """What the engine asked for before the sockets came goes out once both are here,
        as the original sends its DISCOVER (send_discover) then. The packet it asked for, not
        always a DISCOVER: in Rebooting that would draw an OFFER the engine ignores, and
        asking the engine for a second "reboot" would halve INIT-REBOOT's two tries."""
        if iface.pending is not None and iface.bpf is not None and iface.bcast is not None:
            t, req = iface.pending
            iface.pending = None
            self.send_packet(t, req)

    def set_udpsock(self, us: imsg.UdpSock, fd: int | None) -> None:
        assert fd is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, fileno=fd)
        iface = self.ifaces.get(us.if_index)
        if iface is None:
            sock.close()
            return
        self.close_udp(iface)
        sock.setblocking(False)
        iface.udp, iface.udp_server = sock, us.server

    def close_udp(self, iface: FrontendIface) -> None:
        if iface.udp is not None:
            iface.udp.close()
        iface.udp, iface.udp_server = None, None

    # --- link events --------------------------------------------------------------------------
    def route_receive(self) -> None:
        assert self.routesock is not None
        for _ in range(FRAMES_PER_WAKEUP):
            try:
                data = self.routesock.recv(netlink.RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ENOBUFS: events were lost, ask for the whole table again
                log.warning("routing socket: %s", e.strerror)
                self.request_links()
                continue
            for msg in netlink.parse(data):
                self.route_message(msg)

    def request_links(self) -> None:
        """Dump every link (at start-up, after the socket overflowed), unless a dump is
        under way: then once more when it ends, since the events lost meanwhile may be
        newer than what it reported."""
        assert self.routesock is not None
        if self.dump is not None:
            self.redump = True
            return
        self.last_dump_seq = self.last_dump_seq % 0xFFFFFFFF + 1
        self.dump, self.redump = LinkDump(self.last_dump_seq), False
        try:
            self.routesock.send(netlink.link_dump_request(self.dump.seq))
        except OSError as e:
            log.warning("routing socket: cannot dump links: %s", e.strerror)
            self.dump = None

    def route_message(self, msg: object) -> None:
        """One message from the routing socket: a link event, or part of our dump."""
        dump = self.dump
        state = netlink.dump_state(msg, dump.seq) if dump is not None else None
        ev = netlink.link_event(msg)
        if dump is not None and state is None and ev is not None and dump.parts:
            dump.seen.add(ev.if_index)  # an event among the dump's parts: maybe newer
        elif dump is not None and state in ("part", "intr") and ev is not None:
            dump.parts = True
            dump.seen.add(ev.if_index)
            dump.intr |= state == "intr"
        if ev is not None:
            self.link_event(ev)
        if dump is not None and state in ("done", "failed"):
            self.dump_done(dump, state == "done", msg)

    def dump_done(self, dump: LinkDump, ok: bool, msg: object) -> None:
        """Reconcile: a link neither in the dump nor in an event since it began is gone,
        its RTM_DELLINK lost in the overflow.  Events read before the dump's first part
        were queued before it was asked for: they prove nothing.  A dump the kernel
        marks inconsistent (NLM_F_DUMP_INTR) may have skipped links: dump again."""
        err = netlink.error_of(msg)
        if not ok and err is not None and err.errno == errno.ENOBUFS:
            self.redump = True  # its start was refused for room; the kernel resumes it
            return
        self.dump = None
        if not ok:
            log.warning("routing socket: link dump failed: %s", err.strerror if err else "?")
        elif dump.intr:
            self.redump = True
        else:
            for index in [i for i in self.links if i not in dump.seen]:
                gone = self.links[index]
                log.debug("%s (index %d) vanished while events were lost", gone.if_name, index)
                self.link_event(replace(gone, deleted=True))
        if self.redump:
            self.request_links()

    def link_event(self, ev: netlink.LinkEvent) -> None:
        if ev.deleted:
            self.links.pop(ev.if_index, None)
        else:
            self.links[ev.if_index] = ev
        iface = self.ifaces.get(ev.if_index)
        usable = (
            not ev.deleted
            and ev.if_name in self.conf
            and ev.arphrd == defs.ARPHRD_ETHER
            and len(ev.hw_address) == defs.ETH_ALEN
        )
        if not usable:
            if iface is not None:
                self.remove_iface(iface)
            return
        if iface is None:
            iface = FrontendIface(ev.if_index, ev.if_name, ev.hw_address, ev.up, ev.link_state)
            self.ifaces[ev.if_index] = iface
            log.debug("managing %s (index %d)", ev.if_name, ev.if_index)
            self.main.compose(ImsgType.OPEN_BPFSOCK, imsg.IfIndex(ev.if_index).pack())
        elif (iface.name, iface.hw_address, iface.running, iface.link_state) == (
            ev.if_name,
            ev.hw_address,
            ev.up,
            ev.link_state,
        ):
            return
        if iface.bpf is None and ev.up and not iface.running:
            # A packet socket cannot be opened while the interface is down (ENETDOWN), as
            # when it was just created: ask the parent again now that it is up.
            self.main.compose(ImsgType.OPEN_BPFSOCK, imsg.IfIndex(ev.if_index).pack())
        iface.name, iface.hw_address = ev.if_name, ev.hw_address
        iface.running, iface.link_state = ev.up, ev.link_state
        info = imsg.IfInfo(
            ev.if_index, ev.if_name, 0, ev.up, ev.link_state, ev.hw_address, lease=""
        )
        self.main.compose(ImsgType.UPDATE_IF, info.pack())

    def remove_iface(self, iface: FrontendIface, *, tell_engine: bool = True) -> None:
        log.debug("no longer managing %s", iface.name)
        self.close_sockets(iface)
        del self.ifaces[iface.if_index]
        if tell_engine:
            self.compose_engine(ImsgType.REMOVE_IF, imsg.IfIndex(iface.if_index).pack())

    def close_sockets(self, iface: FrontendIface) -> None:
        self.close_packet(iface, arp=False)
        self.close_packet(iface, arp=True)
        self.close_udp(iface)
        if iface.bcast is not None:
            iface.bcast.close()
            iface.bcast = None

    # --- packets ------------------------------------------------------------------------------
    def bpf_receive(self, iface: FrontendIface, arp: bool = False) -> None:
        """Forward frames untouched; the engine, not us, decides what they mean."""
        sock, engine = (iface.arp if arp else iface.bpf), self.engine
        if engine is None:
            self.fatal("no channel to the engine yet")
            return
        if sock is None:
            return
        for _ in range(FRAMES_PER_WAKEUP):
            if engine.congested:  # engine_pressure has stopped the reading: leave the rest
                return
            try:
                got = bpf.recv_frame(sock)
            except OSError as e:
                log.warning("%s: packet socket: %s", iface.name, e.strerror)
                return
            if got is None:
                return
            frame, csumflags = got
            self.frames_read += 1
            mtype = ImsgType.ARP if arp else ImsgType.DHCP
            engine.compose(mtype, imsg.Dhcp(iface.if_index, 0 if arp else csumflags, frame).pack())

    def engine_pressure(self, congested: bool) -> None:
        """Stop reading every packet socket while the engine is behind, resume once it caught
        up; the kernel drops what the sockets cannot hold meanwhile."""
        self.reading = not congested
        for iface in self.ifaces.values():
            for arp, sock in ((False, iface.bpf), (True, iface.arp)):
                if sock is None:
                    continue
                if congested:
                    self.loop.remove_reader(sock.fileno())
                else:
                    self.loop.add_reader(sock.fileno(), self.bpf_receive, iface, arp)
        if not congested:
            return
        self.read_pauses += 1
        now = self.loop.time()
        if now >= self.next_drop_log:
            self.next_drop_log = now + DROP_LOG_INTERVAL
            log.warning(
                "frames arrive faster than the engine takes them: reading paused while it "
                "catches up, the kernel drops the excess (%d dropped so far)",
                self.count_drops(),
            )

    def count_drops(self) -> int:
        """Add up what the kernel dropped on every packet socket since we last asked."""
        for iface in self.ifaces.values():
            for sock in (iface.bpf, iface.arp):
                if sock is not None:
                    self.frames_dropped += bpf.take_drops(sock)
        return self.frames_dropped

    def close_packet(self, iface: FrontendIface, *, arp: bool) -> None:
        """Close the DHCP (or ARP) packet socket, its drops counted first."""
        sock = iface.arp if arp else iface.bpf
        if sock is not None:
            self.frames_dropped += bpf.take_drops(sock)
            self.loop.remove_reader(sock.fileno())
            sock.close()
            if arp:
                iface.arp = None
            else:
                iface.bpf = None

    def dispatch_engine(self, msg: Imsg) -> None:
        """frontend_dispatch_engine."""
        self.guarded(self._dispatch_engine, msg, "frontend_dispatch_engine")

    def _dispatch_engine(self, msg: Imsg) -> None:
        if msg.fd is not None:
            socket.close(msg.fd)
            raise ImsgError("unexpected descriptor")
        t = ImsgType(msg.type)
        if t in (ImsgType.SEND_DISCOVER, ImsgType.SEND_REQUEST):
            self.send_packet(t, imsg.ReqDhcp.unpack(msg.data))
        elif t is ImsgType.SEND_RELEASE:
            req = imsg.ReqDhcp.unpack(msg.data)
            if ZERO in (req.ciaddr, req.server_identifier, req.dhcp_server):
                raise ImsgError("DHCPRELEASE without address, server identifier or target")
            self.send_packet(t, req)
            # sent or not, the engine may now have the address removed
            self.compose_engine(ImsgType.RELEASE_SENT, imsg.IfIndex(req.if_index).pack())
        elif t is ImsgType.SEND_DECLINE:  # RFC 2131 4.4.4: broadcast, 50 and 54, ciaddr 0
            req = imsg.ReqDhcp.unpack(msg.data)
            if ZERO in (req.requested_ip, req.server_identifier):
                raise ImsgError("DHCPDECLINE without address or server identifier")
            if (req.ciaddr, req.dhcp_server) != (ZERO, ZERO):
                raise ImsgError("DHCPDECLINE with ciaddr or a unicast target")
            self.send_packet(t, req)
        elif t in (ImsgType.CTL_SHOW_INTERFACE_INFO, ImsgType.CTL_END):
            imsg.decode(t, msg.data, reply=True)  # garbage from a sibling is fatal
            if self.control is not None:
                self.control.sibling_reply(msg.peerid, t, msg.data)
        elif t is ImsgType.CTL_MONITOR_EVENT:
            imsg.MonitorEvent.unpack(msg.data)
            if self.control is not None:
                self.control.monitor_event(msg.data)
        elif t is ImsgType.PROCINFO:
            self.relay_procinfo("engine", msg)
        else:
            raise ImsgError("not a message the engine sends to the frontend")

    def send_packet(self, t: ImsgType, req: imsg.ReqDhcp) -> None:
        iface = self.ifaces.get(req.if_index)
        if iface is None:
            return
        conf = self.conf.get(iface.name) or FrontendConf(iface.name)
        if conf.h_name is None:  # read for each packet, as build_packet does; bytes as they are
            host_name: bytes | None = os.fsencode(self.hostname()) or None
        else:
            host_name = conf.h_name or None
        r = packet.Request(
            message_type=_MESSAGE_TYPES[t],
            xid=req.xid,
            mac=iface.hw_address,
            ciaddr=req.ciaddr,
            requested_ip=None if req.requested_ip.is_unspecified else req.requested_ip,
            server_identifier=(
                None if req.server_identifier.is_unspecified else req.server_identifier
            ),
            host_name=host_name,
            client_id=conf.c_id,
            vendor_class_id=conf.vc_id,
            prefer_ipv6=conf.prefer_ipv6,
            rapid_commit=conf.rapid_commit,
            ask_mtu=not conf.ignore & defs.IGN_MTU,
            ask_ntp=not conf.ignore & defs.IGN_NTP,
        )
        payload = packet.build_bootp(r)
        # Unicast only to the server the parent connected the renewal socket to; any
        # other target (a server that changed while rebinding) is broadcast, as the
        # original falls back to BPF when its sendto fails.
        if not req.dhcp_server.is_unspecified and iface.udp_server == req.dhcp_server:
            assert iface.udp is not None
            try:
                bpf.send_dhcp(iface.udp, payload)
                return
            except OSError as e:
                log.debug("%s: unicast to %s: %s", iface.name, req.dhcp_server, e.strerror)
        if t is ImsgType.SEND_RELEASE:  # RFC 2131 4.4.4: unicast, never broadcast
            log.warning(
                "%s: DHCPRELEASE not sent: no unicast path to %s", iface.name, req.dhcp_server
            )
            return
        if iface.bcast is None or iface.bpf is None:  # sent by send_pending when they come
            iface.pending = (t, req)
            return
        try:
            bpf.send_dhcp(iface.bcast, payload)
        except OSError as e:
            log.warning("%s: cannot send: %s", iface.name, e.strerror)

    # --- control socket (control.py) ----------------------------------------------------------
    def open_control(self, fd: int | None) -> None:
        assert fd is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fileno=fd)
        if self.control is not None:
            sock.close()
            raise ImsgError("received a second control socket")
        self.control = control.Control(
            sock,
            to_main=lambda t, data, peerid, fd=None: control.forward(
                self.main, t, data, peerid, fd
            ),
            to_engine=lambda t, data, peerid, fd=None: control.forward(
                self.engine, t, data, peerid, fd
            ),
            is_managed=lambda if_index: if_index in self.ifaces,
            set_verbose=log_setverbose,
            procinfo=self.procinfo,
        )
        if self.started:
            self.control.start()

    def procinfo(self) -> imsg.ProcInfo:
        ifaces = self.ifaces.values()
        rx_only = sum(1 for i in ifaces if i.bpf is not None and bpf.receive_only(i.bpf))
        arp_held = sum(1 for i in ifaces if i.arp is not None)
        arp_rx = sum(1 for i in ifaces if i.arp is not None and bpf.receive_only(i.arp))
        return procinfo.snapshot(
            self.status_fd,
            "frontend",
            frames_read=self.frames_read,
            frames_dropped=self.count_drops(),
            read_pauses=self.read_pauses,
            sockets=procinfo.Sockets(
                packet_rx_only=rx_only,
                packet_tx=sum(1 for i in ifaces if i.bpf is not None) - rx_only + arp_held - arp_rx,
                udp_broadcast=sum(1 for i in ifaces if i.bcast is not None),
                udp_unicast=sum(1 for i in ifaces if i.udp is not None),
                arp_rx_only=arp_rx,
            ),
        )

    def relay_procinfo(self, role: str, msg: Imsg) -> None:
        """A sibling's answer to CTL_PROCINFO: it must describe that sibling."""
        if imsg.ProcInfo.unpack(msg.data).name != role:
            raise ImsgError(f"PROCINFO from {role} names another process")
        if self.control is not None:
            self.control.procinfo_reply(role, msg.peerid, msg.data)

    def compose_engine(self, mtype: ImsgType, data: bytes) -> None:
        if self.engine is None:
            self.fatal("no channel to the engine yet")
            return
        self.engine.compose(mtype, data)


def short_hostname() -> str:
    """The host name up to the first dot, read now: gethostname() is uname(2), which the
    frontend's seccomp list allows for this (seccomp.FRONTEND)."""
    return socket.gethostname().split(".", 1)[0]


def frontend_main(debug: bool, verbose: int) -> int:
    """Entry point of ``dhcpleased -F``."""

    async def serve(parent_sock: socket.socket) -> int:
        return await Frontend(parent_sock).run()

    return child_main("frontend", debug, verbose, serve)
