"""Locking each process down: the Linux way to pledge(2), unveil(2) and chroot(2).

Children (engine, frontend), once their imports, event loop, signal dispositions and
logging exist and before they read an untrusted byte (:func:`enter_child`):

1. names: comm ``dhcp-engine``/``dhcp-frontend`` (what ``ps -o comm``, top and the
   kernel's seccomp audit line show; comm holds 15 bytes) and the command line
   ``dhcpleased: engine`` (what ``ps -ef`` shows, written over argv as setproctitle does);
2. the seccomp program is built and lazily imported modules are loaded *now*;
3. chroot into an empty directory that no longer exists: ``mkdtemp`` under /run/dhcpleased
   (or /tmp), opened, removed, then ``fchdir`` + ``chroot(".")``.  Nothing can be created in
   a deleted directory and nothing has to be installed for it (Debian has no /var/empty);
4. empty capability bounding set, ``setgroups``/``setresgid``/``setresuid`` to ``_dhcp``
   (which empties the other sets), checked with capget;
5. no_new_privs;
6. Landlock: no filesystem right at all, no TCP, no signal or abstract socket out of the
   process's own domain (as far as the kernel's ABI goes);
7. the seccomp allowlist (:mod:`dhcpleased.seccomp`), last, since it forbids Landlock's
   own syscalls.  Any other syscall kills the process.

The parent (:func:`enter_parent`), after it has spawned the children (they need root's
capabilities to drop their own) and the DNS helper, and opened what it needs:
capabilities reduced to :data:`PARENT_CAPS`, no_new_privs, Landlock limited to reading
the config file's directory (:func:`conf_dirs`: saving by rename replaces the file), the
directories its modules came from (:func:`import_dirs`: tracebacks, lark's grammar on
SIGHUP) and its own status file, and writing the lease directory and what the file DNS
mode writes (resolv.conf itself, or the run directory for the linked one), last its
seccomp allowlist (``seccomp.parent_policy``: no exec, fork, memfd_create; sockets by
family; no destination of its own on a unix socket).  It stays uid 0 so the files it
writes stay root's.

The DNS helper (:func:`enter_dns_helper`, resolvconf and resolved modes, and the NTP
hand-off): named ``dhcp-dns``, uid 0 with CAP_NET_ADMIN (resolved), CAP_DAC_OVERRIDE
(chrony) or nothing, no_new_privs, Landlock read and execute everywhere, write only where
resolvconf and its hooks write and the time daemon's one directory (chrony: also make
sockets in its own); no seccomp (the programs it runs would inherit it).

A kernel without Landlock or seccomp gets one warning line from the parent and the
daemon runs; a sandbox the kernel supports but refuses is fatal.  With
``DHCPLEASED_SECCOMP_TRAP=1`` a forbidden call prints the Python stack (faulthandler on
SIGSYS) before the process dies: for finding a missing allowlist entry, never in
production.
"""

from __future__ import annotations

import ctypes
import encodings.idna  # noqa: F401 - socket addresses given as str are idna-encoded
import faulthandler
import os
import pwd
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from dhcpleased import caps, defs, landlock, seccomp
from dhcpleased.log import log

if TYPE_CHECKING:
    from dhcpleased.dnshelper import NtpHandOff

PR_SET_NAME: Final = 15
PR_SET_NO_NEW_PRIVS: Final = 38
TRAP_ENV: Final = "DHCPLEASED_SECCOMP_TRAP"

# CAP_NET_ADMIN: addresses and routes (rtnetlink), IFF_UP on request;
# CAP_NET_RAW: the AF_PACKET socket per interface and SO_BINDTODEVICE on the UDP socket;
# CAP_NET_BIND_SERVICE: binding the UDP socket to port 68 for unicast renewals.
# The DNS hand-off needs none of these: the parent stays uid 0, the owner of
# /etc/resolv.conf, and the DNS helper keeps what resolvectl needs (DNS_HELPER_CAPS).
PARENT_CAPS: Final = (caps.CAP_NET_ADMIN, caps.CAP_NET_RAW, caps.CAP_NET_BIND_SERVICE)

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    """The sandbox could not be put in place: fatal, never silently skipped."""


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """What this process did to itself; read it as ``sandbox.STATUS`` at the time of use."""

    role: str = "main"
    landlock_abi: int = 0  # the kernel's Landlock ABI, 0 = none
    landlock_applied: bool = False
    seccomp: bool = False  # a filter is installed
    seccomp_trap: bool = False  # development mode: violations print a stack first
    chroot: bool = False


