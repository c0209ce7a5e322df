"""The running daemon's sandbox as the kernel reports it, and what a bad child costs.

With the daemon bound in the lab: each child runs as ``_dhcp`` with no capability, no
new privileges, a seccomp filter and a deleted empty directory as its root; the parent
keeps exactly :data:`sandbox.PARENT_CAPS`; the engine holds no socket but unix ones.  A
substitute child that sends a wrong-size message makes the parent exit 1 and the real
other child go with it.
"""

from __future__ import annotations

import os
import pwd
import signal
import sys
from pathlib import Path

import pytest

from dhcpleased import caps, sandbox
from dhcpleased.imsg import ImsgType
from tests.integration.lab import Lab
from tests.integration.test_daemon import alive, children, comm, daemon_log, wait_leased

pytestmark = pytest.mark.integration


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def kids_by_name(lab: Lab, pid: int) -> dict[str, int]:
    kids = lab.wait_for(lambda: len(children(pid)) == 2 and children(pid), 10)
    return {comm(k): k for k in kids}


def socket_inodes(pid: int) -> list[str]:
    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    return [link[len("socket:[") : -1] for link in links if link.startswith("socket:[")]


def unix_inodes(pid: int) -> set[str]:
    lines = Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]
    return {line.split()[6] for line in lines if len(line.split()) > 6}


def test_children_and_parent_as_the_kernel_sees_them(dhcp_user: pwd.struct_passwd) -> None:
    with Lab(t1=3, t2=6) as lab:
        conf = lab.tmp / "dhcpleased.conf"  # read again on SIGHUP, through Landlock
        conf.write_text(f'interface {lab.ifname} {{\n\tsend host name "sbx"\n}}\n')
        daemon = lab.start_daemon("-d", "-v", "-f", str(conf))
        wait_leased(lab, daemon)
        kids = kids_by_name(lab, daemon.pid)
        assert set(kids) == {"dhcp-engine", "dhcp-frontend"}
        for name, pid in kids.items():
            st = status(pid)
            assert st["Uid"].split() == [str(dhcp_user.pw_uid)] * 4, name
            assert st["Gid"].split() == [str(dhcp_user.pw_gid)] * 4, name
            assert st["Groups"].split() == [str(dhcp_user.pw_gid)], name
            for cap in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
                assert int(st[cap], 16) == 0, (name, cap)
            assert st["NoNewPrivs"] == "1", name
            assert st["Seccomp"] == "2", name
            assert st["Threads"] == "1", name
            title = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode()
            assert title == f"dhcpleased: {name.removeprefix('dhcp-')}", title
            root = os.readlink(f"/proc/{pid}/root")
            assert root.endswith("(deleted)") and "dhcpleased-" in root, (name, root)
        parent = status(daemon.pid)
        assert parent["Uid"].split() == ["0"] * 4
        assert int(parent["CapEff"], 16) == caps.mask(sandbox.PARENT_CAPS) == 0x3400
        assert int(parent["CapPrm"], 16) == 0x3400
        assert int(parent["CapBnd"], 16) == 0x3400
        assert int(parent["CapInh"], 16) == int(parent["CapAmb"], 16) == 0
        assert parent["NoNewPrivs"] == "1"

        engine = kids["dhcp-engine"]
        inodes = socket_inodes(engine)
        assert inodes, "the engine has its channels"
        assert set(inodes) <= unix_inodes(engine), "the engine holds a non-unix socket"
        frontend_sockets = set(socket_inodes(kids["dhcp-frontend"]))
        assert not frontend_sockets <= unix_inodes(kids["dhcp-frontend"]), "no packet socket?"

        # renewals (unicast UDP from the frontend) and a reload under the sandbox
        lab.wait_for(lambda: "Renewing -> Bound" in daemon_log(lab), 15)
        daemon.send_signal(signal.SIGHUP)
        lab.wait_for(lambda: "configuration reloaded" in daemon_log(lab), 10)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0, daemon_log(lab)
        log = daemon_log(lab)
        assert "imported after the sandbox" not in log
        assert "fatal" not in log
        assert "sandbox: chroot yes" in log


FAKE_CHILD = r"""
import os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fileno=3)
s.recv(16384)  # the parent has started talking to us: both children exist
ppid = os.getppid()
kids = open(f"/proc/{ppid}/task/{ppid}/children").read().split()
print("sibling", *[k for k in kids if int(k) != os.getpid()], file=sys.stderr, flush=True)
mtype = int(sys.argv[1])
s.send(struct.pack("=IHHII", mtype, 16 + 3, 0, 0, os.getpid()) + b"bad")
while s.recv(16384):
    pass
"""

PARENT = r"""
import sys
from dhcpleased import main
fake_role, fake_type, fake_code = sys.argv[1], sys.argv[2], sys.argv[3]
real = main.child_argv
def child_argv(role, opts):
    if role == fake_role:
        return [sys.executable, "-c", fake_code, fake_type]
    return real(role, opts)
main.child_argv = child_argv
sys.exit(main.main(["-d", *sys.argv[4:]]))
"""


@pytest.mark.parametrize(
    ("fake", "mtype", "real"),
    [
        ("engine", ImsgType.CONFIGURE_INTERFACE, "dhcp-frontend"),
        ("frontend", ImsgType.OPEN_BPFSOCK, "dhcp-engine"),
    ],
)
def test_wrong_size_message_ends_the_daemon(
    dhcp_user: pwd.struct_passwd, fake: str, mtype: ImsgType, real: str
) -> None:
    """The real parent, one real child, one substitute that sends 3 bytes too few/many."""
    with Lab() as lab:
        out = open(lab.tmp / "dhcpleased.log", "ab")  # noqa: SIM115 - closed below
        try:
            daemon = lab.run_in_client(
                [sys.executable, "-c", PARENT, fake, str(int(mtype)), FAKE_CHILD, lab.ifname],
                stdout=out,
                stderr=out,
            )
            assert daemon.wait(30) == 1, daemon_log(lab)
        finally:
            out.close()
        log = daemon_log(lab)
        fatal = [line for line in log.splitlines() if "fatal in main" in line]
        assert len(fatal) == 1, log
        assert f"{fake}: invalid IMSG_{mtype.name}" in fatal[0], log
        assert "did not exit" not in log
        sibling = [line.split() for line in log.splitlines() if line.startswith("sibling ")]
        assert len(sibling) == 1 and len(sibling[0]) == 2, log
        pid = int(sibling[0][1])
        # reaped by the parent before it exited: not running, not a zombie, not an orphan
        assert not alive(pid), f"{real} {pid} outlived the parent"
