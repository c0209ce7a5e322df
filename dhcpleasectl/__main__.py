"""``python -m dhcpleasectl``."""

from dhcpleasectl.main import run

run()
