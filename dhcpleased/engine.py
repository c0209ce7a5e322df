"""The engine process (engine.c, its I/O half).

The engine is the only process that parses bytes from the network, so it holds no
network descriptor at all: frames arrive over imsg from the frontend, decisions leave
over imsg to the parent. Everything protocol-shaped lives in the pure modules
(:mod:`packet` parses, :mod:`fsm` decides); this module is the asyncio shell that feeds
them the boot clock (:mod:`boottime`: CLOCK_BOOTTIME, which counts suspended time), turns
their actions into imsgs and keeps one timerfd armed at the earliest interface deadline, so
a resume past T1, T2 or a lease end is acted on at once. Xids and jitter come from the
kernel's CSPRNG. Any malformed message from a sibling process is fatal: that sibling is
assumed compromised.

Address conflict detection (RFC 5227, ``arp probe``): ARP frames arrive from the frontend
like DHCP ones and are parsed here (:func:`packet.parse_arp`); what the fsm decides goes to
the parent, which alone emits ARP (ARP_WATCH opens the receive socket for an address,
ARP_PROBE and ARP_ANNOUNCE send), and a DHCPDECLINE to the frontend.  A conflict is also
a ``dhcpleasectl -m`` event when it changes no state (defended, or noted while waiting for
the server's answer).
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address

from dhcpleased import acd, boottime, defs, fsm, imsg, packet, procinfo
from dhcpleased.child import ChildProcess, child_main
from dhcpleased.imsg import ImsgError, ImsgType, type_name
from dhcpleased.ipc import Channel, Imsg
from dhcpleased.lease import parse_lease
from dhcpleased.log import log, log_getverbose, log_setverbose

IF_OPER_UNKNOWN = 0
IF_OPER_UP = 6
ZERO = IPv4Address(0)
TIMER_SLACK = 1e-3  # a deadline this close counts as due (the fsm takes early calls)


@dataclass
class EngineConf:
    """What the engine needs of an interface block (vendor id and host name are the frontend's)."""

    name: str
    ignore: int = 0
    ignore_servers: tuple[IPv4Address, ...] = ()
    prefer_ipv6: bool = False
    rapid_commit: bool = False
    arp_probe: bool = False
    c_id: bytes | None = None
    got_c_id: bool = False
    got_vc_id: bool = False

    def fsm_config(self) -> fsm.FsmConfig:
        return fsm.FsmConfig(
            prefer_ipv6=self.prefer_ipv6,
            ignore_dns=bool(self.ignore & defs.IGN_DNS),
            ignore_routes=bool(self.ignore & defs.IGN_ROUTES),
            rapid_commit=self.rapid_commit,
            arp_probe=self.arp_probe,
            ignore_mtu=bool(self.ignore & defs.IGN_MTU),
            ignore_ntp=bool(self.ignore & defs.IGN_NTP),
        )


@dataclass
class EngineIface:
    if_index: int
    name: str
    hw_address: bytes
    running: bool
    link_state: int
    machine: fsm.Fsm
    server: IPv4Address = ZERO  # of the last Configure, for the parent's "deleting" log line
    shown: fsm.State = fsm.State.DOWN  # last state told to dhcpleasectl -m (a new Fsm's state)
    deadline: float | None = None  # the fsm's deadline as the shared timer last saw it

    @property
    def up(self) -> bool:
        return self.running and self.link_state in (IF_OPER_UP, IF_OPER_UNKNOWN)


class Engine(ChildProcess):
    """engine_dispatch_main / engine_dispatch_frontend and the per-interface timers."""

    role = "engine"
    sibling = "frontend"

    def __init__(
        self,
        parent_sock: socket.socket,
        rng: random.Random,
        clock: boottime.Clock | None = None,
    ) -> None:
        super().__init__()
        self.rng = rng
        self.clock: boottime.Clock = clock if clock is not None else boottime.BootClock()
        self.main = Channel(parent_sock, self.dispatch_main, self.lost_main, name="main")
        self.frontend: Channel | None = None
        self.conf: dict[str, EngineConf] = {}
        self.nconf: dict[str, EngineConf] | None = None
        self.cur: EngineConf | None = None
        self.ifaces: dict[int, EngineIface] = {}
        self.status_fd = procinfo.open_status()  # before the sandbox when engine_main calls it
        self.monitored = False  # someone ran dhcpleasectl -m: send state changes from now on

    async def run(self) -> int:
        self.clock.start(self.loop, self.wake)
        self.main.start()
        code = await self.done
        self.clock.stop()
        if self.frontend is not None:
            self.frontend.close()
        self.main.close()
        return code

    # --- from the parent ----------------------------------------------------------------------
    def dispatch_main(self, msg: Imsg) -> None:
        """engine_dispatch_main."""
        self.guarded(self._dispatch_main, msg, "engine_dispatch_main")

    def _dispatch_main(self, msg: Imsg) -> None:
        t = ImsgType(msg.type)
        if msg.fd is not None and t is not ImsgType.SOCKET_IPC:
            raise ImsgError("unexpected descriptor")
        if t is ImsgType.SOCKET_IPC:
            imsg.Empty.unpack(msg.data)
            if msg.fd is None:
                raise ImsgError("expected a descriptor")
            if self.frontend is not None:
                raise ImsgError("received a second IPC socket")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fileno=msg.fd)
            self.frontend = Channel(
                sock, self.dispatch_frontend, self.lost_sibling, name="frontend"
            )
            self.frontend.start()
        elif t is ImsgType.RECONF_CONF:
            imsg.Empty.unpack(msg.data)
            if self.nconf is not None:
                raise ImsgError("RECONF_CONF already in progress")
            self.nconf, self.cur = {}, None
        elif t is ImsgType.RECONF_IFACE:
            ic = imsg.IfaceConf.unpack(msg.data)
            if self.nconf is None:
                raise ImsgError("RECONF_IFACE without RECONF_CONF")
            self.cur = self.nconf.setdefault(ic.name, EngineConf(ic.name))
            self.cur.ignore = ic.ignore
            self.cur.ignore_servers = ic.ignore_servers
            self.cur.prefer_ipv6 = ic.prefer_ipv6
            self.cur.rapid_commit = ic.rapid_commit
            self.cur.arp_probe = ic.arp_probe
        elif t in (ImsgType.RECONF_VC_ID, ImsgType.RECONF_C_ID):
            opt = imsg.OptionBytes.unpack(msg.data)
            cur = self.cur
            if cur is None:
                raise ImsgError(f"{type_name(t)} without RECONF_IFACE")
            if t is ImsgType.RECONF_C_ID:
                if cur.got_c_id:
                    raise ImsgError("client id repeated")
                cur.got_c_id, cur.c_id = True, opt.data
            else:
                if cur.got_vc_id:
                    raise ImsgError("vendor class id repeated")
                cur.got_vc_id = True
        elif t is ImsgType.RECONF_END:
            imsg.Empty.unpack(msg.data)
            if self.nconf is None:
                raise ImsgError("RECONF_END without RECONF_CONF")
            self.conf, self.nconf, self.cur = self.nconf, None, None
            now = self.clock.now()
            for iface in list(self.ifaces.values()):
                if iface.name not in self.conf:  # ifconfig -autoconf4: undo what we did
                    self.remove_iface(iface, now)
                    continue
                self.apply(
                    iface,
                    iface.machine.reconfigure(self.iface_conf(iface).fsm_config(), now),
                    "reconfigure",
                )
        elif t is ImsgType.UPDATE_IF:
            self.update_if(imsg.IfInfo.unpack(msg.data))
        elif t is ImsgType.CTL_LOG_VERBOSE:
            log_setverbose(imsg.Verbose.unpack(msg.data).verbose)
        elif t is ImsgType.REQUEST_RELEASE:  # SIGTERM, "release on exit"
            self.release(imsg.IfIndex.unpack(msg.data).if_index, "exit")
        else:
            raise ImsgError("not a message main sends to the engine")

    def iface_conf(self, iface: EngineIface) -> EngineConf:
        return self.conf.get(iface.name) or EngineConf(iface.name)

    def update_if(self, info: imsg.IfInfo) -> None:
        """Create the interface on first sight; refresh the fsm when its link changed."""
        now = self.clock.now()
        iface = self.ifaces.get(info.if_index)
        if iface is None:
            conf = self.conf.get(info.if_name) or EngineConf(info.if_name)
            machine = fsm.Fsm(conf.fsm_config(), self.rng, now)
            iface = EngineIface(
                info.if_index, info.if_name, info.hw_address, info.running, info.link_state, machine
            )
            self.ifaces[info.if_index] = iface
            changed = True
        else:
            changed = (iface.hw_address, iface.running, iface.link_state) != (
                info.hw_address,
                info.running,
                info.link_state,
            )
            iface.name = info.if_name
            iface.hw_address, iface.running, iface.link_state = (
                info.hw_address,
                info.running,
                info.link_state,
            )
        if changed:
            remembered = parse_lease(info.lease).ip if info.lease else None
            reason = "link up" if iface.up else "link down"
            self.apply(iface, iface.machine.link_update(iface.up, remembered, now), reason)

    def remove_iface(self, iface: EngineIface, now: float) -> None:
        """Forget an interface: withdraw DNS, deconfigure, stop its timer."""
        del self.ifaces[iface.if_index]
        self.apply(iface, iface.machine.remove(now), "removed")
        self.rearm()

    # --- from the frontend --------------------------------------------------------------------
    def dispatch_frontend(self, msg: Imsg) -> None:
        """engine_dispatch_frontend."""
        self.guarded(self._dispatch_frontend, msg, "engine_dispatch_frontend")

    def _dispatch_frontend(self, msg: Imsg) -> None:
        t = ImsgType(msg.type)
        if msg.fd is not None:
            raise ImsgError("unexpected descriptor")
        now = self.clock.now()
        if t is ImsgType.DHCP:
            self.receive(imsg.Dhcp.unpack(msg.data), now)
        elif t is ImsgType.ARP:
            self.receive_arp(imsg.Dhcp.unpack(msg.data), now)
        elif t is ImsgType.REMOVE_IF:
            iface = self.ifaces.get(imsg.IfIndex.unpack(msg.data).if_index)
            if iface is not None:
                self.remove_iface(iface, now)
        elif t is ImsgType.REQUEST_REBOOT:
            found = self.ifaces.get(imsg.IfIndex.unpack(msg.data).if_index)
            if found is not None:
                self.apply(found, found.machine.request_reboot(now), "request")
        elif t is ImsgType.REQUEST_RELEASE:  # dhcpleasectl release IF
            self.release(imsg.IfIndex.unpack(msg.data).if_index, "release")
        elif t is ImsgType.RELEASE_SENT:
            found = self.ifaces.get(imsg.IfIndex.unpack(msg.data).if_index)
            if found is not None:
                self.apply(found, found.machine.release_sent(now), "release sent")
        elif t is ImsgType.CTL_LOG_VERBOSE:
            log_setverbose(imsg.Verbose.unpack(msg.data).verbose)
        elif t is ImsgType.CTL_SHOW_INTERFACE_INFO:
            self.show_interface_info(imsg.IfIndex.unpack(msg.data).if_index, msg)
        elif t is ImsgType.CTL_MONITOR:
            imsg.Empty.unpack(msg.data)
            self.monitored = True
        elif t is ImsgType.CTL_PROCINFO:
            imsg.Empty.unpack(msg.data)
            info = procinfo.snapshot(self.status_fd, "engine")
            if self.frontend is not None:
                self.frontend.compose(ImsgType.PROCINFO, info.pack(), peerid=msg.peerid)
        else:
            raise ImsgError("not a message the frontend sends to the engine")

    def release(self, if_index: int, reason: str) -> None:
        """Give an interface's lease back; an unknown one has none (it may just have gone)."""
        iface = self.ifaces.get(if_index)
        if iface is not None:
            self.apply(iface, iface.machine.release(self.clock.now()), reason)

    def receive(self, d: imsg.Dhcp, now: float) -> None:
        """Parse an untrusted frame; anything wrong with it is logged and dropped."""
        iface = self.ifaces.get(d.if_index)
        if iface is None:
            log.debug("frame for unknown interface index %d", d.if_index)
            return
        conf = self.iface_conf(iface)
        res = packet.parse_frame(
            d.packet,
            csum_flags=d.csumflags,
            our_mac=iface.hw_address,
            xid=iface.machine.xid,
            ignore_servers=conf.ignore_servers,
        )
        if isinstance(res, packet.Rejection):
            if not res.silent:
                log.debug("%s: dropped packet: %s", iface.name, res.reason)
            return
        for note in res.ignored:  # a server's small mistake costs the option, not the reply
            log.debug("%s: ignoring %s", iface.name, note)
        if log_getverbose() > 1:
            log.debug("%s: %r", iface.name, res)
        if res.client_id is not None:
            expected = conf.c_id if conf.c_id is not None else b"\x01" + iface.hw_address
            if res.client_id != expected:
                if conf.c_id is None and len(res.client_id) != 1 + defs.ETH_ALEN:
                    log.debug("%s: dropped packet: client id length mismatch", iface.name)
                    return
                log.warning("%s: client id mismatch in reply", iface.name)
        reason = _REPLY_REASONS.get(res.message_type or 0, "reply")
        if reason == "ack" and iface.machine.state is fsm.State.INIT:
            reason = "rapid commit"  # the only ACK Init takes (RFC 4039)
        self.apply(iface, iface.machine.receive(res, now), reason)

    def receive_arp(self, d: imsg.Dhcp, now: float) -> None:
        """An ARP frame about the watched address; one that does not parse is dropped."""
        iface = self.ifaces.get(d.if_index)
        if iface is None:
            log.debug("ARP frame for unknown interface index %d", d.if_index)
            return
        res = packet.parse_arp(d.packet)
        if isinstance(res, packet.Rejection):
            log.debug("%s: dropped ARP frame: %s", iface.name, res.reason)
            return
        seen = iface.machine.acd.total_conflicts
        actions = iface.machine.arp(res, iface.hw_address, now)
        if iface.machine.acd.total_conflicts == seen:
            self.apply(iface, actions, "arp")
            return
        reason = "address conflict with " + ":".join(f"{b:02x}" for b in res.sha)
        self.apply(iface, actions, reason, conflict=True)

    def show_interface_info(self, if_index: int, msg: Imsg) -> None:
        fe = self.frontend
        if fe is None:
            return
        iface = self.ifaces.get(if_index)
        if iface is None:
            fe.compose(ImsgType.CTL_END, peerid=msg.peerid, pid=msg.pid)
            return
        m = iface.machine
        last = m.acd.last
        info = imsg.CtlEngineInfo(
            if_index=if_index,
            running=iface.running,
            link_state=iface.link_state,
            state=m.state.value,
            request_time=m.request_time,
            server_identifier=m.server_identifier,
            dhcp_server=m.dhcp_server,
            requested_ip=m.requested_ip,
            mask=m.mask,
            routes=m.routes,
            nameservers=m.nameservers,
            lease_time=m.lease_time,
            renewal_time=m.renewal_time,
            rebinding_time=m.rebinding_time,
            domain=m.domain,
            search=m.search,
            rapid_commit=m.rapid_commit,
            arp_probe=self.iface_conf(iface).arp_probe,
            arp_phase=m.acd.phase.value,
            arp_address=m.acd.address,
            arp_probes_sent=m.acd.probes_sent,
            arp_conflicts=m.acd.total_conflicts,
            conflict_address=last.address if last else ZERO,
            conflict_mac=last.mac if last else bytes(defs.ETH_ALEN),
            conflict_time=last.time if last else 0.0,
            mtu=m.mtu,
            ntp=m.ntp,
        )
        fe.compose(ImsgType.CTL_SHOW_INTERFACE_INFO, info.pack(), peerid=msg.peerid, pid=msg.pid)

    # --- actions and timers -------------------------------------------------------------------
    def apply(
        self,
        iface: EngineIface,
        actions: list[fsm.Action],
        reason: str = "",
        *,
        conflict: bool = False,
    ) -> None:
        """Carry out the fsm's decisions, in order, then re-arm the interface's timer.

        ``reason`` says what made the fsm move (for ``dhcpleasectl -m``): the input given
        to it, "link up", "ack", "timeout"...; an address ``conflict`` is told even when
        the state stays.
        """
        for a in actions:
            if isinstance(a, fsm.Log):
                log.log(a.level, "%s: %s", iface.name, a.message)
            elif isinstance(a, fsm.SendDiscover):
                self.compose_frontend(
                    ImsgType.SEND_DISCOVER,
                    imsg.ReqDhcp(iface.if_index, a.xid, ZERO, ZERO, ZERO, ZERO).pack(),
                )
            elif isinstance(a, fsm.SendRequest):
                req = imsg.ReqDhcp(
                    iface.if_index,
                    a.xid,
                    a.ciaddr,
                    a.requested_ip or ZERO,
                    a.server_identifier or ZERO,
                    a.dhcp_server or ZERO,
                )
                self.compose_frontend(ImsgType.SEND_REQUEST, req.pack())
            elif isinstance(a, fsm.SendRelease):
                rel = imsg.ReqDhcp(
                    iface.if_index, a.xid, a.ciaddr, ZERO, a.server_identifier, a.dhcp_server
                )
                self.compose_frontend(ImsgType.SEND_RELEASE, rel.pack())
            elif isinstance(a, fsm.SendDecline):
                dec = imsg.ReqDhcp(iface.if_index, a.xid, ZERO, a.address, a.server, ZERO)
                self.compose_frontend(ImsgType.SEND_DECLINE, dec.pack())
            elif isinstance(a, acd.Watch | acd.Probe | acd.Announce):
                self.compose_arp(iface, a)
            elif isinstance(a, fsm.ForgetLease):
                self.main.compose(ImsgType.RELEASED, imsg.IfIndex(iface.if_index).pack())
            elif isinstance(a, fsm.Configure):
                iface.server = a.server
                ci = imsg.ConfigureInterface(
                    if_index=iface.if_index,
                    rdomain=0,
                    addr=a.address,
                    mask=a.mask,
                    siaddr=a.siaddr,
                    server=a.server,
                    # BOOTP file is raw server bytes; the parent writes it to a text file
                    file=packet.vis(a.file).encode()[: defs.MAX_FILE - 1],
                    domain_name=a.domain_name,
                    host_name=a.host_name,
                    lease_time=a.lease_time,
                    routes=a.routes,
                )
                self.main.compose(ImsgType.CONFIGURE_INTERFACE, ci.pack())
            elif isinstance(a, fsm.Deconfigure):
                self.compose_removal(
                    iface, ImsgType.DECONFIGURE_INTERFACE, a.address, a.mask, a.routes
                )
            elif isinstance(a, fsm.WithdrawRoutes):
                self.compose_removal(iface, ImsgType.WITHDRAW_ROUTES, ZERO, ZERO, a.routes)
            elif isinstance(a, fsm.ProposeRdns):
                rd = imsg.ProposeRdns(iface.if_index, 0, a.nameservers, a.domain, a.search)
                self.main.compose(ImsgType.PROPOSE_RDNS, rd.pack())
            elif isinstance(a, fsm.WithdrawRdns):
                rd = imsg.ProposeRdns(iface.if_index, 0, (), "", ())
                self.main.compose(ImsgType.WITHDRAW_RDNS, rd.pack())
            elif isinstance(a, fsm.SetMtu):
                self.main.compose(ImsgType.SET_MTU, imsg.IfMtu(iface.if_index, a.mtu).pack())
            elif isinstance(a, fsm.RestoreMtu):
                self.main.compose(ImsgType.RESTORE_MTU, imsg.IfIndex(iface.if_index).pack())
            elif isinstance(a, fsm.ProposeNtp):
                ntp = imsg.NtpServers(iface.if_index, a.servers)
                self.main.compose(ImsgType.PROPOSE_NTP, ntp.pack())
            elif isinstance(a, fsm.WithdrawNtp):
                ntp = imsg.NtpServers(iface.if_index, ())
                self.main.compose(ImsgType.WITHDRAW_NTP, ntp.pack())
        self.announce(iface, reason, force=conflict)
        if iface.machine.deadline != iface.deadline:  # else the earliest one is unchanged
            self.rearm()

    def compose_arp(self, iface: EngineIface, a: acd.AcdAction) -> None:
        """ARP is the parent's to emit, and its receive socket the parent's to open."""
        if isinstance(a, acd.Watch):
            mtype = ImsgType.ARP_WATCH
        elif isinstance(a, acd.Probe):
            mtype = ImsgType.ARP_PROBE
            log.debug("%s: ARP probe for %s", iface.name, a.address)
        else:
            mtype = ImsgType.ARP_ANNOUNCE
            log.debug("%s: ARP announcement of %s", iface.name, a.address)
        self.main.compose(mtype, imsg.ArpReq(iface.if_index, a.address).pack())

    def announce(self, iface: EngineIface, reason: str, *, force: bool = False) -> None:
        """A state change goes to the frontend for its ``dhcpleasectl -m`` subscribers
        (``force``: an event that changed no state, old = new)."""
        new = iface.machine.state
        if new is iface.shown and not force:
            return
        old, iface.shown = iface.shown, new
        if self.frontend is None or not self.monitored:
            return
        event = imsg.MonitorEvent(
            time=time.time(),
            if_index=iface.if_index,
            if_name=iface.name,
            old_state=old.value,
            new_state=new.value,
            address=_event_address(iface.machine),
            reason=reason or "unknown",
        )
        self.frontend.compose(ImsgType.CTL_MONITOR_EVENT, event.pack())

    def compose_removal(
        self,
        iface: EngineIface,
        kind: ImsgType,
        addr: IPv4Address,
        mask: IPv4Address,
        routes: tuple[packet.Route, ...],
    ) -> None:
        """DECONFIGURE_INTERFACE / WITHDRAW_ROUTES share configure's layout, mostly empty."""
        ci = imsg.ConfigureInterface(
            if_index=iface.if_index,
            rdomain=0,
            addr=addr,
            mask=mask,
            siaddr=ZERO,
            server=iface.server,
            file=b"",
            domain_name="",
            host_name="",
            lease_time=0,
            routes=routes,
        )
        self.main.compose(kind, ci.pack())

    def compose_frontend(self, mtype: ImsgType, data: bytes) -> None:
        if self.frontend is None:
            self.fatal("no channel to the frontend yet")
            return
        self.frontend.compose(mtype, data)

    def rearm(self) -> None:
        """One timer for all interfaces: the earliest deadline (iface_timeout's evtimers)."""
        for iface in self.ifaces.values():
            iface.deadline = iface.machine.deadline
        deadlines = [d for i in self.ifaces.values() if (d := i.deadline) is not None]
        self.clock.arm(min(deadlines, default=None))

    def wake(self) -> None:
        """The boot-clock timer fired, maybe at a resume long after it was due: every
        interface whose deadline has passed times out now, with the time as it is now."""
        now = self.clock.now()
        for iface in list(self.ifaces.values()):
            deadline = iface.machine.deadline
            if deadline is not None and deadline <= now + TIMER_SLACK:
                old = iface.machine.state
                actions = iface.machine.timeout(now)
                self.apply(iface, actions, _timeout_reason(old, iface.machine.state))
        self.rearm()


