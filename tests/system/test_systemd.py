"""The daemon as a systemd service: systemd 252 as PID 1, the unit as ``make install`` puts it.

One container for the module (the host's root as a throwaway overlay, the lab's client
namespace joined, dnsmasq on the server side); its tests run in file order, as an admin
would go: install, a broken configuration, start, journal, the sandbox, reload, stop.
Every check asks systemd (``systemctl``, the journal with PID 1's debug messages) or the
kernel (``/proc``, the lab's interface), never only the daemon's word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from ipaddress import IPv4Interface

import pytest

from tests.integration.lab import Lab, in_range
from tests.system.conftest import make_install, source_binds, write_conf
from tests.system.containers import Container

UNIT = "dhcpleased"
DROPIN_DIR = "/etc/systemd/system/dhcpleased.service.d"
GOOD_CONF = 'interface dl0 { send host name "first" }\n'
# CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13)
PARENT_CAPS = (1 << 10) | (1 << 12) | (1 << 13)
# the unit's bounding set: the parent's three, CAP_SETGID (6), CAP_SETUID (7),
# CAP_SETPCAP (8) and CAP_SYS_CHROOT (18), spent during start-up, and CAP_DAC_OVERRIDE (1),
# which only the DNS helper keeps, for chronyc (tests/system/test_ntp.py)
UNIT_CAPS = PARENT_CAPS | (1 << 1) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 18)

# Run by ExecStartPost= inside the unit's own confinement: each act below succeeds for
# root outside it (the test checks that too) and must be refused inside.
PROBE = r"""
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)

def outcome(call):
    try:
        r = call()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return errno.errorcode.get(ctypes.get_errno(), "?") if r == -1 else "ok"

def in_child(call):
    # acts that would change the probe itself (a new user namespace, being traced)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, outcome(call).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    return os.read(r, 64).decode()

def suid():
    path = "/tmp/probe-suid"
    open(path, "w").close()
    try:
        os.chmod(path, 0o4755)
    finally:
        os.unlink(path)