STATUS: SandboxStatus = SandboxStatus()
_modules_at_entry: frozenset[str] = frozenset()


def _prctl(option: int, arg: int | bytes) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise SandboxError(f"prctl({option}): {os.strerror(errno)}")


def set_procname(name: str) -> None:
    """``dhcpleased: engine`` is too long for comm (15 bytes): comm gets ``dhcp-engine``."""
    _prctl(PR_SET_NAME, f"dhcp-{name}".encode()[:15])


def set_proctitle(title: str) -> bool:
    """What ps shows as the command line, written over the original argv in place.

    CPython copied argv at startup, so the kernel's arg_start..arg_end area is ours to
    overwrite through /proc/self/mem (setproctitle's trick, without the C extension).
    Needs /proc, so it runs before the chroot; False where it cannot be done.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (48, 49)
        data = title.encode()[: end - start - 1]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(data.ljust(end - start, b"\0"))
    except (OSError, IndexError, ValueError):
        return False
    return True


def single_threaded() -> bool:
    """capset and Landlock act on the calling thread only: there must be no other."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return threading.active_count() == 1


def kernel_support() -> tuple[int, bool]:
    """(Landlock ABI or 0, seccomp filters with KILL_PROCESS available)."""
    return landlock.abi_version(), seccomp.supported()


def missing_features(abi: int, has_seccomp: bool) -> str | None:
    """The one warning line for a kernel without Landlock and/or seccomp, or None."""
    missing = [name for name, ok in (("Landlock", abi > 0), ("seccomp", has_seccomp)) if not ok]
    if not missing:
        return None
    them = "them" if len(missing) > 1 else "it"
    return f"this kernel lacks {' and '.join(missing)}: running without {them}"


def late_imports() -> list[str]:
    """Modules imported after the child's sandbox went up (each one is a latent crash)."""
    if not _modules_at_entry:
        return []
    return sorted(set(sys.modules) - _modules_at_entry)


# --- children ---------------------------------------------------------------------------------


def warm_up() -> None:
    """Do now what Python would otherwise do lazily, with a file, under the sandbox."""
    time.localtime()  # glibc reads /etc/localtime once (syslog timestamps)
    "x".encode("idna")


def chroot_empty() -> None:
    """chroot into a fresh empty directory, removed before we enter it."""
    base = defs.RUN_DIR if os.path.isdir(defs.RUN_DIR) else "/tmp"  # the parent made it
    path = tempfile.mkdtemp(prefix="dhcpleased-", dir=base)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.rmdir(path)
        os.fchdir(fd)
        os.chroot(".")
        os.chdir("/")
    finally:
        os.close(fd)


def lookup_user(user: str = defs.DHCPLEASED_USER) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise SandboxError(f"unknown user {user}") from None


def drop_privileges(pw: pwd.struct_passwd) -> None:
    """setgroups/setresgid/setresuid to the unprivileged user, then verify it stuck."""
    try:
        os.setgroups([pw.pw_gid])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    except OSError as e:
        raise SandboxError(f"cannot drop privileges: {e.strerror}") from None
    if os.getresuid() != (pw.pw_uid,) * 3 or os.getresgid() != (pw.pw_gid,) * 3:
        raise SandboxError("privilege drop did not stick")


def drop_child_privileges(user: str = defs.DHCPLEASED_USER) -> bool:
    """Steps 3-5 for a child started as root; True if it chrooted."""
    chrooted = False
    if os.geteuid() == 0:
        pw = lookup_user(user)  # before the chroot hides /etc/passwd
        try:
            chroot_empty()
            chrooted = True
            caps.drop_bounding()
        except OSError as e:
            raise SandboxError(f"chroot or bounding set: {e}") from None
        drop_privileges(pw)
        try:
            if caps.get() != (0, 0, 0) or caps.bounding() != 0:
                raise SandboxError("capabilities left after the privilege drop")
        except OSError as e:
            raise SandboxError(str(e)) from None
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    return chrooted


