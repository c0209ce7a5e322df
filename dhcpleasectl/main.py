"""dhcpleasectl: show and steer a running dhcpleased (usr.sbin/dhcpleasectl).

Usage::

    dhcpleasectl [-jl] [-s socket] [-w maxwait] interface
    dhcpleasectl [-j] [-s socket] [-w maxwait] release interface
    dhcpleasectl [-s socket] -m [interface]
    dhcpleasectl [-j] [-s socket] -p
    dhcpleasectl [-s socket] log verbose|brief
    dhcpleasectl [-s socket] reload

The first form is the original's: without ``-l`` it asks for a new lease (and makes the
daemon manage the interface if it did not: the request carries a token that proves to
the parent that root asked, see ``dhcpleased.control``) and polls once a second,
printing dots, for up to ``maxwait`` seconds (default 10) until the interface is Bound;
``-l`` only shows (maxwait then defaults to 0). Differences from the original, on
purpose:

* Exit status 1 when a wait runs out before Bound (the original exits 0): scripts, like
  ``dhcpcd -w`` users, need to know. ``-l`` without ``-w`` exits 0 whatever the state.
* While the daemon does not know the interface yet (it was just asked to manage it), a
  poll waits one second like any other; the original burns a wait without sleeping. If
  the waits run out that way, or ``-l`` finds it unknown: "dhcpleased does not manage
  IF", status 1.
* ``-j`` prints the report as one JSON object (see output.py); no dots.
* ``-m``: state changes as JSON lines until interrupted; ``-p``: each daemon process's
  uid, capabilities and sandbox as that process reads them of itself.
* ``log verbose|brief`` and ``reload`` come from the original's 2021 command syntax. A
  word that is a command wins over an interface of the same name. ``reload`` waits for
  the daemon's verdict: a configuration it refused prints the parser's
  ``file:line: message`` lines and exits 1 (the daemon keeps the configuration it had).
* ``release IF`` (not in the original) gives the lease back: a DHCPRELEASE to the server,
  address, routes and DNS removed, the interface idle until ``dhcpleasectl IF``. It waits
  like a request does, for Released instead of Bound, and prints the report.

This tool imports only the daemon's ``imsg`` and ``defs`` (no lark, pyroute2, scapy) and
talks plain blocking SEQPACKET: one send is one message, one recv is one answer.
"""

from __future__ import annotations

import array
import getopt
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from dhcpleasectl import output
from dhcpleased import defs, imsg
from dhcpleased.imsg import HEADER, IMSGF_HASFD, MAX_IMSGSIZE, Header, ImsgError, ImsgType

USAGE = """usage: dhcpleasectl [-jl] [-s socket] [-w maxwait] interface
       dhcpleasectl [-j] [-s socket] [-w maxwait] release interface
       dhcpleasectl [-s socket] -m [interface]
       dhcpleasectl [-j] [-s socket] -p
       dhcpleasectl [-s socket] log verbose|brief | reload"""
REPLY_TIMEOUT = 10.0  # the daemon answers at once; this only catches a wedged one
MAX_WAIT = 2**31 - 1
RELEASING_POLL = 0.05  # the engine leaves Releasing once the frontend sent the RELEASE


class CtlError(Exception):
    """A message for the user; exit 1."""


class UsageError(Exception):
    pass


@dataclass
class Options:
    json: bool = False
    list_only: bool = False
    monitor: bool = False
    procs: bool = False
    socket: str = defs.CONTROL_SOCKET
    maxwait: int | None = None
    args: tuple[str, ...] = ()


def parse_args(argv: list[str]) -> Options:
    try:
        opts, args = getopt.getopt(argv, "jlmps:w:")
    except getopt.GetoptError as e:
        raise UsageError(str(e)) from None
    o = Options(args=tuple(args))
    for flag, value in opts:
        if flag == "-j":
            o.json = True
        elif flag == "-l":
            o.list_only = True
        elif flag == "-m":
            o.monitor = True
        elif flag == "-p":
            o.procs = True
        elif flag == "-s":
            o.socket = value
        elif flag == "-w":
            try:
                n = int(value, 10)
            except ValueError:
                raise CtlError(f"maxwait value is invalid: {value}") from None
            if n < 1:
                raise CtlError(f"maxwait value is too small: {value}")
            if n > MAX_WAIT:
                raise CtlError(f"maxwait value is too large: {value}")
            o.maxwait = n
    if o.monitor and o.procs:
        raise UsageError("-m and -p are exclusive")
    if (o.monitor or o.procs) and (o.list_only or o.maxwait is not None):
        raise UsageError("-l and -w go with an interface report")
    if o.procs and o.args:
        raise UsageError("-p takes no argument")
    if o.monitor and len(o.args) > 1:
        raise UsageError("-m takes at most one interface")
    if is_release(o.args) and (o.monitor or o.procs or o.list_only):
        raise UsageError("release takes -j, -s and -w")
    if not (o.monitor or o.procs or is_command(o.args) or is_release(o.args)) and len(o.args) != 1:
        raise UsageError("one interface")
    return o


