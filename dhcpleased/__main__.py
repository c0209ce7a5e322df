"""``python -m dhcpleased``: how the parent re-executes itself for its children."""

import sys

if sys.argv[1:2] in (["-E"], ["-F"]):
    # The children never speak TLS: keep asyncio from loading ssl (about 8 ms and 4.5 MiB
    # each). asyncio treats a missing ssl module as "no TLS support".
    sys.modules["ssl"] = None  # type: ignore[assignment]

from dhcpleased.main import run

run()
