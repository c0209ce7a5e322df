"""dhcpleasectl: the control tool (usr.sbin/dhcpleasectl)."""

from __future__ import annotations

import sys


def run() -> None:
    """Console-script entry point."""
    sys.stderr.write("dhcpleasectl: the control socket is not served yet\n")
    sys.exit(1)
