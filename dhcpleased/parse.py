"""dhcpleased.conf(5) parser: the twin of parse.y.

The lexer below reproduces the original's yylex() character for character (quotes,
backslashes, ``#`` comments, ``$macro`` expansion by pushing the value back into the
input, NUMBER versus word, keyword lookup), because those rules decide what a file
means and lark's regex lexer cannot express them.  The tokens drive a lark LALR parser
(``dhcpleased.lark``) whose rule callbacks carry out the semantic actions as the rules
reduce, so errors and their line numbers fall where yacc put them.  Error recovery is
yacc's ``error '\\n'``: after an error the rest of the line is skipped and parsing
restarts at the next line, and, as in yacc, no new syntax error is reported until three
tokens have been accepted again.  Any error fails the whole parse.

The grammar is built from text on every parse (a few milliseconds): lark's cache is a
pickle in /tmp, which a daemon running as root must never load.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput
from lark.lexer import Lexer, LexerState

from dhcpleased import defs, imsg

__all__ = [
    "KEYWORDS",
    "WORD_CHARS",
    "WORD_START",
    "Config",
    "ConfigError",
    "IfaceConf",
    "configtest",
    "load_config",
    "parse_client_id_hex",
    "parse_config",
    "strnunvis",
    "to_bytes",
]

MAX_ID_LEN = 255  # decoded vendor class / client id must be shorter than buf[256]
_LEXBUF = 8096  # yylex()'s buffer: longer strings are "string too long"
_MACRO_MAX = 65536  # not in the original, whose macro values may grow without bound

KEYWORDS = frozenset(
    {
        "arp",
        "class",
        "client",
        "commit",
        "dns",
        "exit",
        "host",
        "id",
        "ignore",
        "interface",
        "ipv6",
        "mtu",
        "name",
        "no",
        "ntp",
        "on",
        "prefer",
        "probe",
        "rapid",
        "release",
        "routes",
        "send",
        "vendor",
    }
)

# C-locale character classes (the original runs in the C locale: bytes >= 0x80 are
# neither alphanumeric nor punctuation).
_DIGITS = frozenset("0123456789")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_C_SPACE = " \t\n\v\f\r"
WORD_START = _ALNUM | {":", "_"}
WORD_CHARS = _ALNUM | (_PUNCT - set("(){}!=#,"))
_MACRO_CHARS = _ALNUM | {"_"}
_NUMBER_END = frozenset(_C_SPACE + "),/}=")
_SINGLE = {"\n": "NL", "=": "EQUAL", "{": "LBRACE", "}": "RBRACE"}

# Markers pushed around a macro value, like START_EXPAND/DONE_EXPAND: while they are
# being read, "$" is not expanded.  Multi-character strings never come from the file.
_START_EXPAND = "<start-expand>"
_DONE_EXPAND = "<done-expand>"
_EOF = ""


@dataclass(frozen=True, slots=True)
class IfaceConf:
    """Settings of one ``interface`` block (repeated blocks already merged)."""

    name: str
    vc_id: bytes | None = None  # send vendor class id (decoded, no NUL, < 256 bytes)
    c_id: bytes | None = None  # send client id (type byte first, <= 255 bytes)
    h_name: str | None = None  # send host name; "" = send no host name; None = default
    ignore_dns: bool = False
    ignore_routes: bool = False
    ignore_servers: tuple[IPv4Address, ...] = ()  # <= defs.MAX_SERVERS
    prefer_ipv6: bool = False
    rapid_commit: bool = False  # send rapid commit (RFC 4039)
    release_on_exit: bool = False  # DHCPRELEASE and deconfigure on SIGTERM/SIGINT
    arp_probe: bool = False  # address conflict detection (RFC 5227)
    ignore_mtu: bool = False  # leave the interface's MTU alone (option 26 not requested)
    ignore_ntp: bool = False  # hand no NTP servers on (option 42 not requested)


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration: interfaces in order of first appearance."""

    ifaces: tuple[IfaceConf, ...] = ()

    def iface(self, name: str) -> IfaceConf | None:
        for iface in self.ifaces:
            if iface.name == name:
                return iface
        return None