def child_landlock(abi: int) -> None:
    """unveil("/", ""): no file, no TCP, no signal or abstract socket out of our domain."""
    _landlock(abi, ())


def child_seccomp(role: str, program: bytes | None = None, *, trap: bool = False) -> None:
    """Install the role's allowlist (built beforehand if ``program`` is given); the
    parent's too, despite the name."""
    if program is None:
        program = seccomp.build(role, trap=trap)
    if trap:
        faulthandler.register(signal.SIGSYS, all_threads=False, chain=True)
    try:
        seccomp.install(program)
    except OSError as e:
        raise SandboxError(f"{e.strerror or e}") from None


def enter_child(role: str) -> None:
    """Everything a child does to itself once its imports and event loop exist."""
    global STATUS, _modules_at_entry
    if role not in seccomp.POLICIES:
        raise SandboxError(f"no sandbox policy for {role!r}")
    set_procname(role)
    set_proctitle(f"dhcpleased: {role}")
    trap = os.environ.get(TRAP_ENV) == "1"
    program = seccomp.build(role, trap=trap)
    warm_up()
    abi, has_seccomp = kernel_support()
    if not single_threaded():
        raise SandboxError("a thread exists before the sandbox")
    chrooted = drop_child_privileges()
    if abi:
        child_landlock(abi)
    if has_seccomp:
        child_seccomp(role, program, trap=trap)
    STATUS = SandboxStatus(role, abi, abi > 0, has_seccomp, trap and has_seccomp, chrooted)
    _modules_at_entry = frozenset(sys.modules)
    log.debug(
        "sandbox: chroot %s, Landlock ABI %d, seccomp %s%s",
        "yes" if chrooted else "no",
        abi,
        "yes" if has_seccomp else "no",
        " (trap)" if trap else "",
    )


# --- the parent -------------------------------------------------------------------------------

LEASE_RIGHTS: Final = (
    landlock.READ
    | landlock.WRITE_FILE
    | landlock.MAKE_REG
    | landlock.REMOVE_FILE
    | landlock.TRUNCATE
)
# A lease path that holds something other than a regular file (a FIFO, a directory, a
# link, a device node) is renamed aside in place (main.move_aside), which Landlock allows
# only with the right to make and remove that kind of object there.  mknod stays out of
# reach anyway: the parent has no CAP_MKNOD.
LEASE_DIR_RIGHTS: Final = (
    LEASE_RIGHTS
    | landlock.MAKE_DIR
    | landlock.REMOVE_DIR
    | landlock.MAKE_FIFO
    | landlock.MAKE_SYM
    | landlock.MAKE_CHAR
    | landlock.MAKE_BLOCK
    | landlock.MAKE_SOCK
)
# resolv.conf rewritten in place: that one file, nothing beside it (resolver.py)
IN_PLACE_RIGHTS: Final = landlock.READ_FILE | landlock.WRITE_FILE | landlock.TRUNCATE
# the linked resolv.conf, written by rename in the run directory: regular files only
LINKED_DIR_RIGHTS: Final = LEASE_RIGHTS


def conf_dirs(conffile: str) -> list[str]:
    """Where the config file may be found on SIGHUP: its directory, and its target's.

    Editors, ``sed -i`` and config tools save by renaming a new file over the old, and a
    Landlock rule names an inode: a rule on the file itself would deny every reload
    after the first such save.  So the rule is READ_FILE (not READ_DIR: no listing) on
    the directory.  The cost: the parent can read any file there it can name, e.g.
    /etc/shadow for the default path; it is the one place outside its own files where
    the parent can read.  A config kept in a directory of its own (``-f
    /etc/dhcpleased/dhcpleased.conf``) confines it.  No descriptor opened beforehand
    helps: Landlock checks the file opened, not the path.
    """
    found = os.path.dirname(conffile) or "."
    target = os.path.dirname(os.path.realpath(conffile))  # a symlinked config: its dir too
    return list(dict.fromkeys((found, target)))


