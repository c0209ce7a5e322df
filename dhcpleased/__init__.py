"""dhcpleased for Linux: a privilege-separated DHCPv4 client daemon.

Importing the package must stay cheap: no lark or scapy here, because every
process (and dhcpleasectl) imports it.
"""

__version__ = "0.1.0"
