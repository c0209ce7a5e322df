"""dhcpleasectl's report: the original's lines, rounding and quirks, and the JSON keys."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address as A
from typing import Any

import pytest

from dhcpleasectl import output
from dhcpleased.imsg import CtlEngineInfo, MonitorEvent, ProcInfo
from dhcpleased.packet import Route

ZERO = A(0)
NOW = 10_000.0  # monotonic "now" of every test
ACKED = NOW - 100.5  # the ACK came 100.5 s ago


def info(**kw: Any) -> CtlEngineInfo:
    base: dict[str, Any] = dict(
        if_index=2,
        running=True,
        link_state=6,
        state="Bound",
        request_time=ACKED,
        server_identifier=A("192.0.2.1"),
        dhcp_server=ZERO,
        requested_ip=A("192.0.2.10"),
        mask=A("255.255.255.0"),
        routes=(Route(ZERO, ZERO, A("192.0.2.1")),),
        nameservers=(A("192.0.2.53"), A("192.0.2.54")),
        lease_time=43300,
        renewal_time=21650,
        rebinding_time=37887,
        domain="example.test",
        search=("example.test", "lab.test"),
    )
    base.update(kw)
    return CtlEngineInfo(**base)


def test_full_report_is_the_originals() -> None:
    routes = (
        Route(ZERO, ZERO, A("192.0.2.1")),
        Route(A("198.51.100.0"), A("255.255.255.0"), A("192.0.2.254")),
    )
    text = output.render_text(info(routes=routes), "em0", NOW)
    assert text == (
        "em0 [Bound]\n"
        "\tinet 192.0.2.10 netmask 255.255.255.0\n"
        "\tdefault gateway 192.0.2.1\n"
        "\troute 198.51.100.0/24 gateway 192.0.2.254\n"
        "\tnameservers 192.0.2.53 192.0.2.54\n"
        "\tlease 12 hours\n"
        "\tdhcp server 192.0.2.1\n"
    )


@pytest.mark.parametrize(
    "left, shown",
    [
        (0, "0 second"),
        (1, "1 second"),
        (2, "2 seconds"),
        (60, "60 seconds"),  # "> 60" switches to minutes
        (61, "1 minute"),
        (90, "1 minute"),  # remainder 30 is not > 30
        (91, "2 minutes"),
        (3600, "60 minutes"),
        (3601, "1 hour"),
        (5400, "1 hour"),  # remainder 1800 is not > 1800
        (5401, "2 hours"),
        (86400, "24 hours"),
        (86401, "1 day"),
        (129600, "1 day"),  # remainder 43200 is not > 43200
        (129601, "2 days"),
        (10 * 86400, "10 days"),
    ],
)
def test_lease_rounding(left: int, shown: str) -> None:
    assert output.format_lease(left) == shown


def test_lease_left_counts_whole_seconds_since_the_ack_and_never_goes_negative() -> None:
    i = info(lease_time=120, request_time=NOW - 100.9)
    assert output.lease_left(i, NOW) == 20  # floor(100.9) = 100 elapsed
    assert output.lease_left(info(lease_time=120, request_time=NOW - 500), NOW) == 0
    text = output.render_text(info(lease_time=120, request_time=NOW - 500), "em0", NOW)
    assert "\tlease 0 second\n" in text


@pytest.mark.parametrize(
    "dst, mask, line",
    [
        ("0.0.0.0", "0.0.0.0", "\tdefault gateway 192.0.2.1"),
        ("10.0.0.0", "255.0.0.0", "\troute 10.0.0.0/8 gateway 192.0.2.1"),
        ("10.1.2.3", "255.255.255.255", "\troute 10.1.2.3/32 gateway 192.0.2.1"),
        ("10.1.0.0", "255.255.128.0", "\troute 10.1.0.0/17 gateway 192.0.2.1"),
        ("10.0.0.0", "0.0.0.0", "\troute 10.0.0.0/33 gateway 192.0.2.1"),  # 33 - ffs(0)
    ],
)
def test_routes(dst: str, mask: str, line: str) -> None:
    text = output.render_text(info(routes=(Route(A(dst), A(mask), A("192.0.2.1")),)), "em0", NOW)
    assert text.splitlines()[2] == line


def test_no_address_shows_only_state_and_server() -> None:
    i = info(state="Init", requested_ip=ZERO, server_identifier=ZERO, routes=(), nameservers=())
    assert output.render_text(i, "em0", NOW) == "em0 [Init]\n"
    # after an OFFER the server is known before any lease: printed anyway, as the original
    offered = info(state="Requesting", requested_ip=ZERO, dhcp_server=ZERO)
    assert output.render_text(offered, "em0", NOW) == "em0 [Requesting]\n\tdhcp server 192.0.2.1\n"


def test_missing_fields() -> None:
    i = info(routes=(), nameservers=(), server_identifier=ZERO, dhcp_server=A("192.0.2.9"))
    lines = output.render_text(i, None, NOW).splitlines()
    assert lines[0] == "unknown [Bound]"  # index no longer maps to a name
    assert not any("gateway" in line or "nameservers" in line for line in lines)
    assert lines[-1] == "\tdhcp server 192.0.2.9"  # the unicast target stands in


def test_the_last_printed_address_is_not_reused_as_server() -> None:
    """Deliberate fix of the original's scratch-buffer quirk (documented in output.py)."""
    i = info(server_identifier=ZERO, dhcp_server=ZERO)
    assert "dhcp server" not in output.render_text(i, "em0", NOW)


