"""Address and route changes for the parent, over rtnetlink (configure_interface & co).

The Linux twin of the parent's SIOCAIFADDR/RTM_ADD code: pyroute2's ``ifaddrmsg``,
``rtmsg`` and ``ifinfmsg`` sent on the parent's own socket (:mod:`dhcpleased.netlink`).
The address gets the lease's remaining time as its valid and preferred lifetime, renewed
on every ACK (as systemd-networkd does): if the daemon is gone, the kernel removes the
address, and with it the routes that name it as their source, when the lease runs out.
Every route is tagged ``proto dhcp`` (RTPROT_DHCP) so ``ip route`` shows who owns it and
cleanup can be exact.  Routes get a per-interface metric (``metric_base + if_index``,
dhcpcd's scheme): two interfaces can then each hold a DHCP default route, as the
original's RTF_MPATH routes can, and ``replace`` never steals another interface's route.
Every route also carries the leased address as its preferred source, so the kernel drops
it together with the address, as it does on OpenBSD.

The lease's MTU (option 26) goes on the interface itself, as dhclient's and udhcpc's
scripts put it, with ``ifinfmsg``'s IFLA_MTU: within the device's own limits
(IFLA_MIN_MTU/IFLA_MAX_MTU, else ERANGE); the MTU it replaced is remembered per
interface and put back on withdraw, unless someone else changed the MTU meanwhile.

Errors come out as OSError (the parent's worker logs them): the address is essential, so
failing to set it raises; a single bad route is logged and the others still go in.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

from dhcpleased import defs, netlink
from dhcpleased.netlink import ifaddrmsg, ifinfmsg, rtmsg

log = logging.getLogger("dhcpleased.kroute")

RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255  # in a delete request: "any scope"
RTN_UNSPEC = 0
RTN_UNICAST = 1
DEFAULT_METRIC_BASE = 1000
INFINITY_LIFE_TIME = 0xFFFFFFFF  # the kernel's "forever", also DHCP's infinite lease
_GONE = (errno.ESRCH, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ENODEV)


class RouteLike(Protocol):
    """What kroute needs of dhcpleased.packet.Route (duck-typed, no import cycle)."""

    @property
    def dst(self) -> IPv4Address: ...
    @property
    def mask(self) -> IPv4Address: ...
    @property
    def gw(self) -> IPv4Address: ...


def mask_prefixlen(mask: IPv4Address) -> int:
    """Prefix length of a contiguous netmask; ValueError for 255.0.255.0 and the like."""
    return IPv4Network(f"0.0.0.0/{mask}").prefixlen


def _dst(r: RouteLike) -> IPv4Network:
    return IPv4Network(f"{r.dst}/{mask_prefixlen(r.mask)}", strict=False)


_REPLACE = netlink.NLM_F_CREATE | netlink.NLM_F_REPLACE


def _addr_msg(if_index: int, prefixlen: int, attrs: list[tuple[str, object]]) -> ifaddrmsg:
    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, prefixlen, if_index
    msg["attrs"] = attrs
    return msg


class KRoute:
    """One rtnetlink connection in the parent; open() before use, close() at exit."""

    def __init__(
        self, *, table: int = RT_TABLE_MAIN, metric_base: int = DEFAULT_METRIC_BASE
    ) -> None:
        self.table = table
        self.metric_base = metric_base
        self._nl: netlink.Rtnl | None = None
        self._mtus: dict[int, tuple[int, int]] = {}  # if_index -> (MTU before ours, ours)

    async def open(self) -> None:
        nl = netlink.Rtnl()
        nl.open()
        self._nl = nl

    async def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    @property
    def nl(self) -> netlink.Rtnl:
        if self._nl is None:
            raise OSError(errno.ENOTCONN, "kroute: not open")
        return self._nl

    def metric(self, if_index: int) -> int:
        return self.metric_base + if_index

    # --- public API -----------------------------------------------------------------------
    async def configure(
        self,
        if_index: int,
        addr: IPv4Address,
        mask: IPv4Address,
        routes: Sequence[RouteLike],
        lifetime: int = INFINITY_LIFE_TIME,
    ) -> None:
        """Put addr/mask on the interface for ``lifetime`` seconds, then the lease's routes
        (configure_interface).  Again on a renewal: the lifetime starts over, nothing else
        changes."""
        try:
            prefixlen = mask_prefixlen(mask)
        except ValueError:
            raise OSError(errno.EINVAL, f"netmask {mask} is not contiguous") from None
        await self._set_address(if_index, addr, prefixlen, lifetime)
        subnet = IPv4Network(f"{addr}/{prefixlen}", strict=False)
        helpers: set[IPv4Address] = set()
        for r in routes:
            try:
                dst = _dst(r)
            except ValueError:
                log.warning("route %s/%s: bad netmask, skipped", r.dst, r.mask)
                continue
            try:
                if r.gw.is_unspecified or r.gw == addr:
                    # gw 0 = directly reachable; gw == own address = the original's
                    # "default via own IP" on-link route
                    await self._route(if_index, dst, None, addr)
                    continue
                if r.gw not in subnet and r.gw not in helpers:
                    # Linux refuses a gateway it cannot reach on-link: add a /32 link
                    # route to it first (the original does this for default routes)
                    await self._route(if_index, IPv4Network(f"{r.gw}/32"), None, addr)
                    helpers.add(r.gw)
                await self._route(if_index, dst, r.gw, addr)
            except OSError as e:
                gw = "on-link" if r.gw.is_unspecified else f"via {r.gw}"
                log.warning("cannot add route %s %s: %s", dst, gw, e.strerror)

    async def deconfigure(
        self, if_index: int, addr: IPv4Address, mask: IPv4Address, routes: Sequence[RouteLike]
    ) -> None:
        """Remove the lease's routes, then the address (deconfigure_interface).

        The original removes only the address and lets the kernel drop the routes; here
        the routes are deleted explicitly too, matched by interface, proto and metric, so
        the wrong one cannot go (the reason the original disabled its deletes).  Mask 0
        (an address remembered from a lease file, prefix unknown) or a non-contiguous one
        deletes the address whatever its prefix: the request then names IFA_LOCAL only.
        """
        await self.withdraw_routes(if_index, routes)
        try:
            prefixlen = mask_prefixlen(mask)
        except ValueError:
            prefixlen = 0
        await self._del_address(if_index, addr, prefixlen, exact=prefixlen != 0)

    async def withdraw_routes(self, if_index: int, routes: Sequence[RouteLike]) -> None:
        """Delete the listed routes and their /32 gateway helpers; missing ones are fine."""
        helpers: set[IPv4Address] = set()
        for r in routes:
            try:
                dst = _dst(r)
            except ValueError:
                continue
            await self._delete(if_index, dst)
            if not r.gw.is_unspecified:
                helpers.add(r.gw)
        for gw in helpers:  # only ever ours: same proto + metric, absent -> ESRCH
            await self._delete(if_index, IPv4Network(f"{gw}/32"))

    async def set_up(self, if_index: int) -> bool:
        """Set IFF_UP on an administratively down interface (dhcpleasectl IF, as the
        original's SIOCSIFFLAGS); False if it was up already."""
        what = f"set interface {if_index} up"
        link = await self._link(if_index, what)
        if link["flags"] & netlink.IFF_UP:
            return False
        msg = ifinfmsg()
        msg["index"], msg["flags"], msg["change"] = if_index, netlink.IFF_UP, netlink.IFF_UP
        await self.nl.request(msg, netlink.RTM_NEWLINK, 0, what)
        return True

    async def set_mtu(self, if_index: int, mtu: int) -> int:
        """Give the interface this MTU; returns the MTU it had.  ERANGE (nothing changed)
        outside the device's limits.  The first MTU replaced is the one restore_mtu puts
        back, however many leases change it meanwhile."""
        what = f"set MTU {mtu} on interface {if_index}"
        link = await self._link(if_index, what)
        now = link.get_attr("IFLA_MTU") or 0
        lo = link.get_attr("IFLA_MIN_MTU") or 0
        hi = link.get_attr("IFLA_MAX_MTU") or defs.MAX_MTU  # 0: no maximum of its own
        if mtu > hi:
            raise OSError(errno.ERANGE, f"above the device's maximum {hi}")
        if mtu < lo:
            raise OSError(errno.ERANGE, f"below the device's minimum {lo}")
        before = self._mtus[if_index][0] if if_index in self._mtus else now
        if now != mtu:
            await self._put_mtu(if_index, mtu, what)
        self._mtus[if_index] = (before, mtu)
        return now

    async def restore_mtu(self, if_index: int) -> tuple[int, int] | None:
        """Put back the MTU set_mtu replaced: (from, to), or None when there is nothing to
        restore (never set, or the interface is gone).  EBUSY, and nothing changes, when the
        interface no longer has the lease's MTU: someone else set it since."""
        saved = self._mtus.pop(if_index, None)
        if saved is None:
            return None
        before, ours = saved
        what = f"restore MTU {before} on interface {if_index}"
        try:
            now = (await self._link(if_index, what)).get_attr("IFLA_MTU")
        except OSError as e:
            if e.errno in _GONE:
                return None
            raise
        if now != ours:
            raise OSError(errno.EBUSY, f"MTU is {now}, not the lease's {ours}: left alone")
        if now != before:
            await self._put_mtu(if_index, before, what)
        return ours, before

    # --- helpers --------------------------------------------------------------------------
    async def _link(self, if_index: int, what: str) -> Any:
        """The kernel's RTM_NEWLINK for one interface; ENODEV if there is none."""
        query = ifinfmsg()
        query["index"] = if_index
        links = await self.nl.request(query, netlink.RTM_GETLINK, 0, what)
        link = next((m for m in links if m.get("index") == if_index), None)
        if link is None:
            raise OSError(errno.ENODEV, f"{what}: no such interface")
        return link

    async def _put_mtu(self, if_index: int, mtu: int, what: str) -> None:
        msg = ifinfmsg()
        msg["index"] = if_index
        msg["attrs"] = [("IFLA_MTU", mtu)]
        await self.nl.request(msg, netlink.RTM_NEWLINK, 0, what)

    async def _set_address(
        self, if_index: int, addr: IPv4Address, prefixlen: int, lifetime: int
    ) -> None:
        """Add or refresh the address; drop other prefixes of it.

        NLM_F_REPLACE on an address already there only moves its lifetimes, so a renewal
        changes nothing else (no new RTM_NEWADDR for the routes to react to).
        """
        what = f"add address {addr}/{prefixlen}"
        query = _addr_msg(if_index, 0, [])
        present = netlink.ipv4_addresses(
            await self.nl.dump(query, netlink.RTM_GETADDR, what), if_index
        )
        for other in {plen for a, plen in present if a == addr and plen != prefixlen}:
            await self._del_address(if_index, addr, other, exact=True)
        lifetime &= INFINITY_LIFE_TIME
        attrs: list[tuple[str, object]] = [
            ("IFA_LOCAL", str(addr)),
            ("IFA_ADDRESS", str(addr)),
            ("IFA_CACHEINFO", {"ifa_preferred": lifetime, "ifa_valid": lifetime,
                               "cstamp": 0, "tstamp": 0}),
        ]  # fmt: skip
        if prefixlen < 31:  # /31 (RFC 3021) and /32 have no broadcast address
            net = IPv4Network(f"{addr}/{prefixlen}", strict=False)
            attrs.append(("IFA_BROADCAST", str(net.broadcast_address)))
        msg = _addr_msg(if_index, prefixlen, attrs)
        try:
            await self.nl.request(msg, netlink.RTM_NEWADDR, _REPLACE, what)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise

    async def _del_address(
        self, if_index: int, addr: IPv4Address, prefixlen: int, *, exact: bool
    ) -> None:
        """Delete addr (with exactly this prefix, or any prefix); already gone is fine.

        A delete with IFA_LOCAL only matches the address whatever its prefix; with
        IFA_ADDRESS too the kernel also demands the same prefix length.
        """
        what = f"delete address {addr}/{prefixlen}" if exact else f"delete address {addr}"
        attrs: list[tuple[str, object]] = [("IFA_LOCAL", str(addr))]
        if exact:
            attrs.append(("IFA_ADDRESS", str(addr)))
        msg = _addr_msg(if_index, prefixlen if exact else 0, attrs)
        try:
            await self.nl.request(msg, netlink.RTM_DELADDR, 0, what)
        except OSError as e:
            if e.errno not in _GONE:
                raise

    def _route_msg(self, if_index: int, dst: IPv4Network, scope: int, rtype: int) -> rtmsg:
        """rtmsg for one route of ours: proto dhcp, our table and metric, on if_index."""
        msg = rtmsg()
        msg["family"], msg["dst_len"], msg["scope"], msg["type"] = (
            socket.AF_INET, dst.prefixlen, scope, rtype
        )  # fmt: skip
        msg["table"] = self.table if self.table < 256 else 0  # larger: only in RTA_TABLE
        msg["proto"] = defs.RTPROT_DHCP
        msg["attrs"] = [
            ("RTA_DST", str(dst.network_address)),
            ("RTA_TABLE", self.table),
            ("RTA_OIF", if_index),
            ("RTA_PRIORITY", self.metric(if_index)),
        ]
        return msg

    async def _route(
        self, if_index: int, dst: IPv4Network, gw: IPv4Address | None, src: IPv4Address
    ) -> None:
        """Add or replace one route of ours (proto dhcp, our metric, leased source)."""
        scope = RT_SCOPE_LINK if gw is None else RT_SCOPE_UNIVERSE
        msg = self._route_msg(if_index, dst, scope, RTN_UNICAST)
        if gw is not None:
            msg["attrs"].append(("RTA_GATEWAY", str(gw)))
        msg["attrs"].append(("RTA_PREFSRC", str(src)))
        try:
            await self.nl.request(msg, netlink.RTM_NEWROUTE, _REPLACE, f"add route {dst}")
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise

    async def _delete(self, if_index: int, dst: IPv4Network) -> None:
        """Delete our route to dst, whatever its scope or gateway; absent is fine."""
        msg = self._route_msg(if_index, dst, RT_SCOPE_NOWHERE, RTN_UNSPEC)
        try:
            await self.nl.request(msg, netlink.RTM_DELROUTE, 0, f"delete route {dst}")
        except OSError as e:
            if e.errno not in _GONE:
                log.warning("cannot delete route %s: %s", dst, e.strerror)
