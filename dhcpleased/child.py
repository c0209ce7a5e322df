"""What the two re-executed children share: how they start, and how they end.

Both the engine and the frontend get their channel to the parent on fd 3, ignore the
signals the parent handles for them, lock themselves down once their loop exists, and
exit when the parent closes its end. A message from another daemon process that does not
check out is fatal (that process is assumed compromised); a sibling that died is the
parent's to report, with its cause, in one line. An unexpected exception anywhere (a
handler, a callback, a task, start-up) is a bug: it is logged with its traceback, under
the sandbox, and the process exits with status 1, which takes the daemon down.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Awaitable, Callable

from dhcpleased import procinfo, sandbox
from dhcpleased.imsg import HEADER, Header, ImsgError, ImsgType, type_name
from dhcpleased.ipc import Imsg
from dhcpleased.log import crash_report, exception_handler, install_hooks, log, log_init

PEER_CLOSED = "peer closed"
_KNOWN_TYPES = frozenset(int(t) for t in ImsgType)
SIBLING_GRACE = 2.0  # seconds the parent has to end the daemon after a sibling's exit


class ChildProcess:
    """The life cycle shared by Engine and Frontend; ``done`` holds the exit status."""

    role = "child"
    sibling = "sibling"

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[int] = self.loop.create_future()
        self.loop.set_exception_handler(exception_handler(self.fatal))

    def fatal(self, message: str) -> None:
        if not self.done.done():
            log.critical("fatal in %s: %s", self.role, message)
            self.done.set_result(1)

    def lost_main(self, reason: str) -> None:
        # The parent closing its end is how a clean shutdown reaches us.
        if not self.done.done():
            if reason != PEER_CLOSED:
                log.critical("fatal in %s: channel to main: %s", self.role, reason)
            self.done.set_result(0 if reason == PEER_CLOSED else 1)

    def lost_sibling(self, reason: str) -> None:
        """Only a broken channel is ours to explain; a dead sibling is the parent's.

        A sibling that closed its end is exiting: the parent reaps it, says why, and
        closes our channel. Exiting at once would race it and could make the parent
        blame us; we go by ourselves only if the parent has not acted in time.
        """
        if self.done.done():
            return
        if reason.endswith(PEER_CLOSED):  # EOF, or ECONNRESET with data still unread
            log.debug("lost connection to %s", self.sibling)
            self.loop.call_later(
                SIBLING_GRACE, self.fatal, f"lost connection to {self.sibling}: {reason}"
            )
        else:
            self.fatal(f"lost connection to {self.sibling}: {reason}")

    def guarded(self, handler: Callable[[Imsg], None], msg: Imsg, where: str) -> None:
        """Run a ``dispatch_*`` body: a message that does not check out ends the process.

        Descriptors of a message that fails are not closed here: the process is exiting
        and they go with it, while a handler may already own the one it took.
        """
        if self.done.done():
            if msg.fd is not None:
                socket.close(msg.fd)
            return
        if msg.type not in _KNOWN_TYPES:
            self.fatal(f"{where}: unexpected {type_name(msg.type)}")
            return
        try:
            handler(msg)
        except ImsgError as e:
            self.fatal(f"{where}: invalid {type_name(msg.type)}: {e}")


def child_main(
    role: str, debug: bool, verbose: int, serve: Callable[[socket.socket], Awaitable[int]]
) -> int:
    """Entry point of ``dhcpleased -E|-F``: everything exists before the sandbox goes up."""
    log_init(debug, verbose, role)
    install_hooks()
    try:
        return _child_run(role, serve)
    except Exception as e:
        log.critical("fatal in %s: %s", role, crash_report("unexpected exception", e))
        return 1


def _child_run(role: str, serve: Callable[[socket.socket], Awaitable[int]]) -> int:
    for signo in (signal.SIGHUP, signal.SIGPIPE, signal.SIGINT):
        signal.signal(signo, signal.SIG_IGN)
    parent_sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fileno=3)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    procinfo.open_status()  # cached: /proc is gone once sandboxed
    try:
        sandbox.enter_child(role)
    except sandbox.SandboxError as e:
        log.critical("fatal in %s: %s", role, e)
        return 1
    # The parent tells systemd READY=1 only once both children said this: a child whose
    # sandbox fails must make the start fail, not kill a service already "active".
    try:
        parent_sock.send(Header(ImsgType.SANDBOX_UP, HEADER.size, 0, 0, 0).pack())  # sendto
    except OSError as e:
        log.critical("fatal in %s: channel to main: %s", role, e.strerror)
        return 1
    try:
        return loop.run_until_complete(serve(parent_sock))
    finally:
        loop.close()
        late = sandbox.late_imports()
        if late:  # each is a crash waiting for the path that imports it under seccomp
            log.warning("modules imported after the sandbox: %s", " ".join(late))
