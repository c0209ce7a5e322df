"""dhcpleasectl's command line: ``release IF`` beside the original's forms."""

from __future__ import annotations

import pytest

from dhcpleasectl.main import UsageError, is_release, parse_args


def test_release_takes_one_interface_and_the_wait_options() -> None:
    o = parse_args(["-j", "-w", "5", "release", "eth0"])
    assert is_release(o.args) and o.args[1] == "eth0" and o.json and o.maxwait == 5
    assert not is_release(parse_args(["release"]).args)  # alone: an interface so named


@pytest.mark.parametrize(
    "argv",
    [
        ["-l", "release", "eth0"],
        ["-m", "release", "eth0"],
        ["-p", "release", "eth0"],
        ["release", "eth0", "eth1"],
    ],
)
def test_release_refuses_what_does_not_go_with_it(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)
