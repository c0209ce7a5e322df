"""Shared constants: the Python twin of dhcpleased.h.

Paths are Linux ones (``/run``, ``/var/lib``) where the original uses ``/dev`` and
``/var/db``; limits are the original's so that imsg payload sizes match its structs.
"""

from __future__ import annotations

from typing import Final

# --- paths and identity -----------------------------------------------------------------
CONF_FILE: Final = "/etc/dhcpleased.conf"
RUN_DIR: Final = "/run/dhcpleased"  # systemd's RuntimeDirectory=; else made by the daemon
CONTROL_SOCKET: Final = "/run/dhcpleased/dhcpleased.sock"
LOCK_FILE: Final = "/run/dhcpleased/lock"
LEASE_DIR: Final = "/var/lib/dhcpleased"
RESOLV_CONF: Final = "/etc/resolv.conf"
DHCPLEASED_USER: Final = "_dhcp"
LEASE_VERSION: Final = "version: 2"

# --- ports --------------------------------------------------------------------------------
SERVER_PORT: Final = 67
CLIENT_PORT: Final = 68

# --- limits (dhcpleased.h) ------------------------------------------------------------------
IF_NAMESIZE: Final = 16
MAX_SERVERS: Final = 16  # "ignore ADDR" entries per interface
MAX_DHCP_ROUTES: Final = 256
MAX_RDNS_COUNT: Final = 8
MAX_NTP_COUNT: Final = 8  # NTP servers (option 42) handed on per interface (Linux)
LEASE_SIZE: Final = 4096  # lease text carried in UPDATE_IF, NUL included
MAX_PACKET: Final = 1500  # largest frame the frontend forwards (BPFLEN 2048 in the original)
MAX_FILE: Final = 513  # BOOTP file[128] after strvis, as the original sizes it
MAX_DOMAIN: Final = 1021  # 4 * 255 + 1: strvis of option 12/15
MAX_SEARCH: Final = 1024  # option 119, space separated, NUL included (Linux extension)
MAX_HOSTNAME: Final = 256
MAX_OPT_LEN: Final = 255
MAX_IMSGSIZE: Final = 16384
DHCP_MIN_PACKET: Final = 300  # BOOTP payload is zero-padded to at least this size

# --- ignore flags (iface_conf.ignore) -----------------------------------------------------
IGN_ROUTES: Final = 1
IGN_DNS: Final = 2
IGN_MTU: Final = 4  # Linux additions (issue 15): "ignore mtu", "ignore ntp"
IGN_NTP: Final = 8

# --- DHCP message types (option 53) ---------------------------------------------------------
DHCPDISCOVER: Final = 1
DHCPOFFER: Final = 2
DHCPREQUEST: Final = 3
DHCPDECLINE: Final = 4
DHCPACK: Final = 5
DHCPNAK: Final = 6
DHCPRELEASE: Final = 7
DHCPINFORM: Final = 8

BOOTREQUEST: Final = 1
BOOTREPLY: Final = 2
DHCP_COOKIE: Final = b"\x63\x82\x53\x63"

# --- option codes ---------------------------------------------------------------------------
DHO_PAD: Final = 0
DHO_SUBNET_MASK: Final = 1
DHO_ROUTERS: Final = 3
DHO_DOMAIN_NAME_SERVERS: Final = 6
DHO_HOST_NAME: Final = 12
DHO_DOMAIN_NAME: Final = 15
DHO_INTERFACE_MTU: Final = 26
DHO_STATIC_ROUTES: Final = 33
DHO_NTP_SERVERS: Final = 42
DHO_DHCP_REQUESTED_ADDRESS: Final = 50
DHO_DHCP_LEASE_TIME: Final = 51
DHO_DHCP_OPTION_OVERLOAD: Final = 52
DHO_DHCP_MESSAGE_TYPE: Final = 53
DHO_DHCP_SERVER_IDENTIFIER: Final = 54
DHO_DHCP_PARAMETER_REQUEST_LIST: Final = 55
DHO_DHCP_MESSAGE: Final = 56
DHO_DHCP_MAX_MESSAGE_SIZE: Final = 57
DHO_DHCP_RENEWAL_TIME: Final = 58
DHO_DHCP_REBINDING_TIME: Final = 59
DHO_DHCP_CLASS_IDENTIFIER: Final = 60
DHO_DHCP_CLIENT_IDENTIFIER: Final = 61
DHO_RAPID_COMMIT: Final = 80  # RFC 4039, always empty
DHO_IPV6_ONLY_PREFERRED: Final = 108
DHO_DOMAIN_SEARCH: Final = 119
DHO_CLASSLESS_STATIC_ROUTES: Final = 121
DHO_END: Final = 255

# Parameter request list, in the original's order; packet.request_list appends 26 and 42
# (unless ignored) and 108 with "prefer ipv6".
REQUEST_LIST: Final = (
    DHO_SUBNET_MASK,
    DHO_ROUTERS,
    DHO_DOMAIN_NAME_SERVERS,
    DHO_HOST_NAME,
    DHO_DOMAIN_NAME,
    28,  # broadcast address
    DHO_DOMAIN_SEARCH,
    DHO_CLASSLESS_STATIC_ROUTES,
)

# --- timers (engine.c) ----------------------------------------------------------------------
START_EXP_BACKOFF: Final = 1
MAX_EXP_BACKOFF_SLOW: Final = 64
MAX_EXP_BACKOFF_FAST: Final = 2
MIN_RENEW_RETRY: Final = 60  # renewing floor; this port applies it to rebinding too
MIN_V6ONLY_WAIT: Final = 300  # RFC 8925 section 3.2
RELEASE_WAIT: Final = 2  # longest wait for the frontend to say a DHCPRELEASE left (Linux)
DECLINE_WAIT: Final = 10  # RFC 2131 3.1.5: at least this long after a DHCPDECLINE

# --- interface MTU (option 26, Linux) -------------------------------------------------------
MIN_MTU: Final = 576  # smallest MTU taken from a lease: every IPv4 host accepts 576 bytes
MAX_MTU: Final = 0xFFFF  # option 26 is 16 bits; the device's own maximum is the parent's check

# --- Linux bits -----------------------------------------------------------------------------
RTPROT_DHCP: Final = 16  # routes are tagged "proto dhcp"
ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806
ARPHRD_ETHER: Final = 1  # hardware type: Ethernet (ARP, link messages)
ETH_ALEN: Final = 6
# PACKET_AUXDATA tp_status bits carried in imsg_dhcp.csumflags
TP_STATUS_CSUMNOTREADY: Final = 0x08
TP_STATUS_CSUM_VALID: Final = 0x80
# IFLA_OPERSTATE values (RFC 2863), carried as link_state in UPDATE_IF
IF_OPER_UNKNOWN: Final = 0
IF_OPER_NOTPRESENT: Final = 1
IF_OPER_DOWN: Final = 2
IF_OPER_LOWERLAYERDOWN: Final = 3
IF_OPER_TESTING: Final = 4
IF_OPER_DORMANT: Final = 5
IF_OPER_UP: Final = 6
RESOLVCONF_SUFFIX: Final = ".dhcpleased"  # resolvconf(8) record name: IFNAME.dhcpleased
