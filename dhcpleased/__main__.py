"""``python -m dhcpleased``: how the parent re-executes itself for its children."""

import os
import sys

# "python -m" put the working directory first on sys.path ("/" for a daemon started from
# the root, or a /tmp anyone can write to): nothing may be imported from there, and the
# parent's Landlock rules follow where modules came from (sandbox.import_dirs).  The
# children run with -I, which leaves it out.
if sys.path and sys.path[0] == os.getcwd():
    del sys.path[0]

if sys.argv[1:2] in (["-E"], ["-F"]):
    # The children never speak TLS: keep asyncio from loading ssl (about 8 ms and 4.5 MiB
    # each). asyncio treats a missing ssl module as "no TLS support".
    sys.modules["ssl"] = None  # type: ignore[assignment]

from dhcpleased.main import run

run()
