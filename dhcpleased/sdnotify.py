"""sd_notify(3) without libsystemd: readiness, reload and status for ``Type=notify``.

The protocol is one datagram of ``KEY=value`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).  The socket is created
and connected once, when the parent starts, before any sandbox goes up: afterwards a
notification is a single ``send`` on a descriptor the parent already holds (``sendto``
without an address: the parent's seccomp list admits no other, and no ``connect`` on
this socket).  Without ``$NOTIFY_SOCKET`` (not under systemd) every call is a no-op; a
notification that cannot be delivered is dropped, never fatal.
"""

from __future__ import annotations

import os
import socket
import time

from dhcpleased.log import log


class Notifier:
    """The parent's end of the notify socket, or nothing."""

    def __init__(self, address: str | None = None) -> None:
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET", "")
        self.sock: socket.socket | None = None
        if not address or address[0] not in "/@":
            return  # unset, or a kind we do not speak (vsock:)
        target = "\0" + address[1:] if address[0] == "@" else address
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(target)
        except OSError as e:
            log.warning("NOTIFY_SOCKET %s: %s", address, e.strerror)
            sock.close()
            return
        self.sock = sock

    def notify(self, *fields: str) -> bool:
        """Send one datagram of KEY=value lines; False when it was not delivered."""
        if self.sock is None:
            return False
        try:
            self.sock.send("\n".join(fields).encode())
        except OSError as e:
            log.debug("sd_notify: %s", e.strerror)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status is not None else []))

    def reloading(self) -> bool:
        """RELOADING=1 with the CLOCK_MONOTONIC stamp that Type=notify-reload requires."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