_REPLY_REASONS = {defs.DHCPOFFER: "offer", defs.DHCPACK: "ack", defs.DHCPNAK: "nak"}


def _event_address(m: fsm.Fsm) -> IPv4Address:
    """The address a -m event is about: the lease's, else (Declined) the one in conflict."""
    last = m.acd.last
    if m.requested_ip == ZERO and m.state is fsm.State.DECLINED and last is not None:
        return last.address
    return m.requested_ip


def _timeout_reason(old: fsm.State, new: fsm.State) -> str:
    """What a timer meant: T1, T2, the lease running out, or a retry that gave up."""
    if old is fsm.State.PROBING:
        return "no address conflict"
    if old is fsm.State.DECLINED:
        return "decline wait over"
    held = (fsm.State.BOUND, fsm.State.RENEWING, fsm.State.REBINDING)
    if old is fsm.State.BOUND and new is fsm.State.RENEWING:
        return "renew"
    if old in held[:2] and new is fsm.State.REBINDING:  # from Bound: a resume past T2
        return "rebind"
    if old in held and new is fsm.State.INIT:
        return "expired"
    return "timeout"


def engine_main(debug: bool, verbose: int) -> int:
    """Entry point of ``dhcpleased -E``; the timerfd is made here, before the sandbox."""
    # The kernel's CSPRNG (getrandom), never a Mersenne Twister: ~624 observed xids would
    # give away the next ones, including the unicast renewal's an attacker cannot see.
    rng = random.SystemRandom()
    clock = boottime.BootClock()

    async def serve(parent_sock: socket.socket) -> int:
        return await Engine(parent_sock, rng, clock).run()

    return child_main("engine", debug, verbose, serve)