class ConfigError(Exception):
    """The configuration was rejected; ``errors`` holds every ``file:line: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


# --- string decoding ------------------------------------------------------------------------


def to_bytes(s: str) -> bytes:
    """The bytes a config string stands for (files are decoded with surrogateescape)."""
    return s.encode("utf-8", "surrogateescape")


_CSTYLE = {
    ord("n"): 0x0A,
    ord("r"): 0x0D,
    ord("b"): 0x08,
    ord("a"): 0x07,
    ord("v"): 0x0B,
    ord("t"): 0x09,
    ord("f"): 0x0C,
    ord("s"): 0x20,
    ord("E"): 0x1B,
}
_GROUND, _START, _META, _META1, _CTRL, _OCT2, _OCT3 = range(7)


def _isoctal(c: int) -> bool:
    return 0x30 <= c <= 0x37


def strnunvis(src: bytes) -> bytes | None:
    """Decode vis(3) escapes as OpenBSD's strnunvis() does; None for a bad escape.

    Supported: ``\\\\`` ``\\"`` ``\\n \\r \\b \\a \\v \\t \\f \\s \\E``, octal ``\\o``,
    ``\\oo``, ``\\ooo`` (modulo 256), ``\\M-c`` (c | 0x80), ``\\^c`` (control), ``\\M^c``,
    ``\\^?`` (DEL); ``\\-``, ``\\$`` and backslash-newline produce nothing.  There is no
    hex escape (``\\x41`` is an error), as in OpenBSD.  A lone trailing backslash, ``\\M``
    or ``\\M-`` is dropped silently, like the original.
    """
    out = bytearray()
    state = _GROUND
    cur = 0
    i = 0
    n = len(src)
    while i < n:
        c = src[i]
        if state == _GROUND:
            if c == 0x5C:
                state, cur = _START, 0
            else:
                out.append(c)
        elif state == _START:
            state = _GROUND
            if c in (0x5C, 0x22):
                out.append(c)
            elif _isoctal(c):
                cur, state = c - 0x30, _OCT2
            elif c == ord("M"):
                cur, state = 0x80, _META
            elif c == ord("^"):
                state = _CTRL
            elif c in _CSTYLE:
                out.append(_CSTYLE[c])
            elif c not in (ord("-"), ord("\n"), ord("$")):
                return None
        elif state == _META:
            if c == ord("-"):
                state = _META1
            elif c == ord("^"):
                state = _CTRL
            else:
                return None
        elif state == _META1:
            out.append((cur | c) & 0xFF)
            state = _GROUND
        elif state == _CTRL:
            out.append((cur | (0x7F if c == ord("?") else c & 0x1F)) & 0xFF)
            state = _GROUND
        elif state == _OCT2 and _isoctal(c):
            cur, state = (cur << 3) + c - 0x30, _OCT3
        elif state == _OCT3 and _isoctal(c):
            out.append(((cur << 3) + c - 0x30) & 0xFF)
            state = _GROUND
        else:  # end of an octal escape: emit it and read c again from the ground state
            out.append(cur & 0xFF)
            state = _GROUND
            continue
        i += 1
    if state in (_OCT2, _OCT3):
        out.append(cur & 0xFF)
    return bytes(out)


_HEX = frozenset("0123456789abcdefABCDEF")


def _scan_hex_byte(piece: str) -> int | None:
    """``sscanf(piece, "%x%c") == 1`` with a value in 0..0xff, else None."""
    s = piece.lstrip(_C_SPACE)
    negative = s[:1] == "-"
    if s[:1] in ("+", "-"):
        s = s[1:]
    if s[:2] in ("0x", "0X"):
        if s[2:3] and s[2] in _HEX:
            s = s[2:]
        else:
            return None  # "0x" alone: %x reads 0, %c then reads the "x"
    digits = 0
    while digits < len(s) and s[digits] in _HEX:
        digits += 1
    if digits == 0 or digits != len(s):
        return None
    value = int(s, 16)
    if negative:
        value = -value
    return value if 0 <= value <= 0xFF else None


def parse_client_id_hex(s: str) -> bytes | None:
    """``"01:00:53:ff:aa:bb:cc"`` -> raw bytes, or None when s is not in that form.

    Each ``:``-separated piece must be a hex number <= 0xff (as scanf's %x reads it:
    optional blanks, sign and 0x).  So a lone ``"ab"`` is one byte 0xab, as in the
    original.  More than 255 pieces is not hex form (the original took 256 and then
    wrapped the option length to 0).
    """
    pieces = s.split(":")
    if len(pieces) > MAX_ID_LEN:
        return None
    out = bytearray()
    for piece in pieces:
        value = _scan_hex_byte(piece)
        if value is None:
            return None
        out.append(value)
    return bytes(out)


# --- lexer ----------------------------------------------------------------------------------


class _Lexer:
    """yylex() of parse.y: one token per call, with the same line bookkeeping."""

    def __init__(self, text: str, ctx: _Context) -> None:
        self.text = text
        self.pos = 0
        self.pushback: list[str] = []
        self.lineno = 1  # file->lineno
        self.yylineno = 1  # yylval.lineno: the line error messages use
        self.eof_reached = False
        self.expanding = False
        self.ctx = ctx

    def _igetc(self) -> str:
        while True:
            if self.pushback:
                c = self.pushback.pop()
            elif self.pos < len(self.text):
                c = self.text[self.pos]
                self.pos += 1
            else:
                return _EOF
            if c == _START_EXPAND:
                self.expanding = True
            elif c == _DONE_EXPAND:
                self.expanding = False
            else:
                return c

    def _lgetc(self, quoted: bool = False) -> str:
        if quoted:
            c = self._igetc()
            if c == _EOF:
                self.ctx.error(self.yylineno, "reached end of file while parsing quoted string")
            return c
        while True:
            c = self._igetc()
            if c != "\\":
                break
            nxt = self._igetc()
            if nxt != "\n":  # outside quotes a backslash just protects the next char
                c = nxt
                break
            self.yylineno = self.lineno
            self.lineno += 1
        if c == _EOF and not self.eof_reached:
            # a fake newline at the first EOF ends a last line that has none
            self.eof_reached = True
            return "\n"
        return c

    def _lungetc(self, c: str) -> None:
        if c != _EOF:
            self.pushback.append(c)

    def _tok(self, type_: str, value: str) -> Token:
        return Token(type_, value, line=self.yylineno)

    def _findeol(self) -> Token:
        """Skip the rest of the line after a lexical error; the parser sees ERROR."""
        while True:
            c = self._lgetc()
            if c == "\n":
                self.lineno += 1
                break
            if c == _EOF:
                break
        return self._tok("ERROR", "")

    def _too_long(self) -> Token:
        self.ctx.error(self.yylineno, "string too long")
        return self._findeol()

    def token(self) -> Token:
        while True:
            c = self._lgetc()
            while c in (" ", "\t"):
                c = self._lgetc()
            self.yylineno = self.lineno
            if c == "#":
                while c not in ("\n", _EOF):
                    c = self._lgetc()
            if c == "$" and not self.expanding:
                if (expanded := self._expand()) is not None:
                    return expanded
                continue
            if c in ("'", '"'):
                return self._quoted(c)
            if c == "-" or c in _DIGITS:
                tok, c = self._number(c)
                if tok is not None:
                    return tok
            if c in WORD_START:
                return self._word(c)
            if c == "\n":
                self.yylineno = self.lineno
                self.lineno += 1
            if c == _EOF:
                return self._tok("$END", "")
            return self._tok(_SINGLE.get(c, "CHAR"), c)

    def _expand(self) -> Token | None:
        """Push a macro's value back into the input; a token on error or EOF."""
        name: list[str] = []
        while True:
            c = self._lgetc()
            if c == _EOF:
                return self._tok("$END", "")
            if len(name) + 1 >= _LEXBUF - 1:
                return self._too_long()
            if c in _MACRO_CHARS:
                name.append(c)
                continue
            self._lungetc(c)
            break
        value = self.ctx.macros.get("".join(name))
        if value is None:
            self.ctx.error(self.yylineno, f"macro '{''.join(name)}' not defined")
            return self._findeol()
        self.pushback.append(_DONE_EXPAND)
        self.pushback.extend(reversed(value))
        self.pushback.append(_START_EXPAND)
        return None

    def _quoted(self, quote: str) -> Token:
        buf: list[str] = []
        while True:
            c = self._lgetc(quoted=True)
            if c == _EOF:
                return self._tok("$END", "")
            if c == "\n":  # a string may span lines; the newline itself is dropped
                self.lineno += 1
                continue
            if c == "\\":
                nxt = self._lgetc(quoted=True)
                if nxt == _EOF:
                    return self._tok("$END", "")
                if nxt in (quote, " ", "\t"):
                    c = nxt
                elif nxt == "\n":
                    self.lineno += 1
                    continue
                else:  # any other backslash stays, for strnunvis to decode later
                    self._lungetc(nxt)
            elif c == quote:
                return self._tok("STRING", "".join(buf))
            elif c == "\0":
                self.ctx.error(self.yylineno, "syntax error")
                return self._findeol()
            if len(buf) + 1 >= _LEXBUF - 1:
                return self._too_long()
            buf.append(c)

    def _number(self, c: str) -> tuple[Token | None, str]:
        """NUMBER if the digits end cleanly, else push them back and lex a word."""
        buf: list[str] = []
        while True:
            buf.append(c)
            if len(buf) >= _LEXBUF:
                return self._too_long(), c
            c = self._lgetc()
            if c == _EOF or c not in _DIGITS:
                break
        self._lungetc(c)
        if buf != ["-"] and (c == _EOF or c in _NUMBER_END):
            text = "".join(buf)
            value = int(text)
            if not -(2**63) <= value < 2**63:
                why = "too large" if value > 0 else "too small"
                self.ctx.error(self.yylineno, f'"{text}" invalid number: {why}')
                return self._findeol(), c
            return self._tok("NUMBER", text), c
        for ch in reversed(buf[1:]):
            self._lungetc(ch)
        if buf[0] == "-":
            return self._tok("CHAR", "-"), c
        return None, buf[0]

    def _word(self, c: str) -> Token:
        buf: list[str] = []
        while True:
            buf.append(c)
            if len(buf) >= _LEXBUF:
                return self._too_long()
            c = self._lgetc()
            if c == _EOF or c not in WORD_CHARS:
                break
        self._lungetc(c)
        word = "".join(buf)
        return self._tok(word.upper() if word in KEYWORDS else "STRING", word)


