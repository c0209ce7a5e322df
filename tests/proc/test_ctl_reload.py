"""``dhcpleasectl reload`` against a stand-in daemon: the verdict decides the exit status."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from dhcpleasectl.main import main
from dhcpleased import imsg
from dhcpleased.imsg import HEADER, Header, ImsgType


def answer_once(path: Path, t: ImsgType, payload: bytes) -> threading.Thread:
    """Listen at path; to the first request, check it is CTL_RELOAD and answer (t, payload)."""
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lsock.bind(str(path))
    lsock.listen(1)

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn, lsock:
            req = Header.unpack(conn.recv(4096)[: HEADER.size])
            assert req.type == ImsgType.CTL_RELOAD
            conn.send(Header(t, HEADER.size + len(payload), 0, 1, 0).pack() + payload)

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("verdict", "status", "stderr"),
    [
        (imsg.ReloadResult(True, ""), 0, ""),
        (
            imsg.ReloadResult(False, "/etc/d.conf:2: syntax error\n/etc/d.conf:4: name too long"),
            1,
            "/etc/d.conf:2: syntax error\n/etc/d.conf:4: name too long\n"
            "dhcpleasectl: reload failed, the running configuration is unchanged\n",
        ),
    ],
)
def test_reload_exit_status_follows_the_verdict(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    verdict: imsg.ReloadResult,
    status: int,
    stderr: str,
) -> None:
    sock = tmp_path / "ctl.sock"
    thread = answer_once(sock, ImsgType.CTL_RELOAD_RESULT, verdict.pack())
    assert main(["-s", str(sock), "reload"]) == status
    thread.join()
    assert capsys.readouterr() == ("", stderr)


def test_reload_with_a_bad_answer_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "ctl.sock"
    thread = answer_once(sock, ImsgType.CTL_END, b"")  # what an older daemon answered
    assert main(["-s", str(sock), "reload"]) == 1
    thread.join()
    assert "unexpected IMSG_CTL_END" in capsys.readouterr().err
