"""Odd values in every config slot, and what must become of each (issue 11, item 3).

One table for every layer: the parser (tests/unit/test_odd_values.py), the parent's
reload (same file, through a real file and Main), and ``-n``, start-up and reload of the
real daemon in the lab (tests/integration/test_odd_values.py).  Each value is either
carried as the original carries it (the bytes that reach the children, and the wire) or
refused by the parser with ``file:line: message``: never accepted by one and refused, or
worse raised on, by another.

Values are written into the file as raw bytes (``%s`` below), quoted as shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

# How a value is written in the file (the lexer's view), by name.
VALUES: dict[str, bytes] = {
    "space": b'"my host"',
    "quotes": b'"say \\"hi\\" \'x\'"',
    "single": b"'it is'",
    "tab": b'"a\tb"',
    "control": b'"a\x01b\x7f"',
    "escape-seq": b'"\x1b[2J"',
    "not-utf8": b'"\xff\xfe"',
    "utf8": b'"caf\xc3\xa9"',
    "255": b'"' + b"a" * 255 + b'"',
    "256": b'"' + b"a" * 256 + b'"',
    "slash": b'"a/b"',
    "colon": b'"a:b"',
    "backslash-x": b'"\\x41"',
    "empty": b'""',
    "dollar": b'"$x"',
    "octal-nul": b'"a\\000b"',
    "dotted-quad": b'"192.0.2.7"',
}

# One line per slot; %d numbers the interface (o1, o2, ...), %s is the value.  Each fits
# on one line, so an error names that line and the parser resumes on the next.
SLOTS: dict[str, bytes] = {
    "host name": b"interface o%d { send host name %s }\n",
    "vendor class id": b"interface o%d { send vendor class id %s }\n",
    "client id": b"interface o%d { send client id %s }\n",
    "interface": b"interface %s { ignore dns }\n",
    "ignore": b"interface o%d { ignore %s }\n",
    "macro": b"v%d = %s\n",  # then used as a host name on the next line (see line_of)
}
MACRO_USE = b"interface o%d { send host name $v%d }\n"


@dataclass(frozen=True)
class Refused:
    message: str  # what follows "file:line: "


OK = object()  # accepted; what it becomes is checked in the table below when it matters
Outcome = Refused | bytes | str | IPv4Address | object

TOO_LONG = "host name too long"
SYNTAX = Refused("syntax error")
BAD_NAME = Refused("invalid interface name: whitespace, '/' or ':'")
UNPRINTABLE = Refused("invalid interface name: non-printable character or not UTF-8")


def _ignore(value: bytes) -> Refused:
    text = value[1:-1].replace(b'\\"', b'"').decode("utf-8", "surrogateescape")
    return Refused(f"Invalid server IP {text}")


_A255 = b"a" * 255

# What the three text options make of the values they all take as written.
_AS_WRITTEN: dict[str, Outcome] = {
    "space": b"my host",
    "quotes": b"say \"hi\" 'x'",
    "single": b"it is",
    "tab": b"a\tb",
    "control": b"a\x01b\x7f",
    "escape-seq": b"\x1b[2J",
    "not-utf8": b"\xff\xfe",
    "utf8": "café".encode(),
    "255": _A255,
    "slash": b"a/b",
    "colon": b"a:b",
    "empty": b"",
    "dollar": b"$x",
    "dotted-quad": b"192.0.2.7",
}

EXPECTED: dict[str, dict[str, Outcome]] = {
    # any byte but NUL, up to 255, as written (no escapes decoded): the original's rule;
    # empty = send no host name
    "host name": _AS_WRITTEN
    | {"256": Refused(TOO_LONG), "backslash-x": b"\\x41", "octal-nul": b"a\\000b"},
    # vis(3) escapes decoded (no hex escape), cut at the first NUL, at most 255 bytes
    "vendor class id": _AS_WRITTEN
    | {
        "256": Refused("vendor class id too long"),
        "backslash-x": Refused("invalid vendor class id"),
        "octal-nul": b"a",
    },
    # hex pieces first ("a:b" is two bytes), else vis(3) escapes, at most 255 bytes
    "client id": _AS_WRITTEN
    | {
        "256": Refused("client-id too long"),
        "colon": b"\x0a\x0b",
        "backslash-x": Refused("invalid client-id"),
        "octal-nul": b"a\0b",
    },
    # a name a Linux interface can have, and an imsg can carry
    "interface": {
        "space": BAD_NAME,
        "quotes": BAD_NAME,
        "single": BAD_NAME,
        "tab": BAD_NAME,
        "control": UNPRINTABLE,
        "escape-seq": UNPRINTABLE,
        "not-utf8": UNPRINTABLE,
        "utf8": "café",
        "255": Refused("name too long"),
        "256": Refused("name too long"),
        "slash": BAD_NAME,
        "colon": BAD_NAME,
        "backslash-x": "\\x41",
        "empty": Refused("interface name is empty"),
        "dollar": "$x",
        "octal-nul": "a\\000b",
        "dotted-quad": "192.0.2.7",
    },
    # a dotted quad, nothing else
    "ignore": {name: _ignore(v) for name, v in VALUES.items() if name != "dotted-quad"}
    | {"dotted-quad": IPv4Address("192.0.2.7")},
    # the value is lexed again where $v is used: words and quotes split, $ stays literal
    "macro": {
        "space": SYNTAX,
        "quotes": SYNTAX,
        "single": SYNTAX,
        "tab": SYNTAX,
        "control": SYNTAX,
        "escape-seq": SYNTAX,
        "not-utf8": SYNTAX,
        "utf8": SYNTAX,  # "caf" then a byte no word may hold
        "255": _A255,
        "256": Refused(TOO_LONG),
        "slash": b"a/b",
        "colon": b"a:b",
        "backslash-x": b"x41",  # outside quotes a backslash protects the next character
        "empty": SYNTAX,
        "dollar": SYNTAX,  # not expanded again, and "$" starts no word
        "octal-nul": b"a000b",
        "dotted-quad": b"192.0.2.7",
    },
}


def config_line(slot: str, i: int, name: str) -> bytes:
    """The line(s) of value ``name`` as interface number ``i`` in a file of this slot."""
    value = VALUES[name]
    if slot == "interface":
        return SLOTS[slot] % value
    if slot == "macro":
        return SLOTS[slot] % (i, value) + MACRO_USE % (i, i)
    return SLOTS[slot] % (i, value)


def config(slot: str, names: list[str]) -> tuple[bytes, dict[int, str]]:
    """A file with these values of one slot, and which line each refusal would name."""
    text, lines = b"", {}
    for i, name in enumerate(names, 1):
        first = text.count(b"\n") + 1
        text += config_line(slot, i, name)
        lines[first + (1 if slot == "macro" else 0)] = name  # a macro fails where used
    return text, lines


def iface_name(slot: str, i: int, name: str) -> str:
    """The interface a value's block configures."""
    if slot == "interface":
        outcome = EXPECTED[slot][name]
        assert isinstance(outcome, str)
        return outcome
    return f"o{i}"


CASES = [(slot, name) for slot in SLOTS for name in VALUES]
