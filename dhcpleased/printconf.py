"""Canonical text of a configuration, for ``dhcpleased -nv`` (the twin of printconf.c).

The layout is the original's, minus its two quirks: macro definitions are not echoed,
and ``prefer ipv6`` is indented with a single tab like every other option.  Where the
original's text would not read back as the same configuration, this printer picks a
form that does, so that ``parse_config(print_config(c)) == c`` always holds:

- names that are keywords, numbers or not plain words are quoted;
- a host name is quoted with whichever quote survives the lexer;
- in vis-encoded ids a newline is printed as ``\\n`` (the lexer drops raw newlines
  inside quotes), and a byte whose escape would end in a backslash (or contain a raw
  ``"``) is printed in octal where the lexer would otherwise merge it with what follows;
- a client id whose vis text would be read back as hex pieces is printed in hex form.

``configtest`` is the one function here that writes (to stdout/stderr): ``dhcpleased -n``.
"""

from __future__ import annotations

import sys
from typing import TextIO

from dhcpleased.parse import (
    KEYWORDS,
    WORD_CHARS,
    WORD_START,
    Config,
    ConfigError,
    IfaceConf,
    load_config,
    parse_client_id_hex,
)

__all__ = ["configtest", "print_config", "quote", "strvis", "write_errors"]

HTYPE_ETHER = 1  # a client id of this type prints as hex bytes

_CSTYLE = {0x0A: "\\n", 0x0D: "\\r", 0x08: "\\b", 0x07: "\\a", 0x0B: "\\v", 0x0C: "\\f"}


def _vis_byte(c: int, nextc: int) -> str:
    """vis(3) of one byte with VIS_DQ | VIS_CSTYLE, newline excepted (see module doc)."""
    if c in (0x5C, 0x22):  # backslash, double quote
        return "\\" + chr(c)
    if 0x21 <= c <= 0x7E or c in (0x20, 0x09):  # isgraph, plus space and tab
        return chr(c)
    if c in _CSTYLE:
        return _CSTYLE[c]
    if c == 0:
        return "\\000" if 0x30 <= nextc <= 0x37 else "\\0"
    if c in (0xA0, 0xA2):  # 0xa0: as vis(3); 0xa2 ("\M-"") would end the string
        return _octal(c)
    out = "\\"
    if c & 0x80:
        out += "M"
        c &= 0x7F
    if c < 0x20 or c == 0x7F:
        return out + "^" + ("?" if c == 0x7F else chr(c + 0x40))
    return out + "-" + chr(c)


def _octal(c: int) -> str:
    return f"\\{c >> 6 & 7}{c >> 3 & 7}{c & 7}"


def strvis(data: bytes) -> str:
    """Vis-encode an id for a double-quoted config string (strvisx VIS_DQ|VIS_CSTYLE).

    The config lexer turns backslash + space/tab/quote into that character, so an
    escape ending in a raw backslash (``\\\\``, ``\\^\\``, ``\\M-\\``, ``\\M^\\``) is
    printed in octal when a space, a tab or the closing quote follows it.
    """
    parts = [_vis_byte(c, data[i + 1] if i + 1 < len(data) else 0) for i, c in enumerate(data)]
    for i, part in enumerate(parts):
        following = parts[i + 1][:1] if i + 1 < len(parts) else '"'
        if part.endswith("\\") and following in (" ", "\t", '"'):
            parts[i] = _octal(data[i])
    return "".join(parts)


def _quoted_form(s: str, q: str) -> str | None:
    """s between q quotes, if the lexer reads exactly s back."""
    if "\n" in s:  # dropped inside quotes
        return None
    for i, ch in enumerate(s):
        if ch == "\\" and (i + 1 == len(s) or s[i + 1] in (q, " ", "\t")):
            return None
    return q + s.replace(q, "\\" + q) + q


