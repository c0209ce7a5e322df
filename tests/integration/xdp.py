"""A veth whose MTU has a maximum below 65535, for the "above the device's maximum" tests.

A veth's IFLA_MAX_MTU is 65535 (option 26's own limit) until a native XDP program is
attached to its peer: then the kernel caps it to what fits one page (veth_xdp_set).  The
program is two instructions, XDP_PASS, loaded with bpf(2) and attached through pyroute2;
it stays attached (and the cap in place) until the veth goes with the lab's namespaces.
"""

from __future__ import annotations

import json

from tests.integration.lab import Lab

_ATTACH = r"""
import ctypes, socket, struct, sys
from pyroute2 import IPRoute
libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF, BPF_PROG_LOAD, BPF_PROG_TYPE_XDP, XDP_PASS = 321, 5, 6, 2
insns = ctypes.create_string_buffer(
    struct.pack("<BBhi", 0xB7, 0, 0, XDP_PASS) + struct.pack("<BBhi", 0x95, 0, 0, 0)
)  # r0 = XDP_PASS; exit
license = ctypes.create_string_buffer(b"GPL")
attr = ctypes.create_string_buffer(128)
struct.pack_into("=IIQQ", attr, 0, BPF_PROG_TYPE_XDP, 2, ctypes.addressof(insns),
                 ctypes.addressof(license))
fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, attr, 128)
if fd < 0:
    sys.exit(f"bpf(BPF_PROG_LOAD): errno {ctypes.get_errno()}")
with IPRoute() as ipr:
    ipr.link("set", index=socket.if_nametoindex(sys.argv[1]), xdp_fd=fd)
"""


def cap_client_mtu(lab: Lab) -> int:
    """XDP on the server's end: the client interface's IFLA_MAX_MTU drops; returns it."""
    r = lab.python_in(lab.srv_ns, _ATTACH, lab.srv_ifname)
    assert r.returncode == 0, r.stderr
    out = lab.exec_in(lab.cli_ns, ["ip", "-d", "-j", "link", "show", "dev", lab.ifname]).stdout
    limit = int(json.loads(out)[0]["max_mtu"])
    assert limit < 9000, limit
    return limit


def mtu(lab: Lab) -> int:
    """The client interface's MTU as the kernel has it."""
    out = lab.exec_in(lab.cli_ns, ["ip", "-j", "link", "show", "dev", lab.ifname]).stdout
    return int(json.loads(out)[0]["mtu"])