def test_mtu_and_ntp_lines_come_after_the_nameservers() -> None:
    i = info(mtu=1400, ntp=(A("192.0.2.123"), A("192.0.2.124")))
    assert output.render_text(i, "em0", NOW).splitlines()[3:6] == [
        "\tnameservers 192.0.2.53 192.0.2.54",
        "\tmtu 1400",
        "\tntp servers 192.0.2.123 192.0.2.124",
    ]
    obj = output.render_json(i, "em0", NOW, wall=1_700_000_000.0)
    assert (obj["mtu"], obj["ntp"]) == (1400, ["192.0.2.123", "192.0.2.124"])
    # without them (none in the lease, "ignore mtu"/"ignore ntp"): no line, null and []
    obj = output.render_json(info(), "em0", NOW, wall=1_700_000_000.0)
    assert (obj["mtu"], obj["ntp"]) == (None, [])
    assert "mtu" not in output.render_text(info(), "em0", NOW)
    # without an address neither is shown, as the rest of the lease
    gone = info(state="Init", requested_ip=ZERO, mtu=1400, ntp=(A("192.0.2.123"),))
    assert output.render_text(gone, "em0", NOW) == "em0 [Init]\n\tdhcp server 192.0.2.1\n"
    obj = output.render_json(gone, "em0", NOW, wall=1_700_000_000.0)
    assert (obj["mtu"], obj["ntp"]) == (None, [])


def test_nameservers_stop_at_the_first_zero() -> None:
    i = info(nameservers=(A("192.0.2.53"), ZERO, A("192.0.2.54")))
    assert "\tnameservers 192.0.2.53\n" in output.render_text(i, "em0", NOW)


JSON_KEYS = {
    "version", "ifname", "if_index", "state", "running", "link_state", "address", "netmask",
    "prefixlen", "routes", "nameservers", "domain", "search", "server", "lease_time",
    "renewal_time", "rebinding_time", "lease_expires_in", "requested_at", "rapid_commit",
    "arp", "mtu", "ntp",
}  # fmt: skip


def test_json_carries_the_same_facts_with_stable_keys() -> None:
    routes = (
        Route(ZERO, ZERO, A("192.0.2.1")),
        Route(A("198.51.100.0"), A("255.255.255.0"), A("192.0.2.254")),
    )
    obj = output.render_json(info(routes=routes), "em0", NOW, wall=1_700_000_000.0)
    assert set(obj) == JSON_KEYS
    assert json.loads(json.dumps(obj)) == obj
    assert obj["version"] == 1
    assert (obj["state"], obj["address"], obj["netmask"], obj["prefixlen"]) == (
        "Bound",
        "192.0.2.10",
        "255.255.255.0",
        24,
    )
    assert obj["routes"] == [
        {"dst": "0.0.0.0/0", "gateway": "192.0.2.1"},
        {"dst": "198.51.100.0/24", "gateway": "192.0.2.254"},
    ]
    assert obj["nameservers"] == ["192.0.2.53", "192.0.2.54"]
    assert (obj["domain"], obj["search"]) == ("example.test", ["example.test", "lab.test"])
    assert obj["server"] == "192.0.2.1"
    assert (obj["lease_time"], obj["renewal_time"], obj["rebinding_time"]) == (43300, 21650, 37887)
    assert obj["lease_expires_in"] == 43200
    assert obj["requested_at"] == "2023-11-14T22:11:39+00:00"  # 1_700_000_000 - 100.5


def test_json_without_a_lease_has_nulls_where_the_text_has_no_lines() -> None:
    i = info(state="Init", requested_ip=ZERO, server_identifier=ZERO, request_time=0.0)
    obj = output.render_json(i, "em0", NOW, wall=1_700_000_000.0)
    assert set(obj) == JSON_KEYS
    for key in ("address", "netmask", "prefixlen", "domain", "server", "lease_time"):
        assert obj[key] is None, key
    assert (obj["lease_expires_in"], obj["requested_at"], obj["rapid_commit"]) == (None,) * 3
    assert (obj["routes"], obj["nameservers"], obj["search"]) == ([], [], [])


