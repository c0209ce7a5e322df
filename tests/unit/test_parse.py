"""dhcpleased.conf parsing: lexical rules, grammar, semantics and error messages."""

from __future__ import annotations

import os
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dhcpleased import defs
from dhcpleased.parse import (
    Config,
    ConfigError,
    IfaceConf,
    load_config,
    parse_client_id_hex,
    parse_config,
    strnunvis,
)

DATA = Path(__file__).resolve().parent.parent / "data"
A = IPv4Address


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.conf")
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def one(text: str) -> IfaceConf:
    conf = parse_config(text)
    assert len(conf.ifaces) == 1
    return conf.ifaces[0]


def option(line: str) -> IfaceConf:
    return one(f"interface em0 {{\n\t{line}\n}}\n")


# --- the reference example --------------------------------------------------------------------

EXAMPLE = Config(
    (
        IfaceConf("em0", h_name="gw1", ignore_dns=True, ignore_servers=(A("192.0.2.66"),)),
        IfaceConf(
            "iwm0",
            c_id=bytes.fromhex("010053ffaabbcc"),
            vc_id=b"OpenBSD",
            ignore_routes=True,
            prefer_ipv6=True,
        ),
        IfaceConf("vio0", h_name=""),
    )
)


def test_example() -> None:
    conf = load_config(str(DATA / "example.conf"), default=False)
    assert conf == EXAMPLE
    assert conf.iface("iwm0") is conf.ifaces[1]
    assert conf.iface("nope") is None


def test_empty_inputs() -> None:
    for text in ("", "\n", "\n\n# only a comment\n   \t\n", "# no newline at the end"):
        assert parse_config(text) == Config()


def test_parse_is_fast() -> None:
    text = (DATA / "full.conf").read_text()
    start = time.perf_counter()
    for _ in range(10):
        parse_config(text)
    assert (time.perf_counter() - start) / 10 < 0.25  # grammar build included


# --- lexical rules ----------------------------------------------------------------------------


def test_comments_anywhere() -> None:
    iface = one(
        "# leading comment\n"
        "interface em0 { # after a brace\n"
        "\t# a whole-line comment inside a block\n"
        "\tsend host name 'x#y'   # '#' inside quotes is text\n"
        "} # after the closing brace\n"
    )
    assert iface.h_name == "x#y"


def test_hash_ends_an_unquoted_word() -> None:
    assert option("send host name abc#comment").h_name == "abc"


def test_quote_styles_and_escapes() -> None:
    assert option('send host name "a b"').h_name == "a b"
    assert option("send host name 'a b'").h_name == "a b"
    assert option(r'send host name "say \"hi\""').h_name == 'say "hi"'
    assert option(r"send host name 'it\'s'").h_name == "it's"
    # the other quote character needs no escape, and its backslash stays
    assert option("send host name 'a\"b'").h_name == 'a"b'
    assert option(r"send host name 'a\"b'").h_name == 'a\\"b'
    assert option('send host name "a\\ b\\\tc"').h_name == "a b\tc"
    # any other backslash is kept for strnunvis
    assert option(r'send host name "a\nb\\c"').h_name == r"a\nb\\c"


def test_keywords_in_quotes_are_strings() -> None:
    iface = one('interface "ignore" { send host name "interface" }')
    assert iface.name == "ignore"
    assert iface.h_name == "interface"


def test_strings_span_lines() -> None:
    conf = parse_config('interface em0 {\n\tsend host name "multi\nline"\n}\nfoo = "x"\n')
    assert conf.ifaces[0].h_name == "multiline"  # the newline itself is dropped
    # line numbers still count the newline inside the string
    assert errors('interface em0 {\n\tsend host name "a\nb"\n\tsend no host name\n}\n') == [
        "t.conf:4: host name already set"
    ]


def test_backslash_newline_continuation() -> None:
    iface = one('interface \\\nem0 {\n\tignore \\\n\t\t192.0.2.1\n\tsend host name "a\\\nb"\n}')
    assert iface.name == "em0"
    assert iface.ignore_servers == (A("192.0.2.1"),)
    assert iface.h_name == "ab"
    assert errors("interface em0 {\n\tignore \\\n\\\nbad\n}\n") == [
        "t.conf:4: Invalid server IP bad"
    ]