# --- semantic actions -----------------------------------------------------------------------


class _YYError(Exception):
    """A semantic action rejected its rule (YYERROR); the message is already recorded."""


@dataclass
class _IfaceBuilder:
    name: str
    vc_id: bytes | None = None
    c_id: bytes | None = None
    h_name: str | None = None
    ignore_dns: bool = False
    ignore_routes: bool = False
    ignore_servers: list[IPv4Address] = field(default_factory=list)
    prefer_ipv6: bool = False
    rapid_commit: bool = False
    release_on_exit: bool = False
    arp_probe: bool = False
    ignore_mtu: bool = False
    ignore_ntp: bool = False

    def freeze(self) -> IfaceConf:
        return IfaceConf(
            name=self.name,
            vc_id=self.vc_id,
            c_id=self.c_id,
            h_name=self.h_name,
            ignore_dns=self.ignore_dns,
            ignore_routes=self.ignore_routes,
            ignore_servers=tuple(self.ignore_servers),
            prefer_ipv6=self.prefer_ipv6,
            rapid_commit=self.rapid_commit,
            release_on_exit=self.release_on_exit,
            arp_probe=self.arp_probe,
            ignore_mtu=self.ignore_mtu,
            ignore_ntp=self.ignore_ntp,
        )


class _Context:
    """Everything one parse accumulates: macros, interfaces, messages."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.macros: dict[str, str] = {}
        self.ifaces: dict[str, _IfaceBuilder] = {}
        self.current: _IfaceBuilder | None = None
        self.errors: list[str] = []
        self.line = 1  # line of the lookahead token, which yyerror() reports

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.filename}:{line}: {message}")

    def fail(self, message: str) -> _YYError:
        self.error(self.line, message)
        return _YYError(message)


class _Actions(Transformer[Token, None]):
    """Rule callbacks, run by lark as each rule reduces (yacc's actions)."""

    def __init__(self, ctx: _Context) -> None:
        super().__init__()
        self.ctx = ctx

    def _iface(self) -> _IfaceBuilder:
        assert self.ctx.current is not None  # the grammar reduces iface_head first
        return self.ctx.current

    def _carried(self, payload: Callable[[], imsg.Payload], message: str) -> None:
        """Build the imsg the value will travel in: what the imsg refuses is refused here,
        with a line number, so that a config ``-n`` accepts always reaches the children."""
        try:
            payload()
        except imsg.ImsgError:
            raise self.ctx.fail(message) from None

    def varset(self, children: list[Token]) -> None:
        name = str(children[0])
        if any(ch in _C_SPACE for ch in name):
            raise self.ctx.fail("macro name cannot contain whitespace")
        value = " ".join(str(t) for t in children[2:])
        if len(value) > _MACRO_MAX:  # "b = $a $a" on each line would double it
            raise self.ctx.fail("string too long")
        # a later definition replaces an earlier one; quirk dropped: no echo to stdout
        self.ctx.macros[name] = value

    def iface_head(self, children: list[Token]) -> None:
        name = str(children[1])
        iface = self.ctx.ifaces.get(name)
        if iface is None:
            problem = imsg.ifname_problem(name)  # the same test as the imsg it travels in
            if problem is not None:
                raise self.ctx.fail(problem)
            iface = self.ctx.ifaces[name] = _IfaceBuilder(name)
        self.ctx.current = iface

    def vendor_class_id(self, children: list[Token]) -> None:
        iface = self._iface()
        if iface.vc_id is not None:
            raise self.ctx.fail("vendor class id already set")
        decoded = strnunvis(to_bytes(str(children[4])))
        if decoded is None:
            raise self.ctx.fail("invalid vendor class id")
        if len(decoded) > MAX_ID_LEN:
            raise self.ctx.fail("vendor class id too long")
        vc_id = decoded.split(b"\0", 1)[0]  # stored up to the first NUL
        self._carried(
            lambda: imsg.OptionBytes(defs.DHO_DHCP_CLASS_IDENTIFIER, vc_id),
            "vendor class id too long",
        )
        iface.vc_id = vc_id

    def client_id(self, children: list[Token]) -> None:
        iface = self._iface()
        if iface.c_id is not None:
            raise self.ctx.fail("client-id already set")
        text = str(children[3])
        decoded = parse_client_id_hex(text)
        if decoded is None:
            decoded = strnunvis(to_bytes(text))
            if decoded is None:
                raise self.ctx.fail("invalid client-id")
        c_id = decoded
        self._carried(
            lambda: imsg.OptionBytes(defs.DHO_DHCP_CLIENT_IDENTIFIER, c_id), "client-id too long"
        )
        iface.c_id = c_id

    def _set_host_name(self, name: str) -> None:
        iface = self._iface()
        if iface.h_name is not None:
            raise self.ctx.fail("host name already set")
        # any byte but NUL (the lexer lets none through), at most 255 of them
        self._carried(lambda: imsg.HostName(to_bytes(name)), "host name too long")
        iface.h_name = name

    def host_name(self, children: list[Token]) -> None:
        self._set_host_name(str(children[3]))

    def no_host_name(self, children: list[Token]) -> None:
        self._set_host_name("")

    def ignore_routes(self, children: list[Token]) -> None:
        self._iface().ignore_routes = True

    def ignore_dns(self, children: list[Token]) -> None:
        self._iface().ignore_dns = True

    def ignore_mtu(self, children: list[Token]) -> None:
        self._iface().ignore_mtu = True

    def ignore_ntp(self, children: list[Token]) -> None:
        self._iface().ignore_ntp = True

    def ignore_server(self, children: list[Token]) -> None:
        iface = self._iface()
        if len(iface.ignore_servers) >= defs.MAX_SERVERS:
            raise self.ctx.fail("too many servers to ignore")
        text = str(children[1])
        try:
            address = IPv4Address(text)  # dotted quad only, like inet_pton(AF_INET)
        except AddressValueError:
            raise self.ctx.fail(f"Invalid server IP {text}") from None
        iface.ignore_servers.append(address)

    def prefer_ipv6(self, children: list[Token]) -> None:
        self._iface().prefer_ipv6 = True

    def rapid_commit(self, children: list[Token]) -> None:
        self._iface().rapid_commit = True

    def release_on_exit(self, children: list[Token]) -> None:
        self._iface().release_on_exit = True

    def arp_probe(self, children: list[Token]) -> None:
        self._iface().arp_probe = True


# --- driver ---------------------------------------------------------------------------------


class _NoLexer(Lexer):
    """Placeholder: tokens are fed one by one from _Lexer, never lexed by lark."""

    def __init__(self, conf: object) -> None:
        pass

    def lex(self, lexer_state: LexerState, parser_state: object) -> Iterator[Token]:
        raise NotImplementedError


@functools.cache
def grammar_text() -> str:
    """The grammar shipped as package data (text, read once; no pickle cache)."""
    return importlib.resources.files("dhcpleased").joinpath("dhcpleased.lark").read_text()


def parse_config(text: str, filename: str = "dhcpleased.conf") -> Config:
    """Parse configuration text; raise ConfigError listing every reported error."""
    ctx = _Context(filename)
    lexer = _Lexer(text, ctx)
    parser = Lark(grammar_text(), parser="lalr", lexer=_NoLexer, transformer=_Actions(ctx))
    interactive = parser.parse_interactive()
    errflag = 0  # yacc's yyerrflag: tokens to accept before syntax errors show again
    skipping = False  # discarding tokens up to the end of the line after an error
    while True:
        tok = lexer.token()
        ctx.line = tok.line if tok.line is not None else lexer.yylineno
        end = tok.type == "$END"
        if skipping:
            if end:
                break
            if tok.type == "NL":
                skipping, errflag = False, 2
            continue
        try:
            interactive.feed_token(tok)
        except UnexpectedInput:
            if errflag == 0:
                ctx.error(ctx.line, "syntax error")
        except _YYError:
            pass
        else:
            if end:
                break
            errflag = max(errflag - 1, 0)
            continue
        # error recovery: back to the top level, resume after the next newline
        if end:
            break
        ctx.current = None
        interactive = parser.parse_interactive()
        if tok.type == "NL":
            errflag = 2
        else:
            skipping, errflag = True, 3
    if ctx.errors:
        raise ConfigError(ctx.errors)
    return Config(tuple(b.freeze() for b in ctx.ifaces.values()))


def load_config(path: str, *, default: bool, regular: bool = False) -> Config:
    """Read and parse a file.  A missing *default* file is an empty config.

    ``regular`` (the daemon): refuse anything but a regular file, opened without
    blocking, so that a FIFO left at the path cannot hang the parent on SIGHUP.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_NONBLOCK if regular else 0))
        if regular and not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError([f"{path}: not a regular file"])
        with open(fd, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        if default:
            return Config()
        raise ConfigError([f"{path}: {e.strerror}"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: {e.strerror}"]) from None
    return parse_config(data.decode("utf-8", "surrogateescape"), path)


def configtest(path: str, *, default: bool, verbose: int) -> int:
    """``dhcpleased -n [-v]``; lives in printconf (it needs the printer), exported here too."""
    from dhcpleased import printconf  # noqa: PLC0415 - printconf imports this module

    return printconf.configtest(path, default=default, verbose=verbose)