def is_command(args: tuple[str, ...]) -> bool:
    return args in (("log", "verbose"), ("log", "brief"), ("reload",))


def is_release(args: tuple[str, ...]) -> bool:
    return len(args) == 2 and args[0] == "release"


def if_index(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise CtlError(f"unknown interface {name}") from None


def if_name(index: int) -> str | None:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None


class Client:
    """A connection to the control socket: one imsg per send, one per recv."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise CtlError(f"cannot connect to {path}: {e.strerror}") from None

    def close(self) -> None:
        self.sock.close()

    def send(
        self, t: ImsgType, payload: imsg.Payload | None = None, fd: socket.socket | None = None
    ) -> None:
        """One imsg, with ``fd`` passed along (SCM_RIGHTS) if given."""
        msg = frame(t, payload, IMSGF_HASFD if fd is not None else 0)
        try:
            if fd is None:
                self.sock.send(msg)
            else:
                rights = array.array("i", [fd.fileno()])
                self.sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        except OSError as e:
            raise CtlError(f"lost connection to dhcpleased: {e.strerror}") from None

    def recv(self, timeout: float | None = REPLY_TIMEOUT) -> tuple[ImsgType, bytes]:
        """The next message; CtlError on EOF, a timeout or a malformed message."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(MAX_IMSGSIZE)
        except TimeoutError:
            raise CtlError("no answer from dhcpleased") from None
        except OSError as e:
            raise CtlError(f"lost connection to dhcpleased: {e.strerror}") from None
        if not data:
            raise CtlError("connection closed by dhcpleased")
        try:
            hdr = Header.unpack(data[: HEADER.size])
            if hdr.length != len(data):
                raise ImsgError("length mismatch")
            return ImsgType(hdr.type), data[HEADER.size :]
        except (ImsgError, ValueError):
            raise CtlError("invalid message from dhcpleased") from None

    def expect(
        self, *types: ImsgType, timeout: float | None = REPLY_TIMEOUT
    ) -> tuple[ImsgType, bytes]:
        t, data = self.recv(timeout)
        if t not in types:
            raise CtlError(f"unexpected {imsg.type_name(t)} from dhcpleased")
        return t, data


def frame(t: ImsgType, payload: imsg.Payload | None = None, flags: int = 0) -> bytes:
    data = payload.pack() if payload is not None else b""
    return Header(t, HEADER.size + len(data), flags, 0, os.getpid()).pack() + data


def request_token(index: int) -> socket.socket:
    """The proof that root asks for a lease on ``index``: a socket only we wrote to.

    The daemon's parent reads our credentials and the request from it; the frontend that
    carries it there can read it too but cannot write one (control.read_request_token).
    """
    mine, token = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    with mine:
        mine.send(frame(ImsgType.CTL_SEND_REQUEST, imsg.IfIndex(index)))
    return token


def decode(cls: type[imsg.Payload], data: bytes) -> Any:
    try:
        return cls.unpack(data)
    except ImsgError as e:
        raise CtlError(f"invalid answer from dhcpleased: {e}") from None


def emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def emit_json(obj: Any) -> None:
    emit(json.dumps(obj) + "\n")


# --- the commands -----------------------------------------------------------------------
def show_interface(
    o: Options, name: str, ask: ImsgType = ImsgType.CTL_SEND_REQUEST, want: str = "Bound"
) -> int:
    """The original's main loop: request, then poll until Bound or the waits run out.

    ``release IF`` runs it too: asks with CTL_RELEASE and waits for Released; an interface
    the daemon does not manage fails at once (a release does not make it manage one).
    """
    index = if_index(name)
    maxwait = o.maxwait if o.maxwait is not None else (0 if o.list_only else 10)
    client = Client(o.socket)
    if not o.list_only:
        if ask is ImsgType.CTL_SEND_REQUEST:  # the token: root asked (control.py)
            with request_token(index) as token:
                client.send(ask, imsg.IfIndex(index), fd=token)
        else:
            client.send(ask, imsg.IfIndex(index))
    waits: float = maxwait
    didot = False
    while True:
        client.send(ImsgType.CTL_SHOW_INTERFACE_INFO, imsg.IfIndex(index))
        t, data = client.expect(ImsgType.CTL_SHOW_INTERFACE_INFO, ImsgType.CTL_END)
        if t is ImsgType.CTL_END:
            waits -= 1
            if o.list_only or waits < 0 or ask is ImsgType.CTL_RELEASE:
                if didot:
                    emit("\n")
                raise CtlError(f"dhcpleased does not manage {name}")
        else:
            info: imsg.CtlEngineInfo = decode(imsg.CtlEngineInfo, data)
            bound = info.state == want
            if info.state == "Releasing" and waits > 0:  # lasts milliseconds: no dot
                waits -= RELEASING_POLL
                time.sleep(RELEASING_POLL)
                continue
            waits -= 0 if bound else 1
            if bound or waits < 0:
                if didot:
                    emit("\n")
                report(o, info)
                return 0 if bound or (o.maxwait is None and o.list_only) else 1
            if not o.json:
                didot = True
                emit(".")
        time.sleep(1)


def report(o: Options, info: imsg.CtlEngineInfo) -> None:
    name = if_name(info.if_index)
    if o.json:
        emit_json(output.render_json(info, name, boot_now(), time.time()))
    else:
        emit(output.render_text(info, name, boot_now()))


def boot_now() -> float:
    """The engine's lease clock: CLOCK_BOOTTIME, which counts time spent suspended."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def monitor(o: Options) -> int:
    index = if_index(o.args[0]) if o.args else 0
    client = Client(o.socket)
    client.send(ImsgType.CTL_MONITOR)
    client.expect(ImsgType.CTL_MONITOR)
    while True:
        _, data = client.expect(ImsgType.CTL_MONITOR_EVENT, timeout=None)
        ev: imsg.MonitorEvent = decode(imsg.MonitorEvent, data)
        if index in (0, ev.if_index):
            emit_json(output.render_event(ev))


def processes(o: Options) -> int:
    client = Client(o.socket)
    client.send(ImsgType.CTL_PROCINFO)
    procs: list[imsg.ProcInfo] = []
    while True:
        t, data = client.expect(ImsgType.CTL_PROCINFO, ImsgType.CTL_END)
        if t is ImsgType.CTL_END:
            break
        procs.append(decode(imsg.ProcInfo, data))
    if o.json:
        emit_json(output.render_procs_json(procs))
    else:
        emit(output.render_procs_text(procs))
    return 0


def command(o: Options) -> int:
    client = Client(o.socket)
    if o.args[0] == "log":
        client.send(ImsgType.CTL_LOG_VERBOSE, imsg.Verbose(1 if o.args[1] == "verbose" else 0))
        client.expect(ImsgType.CTL_END)  # acknowledged: the daemon took the connection
        return 0
    client.send(ImsgType.CTL_RELOAD)
    _, data = client.expect(ImsgType.CTL_RELOAD_RESULT)
    result: imsg.ReloadResult = decode(imsg.ReloadResult, data)
    if result.ok:
        return 0
    sys.stderr.write("".join(line + "\n" for line in result.message.split("\n") if line))
    raise CtlError("reload failed, the running configuration is unchanged")


def main(argv: list[str] | None = None) -> int:
    try:
        o = parse_args(sys.argv[1:] if argv is None else argv)
        if o.monitor:
            return monitor(o)
        if o.procs:
            return processes(o)
        if is_command(o.args):
            return command(o)
        if is_release(o.args):
            return show_interface(o, o.args[1], ImsgType.CTL_RELEASE, "Released")
        return show_interface(o, o.args[0])
    except UsageError:
        sys.stderr.write(USAGE + "\n")
        return 1
    except CtlError as e:
        sys.stderr.write(f"dhcpleasectl: {e}\n")
        return 1


def run() -> None:
    """Console-script entry point: ^C (which ends -m) and a closed pipe end it quietly."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