def test_backslash_outside_quotes_protects_one_char() -> None:
    assert option(r"send host name a\\b").h_name == "a\\b"
    assert option(r"send host name a\#b").h_name == "a"  # "#" still ends the word
    assert errors("interface em0 {\n\tsend host name a\\{b\n}\n") == ["t.conf:2: syntax error"]


def test_blank_lines_everywhere() -> None:
    conf = parse_config("\n\n\ninterface em0 {\n\n\n\tignore dns\n\n\n\tignore routes\n\n}\n\n")
    assert conf.ifaces[0].ignore_dns
    assert conf.ifaces[0].ignore_routes


def test_unquoted_words() -> None:
    assert one("interface br-lan.100 { ignore dns }").name == "br-lan.100"
    assert one("interface _x-y { ignore dns }").name == "_x-y"
    assert one("interface 1abc { ignore dns }").name == "1abc"
    assert option("ignore 192.0.2.1").ignore_servers == (A("192.0.2.1"),)
    assert option("send host name a$b'c\"d").h_name == "a$b'c\"d"


def test_numbers_are_accepted_by_no_rule() -> None:
    assert errors("interface 0 { ignore dns }\n") == ["t.conf:1: syntax error"]
    assert errors("interface em0 {\n\tsend host name 1234\n}\n") == ["t.conf:2: syntax error"]
    assert errors("x = 5\n") == ["t.conf:1: syntax error"]
    assert errors("interface -5 { ignore dns }\n") == ["t.conf:1: syntax error"]
    assert option('send host name "1234"').h_name == "1234"
    assert errors("interface em0 {\n\tsend host name 99999999999999999999\n}\n")[0] == (
        't.conf:2: "99999999999999999999" invalid number: too large'
    )


def test_stray_characters() -> None:
    assert errors("interface em0 { ignore dns } (\n") == ["t.conf:1: syntax error"]
    assert errors("-\n") == ["t.conf:1: syntax error"]
    assert errors("é = x\n") == ["t.conf:1: syntax error"]


def test_string_too_long() -> None:
    long = "a" * 8100
    assert errors(f'interface em0 {{\n\tsend host name "{long}"\n}}\n')[0] == (
        "t.conf:2: string too long"
    )
    assert errors(f"interface em0 {{\n\tsend host name {long}\n}}\n")[0] == (
        "t.conf:2: string too long"
    )


def test_unterminated_string() -> None:
    assert errors('interface em0 {\n\tsend host name "abc\n}\n') == [
        "t.conf:2: reached end of file while parsing quoted string",
        "t.conf:2: syntax error",
    ]


def test_nul_in_quotes() -> None:
    assert errors('interface em0 {\n\tsend host name "a\0b"\n}\n')[0] == "t.conf:2: syntax error"


# --- macros -----------------------------------------------------------------------------------


def test_macros() -> None:
    conf = parse_config(
        'if = "em0"\n'
        "opts = 'ignore dns'\n"
        'hn = gw1 "two words"\n'
        "interface $if { $opts }\n"
        "interface $if {\n\tsend host name '$hn'\n}\n"
    )
    assert conf == Config((IfaceConf("em0", ignore_dns=True, h_name="$hn"),))
    iface = one('h = gw1 "and more"\ninterface em0 {\n\tsend host name "x"\n}\nz = $h\n')
    assert iface.h_name == "x"


def test_macro_value_joined_by_single_spaces() -> None:
    assert one('v = a   "b  c"\ninterface em0 { send vendor class id "$v" }').vc_id == b"$v"
    assert one("v = 'ignore'   \"dns\"\ninterface em0 { $v }").ignore_dns


def test_macro_redefinition_replaces() -> None:
    conf = parse_config(
        'a = "em0"\ninterface $a { ignore dns }\na = "em1"\ninterface $a { ignore routes }\n'
    )
    assert [i.name for i in conf.ifaces] == ["em0", "em1"]