def import_dirs(modules: Iterable[object] | None = None) -> list[str]:
    """The directories the loaded modules came from, outermost only: what a traceback's
    source lines, lark's grammar on SIGHUP and a late import may read.

    Not ``sys.path``: ``python -m dhcpleased`` puts the working directory there (``/``
    for a daemon started from the root), and a rule on it would open everything.
    """
    found = set()
    for module in list(sys.modules.values()) if modules is None else modules:
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.isabs(path):
            found.add(os.path.dirname(path))
    outer: list[str] = []
    for d in sorted(found, key=len):
        if not any(d == o or d.startswith(o.rstrip("/") + "/") for o in outer):
            outer.append(d)
    return sorted(outer)


def parent_rules(
    conffile: str, dns_files: Sequence[str] = (), dns_dirs: Sequence[str] = ()
) -> list[tuple[str, int]]:
    """(path, rights) the parent keeps; paths that do not exist are left out by the caller.

    ``dns_files``/``dns_dirs``: what the file DNS mode writes (Resolver.writable): the
    existing resolv.conf in place, or the run directory for the linked one.  The other
    modes write nothing here: the DNS helper does.
    """
    rules = [(d, landlock.READ_FILE) for d in conf_dirs(conffile)]
    rules.append((defs.LEASE_DIR, LEASE_DIR_RIGHTS))
    rules.append(("/proc/self/status", landlock.READ_FILE))  # dhcpleasectl -p reads it
    rules += [(d, landlock.READ) for d in import_dirs()]
    rules += [(f, IN_PLACE_RIGHTS) for f in dns_files]
    rules += [(d, LINKED_DIR_RIGHTS) for d in dns_dirs]
    return rules


def _keep_caps(keep: Iterable[int]) -> None:
    """Drop every capability but ``keep``; SandboxError if the kernel refuses."""
    try:
        caps.keep_only(keep)
    except OSError as e:
        raise SandboxError(f"capabilities: {e.strerror or e}") from None


def _landlock(
    abi: int,
    rules: Iterable[tuple[str, int]],
    *,
    scope_signal: bool = True,
    scope_abstract: bool = True,
) -> None:
    """A ruleset with the rules whose path exists, enforced; SandboxError if the kernel
    refuses."""
    try:
        ruleset = landlock.Ruleset(abi, scope_signal=scope_signal, scope_abstract=scope_abstract)
        try:
            for path, rights in rules:
                if os.path.exists(path):
                    ruleset.allow_path(path, rights)
        except BaseException:
            ruleset.close()
            raise
        ruleset.restrict()
    except OSError as e:
        raise SandboxError(f"Landlock: {e.strerror or e}") from None


