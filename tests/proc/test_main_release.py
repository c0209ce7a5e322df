"""The parent's half of issue 15.2: RELEASED drops the lease file; "release on exit"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dhcpleased import imsg, main
from dhcpleased.imsg import ImsgType
from dhcpleased.parse import IfaceConf
from tests.proc import test_main
from tests.proc.test_main import IFINDEX, IFNAME, Rig, ci, failed, know_interface, send, settle

rig = test_main.rig  # the fixture: a Main with fake children, kernel and resolver


def release_on_exit(r: Rig, on: bool = True) -> None:
    r.m.managed = {IFNAME: IfaceConf(IFNAME, release_on_exit=on)}


async def leased(r: Rig, tmp_path: Path) -> None:
    know_interface(r)
    await r.engine.expect(ImsgType.UPDATE_IF)
    send(r, "engine", ImsgType.CONFIGURE_INTERFACE, ci())
    await settle()
    assert (tmp_path / IFNAME).exists()


async def test_released_drops_the_lease_file_after_the_deconfiguration(
    rig: Rig, tmp_path: Path
) -> None:
    await leased(rig, tmp_path)
    send(rig, "engine", ImsgType.DECONFIGURE_INTERFACE, ci())
    send(rig, "engine", ImsgType.RELEASED, imsg.IfIndex(IFINDEX).pack())
    await settle()
    assert rig.kroute.calls[-1][0] == "deconfigure"
    assert not (tmp_path / IFNAME).exists()  # no INIT-REBOOT for a released address
    send(rig, "engine", ImsgType.RELEASED, imsg.IfIndex(IFINDEX).pack())  # no file: fine
    await settle()
    assert not rig.m.done.done()


async def test_released_for_an_interface_the_engine_was_not_told_of_is_fatal(rig: Rig) -> None:
    send(rig, "engine", ImsgType.RELEASED, imsg.IfIndex(IFINDEX).pack())
    assert failed(rig)


async def test_sigterm_without_release_on_exit_leaves_at_once(rig: Rig, tmp_path: Path) -> None:
    await leased(rig, tmp_path)
    rig.m.terminate()
    assert rig.m.done.done() and rig.m.done.result() == 0
    await rig.engine.quiet()
    assert (tmp_path / IFNAME).exists()  # kept for INIT-REBOOT, as the original does


async def test_sigterm_waits_for_the_release_then_exits(rig: Rig, tmp_path: Path) -> None:
    await leased(rig, tmp_path)
    release_on_exit(rig)
    rig.m.terminate()
    msg = await rig.engine.expect(ImsgType.REQUEST_RELEASE)
    assert imsg.IfIndex.unpack(msg.data).if_index == IFINDEX
    await settle()
    assert not rig.m.done.done()  # waiting for the engine
    send(rig, "engine", ImsgType.DECONFIGURE_INTERFACE, ci())
    send(rig, "engine", ImsgType.RELEASED, imsg.IfIndex(IFINDEX).pack())
    assert await asyncio.wait_for(rig.m.done, 1) == 0
    assert rig.kroute.calls[-1][0] == "deconfigure"  # done before the exit
    assert not (tmp_path / IFNAME).exists()


async def test_a_second_signal_does_not_wait(rig: Rig, tmp_path: Path) -> None:
    await leased(rig, tmp_path)
    release_on_exit(rig)
    rig.m.terminate()
    await rig.engine.expect(ImsgType.REQUEST_RELEASE)
    rig.m.terminate()
    assert rig.m.done.done()


async def test_the_wait_is_bounded(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(main, "RELEASE_EXIT_WAIT", 0.2)
    await leased(rig, tmp_path)
    release_on_exit(rig)
    rig.m.terminate()
    assert await asyncio.wait_for(rig.m.done, 1) == 0  # the engine never answered
    assert f"exiting before the leases of {IFNAME} were released" in caplog.text