def test_macro_undefined() -> None:
    assert errors("interface $nope {\n\tignore dns\n}\n") == [
        "t.conf:1: macro 'nope' not defined",
        "t.conf:1: syntax error",
    ]
    # the line after the error is skipped along with it, as in the original
    assert errors("x = $u\ninterface em0 { ignore dns }\n") == [
        "t.conf:1: macro 'u' not defined",
        "t.conf:1: syntax error",
    ]
    assert errors("a = $\n")[0] == "t.conf:1: macro '' not defined"


def test_macro_name_rules() -> None:
    assert errors("interface = x\n") == ["t.conf:1: syntax error"]
    assert errors("ignore = x\n") == ["t.conf:1: syntax error"]
    assert errors("'a b' = x\n") == ["t.conf:1: macro name cannot contain whitespace"]
    assert errors("a = ignore\n") == ["t.conf:1: syntax error"]  # values are strings
    assert errors("interface em0 {\n\ta = b\n}\n") == ["t.conf:2: syntax error"]


def test_macro_values_cannot_grow_without_bound() -> None:
    text = "a = " + "x" * 8000 + "\n" + "".join("a = $a $a\n" for _ in range(4))
    assert errors(text) == ["t.conf:5: string too long"]


def test_macro_not_expanded_inside_its_own_value() -> None:
    # "$" read while a value is being expanded is an ordinary character
    assert errors("a = '$b'\nb = 'em0'\ninterface $a { ignore dns }\n") == [
        "t.conf:3: syntax error"
    ]
    assert one("a = x\ninterface $a$b { ignore dns }").name == "x$b"


def test_macro_expanding_to_a_whole_block() -> None:
    conf = parse_config('blk = "interface em0 { ignore dns }"\n$blk\n')
    assert conf == Config((IfaceConf("em0", ignore_dns=True),))


# --- interface blocks -------------------------------------------------------------------------


def test_one_line_block() -> None:
    assert one("interface em0 { ignore dns }") == IfaceConf("em0", ignore_dns=True)


def test_block_needs_an_option() -> None:
    assert errors("interface em0 {\n}\n") == ["t.conf:2: syntax error"]
    assert errors("interface em0 { }\n") == ["t.conf:1: syntax error"]


def test_brace_on_the_interface_line() -> None:
    assert errors("interface em0\n{\n\tignore dns\n}\n")[0] == "t.conf:1: syntax error"


def test_options_one_per_line() -> None:
    assert errors("interface em0 { ignore dns ignore routes }\n") == ["t.conf:1: syntax error"]
    assert errors("interface em0 { ignore dns } interface em1 { ignore dns }\n") == [
        "t.conf:1: syntax error"
    ]


def test_repeated_blocks_merge() -> None:
    conf = parse_config(
        "interface em0 { ignore dns }\n"
        "interface em1 { ignore dns }\n"
        "interface em0 {\n\tignore routes\n\tignore 192.0.2.1\n}\n"
        "interface em0 { ignore 192.0.2.2 }\n"
    )
    assert conf.ifaces == (
        IfaceConf(
            "em0",
            ignore_dns=True,
            ignore_routes=True,
            ignore_servers=(A("192.0.2.1"), A("192.0.2.2")),
        ),
        IfaceConf("em1", ignore_dns=True),
    )


def test_interface_name_length() -> None:
    assert one("interface abcdefghijklmno { ignore dns }").name == "abcdefghijklmno"
    assert errors("interface abcdefghijklmnop { ignore dns }\n") == ["t.conf:1: name too long"]
    assert errors("interface 'éééééééé' { ignore dns }\n") == ["t.conf:1: name too long"]
    # the original takes any name; a name no Linux interface can have is refused here, as
    # no imsg could carry it (the daemon used to raise at start-up on these)
    assert errors("interface '' { ignore dns }\n") == ["t.conf:1: interface name is empty"]


# --- options ----------------------------------------------------------------------------------


