"""Address and route changes for the parent, over rtnetlink (configure_interface & co).

The Linux twin of the parent's SIOCAIFADDR/RTM_ADD code, on pyroute2's AsyncIPRoute.
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
import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dhcpleased import defs

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


def _oserror(e: NetlinkError, what: str) -> OSError:
    return OSError(e.code, f"{what}: {e.args[1] if len(e.args) > 1 else e}")


class KRoute:
    """One rtnetlink connection in the parent; open() before use, close() at exit."""

    def __init__(
        self, *, table: int = RT_TABLE_MAIN, metric_base: int = DEFAULT_METRIC_BASE
    ) -> None:
        self.table = table
        self.metric_base = metric_base
        self._ipr: Any = None

    async def open(self) -> None:
        self._ipr = AsyncIPRoute(ext_ack=True, strict_check=True)

    async def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            raise OSError(errno.ENOTCONN, "kroute: not open")
        return self._ipr

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
                    await self._route("replace", if_index, dst, None, addr)
                    continue
                if r.gw not in subnet and r.gw not in helpers:
                    # Linux refuses a gateway it cannot reach on-link: add a /32 link
                    # route to it first (the original does this for default routes)
                    await self._route("replace", if_index, IPv4Network(f"{r.gw}/32"), None, addr)
                    helpers.add(r.gw)
                await self._route("replace", if_index, dst, r.gw, addr)
            except NetlinkError as e:
                gw = "on-link" if r.gw.is_unspecified else f"via {r.gw}"
                log.warning("cannot add route %s %s: %s", dst, gw, _oserror(e, "").strerror)

    async def deconfigure(
        self, if_index: int, addr: IPv4Address, mask: IPv4Address, routes: Sequence[RouteLike]
    ) -> None:
        """Remove the lease's routes, then the address (deconfigure_interface).

        The original removes only the address and lets the kernel drop the routes; here
        the routes are deleted explicitly too, matched by interface, proto and metric, so
        the wrong one cannot go (the reason the original disabled its deletes).
        """
        await self.withdraw_routes(if_index, routes)
        try:
            prefixlen = mask_prefixlen(mask)
        except ValueError:
            prefixlen = 32
        try:
            await self.ipr.addr("del", index=if_index, address=str(addr), prefixlen=prefixlen)
        except NetlinkError as e:
            if e.code not in _GONE:
                raise _oserror(e, f"delete address {addr}/{prefixlen}") from None

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
        ipr = self.ipr
        present: list[int] = []
        try:
            async for msg in await ipr.addr("dump", index=if_index, family=socket.AF_INET):
                if msg.get("index") != if_index:
                    continue
                local = msg.get("local") or msg.get("address")
                if local == str(addr):
                    present.append(int(msg.get("prefixlen")))
            for other in present:
                if other != prefixlen:
                    await ipr.addr("del", index=if_index, address=str(addr), prefixlen=other)
            if prefixlen in present:
                return
            kwargs: dict[str, Any] = {}
            if prefixlen < 31:  # /31 (RFC 3021) and /32 have no broadcast address
                net = IPv4Network(f"{addr}/{prefixlen}", strict=False)
                kwargs["broadcast"] = str(net.broadcast_address)
            await ipr.addr(
                "replace", index=if_index, address=str(addr), prefixlen=prefixlen, **kwargs
            )
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _oserror(e, f"add address {addr}/{prefixlen}") from None

    async def _route(
        self,
        command: str,
        if_index: int,
        dst: IPv4Network,
        gw: IPv4Address | None,
        src: IPv4Address,
    ) -> None:
        kwargs: dict[str, Any] = {
            "dst": str(dst),
            "oif": if_index,
            "table": self.table,
            "proto": defs.RTPROT_DHCP,
            "priority": self.metric(if_index),
            "prefsrc": str(src),
        }
        if gw is None:
            kwargs["scope"] = RT_SCOPE_LINK
        else:
            kwargs["scope"] = RT_SCOPE_UNIVERSE
            kwargs["gateway"] = str(gw)
        try:
            await self.ipr.route(command, **kwargs)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise

    async def _delete(self, if_index: int, dst: IPv4Network) -> None:
        try:
            await self.ipr.route(
                "del",
                dst=str(dst),
                oif=if_index,
                table=self.table,
                proto=defs.RTPROT_DHCP,
                priority=self.metric(if_index),
                scope=RT_SCOPE_NOWHERE,
            )
        except NetlinkError as e:
            if e.code not in _GONE:
                log.warning("cannot delete route %s: %s", dst, _oserror(e, "").strerror)