def unix_sockets() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(SEQPACKET, DGRAM) unix sockets this process holds now: the parent's filter lets
    it sendmsg on the first (its channels) and never connect the second elsewhere."""
    seqpacket, dgram = [], []
    for entry in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=int(entry))
        except (OSError, ValueError):  # not a socket, or listdir's own descriptor
            continue
        try:
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_SEQPACKET:
                seqpacket.append(sock.fileno())
            elif sock.family == socket.AF_UNIX and sock.type == socket.SOCK_DGRAM:
                dgram.append(sock.fileno())
        finally:
            sock.detach()
    return tuple(sorted(seqpacket)), tuple(sorted(dgram))


def enter_parent(
    conffile: str, dns_files: Sequence[str] = (), dns_dirs: Sequence[str] = ()
) -> None:
    """Restrict the running parent: capabilities, no_new_privs, Landlock, seccomp (see
    the module doc).  Its descriptors, imports and loop exist; nothing is opened lazily."""
    global STATUS, _modules_at_entry
    if not single_threaded():
        raise SandboxError("the parent has more than one thread: capset would miss some")
    abi, has_seccomp = kernel_support()
    warning = missing_features(abi, has_seccomp)
    if warning is not None:
        log.warning("sandbox: %s", warning)
    trap = os.environ.get(TRAP_ENV) == "1"
    channels, datagrams = unix_sockets()
    policy = seccomp.parent_policy(channels, datagrams)
    if trap:  # faulthandler's handler runs on an alternate stack, freed at exit
        policy = {**policy, "sigaltstack": ()}
    program = seccomp.build("main", trap=trap, policy=policy)
    warm_up()
    _keep_caps(PARENT_CAPS)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if abi:
        # Signals stay unscoped: the children are outside this domain and a straggler
        # must still be killable.  Abstract sockets too if sd_notify needs one.
        abstract = not os.environ.get("NOTIFY_SOCKET", "").startswith("@")
        rules = parent_rules(conffile, dns_files, dns_dirs)
        _landlock(abi, rules, scope_signal=False, scope_abstract=abstract)
    if has_seccomp:
        child_seccomp("main", program, trap=trap)
    STATUS = SandboxStatus("main", abi, abi > 0, has_seccomp, trap and has_seccomp)
    _modules_at_entry = frozenset(sys.modules)


# --- the DNS helper ---------------------------------------------------------------------------

# resolvectl's call to systemd-resolved: CAP_NET_ADMIN in place of polkit; resolvconf and
# its hooks need no capability (uid 0 owns their files)
DNS_HELPER_CAPS: Final = {"resolved": (caps.CAP_NET_ADMIN,), "resolvconf": (), "none": ()}
# chronyc reaches chronyd's socket in /run/chrony, mode 0700 and chronyd's user's: root
# needs CAP_DAC_OVERRIDE to search it and write the socket.  timesyncd: none (uid 0 may
# ask systemd for a restart).
NTP_HELPER_CAPS: Final = {"chrony": (caps.CAP_DAC_OVERRIDE,), "timesyncd": ()}
# resolvconf(8) and its hooks: their state beneath /run (/run/resolvconf, dnsmasq's
# /run/dnsmasq, ...), and resolv.conf's own file, which openresolv rewrites in place
HOOK_WRITE_RIGHTS: Final = (
    LEASE_RIGHTS | landlock.MAKE_SYM | landlock.MAKE_DIR | landlock.REMOVE_DIR
)


def dns_helper_rules(
    mode: str, resolv_conf: str = defs.RESOLV_CONF, ntp: NtpHandOff | None = None
) -> list[tuple[str, int]]:
    """(path, rights) of the DNS helper: read and execute everything, write almost nothing:
    the NTP hand-off adds its directory (files written by rename) and chrony's the
    directory where chronyc makes its reply socket."""
    rules = [("/", landlock.READ | landlock.EXECUTE)]
    rules.append((os.devnull, landlock.READ_FILE | landlock.WRITE_FILE))
    if mode == "resolvconf":
        rules += [("/run", HOOK_WRITE_RIGHTS), (resolv_conf, IN_PLACE_RIGHTS)]
    if ntp is not None:
        rules.append((ntp.directory, LEASE_RIGHTS))
        if ntp.mode == "chrony":
            rules.append((ntp.chronyc_dir, landlock.MAKE_SOCK | landlock.REMOVE_FILE))
    return rules


def enter_dns_helper(
    mode: str, resolv_conf: str = defs.RESOLV_CONF, ntp: NtpHandOff | None = None
) -> None:
    """The helper's own sandbox (dnshelper.py): names, capabilities, no_new_privs, Landlock.

    Signals are not scoped: a resolvconf hook may signal a daemon to reload.  No seccomp:
    the programs it runs would inherit the list (see dnshelper.py).
    """
    global STATUS
    if mode not in DNS_HELPER_CAPS or (ntp is not None and ntp.mode not in NTP_HELPER_CAPS):
        raise SandboxError(f"no DNS helper for mode {mode!r}")
    keep = DNS_HELPER_CAPS[mode] + (NTP_HELPER_CAPS[ntp.mode] if ntp is not None else ())
    set_procname("dns")
    set_proctitle("dhcpleased: dns helper")
    if not single_threaded():
        raise SandboxError("a thread exists before the sandbox")
    abi = landlock.abi_version()
    if os.geteuid() == 0:
        _keep_caps(keep)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if abi:
        _landlock(abi, dns_helper_rules(mode, resolv_conf, ntp), scope_signal=False)
    STATUS = replace(STATUS, role="dns", landlock_abi=abi, landlock_applied=abi > 0)