def test_every_option() -> None:
    assert option("ignore dns") == IfaceConf("em0", ignore_dns=True)
    assert option("ignore routes") == IfaceConf("em0", ignore_routes=True)
    assert option("ignore 192.0.2.1") == IfaceConf("em0", ignore_servers=(A("192.0.2.1"),))
    assert option("prefer ipv6") == IfaceConf("em0", prefer_ipv6=True)
    assert option("send host name gw1") == IfaceConf("em0", h_name="gw1")
    assert option("send no host name") == IfaceConf("em0", h_name="")
    assert option('send vendor class id "v"') == IfaceConf("em0", vc_id=b"v")
    assert option('send client id "1:2"') == IfaceConf("em0", c_id=b"\x01\x02")
    assert option("send rapid commit") == IfaceConf("em0", rapid_commit=True)
    assert option("release on exit") == IfaceConf("em0", release_on_exit=True)
    assert option("arp probe") == IfaceConf("em0", arp_probe=True)
    assert IfaceConf("em0").arp_probe is False  # off, as the original has no probing
    assert IfaceConf("em0").rapid_commit is IfaceConf("em0").release_on_exit is False  # off
    assert option("ignore mtu") == IfaceConf("em0", ignore_mtu=True)
    assert option("ignore ntp") == IfaceConf("em0", ignore_ntp=True)
    assert IfaceConf("em0").ignore_mtu is IfaceConf("em0").ignore_ntp is False  # both used


def test_issue_15_options_are_keywords() -> None:
    for line in ("send rapid", "rapid commit", "release", "release on", "release exit",
                 "send rapid commit now", "release on exit 1", "arp", "probe", "arp probe 3",
                 "probe arp", "send arp probe", "arp probes"):  # fmt: skip
        assert errors(f"interface em0 {{\n\t{line}\n}}\n") == ["t.conf:2: syntax error"]
    assert errors("interface release { ignore dns }\n") == ["t.conf:1: syntax error"]
    assert one("interface 'release' { ignore dns }").name == "release"  # quoted: a string
    assert errors("on = 'eth0'\n") == ["t.conf:1: syntax error"]  # nor a macro name
    assert errors("interface arp { arp probe }\n") == ["t.conf:1: syntax error"]
    assert one("interface 'arp' { arp probe }") == IfaceConf("arp", arp_probe=True)


def test_mtu_and_ntp_are_keywords() -> None:
    """ "ignore mtu" is not "ignore" a server named mtu; as names they need quotes."""
    for line in ("ignore mtu 1400", "ignore ntp 192.0.2.1", "mtu", "ntp", "ignore mtu ntp"):
        assert errors(f"interface em0 {{\n\t{line}\n}}\n") == ["t.conf:2: syntax error"]
    assert errors("interface ntp { ignore dns }\n") == ["t.conf:1: syntax error"]
    assert one("interface 'mtu' { ignore ntp }") == IfaceConf("mtu", ignore_ntp=True)
    assert errors("interface em0 { ignore 'mtu' }\n") == ["t.conf:1: Invalid server IP mtu"]


def test_incomplete_options() -> None:
    for line in ("send", "send vendor class", "send host", "send no host", "ignore", "prefer",
                 "send rapid", "release on"):  # fmt: skip
        assert errors(f"interface em0 {{\n\t{line}\n}}\n") == ["t.conf:2: syntax error"]


def test_flags_may_repeat() -> None:
    iface = one("interface em0 {\n\tignore dns\n\tignore dns\n\tprefer ipv6\n\tprefer ipv6\n}")
    assert iface == IfaceConf("em0", ignore_dns=True, prefer_ipv6=True)


def test_vendor_class_id() -> None:
    assert option(r'send vendor class id "MSFT 5.0"').vc_id == b"MSFT 5.0"
    assert option(r'send vendor class id "a\tb\001\M-a"').vc_id == b"a\tb\x01\xe1"
    assert option(r'send vendor class id "ab\0cd"').vc_id == b"ab"  # up to the first NUL
    assert option('send vendor class id ""').vc_id == b""
    assert option(f'send vendor class id "{"v" * 255}"').vc_id == b"v" * 255