status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print("hardening-probe", json.dumps({
    "af_inet6": outcome(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()),
    "af_inet": outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()),
    "userns": in_child(lambda: libc.unshare(0x10000000)),
    "ptrace": in_child(lambda: libc.ptrace(0, 0, 0, 0)),
    "suid": outcome(suid),
    "personality": outcome(lambda: libc.personality(0x0008)),
    "adjtimex": outcome(lambda: libc.adjtimex(ctypes.create_string_buffer(208))),
    "realtime": outcome(lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))),
    "write_etc": outcome(lambda: open("/etc/probe", "w")),
    "cap_bnd": int(status["CapBnd"], 16),
    "no_new_privs": int(status["NoNewPrivs"]),
}), flush=True)
"""
# What each act above gives inside the unit, and the directive that refuses it.
REFUSED = {
    "af_inet6": "EAFNOSUPPORT",  # RestrictAddressFamilies=
    "userns": "EPERM",  # RestrictNamespaces=
    "ptrace": "EPERM",  # SystemCallFilter=@system-service, SystemCallErrorNumber=EPERM
    "suid": "EPERM",  # RestrictSUIDSGID=
    "personality": "EPERM",  # LockPersonality=
    "adjtimex": "EPERM",  # ProtectClock=
    "realtime": "EPERM",  # RestrictRealtime= (LimitRTPRIO=1 below would allow it)
    "write_etc": "EROFS",  # ProtectSystem=strict
}
PROBE_DROPIN = """[Service]
ExecStart=
ExecStart=/usr/local/sbin/dhcpleased -d -v
ExecStartPost=/usr/bin/python3 -I /usr/local/lib/dlt-probe.py
LimitRTPRIO=1
"""


@pytest.fixture(scope="module")
def c(lab: Lab) -> Iterator[Container]:
    with Container(netns=lab.cli_ns, binds=source_binds()) as container:
        container.systemctl("stop", "systemd-resolved")  # the file mode: resolvers are test_dns's
        yield container


def wait_status(c: Container, pred: Callable[[dict[str, str]], bool], what: str) -> dict[str, str]:
    def check() -> dict[str, str] | None:
        s = c.show(UNIT, "ActiveState", "SubState", "StatusText")
        return s if pred(s) else None

    return c.wait_for(check, 30, what=what)


def daemon_journal(c: Container) -> list[dict[str, str]]:
    """The daemon's own lines (all three processes share the parent's stderr stream)."""
    out = c.journal(UNIT, "-o", "json")
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "dhcpleased"]


def test_install_creates_user_and_directories(c: Container) -> None:
    """make install on a live systemd: sysusers and tmpfiles make the user and directory,
    and both tools find the installed files on their own search paths (as at boot)."""
    c.sh("userdel _dhcp 2>/dev/null || true; rm -rf /var/lib/dhcpleased")
    out = make_install(c)
    assert "Creating user '_dhcp'" in out, out
    entry = c.run(["getent", "passwd", "_dhcp"]).stdout.strip().split(":")
    assert entry[5:] == ["/nonexistent", "/usr/sbin/nologin"], entry
    assert c.run(["stat", "-c", "%a %U", "/var/lib/dhcpleased"]).stdout == "755 root\n"
    cfg = c.run(["cat", "/usr/local/lib/dhcpleased/pyvenv.cfg"]).stdout
    assert not re.search(r"^home = /(root|home)/", cfg, re.M), cfg  # ProtectHome= hides those
    # once more, as at boot: no paths given, each tool finds /usr/local/lib/*.d itself
    c.sh("userdel _dhcp; rm -rf /var/lib/dhcpleased")
    c.run(["systemd-sysusers"])
    c.run(["systemd-tmpfiles", "--create", "dhcpleased.conf"])
    assert c.run(["getent", "passwd", "_dhcp"], check=False).returncode == 0
    assert c.run(["stat", "-c", "%a %U", "/var/lib/dhcpleased"]).stdout == "755 root\n"
    assert "FragmentPath=/usr/local/lib/systemd/system/dhcpleased.service" in (
        c.systemctl("show", "-p", "FragmentPath", UNIT).stdout
    )


def test_broken_config_fails_the_start(c: Container, lab: Lab) -> None:
    write_conf(c, "interface dl0 { bogus }\n")
    r = c.systemctl("start", UNIT)
    assert r.returncode != 0
    s = c.show(UNIT, "ActiveState", "Result", "ExecMainPID")
    assert (s["ActiveState"], s["Result"], s["ExecMainPID"]) == ("failed", "exit-code", "0")
    assert "/etc/dhcpleased.conf:1: syntax error" in c.journal(UNIT, "-o", "cat")
    assert lab.addresses() == []
    c.systemctl("reset-failed", UNIT)


def test_start_is_ready_and_status_shows_the_address(c: Container, lab: Lab) -> None:
    write_conf(c, GOOD_CONF)
    c.run(["sh", "-c", "cat > /usr/local/lib/dlt-probe.py"], input=PROBE)
    c.run(["mkdir", "-p", DROPIN_DIR])
    write_conf(c, PROBE_DROPIN, f"{DROPIN_DIR}/test.conf")
    c.systemctl("daemon-reload", check=True)
    r = c.systemctl("start", UNIT)
    assert r.returncode == 0, r.stderr + c.journal(UNIT)
    # Type=notify: start returns once READY=1 came (test_a_child_whose_sandbox_fails...)
    s = c.show(UNIT, "ActiveState", "SubState")
    assert (s["ActiveState"], s["SubState"]) == ("active", "running")
    s = wait_status(c, lambda s: s["StatusText"].startswith("dl0: "), "StatusText with the lease")
    addr = lab.addresses()
    assert len(addr) == 1 and in_range(lab, addr[0])
    assert s["StatusText"] == f"dl0: {addr[0]}"


def test_journal_has_the_lease_at_its_priority_and_all_three_processes(
    c: Container, lab: Lab
) -> None:
    ip = IPv4Interface(lab.addresses()[0]).ip
    lines = daemon_journal(c)
    messages = [e["MESSAGE"] for e in lines]
    lease = [e for e in lines if e["MESSAGE"].startswith(f"main: adding {ip} to dl0")]
    assert lease and lease[0]["PRIORITY"] == "6", messages  # LOG_INFO
    for proc in ("main", "frontend", "engine"):
        assert any(m.startswith(f"{proc}: ") for m in messages), (proc, messages)
    # -v: the children's sandbox lines, at LOG_DEBUG
    for proc in ("frontend", "engine"):
        assert any(
            e["MESSAGE"].startswith(f"{proc}: sandbox: chroot yes, Landlock ABI ")
            and e["MESSAGE"].endswith("seccomp yes")
            and e["PRIORITY"] == "7"
            for e in lines
        ), proc


def proc_status(c: Container, pid: int) -> dict[str, str]:
    text = c.run(["cat", f"/proc/{pid}/status"]).stdout
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_sandbox_as_the_readme_table_says(c: Container) -> None:
    """dhcpleasectl -p and /proc agree, and both say what the README's security table says."""
    procs = json.loads(c.run(["dhcpleasectl", "-p", "-j"]).stdout)["processes"]
    assert [p["name"] for p in procs] == ["main", "frontend", "engine"]
    dhcp_uid = int(c.run(["id", "-u", "_dhcp"]).stdout)
    main_pid = int(c.show(UNIT, "MainPID")["MainPID"])
    assert procs[0]["pid"] == main_pid
    for p in procs:
        st = proc_status(c, p["pid"])
        kernel = {
            "uid": int(st["Uid"].split()[0]),
            "cap_eff": int(st["CapEff"], 16),
            "no_new_privs": st["NoNewPrivs"] == "1",
            "seccomp": {"0": "disabled", "1": "strict", "2": "filter"}[st["Seccomp"]],
        }
        assert {k: p[k] if k != "cap_eff" else int(p[k], 16) for k in kernel} == kernel, p
        assert p["landlock_abi"] > 0 and p["landlock_status"] == 1, p
        child = p["name"] != "main"
        assert kernel["uid"] == (dhcp_uid if child else 0)
        want_caps = 0 if child else PARENT_CAPS
        assert (kernel["cap_eff"], int(st["CapPrm"], 16), int(st["CapBnd"], 16)) == (
            want_caps,
            want_caps,
            want_caps,
        ), (p["name"], st)
        assert int(st["CapInh"], 16) == int(st["CapAmb"], 16) == 0
        assert kernel["no_new_privs"] and kernel["seccomp"] == "filter"
        # the children are in the chroot: an empty, deleted directory
        if child:
            root = c.run(["readlink", f"/proc/{p['pid']}/root"]).stdout.strip()
            assert root.startswith("/run/dhcpleased/dhcpleased-") and root.endswith(" (deleted)")


