"""Odd config values through the parser and into the imsgs the parent sends (item 3).

Every value of tests/odd_values.py in every slot: accepted and carried byte for byte
into the RECONF_* payloads, or refused with ``file:line: message``.  And the property
behind it: whatever the parser accepts, the parent can send (the daemon used to raise
in send_config on values ``-n`` had passed).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcpleased import imsg
from dhcpleased.imsg import ImsgType
from dhcpleased.main import reconf_messages
from dhcpleased.parse import Config, ConfigError, parse_config
from dhcpleased.printconf import print_config
from tests.odd_values import CASES, EXPECTED, SLOTS, VALUES, Refused, config, config_line


def parse(text: bytes) -> Config:
    return parse_config(text.decode("utf-8", "surrogateescape"), "t.conf")


def carried(conf: Config, slot: str) -> bytes | str | IPv4Address | None:
    """What the children get of the one interface's value."""
    (ic,) = conf.ifaces
    sent = reconf_messages(conf.ifaces)
    if slot == "interface":
        (_, data), *_ = [m for m in sent["engine"] if m[0] is ImsgType.RECONF_IFACE]
        return imsg.IfaceConf.unpack(data).name
    if slot == "ignore":
        return ic.ignore_servers[0]
    kind = {
        "vendor class id": ImsgType.RECONF_VC_ID,
        "client id": ImsgType.RECONF_C_ID,
    }.get(slot, ImsgType.RECONF_H_NAME)
    found = [data for t, data in sent["frontend"] if t is kind]
    if kind is ImsgType.RECONF_H_NAME:
        return imsg.HostName.unpack(found[0]).name
    return imsg.OptionBytes.unpack(found[0]).data


@pytest.mark.parametrize(("slot", "name"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_odd_value(slot: str, name: str) -> None:
    text, lines = config(slot, [name])
    expected = EXPECTED[slot][name]
    if isinstance(expected, Refused):
        with pytest.raises(ConfigError) as info:
            parse(text)
        (line,) = lines
        assert info.value.errors == [f"t.conf:{line}: {expected.message}"]
        return
    conf = parse(text)
    assert carried(conf, slot) == expected
    assert parse_config(print_config(conf)) == conf  # -nv prints what reads back the same


def test_every_value_in_every_slot_is_in_the_table() -> None:
    assert all(set(EXPECTED[slot]) == set(VALUES) for slot in SLOTS)
    assert sum(isinstance(o, Refused) for s in EXPECTED.values() for o in s.values()) > 30


def test_errors_name_the_line_of_each_value() -> None:
    """Many values in one file (as the lab runs them): each refusal on its own line."""
    for slot in SLOTS:
        names = list(VALUES)
        text, lines = config(slot, names)
        refused = {
            f"t.conf:{line}: {o.message}"
            for line, n in lines.items()
            if isinstance(o := EXPECTED[slot][n], Refused)
        }
        with pytest.raises(ConfigError) as info:
            parse(text)
        assert set(info.value.errors) == refused, slot
        accepted = [n for n in names if not isinstance(EXPECTED[slot][n], Refused)]
        conf = parse(config(slot, accepted)[0])
        assert len(conf.ifaces) == len(accepted)
        reconf_messages(conf.ifaces)


_BYTES = st.binary(max_size=300).filter(lambda b: b"\n" not in b)


@settings(max_examples=400, deadline=None)
@given(slot=st.sampled_from(sorted(SLOTS)), raw=_BYTES, quote=st.sampled_from([b"", b'"', b"'"]))
def test_whatever_the_parser_accepts_the_parent_can_send(
    slot: str, raw: bytes, quote: bytes
) -> None:
    """The -n/daemon agreement as a property: no accepted config fails to become imsgs."""
    value = quote + raw + quote
    text = config_line(slot, 1, "space").replace(VALUES["space"], value)
    try:
        conf = parse(text)
    except ConfigError as e:
        assert all(err.startswith("t.conf:") for err in e.errors)
        return
    reconf_messages(conf.ifaces)
