"""Canonical printing (dhcpleased -nv) and the -n config test."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dhcpleased import defs
from dhcpleased.imsg import ifname_problem
from dhcpleased.parse import KEYWORDS, Config, IfaceConf, parse_config, strnunvis, to_bytes
from dhcpleased.printconf import configtest, print_config, quote, strvis

DATA = Path(__file__).resolve().parent.parent / "data"
ROOT = DATA.parent.parent

EXAMPLE_TEXT = """\
interface em0 {
	send host name "gw1"
	ignore dns
	ignore 192.0.2.66
}
interface iwm0 {
	send client id "01:00:53:ff:aa:bb:cc"
	send vendor class id "OpenBSD"
	ignore routes
	prefer ipv6
}
interface vio0 {
	send no host name
}
"""


def roundtrip(conf: Config) -> str:
    text = print_config(conf)
    assert parse_config(text) == conf, text
    return text


def test_example_canonical_text() -> None:
    conf = parse_config((DATA / "example.conf").read_text())
    assert print_config(conf) == EXAMPLE_TEXT
    assert parse_config(EXAMPLE_TEXT) == conf


def test_full_fixture_canonical_text() -> None:
    conf = parse_config((DATA / "full.conf").read_text())
    assert roundtrip(conf) == (DATA / "full.expected").read_text()


def test_issue_15_options_print_last() -> None:
    conf = parse_config(
        "interface em0 {\n\tarp probe\n\trelease on exit\n\tsend rapid commit\n\tignore dns\n}\n"
    )
    assert roundtrip(conf) == (
        "interface em0 {\n\tignore dns\n\tsend rapid commit\n\trelease on exit\n\tarp probe\n}\n"
    )


def test_empty_config_prints_nothing() -> None:
    assert print_config(Config()) == ""


def test_option_order_is_fixed() -> None:
    conf = parse_config(
        "interface em0 {\n\tprefer ipv6\n\tignore 192.0.2.9\n\tignore routes\n\tignore dns\n"
        "\tsend vendor class id v\n\tsend host name h\n\tsend client id 'c'\n"
        "\tignore 192.0.2.1\n}\n"
    )
    assert print_config(conf) == (
        "interface em0 {\n"
        '\tsend client id "\\f"\n'  # "c" is hex 0x0c: type 12, printed with vis
        '\tsend host name "h"\n'
        '\tsend vendor class id "v"\n'
        "\tignore dns\n"
        "\tignore routes\n"
        "\tignore 192.0.2.9\n"
        "\tignore 192.0.2.1\n"
        "\tprefer ipv6\n"
        "}\n"
    )


@pytest.mark.parametrize(
    ("c_id", "text"),
    [
        (b"\x01\x00\x53", "01:00:53"),  # type 1 (Ethernet): hex
        (b"\x01", "01"),
        (b"\0foobar", "\\0foobar"),  # other types: vis
        (b"\0" + b"1", "\\0001"),
        (b"xyz", "xyz"),
        (b"", ""),
        (b"ab", "61:62"),  # vis text "ab" would read back as hex 0xab
        (b" 1:2", "20:31:3a:32"),
        (b"\xff\x02", "\\M^?\\^B"),
    ],
)
def test_client_id_forms(c_id: bytes, text: str) -> None:
    conf = Config((IfaceConf("em0", c_id=c_id),))
    assert roundtrip(conf) == f'interface em0 {{\n\tsend client id "{text}"\n}}\n'


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"OpenBSD", "OpenBSD"),
        (b"MSFT 5.0", "MSFT 5.0"),
        (b'a"b\\c', 'a\\"b\\\\c'),
        (b"\t", "\t"),  # visible for strvis without VIS_TAB
        (b"\n\r\x08\x07\x0b\x0c", "\\n\\r\\b\\a\\v\\f"),
        (b"\x1b\x7f", "\\^[\\^?"),
        (b"\x80\xe1\xa0\xa2", "\\M^@\\M-a\\240\\242"),
        (b"\\ ", "\\134 "),  # "\\\\ " would read back as one backslash-space
        (b"a\\", "a\\134"),  # "\\\\" before the closing quote would escape it
        (b"\x1c\t", "\\034\t"),
        (b"\\x", "\\\\x"),
        (b"\0", "\\0"),
    ],
)
def test_strvis(data: bytes, text: str) -> None:
    assert strvis(data) == text
    conf = Config((IfaceConf("em0", vc_id=data.split(b"\0")[0], c_id=b"\x02" + data),))
    roundtrip(conf)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("em0", "em0"),
        ("br-lan.100", "br-lan.100"),
        ("ignore", '"ignore"'),
        ("0", '"0"'),
        ("12=x", '"12=x"'),
        ("12x", "12x"),
        ("a'b", "a'b"),
        ("a(b", '"a(b"'),
        ("$x", '"$x"'),
        ("a#b", '"a#b"'),
        ("é", '"é"'),
    ],
)
def test_interface_names(name: str, text: str) -> None:
    conf = Config((IfaceConf(name, ignore_dns=True),))
    assert roundtrip(conf) == f"interface {text} {{\n\tignore dns\n}}\n"


@pytest.mark.parametrize(
    ("h_name", "text"),
    [
        ("gw1", '"gw1"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a\\b", '"a\\b"'),
        ('a\\"b c', "'a\\\"b c'"),  # backslash-quote survives only in the other quotes
        ("a\\", "a\\\\"),  # a trailing backslash only as a bare word
        ("x\\\"y\\'z", "x\\\\\"y\\\\'z"),
        ("tab\there", '"tab\there"'),
    ],
)
def test_host_names(h_name: str, text: str) -> None:
    conf = Config((IfaceConf("em0", h_name=h_name),))
    assert roundtrip(conf) == f"interface em0 {{\n\tsend host name {text}\n}}\n"


def test_quote_prefers_bare_only_when_asked() -> None:
    assert quote("em0") == '"em0"'
    assert quote("em0", bare=True) == "em0"
    for keyword in KEYWORDS:
        assert quote(keyword, bare=True) == f'"{keyword}"'


# --- hypothesis: parse(print(c)) == c ---------------------------------------------------------

# Every character a config string can hold except the backslash (whose combinations
# with blanks and quotes cannot all be written; see test_host_names for those) and
# newline/NUL, which no string can hold.
TEXT_CHARS = st.characters(codec="utf-8", exclude_characters="\\\n\0")


def _fits(limit: int) -> st.SearchStrategy[str]:
    return st.text(TEXT_CHARS, max_size=limit).filter(lambda s: len(to_bytes(s)) <= limit)


names = _fits(defs.IF_NAMESIZE - 1).filter(lambda s: ifname_problem(s) is None)
host_names = st.one_of(st.none(), st.just(""), _fits(255))
servers = st.lists(st.integers(0, 2**32 - 1).map(IPv4Address), max_size=defs.MAX_SERVERS).map(tuple)
vc_ids = st.one_of(st.none(), st.binary(max_size=255).map(lambda b: b.split(b"\0")[0]))
c_ids = st.one_of(st.none(), st.binary(max_size=255))


def _has_an_option(iface: IfaceConf) -> bool:
    # a block needs at least one option, and every option sets something
    return iface != IfaceConf(iface.name)


@st.composite
def _ifaces(draw: st.DrawFn, name: str) -> IfaceConf:
    return IfaceConf(
        name=name,
        vc_id=draw(vc_ids),
        c_id=draw(c_ids),
        h_name=draw(host_names),
        ignore_dns=draw(st.booleans()),
        ignore_routes=draw(st.booleans()),
        ignore_servers=draw(servers),
        prefer_ipv6=draw(st.booleans()),
        rapid_commit=draw(st.booleans()),
        release_on_exit=draw(st.booleans()),
        arp_probe=draw(st.booleans()),
        ignore_mtu=draw(st.booleans()),
        ignore_ntp=draw(st.booleans()),
    )


configs = st.lists(names, max_size=4, unique=True).flatmap(
    lambda ns: st.tuples(*(_ifaces(n).filter(_has_an_option) for n in ns)).map(
        lambda t: Config(tuple(t))
    )
)


@settings(max_examples=300, deadline=None)
@given(configs)
def test_print_parse_roundtrip(conf: Config) -> None:
    text = roundtrip(conf)
    assert print_config(parse_config(text)) == text


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_strvis_is_undone_by_the_lexer_and_strnunvis(data: bytes) -> None:
    text = strvis(data)
    assert "\n" not in text
    assert strnunvis(to_bytes(text.replace('\\"', '"'))) == data
    if len(data) < 255:
        conf = parse_config(f'interface em0 {{\n\tsend client id "\x02{text}"\n}}\n')
        assert conf.ifaces[0].c_id == b"\x02" + data


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_characters="\n\0")))
def test_quote_reads_back_when_the_string_can_be_written(s: str) -> None:
    # Unwritable strings (a backslash before a blank, ...) are the only exception.
    unwritable = any(
        s[i] == "\\" and (i + 1 == len(s) or s[i + 1] in " \t\"'") for i in range(len(s))
    )
    assume(len(to_bytes(s)) <= 255)  # longer host names are refused, rightly
    conf = Config((IfaceConf("em0", h_name=s),))
    text = print_config(conf)
    if not unwritable:
        assert parse_config(text) == conf


# --- configtest (dhcpleased -n) ---------------------------------------------------------------


def test_configtest_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert configtest(str(DATA / "example.conf"), default=False, verbose=0) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("", "configuration OK\n")


def test_configtest_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    assert configtest(str(DATA / "example.conf"), default=False, verbose=1) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (EXAMPLE_TEXT, "")
    assert configtest(str(DATA / "full.conf"), default=False, verbose=2) == 0
    assert capsys.readouterr().out == (DATA / "full.expected").read_text()


def test_configtest_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("interface em0 {\n\tignore x\n}\ninterface em1 { ignore dns }\nbogus\n")
    assert configtest(str(bad), default=False, verbose=1) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{bad}:2: Invalid server IP x\n{bad}:5: syntax error\n"


def test_configtest_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "none.conf")
    assert configtest(missing, default=True, verbose=0) == 0
    assert capsys.readouterr() == ("", "configuration OK\n")
    assert configtest(missing, default=True, verbose=1) == 0
    assert capsys.readouterr() == ("", "")  # an empty config prints nothing
    assert configtest(missing, default=False, verbose=0) == 1
    assert capsys.readouterr() == ("", f"{missing}: No such file or directory\n")


def test_configtest_shipped_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert configtest(str(ROOT / "etc" / "dhcpleased.conf"), default=False, verbose=1) == 0
    assert capsys.readouterr() == ("", "")


def test_configtest_is_exported_by_parse_too(capsys: pytest.CaptureFixture[str]) -> None:
    from dhcpleased import parse

    assert parse.configtest(str(DATA / "example.conf"), default=False, verbose=0) == 0
    assert capsys.readouterr() == ("", "configuration OK\n")