def test_monitor_event_json() -> None:
    ev = MonitorEvent(1_700_000_000.25, 2, "em0", "Requesting", "Bound", A("192.0.2.10"), "ack")
    assert output.render_event(ev) == {
        "version": 1,
        "time": "2023-11-14T22:13:20.250+00:00",
        "interface": "em0",
        "if_index": 2,
        "old_state": "Requesting",
        "new_state": "Bound",
        "address": "192.0.2.10",
        "reason": "ack",
    }
    ev = MonitorEvent(0.0, 2, "em0", "Down", "Init", ZERO, "link up")
    assert output.render_event(ev)["address"] is None


def procs() -> list[ProcInfo]:
    return [
        ProcInfo("engine", 12, 998, 998, 0, True, 2, 5, 0, seccomp_calls=37, opens_sockets=False),
        ProcInfo("main", 10, 0, 0, 1 << 12 | 1 << 13, False, 0, 0, -1),
        ProcInfo(
            "frontend", 11, 998, 998, 0, True, 2, -1, 0, 1234, 56, 7,
            seccomp_calls=40, opens_sockets=False, names_dest=False,
            packet_rx_only=2, udp_broadcast=2, udp_unicast=1,
        ),
    ]  # fmt: skip


def test_procinfo_text_and_json() -> None:
    lines = output.render_procs_text(procs()).splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["process", "main", "frontend", "engine"]
    assert lines[1].split() == [
        "main",
        "10",
        "0",
        "0",
        "no",
        "none",
        "off",
        "cap_net_admin,cap_net_raw",
    ]
    assert lines[2].split() == [
        "frontend",
        "11",
        "998",
        "998",
        "yes",
        "filter",
        "(40",
        "calls)",
        "unsupported",
        "none",
    ]
    assert lines[3].split()[-3:] == ["ABI", "5", "none"]
    assert lines[4:] == [
        "main can send: anything: it may open sockets, with cap_net_raw",
        "frontend can send: 2 packet sockets, receive only; UDP 68->255.255.255.255:67 on 2 "
        "interfaces; UDP 68->its server:67 on 1 interface; no destination of its own choosing",
        "engine can send: nothing but its channels to the other processes (no network socket)",
        "packet sockets: 1234 frames read, 56 dropped by the kernel while the engine was "
        "busy (reading paused 7 times)",
    ]
    obj = output.render_procs_json(procs())
    assert obj["version"] == 1
    assert [p["name"] for p in obj["processes"]] == ["main", "frontend", "engine"]
    main = obj["processes"][0]
    assert main["cap_eff"] == "0x0000000000003000"
    assert main["capabilities"] == ["cap_net_admin", "cap_net_raw"]
    assert set(main) == {
        "name", "pid", "uid", "gid", "cap_eff", "capabilities", "no_new_privs", "seccomp",
        "seccomp_calls", "landlock_abi", "landlock_status", "frames_read", "frames_dropped",
        "read_pauses", "opens_sockets", "names_destination", "packet_sockets", "udp_sockets",
        "can_send",
    }  # fmt: skip
    # -j keeps the kernel's name for mode 0; the text column says "none"
    assert (main["seccomp"], main["seccomp_calls"], main["opens_sockets"]) == ("off", 0, True)
    frontend = obj["processes"][1]
    assert (frontend["frames_read"], frontend["frames_dropped"], frontend["read_pauses"]) == (
        1234, 56, 7,
    )  # fmt: skip
    assert (frontend["seccomp"], frontend["seccomp_calls"]) == ("filter", 40)
    assert frontend["packet_sockets"] == {"receive_only": 2, "can_send": 0, "arp_receive_only": 0}
    assert frontend["udp_sockets"] == {"broadcast": 2, "unicast": 1}
    assert frontend["names_destination"] is False
    assert frontend["can_send"] == lines[5].removeprefix("frontend can send: ")


def test_can_send_says_what_a_weaker_process_could() -> None:
    """The text follows the facts, so a regression shows: a packet socket bound to an
    interface, a filter that lets sends name an address, a process that opens sockets."""
    weak = ProcInfo(
        "frontend", 11, 998, 998, 0, True, 2, 5, 0, opens_sockets=False, names_dest=True,
        packet_tx=1, udp_unicast=1,
    )  # fmt: skip
    assert output.can_send(weak) == (
        "1 packet socket that can send any frame; UDP 68->its server:67 on 1 interface"
    )
    unsandboxed = ProcInfo("frontend", 11, 998, 998, 0, False, 0, 0, 0)
    assert output.can_send(unsandboxed) == "anything: it may open sockets, without cap_net_raw"


