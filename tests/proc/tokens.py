"""Request tokens as dhcpleasectl makes them, made in another process.

The parent refuses a token its own process made (the daemon's socketpairs carry root's
credentials too), and the parent under test runs in the test process: so the token
comes from a short-lived child, passed back over a socketpair as the frontend would.
"""

from __future__ import annotations

import array
import socket
import subprocess

from dhcpleased import imsg
from dhcpleased.imsg import HEADER, Header, ImsgType

# Plain Python, no project import: it also runs as nobody with the system interpreter.
MAKER = r"""
import array, socket, sys
chan = socket.socket(fileno=int(sys.argv[1]))
mine, token = socket.socketpair(socket.AF_UNIX, int(sys.argv[2]))
mine.send(bytes.fromhex(sys.argv[3]))
mine.close()
chan.sendmsg([b"t"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [token.fileno()]))])
"""
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may sit in root's home


def request(index: int, mtype: int = ImsgType.CTL_SEND_REQUEST) -> bytes:
    """What dhcpleasectl writes into its token: one imsg asking about ``index``."""
    data = imsg.IfIndex(index).pack()
    return Header(mtype, HEADER.size + len(data), 0, 0, 0).pack() + data


def foreign_token(
    index: int,
    *,
    mtype: int = ImsgType.CTL_SEND_REQUEST,
    kind: int = socket.SOCK_SEQPACKET,
    user: int | None = None,
) -> int:
    """A token holding ``mtype`` for ``index``, made by a child running as ``user``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        argv = [SYSTEM_PYTHON, "-I", "-c", MAKER, str(theirs.fileno()), str(int(kind))]
        argv.append(request(index, mtype).hex())
        subprocess.run(argv, pass_fds=(theirs.fileno(),), user=user, check=True)
        _, anc, _, _ = ours.recvmsg(1, socket.CMSG_SPACE(4))
    fds = array.array("i")
    fds.frombytes(anc[0][2])
    return fds[0]


def token_pair(index: int) -> tuple[socket.socket, socket.socket]:
    """(the client's end, the token), made here: the token holds a CTL_SEND_REQUEST."""
    mine, token = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.send(request(index))
    mine.setblocking(False)
    return mine, token