def test_vendor_class_id_errors() -> None:
    text = 'interface em0 {{\n\tsend vendor class id "{}"\n}}\n'
    assert errors(text.format(r"\x41")) == ["t.conf:2: invalid vendor class id"]
    assert errors(text.format("v" * 256)) == ["t.conf:2: vendor class id too long"]
    assert errors(text.format(r"\0" * 256)) == ["t.conf:2: vendor class id too long"]
    twice = 'interface em0 {\n\tsend vendor class id "a"\n\tsend vendor class id "b"\n}\n'
    assert errors(twice) == ["t.conf:3: vendor class id already set"]
    merged = (
        "interface em0 { send vendor class id a }\ninterface em0 {\n\tsend vendor class id b\n}\n"
    )
    assert errors(merged) == ["t.conf:3: vendor class id already set"]


def test_client_id() -> None:
    assert option('send client id "01:00:53:FF:AA:BB:CC"').c_id == bytes.fromhex("010053ffaabbcc")
    assert option("send client id 01:00:53:ff:aa:bb:cc").c_id == bytes.fromhex("010053ffaabbcc")
    assert option('send client id "ab"').c_id == b"\xab"  # quirk: a lone hex piece
    assert option('send client id "foobar"').c_id == b"foobar"
    assert option(r'send client id "\0foobar"').c_id == b"\0foobar"
    assert option(r'send client id "\001\002"').c_id == b"\x01\x02"
    assert option('send client id "1:2:zz"').c_id == b"1:2:zz"
    assert option('send client id ""').c_id == b""
    assert option(f'send client id "{":".join(["7"] * 255)}"').c_id == b"\x07" * 255


def test_client_id_errors() -> None:
    text = 'interface em0 {{\n\tsend client id "{}"\n}}\n'
    assert errors(text.format(r"a\qb")) == ["t.conf:2: invalid client-id"]
    assert errors(text.format("c" * 256)) == ["t.conf:2: client-id too long"]
    assert errors(text.format(":".join(["7"] * 256))) == ["t.conf:2: client-id too long"]
    twice = 'interface em0 {\n\tsend client id "a"\n\tsend client id "b"\n}\n'
    assert errors(twice) == ["t.conf:3: client-id already set"]


def test_host_name() -> None:
    assert option(f"send host name {'h' * 255}").h_name == "h" * 255
    assert option('send host name ""').h_name == ""  # the same as "send no host name"
    text = "interface em0 {{\n\t{}\n\t{}\n}}\n"
    for first, second in [
        ("send host name a", "send host name b"),
        ("send host name a", "send no host name"),
        ("send no host name", "send host name b"),
        ("send no host name", "send no host name"),
    ]:
        assert errors(text.format(first, second)) == ["t.conf:3: host name already set"]
    assert errors(f"interface em0 {{\n\tsend host name {'h' * 256}\n}}\n") == [
        "t.conf:2: host name too long"
    ]
    assert errors(f"interface em0 {{\n\tsend host name '{'é' * 128}'\n}}\n") == [
        "t.conf:2: host name too long"
    ]


def test_ignore_servers() -> None:
    servers = [f"192.0.2.{i}" for i in range(defs.MAX_SERVERS)]
    body = "\n".join(f"\tignore {s}" for s in servers)
    assert one(f"interface em0 {{\n{body}\n}}\n").ignore_servers == tuple(map(A, servers))
    assert errors(f"interface em0 {{\n{body}\n\tignore 192.0.2.99\n}}\n") == [
        f"t.conf:{defs.MAX_SERVERS + 2}: too many servers to ignore"
    ]
    half = "\n".join(f"\tignore {s}" for s in servers[:8])
    rest = "\n".join(f"\tignore {s}" for s in servers[8:])
    merged = f"interface em0 {{\n{half}\n}}\ninterface em0 {{\n{rest}\n\tignore 192.0.2.99\n}}\n"
    assert errors(merged)[0].endswith(": too many servers to ignore")