def test_every_directive_of_the_unit_is_in_force(c: Container) -> None:
    """The unit's confinement, seen from inside it (the ExecStartPost probe) and in the
    main process's own mount table, namespaces and status."""
    outside = c.run(["/usr/bin/python3", "-I", "/usr/local/lib/dlt-probe.py"]).stdout
    base = json.loads(outside.split(" ", 1)[1])
    assert all(base[k] == "ok" for k in REFUSED), base  # root could, outside the unit
    c.run(["journalctl", "--sync"])
    probes = [
        line
        for line in c.run(["journalctl", "-o", "cat", "--no-pager"]).stdout.splitlines()
        if line.startswith("hardening-probe ")
    ]
    inside = json.loads(probes[-1].split(" ", 1)[1])
    assert {k: inside[k] for k in REFUSED} == REFUSED, inside
    assert inside["af_inet"] == "ok"
    assert inside["cap_bnd"] == UNIT_CAPS and inside["no_new_privs"] == 1  # NoNewPrivileges=
    main_pid = int(c.show(UNIT, "MainPID")["MainPID"])
    assert proc_status(c, main_pid)["Umask"] == "0022"
    mounts = {}
    for line in c.run(["cat", f"/proc/{main_pid}/mountinfo"]).stdout.splitlines():
        fields = line.split()
        mounts[fields[4]] = (fields[5].split(","), fields[fields.index("-") + 1])
    ro = {m for m, (opts, _) in mounts.items() if "ro" in opts}
    rw = {m for m, (opts, _) in mounts.items() if "rw" in opts}
    assert "/" in ro  # ProtectSystem=strict
    assert {"/home", "/root", "/run/user"} <= ro  # ProtectHome=yes (empty, read-only)
    assert mounts["/tmp"][1] == "tmpfs" and "/tmp" in rw  # PrivateTmp=yes
    assert mounts["/dev"][1] == "tmpfs" and "/dev" in ro  # PrivateDevices=yes
    assert {"/proc/sys", "/proc/kmsg", "/sys/fs/cgroup"} <= ro  # ProtectKernel*, ...Groups
    assert {"/var/lib/dhcpleased", "/run/dhcpleased", "/etc/resolv.conf"} <= rw
    assert {"/run/chrony-dhcp", "/run/systemd/timesyncd.conf.d"} <= rw  # tmpfiles.d made them
    devices = c.run(["nsenter", "-t", str(main_pid), "-m", "ls", "/dev"]).stdout.split()
    assert "null" in devices and not any(d.startswith(("vd", "sd", "nvme")) for d in devices)
    uts = [c.run(["readlink", f"/proc/{p}/ns/uts"]).stdout for p in (main_pid, 1)]
    assert uts[0] != uts[1]  # ProtectHostname=yes
    props = c.show(UNIT, "SystemCallArchitectures", "ProtectKernelModules", "KillMode")
    assert props == {
        "SystemCallArchitectures": "native",  # no x32 on this kernel to try it with
        "ProtectKernelModules": "yes",  # no modules here; init_module needs a capability
        "KillMode": "mixed",
    }