def _bare_form(s: str) -> str | None:
    """s as an unquoted word, if it lexes as one STRING token equal to s."""
    if not s or s[0] not in WORD_START or any(ch not in WORD_CHARS for ch in s):
        return None
    digits = len(s) - len(s.lstrip("0123456789"))
    if s in KEYWORDS or (digits and s[digits : digits + 1] in ("", "/")):
        return None  # a keyword, or digits the lexer would take as a NUMBER
    return s.replace("\\", "\\\\")  # outside quotes a backslash protects the next char


def quote(s: str, *, bare: bool = False) -> str:
    """Config-file spelling of a string: bare word if allowed and asked for, else quoted.

    Strings the lexer cannot produce at all (a backslash before a space or tab, both
    ``\\"`` and ``\\'`` in a non-word) cannot be spelled; they come out double-quoted.
    """
    forms = [_bare_form(s)] if bare else []
    forms += [_quoted_form(s, '"'), _quoted_form(s, "'"), _bare_form(s)]
    for form in forms:
        if form is not None:
            return form
    return '"' + s.replace('"', '\\"') + '"'


def _client_id_text(c_id: bytes) -> str:
    hex_form = ":".join(f"{b:02x}" for b in c_id)
    if c_id[:1] == bytes([HTYPE_ETHER]):
        return hex_form
    text = strvis(c_id)
    # the parser tries hex first: "ab" would come back as b"\xab"
    return hex_form if parse_client_id_hex(text) is not None else text


def _print_iface(iface: IfaceConf) -> list[str]:
    lines = [f"interface {quote(iface.name, bare=True)} {{"]
    if iface.c_id is not None:
        lines.append(f'\tsend client id "{_client_id_text(iface.c_id)}"')
    if iface.h_name == "":
        lines.append("\tsend no host name")
    elif iface.h_name is not None:
        lines.append(f"\tsend host name {quote(iface.h_name)}")
    if iface.vc_id is not None:
        lines.append(f'\tsend vendor class id "{strvis(iface.vc_id)}"')
    if iface.ignore_dns:
        lines.append("\tignore dns")
    if iface.ignore_routes:
        lines.append("\tignore routes")
    if iface.ignore_mtu:
        lines.append("\tignore mtu")
    if iface.ignore_ntp:
        lines.append("\tignore ntp")
    lines.extend(f"\tignore {server}" for server in iface.ignore_servers)
    if iface.prefer_ipv6:
        lines.append("\tprefer ipv6")
    if iface.rapid_commit:
        lines.append("\tsend rapid commit")
    if iface.release_on_exit:
        lines.append("\trelease on exit")
    if iface.arp_probe:
        lines.append("\tarp probe")
    lines.append("}")
    return lines


def print_config(conf: Config) -> str:
    """Canonical text (``dhcpleased -nv``); an empty config is the empty string."""
    return "".join(line + "\n" for iface in conf.ifaces for line in _print_iface(iface))


def _write(stream: TextIO, text: str) -> None:
    """Write text, passing undecodable file bytes (surrogates) through unchanged."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
        return
    stream.flush()
    buffer.write(text.encode("utf-8", "surrogateescape"))
    buffer.flush()


def write_errors(errors: list[str]) -> None:
    """``file:line: message`` lines to stderr, the file's bytes as they were: ``-n`` and a
    refused start-up print the same thing."""
    _write(sys.stderr, "".join(err + "\n" for err in errors))


def configtest(path: str, *, default: bool, verbose: int) -> int:
    """``dhcpleased -n [-v]``: check the file; exit status 0 or 1.

    Valid: with verbose >= 1 the canonical text goes to stdout, else ``configuration
    OK`` to stderr.  Invalid: every ``file:line: message`` goes to stderr.
    """
    try:
        conf = load_config(path, default=default)
    except ConfigError as e:
        write_errors(e.errors)
        return 1
    if verbose >= 1:
        _write(sys.stdout, print_config(conf))
    else:
        _write(sys.stderr, "configuration OK\n")
    return 0
