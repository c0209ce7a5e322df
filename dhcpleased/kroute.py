"""Address and route changes for the parent, over rtnetlink (configure_interface & co).

The Linux twin of the parent's SIOCAIFADDR/RTM_ADD code, over :mod:`dhcpleased.rtnl`.
Every route is tagged ``proto dhcp`` (RTPROT_DHCP) so ``ip route`` shows who owns it and
cleanup can be exact.  Routes get a per-interface metric (``metric_base + if_index``,
dhcpcd's scheme): two interfaces can then each hold a DHCP default route, as the
original's RTF_MPATH routes can, and ``replace`` never steals another interface's route.
Every route also carries the leased address as its preferred source, so the kernel drops
it together with the address, as it does on OpenBSD.

Errors come out as OSError (the parent's worker logs them): the address is essential, so
failing to set it raises; a single bad route is logged and the others still go in.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from dhcpleased import defs, rtnl

log = logging.getLogger("dhcpleased.kroute")

RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255  # in a delete request: "any scope"
DEFAULT_METRIC_BASE = 1000
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


_REPLACE = rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE


class KRoute:
    """One rtnetlink connection in the parent; open() before use, close() at exit."""

    def __init__(
        self, *, table: int = RT_TABLE_MAIN, metric_base: int = DEFAULT_METRIC_BASE
    ) -> None:
        self.table = table
        self.metric_base = metric_base
        self._nl: rtnl.Rtnl | None = None

    async def open(self) -> None:
        nl = rtnl.Rtnl()
        nl.open()
        self._nl = nl

    async def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    @property
    def nl(self) -> rtnl.Rtnl:
        if self._nl is None:
            raise OSError(errno.ENOTCONN, "kroute: not open")
        return self._nl

    def metric(self, if_index: int) -> int:
        return self.metric_base + if_index

    # --- public API -----------------------------------------------------------------------
    async def configure(
        self, if_index: int, addr: IPv4Address, mask: IPv4Address, routes: Sequence[RouteLike]
    ) -> None:
        """Put addr/mask on the interface, then the lease's routes (configure_interface)."""
        try:
            prefixlen = mask_prefixlen(mask)
        except ValueError:
            raise OSError(errno.EINVAL, f"netmask {mask} is not contiguous") from None
        await self._set_address(if_index, addr, prefixlen)
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

    # --- helpers --------------------------------------------------------------------------
    async def _set_address(self, if_index: int, addr: IPv4Address, prefixlen: int) -> None:
        """Keep the address if it is there with this prefix; drop other prefixes of it."""
        what = f"add address {addr}/{prefixlen}"
        try:
            present: list[int] = []
            for msg in await self.nl.dump(rtnl.RTM_GETADDR, rtnl.addr_body(if_index, 0), what):
                ifa = rtnl.parse_ifaddr(msg.payload) if msg.mtype == rtnl.RTM_NEWADDR else None
                if ifa is not None and ifa.if_index == if_index and ifa.local == addr:
                    present.append(ifa.prefixlen)
            for other in present:
                if other != prefixlen:
                    await self._del_address(if_index, addr, other, exact=True)
            if prefixlen in present:
                return
            broadcast = None
            if prefixlen < 31:  # /31 (RFC 3021) and /32 have no broadcast address
                net = IPv4Network(f"{addr}/{prefixlen}", strict=False)
                broadcast = net.broadcast_address
            body = rtnl.addr_body(if_index, prefixlen, addr, address=addr, broadcast=broadcast)
            await self.nl.request(rtnl.RTM_NEWADDR, _REPLACE, body, what)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise

    async def _del_address(
        self, if_index: int, addr: IPv4Address, prefixlen: int, *, exact: bool
    ) -> None:
        """Delete addr (with exactly this prefix, or any prefix); already gone is fine."""
        what = f"delete address {addr}/{prefixlen}" if exact else f"delete address {addr}"
        body = rtnl.addr_body(
            if_index, prefixlen if exact else 0, addr, address=addr if exact else None
        )
        try:
            await self.nl.request(rtnl.RTM_DELADDR, 0, body, what)
        except OSError as e:
            if e.errno not in _GONE:
                raise

    async def _route(
        self, if_index: int, dst: IPv4Network, gw: IPv4Address | None, src: IPv4Address
    ) -> None:
        """Add or replace one route of ours (proto dhcp, our metric, leased source)."""
        body = rtnl.route_body(
            dst=dst.network_address,
            dst_len=dst.prefixlen,
            oif=if_index,
            table=self.table,
            proto=defs.RTPROT_DHCP,
            priority=self.metric(if_index),
            scope=RT_SCOPE_LINK if gw is None else RT_SCOPE_UNIVERSE,
            gateway=gw,
            prefsrc=src,
        )
        try:
            await self.nl.request(rtnl.RTM_NEWROUTE, _REPLACE, body, f"add route {dst}")
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise

    async def _delete(self, if_index: int, dst: IPv4Network) -> None:
        """Delete our route to dst, whatever its scope or gateway; absent is fine."""
        body = rtnl.route_body(
            dst=dst.network_address,
            dst_len=dst.prefixlen,
            oif=if_index,
            table=self.table,
            proto=defs.RTPROT_DHCP,
            priority=self.metric(if_index),
            scope=RT_SCOPE_NOWHERE,
            rtype=rtnl.RTN_UNSPEC,
        )
        try:
            await self.nl.request(rtnl.RTM_DELROUTE, 0, body, f"delete route {dst}")
        except OSError as e:
            if e.errno not in _GONE:
                log.warning("cannot delete route %s: %s", dst, e.strerror)