def test_reload_reports_reloading_then_ready_and_applies_the_change(c: Container, lab: Lab) -> None:
    write_conf(c, GOOD_CONF.replace('"first"', '"second"'))
    # PID 1 logs each notification at debug level.  Only around the reload: a process
    # forked meanwhile logs early (before its cgroup move) and journald would file its
    # stdout under init.scope.
    c.run(["systemd-analyze", "log-level", "debug"])
    try:
        r = c.systemctl("reload", UNIT)
        assert r.returncode == 0, r.stderr

        def reloaded() -> str | None:
            # systemd 252 ends the reload job when ExecReload's kill exits; the daemon's
            # RELOADING=1 ... READY=1 may come just after (Type=notify-reload is 253+)
            # The daemon's stderr stream and PID 1's own messages reach journald by
            # different sockets, so the journal may file "configuration reloaded" before
            # PID 1's RELOADING=1 (about 1 run in 30): look for it anywhere in this
            # reload, and order only what PID 1 logged.
            log = c.journal(UNIT, "-o", "cat")
            tail = log[log.rindex("Will spawn child (service_enter_reload)") :]
            done = "(READY=1" in tail.partition("(RELOADING=1")[2]
            return tail if done and "main: configuration reloaded" in tail else None

        tail = c.wait_for(reloaded, 30, what="RELOADING=1, then READY=1, and the reload logged")
    finally:
        c.run(["systemd-analyze", "log-level", "info"])
    after = tail.partition("(RELOADING=1")[2]
    assert "Changed reload -> running" in after.partition("(READY=1")[2]
    # the changed interface is re-requested with the new host name
    lab.wait_for(
        lambda: any(e[3:4] == ["second"] for e in lab.dnsmasq_lease_entries()),
        30,
        what="a request with the new host name",
    )
    assert c.show(UNIT, "ActiveState")["ActiveState"] == "active"


def test_stop_is_clean_and_keeps_the_address(c: Container, lab: Lab) -> None:
    before = lab.addresses()
    r = c.systemctl("stop", UNIT)
    assert r.returncode == 0
    s = c.show(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert s == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, s
    log = c.journal(UNIT, "-o", "cat")
    assert "main: terminating" in log
    assert "did not exit, killing it" not in log
    assert lab.addresses() == before  # as the original: address, routes, DNS stay
    assert c.run(["test", "-e", "/run/dhcpleased"], check=False).returncode == 1


def test_a_child_whose_sandbox_fails_fails_the_start(c: Container) -> None:
    """READY=1 waits for both children's sandbox: without chroot (the unit's filter as it
    was) the start fails instead of going active and dying a moment later."""
    write_conf(
        c,
        "[Service]\nSystemCallFilter=\nSystemCallFilter=@system-service\n"
        "SystemCallFilter=seccomp landlock_create_ruleset landlock_add_rule"
        " landlock_restrict_self\n",
        f"{DROPIN_DIR}/nochroot.conf",
    )
    c.systemctl("daemon-reload", check=True)
    try:
        r = c.systemctl("start", UNIT)
        assert r.returncode != 0
        s = c.show(UNIT, "ActiveState", "Result")
        assert s["ActiveState"] == "failed", s
        log = c.journal(UNIT, "-o", "cat")
        assert "chroot or bounding set: [Errno 1] Operation not permitted" in log
    finally:
        c.run(["rm", f"{DROPIN_DIR}/nochroot.conf"])
        c.systemctl("daemon-reload")
        c.systemctl("reset-failed", UNIT)
