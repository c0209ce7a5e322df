"""dhcpleased for Linux: a privilege-separated DHCPv4 client daemon.

Importing the package must stay cheap: no lark, pyroute2 or scapy here, because every
process (and dhcpleasectl) imports it.
"""

__version__ = "0.1.0"