def test_ffs_and_route_len() -> None:
    assert [output.ffs(v) for v in (0, 1, 2, 0x80000000)] == [0, 1, 2, 32]
    assert output.route_len(A("255.255.255.0")) == 24
    assert output.route_len(A("0.0.0.0")) == 33


def test_rapid_commit_line_and_key() -> None:
    """A lease from a two-message exchange says so after the lease line, and in -j."""
    text = output.render_text(info(rapid_commit=True), "em0", NOW)
    assert text.splitlines()[4:6] == ["\tlease 12 hours", "\trapid commit"]
    assert "rapid commit" not in output.render_text(info(), "em0", NOW)
    assert output.render_json(info(rapid_commit=True), "em0", NOW, 0.0)["rapid_commit"] is True
    assert output.render_json(info(), "em0", NOW, 0.0)["rapid_commit"] is False


def test_released_shows_only_the_state() -> None:
    i = info(state="Released", requested_ip=ZERO, server_identifier=ZERO, routes=(),
             nameservers=(), lease_time=0, request_time=0.0)  # fmt: skip
    assert output.render_text(i, "em0", NOW) == "em0 [Released]\n"
    obj = output.render_json(i, "em0", NOW, 0.0)
    assert (obj["state"], obj["address"], obj["server"]) == ("Released", None, None)


SQUATTER_MAC = bytes.fromhex("02000000bad1")


def test_arp_probe_lines_say_what_conflict_detection_does() -> None:
    """Only with arp probe set; after the lease lines, before the server."""
    assert "arp" not in output.render_text(info(), "em0", NOW)
    assert output.render_json(info(), "em0", NOW, 0.0)["arp"] is None
    cases = {
        "idle": "arp probe: idle",
        "probing": "arp probe: probing 192.0.2.10, 2 of 3 probes sent",
        "clear": "arp probe: no one else has 192.0.2.10",
        "conflict": "arp probe: 192.0.2.10 is in use by another host",
        "announcing": "arp probe: announcing 192.0.2.10",
        "defending": "arp probe: defending 192.0.2.10",
    }
    for phase, line in cases.items():
        i = info(arp_probe=True, arp_phase=phase, arp_address=A("192.0.2.10"), arp_probes_sent=2)
        lines = output.render_text(i, "em0", NOW).splitlines()
        assert lines[-2:] == ["\t" + line, "\tdhcp server 192.0.2.1"]
        obj = output.render_json(i, "em0", NOW, 0.0)["arp"]
        assert (obj["probe"], obj["phase"], obj["address"]) == (True, phase, "192.0.2.10")
        assert obj["probes_sent"] == (2 if phase == "probing" else None)
        assert (obj["conflicts"], obj["last_conflict"]) == (0, None)


def test_conflicts_seen_are_shown_with_the_claimant_and_when() -> None:
    i = info(
        state="Declined", requested_ip=ZERO, server_identifier=ZERO, arp_probe=True,
        arp_conflicts=3, conflict_address=A("192.0.2.10"), conflict_mac=SQUATTER_MAC,
        conflict_time=NOW - 125.2,
    )  # fmt: skip
    assert output.render_text(i, "em0", NOW) == (
        "em0 [Declined]\n"
        "\tarp probe: idle\n"
        "\tarp conflicts: 3, last 192.0.2.10 claimed by 02:00:00:00:ba:d1 2 minutes ago\n"
    )
    obj = output.render_json(i, "em0", NOW, wall=1_700_000_000.0)["arp"]
    assert obj == {
        "probe": True, "phase": "idle", "address": None, "probes_sent": None, "conflicts": 3,
        "last_conflict": {
            "address": "192.0.2.10", "mac": "02:00:00:00:ba:d1", "seconds_ago": 125,
            "at": "2023-11-14T22:11:14+00:00",
        },
    }  # fmt: skip
    off = output.render_json(replace(i, arp_probe=False), "em0", NOW, 0.0)["arp"]
    assert off is not None and off["probe"] is False  # conflicts seen before it was unset


def test_the_arp_socket_in_can_send() -> None:
    p = ProcInfo(
        "frontend", 11, 998, 998, 0, True, 2, 5, 0, opens_sockets=False, names_dest=False,
        packet_rx_only=1, arp_rx_only=1, udp_broadcast=1,
    )  # fmt: skip
    assert output.can_send(p) == (
        "1 packet socket, receive only; 1 ARP packet socket, receive only; "
        "UDP 68->255.255.255.255:67 on 1 interface; no destination of its own choosing"
    )
