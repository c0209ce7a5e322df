"""dhcpleasectl: control and inspect a running dhcpleased."""