@pytest.mark.parametrize(
    "address", ["192.0.2", "192.0.2.256", "192.0.2.01", "::1", "localhost", "1.2.3.4.5", " 1.2.3.4"]
)
def test_invalid_server(address: str) -> None:
    assert errors(f"interface em0 {{\n\tignore '{address}'\n}}\n") == [
        f"t.conf:2: Invalid server IP {address}"
    ]


# --- error recovery ---------------------------------------------------------------------------


def test_every_error_is_reported_with_its_line() -> None:
    text = (
        "interface em0 {\n"  # 1
        "\tsend host name a\n"  # 2
        "\tsend host name b\n"  # 3: host name already set
        "}\n"  # 4
        "interface em1 {\n"  # 5
        "\tignore 300.0.0.1\n"  # 6: Invalid server IP
        "}\n"  # 7
        "interface em2 { prefer ipv4 }\n"  # 8: syntax error
        "interface em3 { ignore dns }\n"  # 9
        "bogus\n"  # 10: syntax error
        "interface abcdefghijklmnopq { ignore dns }\n"  # 11: name too long
    )
    assert errors(text) == [
        "t.conf:3: host name already set",
        "t.conf:6: Invalid server IP 300.0.0.1",
        "t.conf:8: syntax error",
        "t.conf:10: syntax error",
        "t.conf:11: name too long",
    ]


def test_recovery_is_silent_until_three_tokens_are_accepted() -> None:
    # After the error on line 2 the rest of the block is read as top-level lines; yacc
    # reports nothing there until three tokens in a row have been accepted.
    text = "interface em0 {\n\tignore 1.2.3\n\tignore dns\n}\n\tbad line\ninterface em1 { x }\n"
    assert errors(text) == ["t.conf:2: Invalid server IP 1.2.3", "t.conf:6: syntax error"]


def test_semantic_errors_are_reported_even_right_after_another() -> None:
    text = "interface em0 {\n\tignore x\n}\ninterface em0 {\n\tignore y\n}\n"
    assert errors(text) == ["t.conf:2: Invalid server IP x", "t.conf:5: Invalid server IP y"]


def test_error_line_at_end_of_file() -> None:
    # the original reports the line after the fake newline it adds at EOF
    assert errors("interface em0 {") == ["t.conf:2: syntax error"]
    assert errors("interface em0 {\n") == ["t.conf:3: syntax error"]


def test_error_fails_whole_parse() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("interface em0 { ignore dns }\ninterface em1 { ignore x }\n")
    assert info.value.errors == ["dhcpleased.conf:2: Invalid server IP x"]


# --- strnunvis and the hex form ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "out"),
    [
        (rb"plain", b"plain"),
        (rb"\\", b"\\"),
        (rb"\"", b'"'),
        (rb"\n\r\b\a\v\t\f\s\E", b"\n\r\b\a\v\t\f \x1b"),
        (rb"\0", b"\0"),
        (rb"\0a", b"\0a"),
        (rb"\0008", b"\x008"),
        (rb"\101", b"A"),
        (rb"\1011", b"A1"),
        (rb"\18", b"\x018"),
        (rb"\777", b"\xff"),
        (rb"\M-a", b"\xe1"),
        (rb"\M^A", b"\x81"),
        (rb"\M^?", b"\xff"),
        (rb"\^A", b"\x01"),
        (rb"\^?", b"\x7f"),
        (rb"a\-b", b"ab"),
        (rb"a\$b", b"ab"),
        (b"a\\\nb", b"ab"),
        (rb"trailing\\", b"trailing\\"),
        (b"trailing\\", b"trailing"),
        (rb"\M", b""),
        (rb"\M-", b""),
        (b"\xc3\xa9", b"\xc3\xa9"),
    ],
)
def test_strnunvis(src: bytes, out: bytes) -> None:
    assert strnunvis(src) == out


