"""Lease files: the original's version 2 text format, rendered and parsed.

A lease file is six ``\\n``-terminated ``key: value`` lines (values may be empty)::

    version: 2
    ip: 192.0.2.10
    next-server: 192.0.2.1
    filename: pxelinux.0
    host-name: gw1
    domain-name: example.org

The parent writes it after each ACK; the engine reads the ``ip:`` back to ask for the
same address after a restart (INIT-REBOOT).  The file may have been written by an older
version (v1 is ``version: 1\\nip: A\\n``), truncated, or edited by hand, so parsing
never raises: anything it cannot use is left at its default, and text without a usable
address gives ``Lease(ip=None)``.

Values are single lines: a backslash, newline, carriage return or NUL in a string
value is written as ``\\\\``, ``\\n``, ``\\r`` or ``\\0`` and decoded again when read,
so any string round-trips and a value can never forge another line (nor cut the text
short when it travels NUL-terminated in an imsg).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address

__all__ = ["Lease", "parse_lease", "render_lease"]

LEASE_VERSION = 2

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\0": "\\0"}
_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "0": "\0"}


@dataclass(frozen=True, slots=True)
class Lease:
    """What a lease file remembers about the last lease of an interface."""

    ip: IPv4Address | None
    next_server: IPv4Address | None = None
    filename: str = ""
    host_name: str = ""
    domain_name: str = ""


def _escape(value: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def _unescape(value: str) -> str:
    """Undo _escape; an unknown escape (hand edits) is kept as written."""
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value) and value[i + 1] in _UNESCAPES:
            out.append(_UNESCAPES[value[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def render_lease(lease: Lease) -> str:
    """The v2 text of a lease; an unset address is an empty value."""
    ip = "" if lease.ip is None else str(lease.ip)
    next_server = "" if lease.next_server is None else str(lease.next_server)
    return (
        f"version: {LEASE_VERSION}\n"
        f"ip: {ip}\n"
        f"next-server: {next_server}\n"
        f"filename: {_escape(lease.filename)}\n"
        f"host-name: {_escape(lease.host_name)}\n"
        f"domain-name: {_escape(lease.domain_name)}\n"
    )


def _address(value: str | None) -> IPv4Address | None:
    if value is None:
        return None
    try:
        return IPv4Address(value.strip())
    except AddressValueError:
        return None


def parse_lease(text: str) -> Lease:
    """Read v1 or v2 lease text; never raises.  The first occurrence of a key wins."""
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.removesuffix("\r").partition(":")
        if not sep:
            continue
        key = key.strip()
        if key not in fields:
            fields[key] = value.removeprefix(" ")
    return Lease(
        ip=_address(fields.get("ip")),
        next_server=_address(fields.get("next-server")),
        filename=_unescape(fields.get("filename", "")),
        host_name=_unescape(fields.get("host-name", "")),
        domain_name=_unescape(fields.get("domain-name", "")),
    )
