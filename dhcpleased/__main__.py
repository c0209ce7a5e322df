"""``python -m dhcpleased``: how the parent re-executes itself for its children."""

from dhcpleased.main import run

run()