@pytest.mark.parametrize("src", [rb"\x41", rb"\q", rb"\Mx", rb"\ "])
def test_strnunvis_rejects(src: bytes) -> None:
    assert strnunvis(src) is None


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("01:00:53:FF:AA:BB:CC", bytes.fromhex("010053ffaabbcc")),
        ("ab", b"\xab"),
        ("0", b"\0"),
        ("ff", b"\xff"),
        ("0x1f:0X2", b"\x1f\x02"),
        (" 1:\t2", b"\x01\x02"),
        ("+1:-0", b"\x01\x00"),
        ("000000ff", b"\xff"),
        ("100", None),
        ("-1", None),
        ("1 ", None),
        ("0x", None),
        ("g", None),
        ("", None),
        ("1::2", None),
        ("1:", None),
    ],
)
def test_client_id_hex_form(text: str, out: bytes | None) -> None:
    assert parse_client_id_hex(text) == out


# --- files ------------------------------------------------------------------------------------


def test_load_config_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf"
    assert load_config(str(missing), default=True) == Config()
    with pytest.raises(ConfigError) as info:
        load_config(str(missing), default=False)
    assert info.value.errors == [f"{missing}: No such file or directory"]
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), default=True)
    assert info.value.errors == [f"{tmp_path}: Is a directory"]
    bad = tmp_path / "bad.conf"
    bad.write_text("interface em0 {\n\tignore x\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad), default=True)
    assert info.value.errors == [f"{bad}:2: Invalid server IP x"]


def test_daemon_reads_only_a_regular_file_and_never_blocks(tmp_path: Path) -> None:
    """A FIFO left at the config path must not hang the parent on SIGHUP."""
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(ConfigError) as info:
            load_config(str(path), default=True, regular=True)
        assert info.value.errors == [f"{path}: not a regular file"]
    good = tmp_path / "good.conf"
    good.write_text("interface em0 { ignore dns }\n")
    assert load_config(str(good), default=False, regular=True).ifaces[0].ignore_dns


def test_undecodable_bytes_survive(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes(
        b"interface em0 {\n\tsend vendor class id '\xe9t\xe9'\n\tsend host name '\xff'\n}\n"
    )
    iface = load_config(str(path), default=False).ifaces[0]
    assert iface.vc_id == b"\xe9t\xe9"
    assert iface.h_name is not None
    assert iface.h_name.encode("utf-8", "surrogateescape") == b"\xff"


def test_shipped_example_is_empty_but_valid_when_uncommented() -> None:
    path = DATA.parent.parent / "etc" / "dhcpleased.conf"
    text = path.read_text()
    assert parse_config(text) == Config()
    lines = [
        line[1:] if line.startswith("#") and not line.startswith("# ") else line
        for line in text.splitlines()
    ]
    conf = parse_config("\n".join(lines) + "\n")
    assert [i.name for i in conf.ifaces] == ["eth0", "wlan0"]
    eth0 = conf.ifaces[0]
    assert eth0.h_name == "gw1"
    assert eth0.c_id is not None
    assert eth0.vc_id == b"dhcpleased"
    assert eth0.ignore_dns
    assert eth0.ignore_routes
    assert eth0.ignore_servers == (A("192.0.2.66"),)
    assert eth0.prefer_ipv6
    assert eth0.ignore_mtu and eth0.ignore_ntp


def test_full_fixture() -> None:
    conf = load_config(str(DATA / "full.conf"), default=False)
    assert [i.name for i in conf.ifaces] == [
        "eth0",
        "enp1s0",
        "eth1",
        "wlan0",
        "ignore",
        "br-lan.100",
        "wwan0",
    ]
    assert conf.ifaces[6] == IfaceConf("wwan0", ignore_mtu=True, ignore_ntp=True)
    enp = conf.ifaces[1]
    assert enp.vc_id == b"OpenBSD 7.6\n"
    assert enp.ignore_servers == (A("192.0.2.66"), A("198.51.100.1"), A("203.0.113.7"))
    assert conf.ifaces[3].c_id == b"\0foo\tbar"
    assert conf.ifaces[3].vc_id == b"quote ' and \""
    assert conf.ifaces[4].c_id == b"\xab"


def test_errors_fixture() -> None:
    text = (DATA / "errors.conf").read_text()
    with pytest.raises(ConfigError) as info:
        parse_config(text, "errors.conf")
    assert info.value.errors == (DATA / "errors.expected").read_text().splitlines()
