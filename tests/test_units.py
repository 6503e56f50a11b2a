"""Unit tests of the pure parts, with an injected clock: command parsing, the change filter, WiFi
presence (roams, grace period, random MACs), PLC network identity."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devolo_mqtt import memory
from devolo_mqtt.core.capabilities import same_restart
from devolo_mqtt.core.changes import ChangeFilter
from devolo_mqtt.core.commands import parse_command
from devolo_mqtt.core.errors import CommandError
from devolo_mqtt.core.model import Overview, PlcDevice, PlcRate, Station
from devolo_mqtt.core.names import MacNames
from devolo_mqtt.core.store import JsonStore, StoredInt
from devolo_mqtt.core.tasks import FairLimiter
from devolo_mqtt.plc.linkwatch import LinkWatch
from devolo_mqtt.plc.monitor import NetworkIds, NetworkMonitor, NetworkOutput
from devolo_mqtt.settings import WifiSettings
from devolo_mqtt.wifi.tracker import WifiOutput, WifiTracker

PHONE, RANDOM = "001122334455", "02AABBCCDDEE"
A1, B2, C3, ZERO = "00005E0053A1", "00005E0053B2", "00005E0053C3", "00005E005300"


def shown(mac: str) -> str:
    """A MAC as the bridge shows it."""
    return ":".join(mac[i : i + 2] for i in range(0, 12, 2)).lower()


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parse_command_single_key_json_and_errors() -> None:
    """Plain values for `/set/<key>`, JSON objects for `/set`; every malformed payload is a CommandError."""
    single = parse_command("leds", b" OFF \n", response_topic="r/t", correlation=b"c")
    assert single.values == {"leds": "OFF"} and single.single_key and single.response_topic == "r/t"
    multi = parse_command(None, b'{"guest_wifi": "ON", "guest_duration": 30, "transaction": 7}')
    assert multi.values == {"guest_wifi": "ON", "guest_duration": 30} and multi.transaction == 7
    assert not multi.single_key
    nested = parse_command(None, b'{"leds": [1]}')
    assert nested.values == {"leds": "[1]"}  # non-scalars reach validation as text (and fail there)
    for key, payload, reason in [
        (None, b"{", "not valid JSON"),
        (None, b"[]", "JSON object"),
        (None, b'{"transaction": 1}', "no key"),
        (None, b"[" * 50, "nested too deeply"),
        ("leds", b"\xff\xfe", "not UTF-8"),
        ("leds", b"x" * 5000, "too large"),
    ]:
        with pytest.raises(CommandError, match=reason):
            parse_command(key, payload)
    with pytest.raises(CommandError, match="retained"):
        parse_command("leds", b"OFF", retain=True)


def test_change_filter_publishes_on_change_force_and_heartbeat_only() -> None:
    """Unchanged state costs nothing until the heartbeat; a change or `force` goes out at once."""
    clock = Clock()
    change = ChangeFilter(heartbeat=300, clock=clock)
    assert change.should_publish({"a": 1})
    assert not change.should_publish({"a": 1})
    clock.now += 299
    assert not change.should_publish({"a": 1})
    assert change.should_publish({"a": 2})
    assert change.should_publish({"a": 2}, force=True)
    clock.now += 300
    assert change.should_publish({"a": 2})  # heartbeat
    assert change.last == {"a": 2}


def _tracker(tmp_path: Path, clock: Clock, **settings: Any) -> tuple[WifiTracker, dict[str, list[Any]]]:
    seen: dict[str, list[Any]] = {"lists": [], "wired": [], "presence": [], "events": [], "trackers": []}
    out = WifiOutput(
        client_list=lambda ap, p: seen["lists"].append((ap, p)),
        wired_list=lambda device, p: seen["wired"].append((device, p)),
        presence=lambda mac, p: seen["presence"].append((mac, p)),
        event=lambda kind, data: seen["events"].append((kind, data)),
        tracker_config=seen["trackers"].append,
    )
    tracker = WifiTracker(
        WifiSettings(consider_home=60, **settings),
        MacNames({}, tmp_path / "names.json"),
        out,
        state_file=tmp_path / "wifi.json",
        clock=clock,
        heartbeat=300,
    )
    return tracker, seen


def _station(mac: str, band: str = "5") -> Station:
    return Station(mac=mac, band=band, wifi="main", rx_rate=100, tx_rate=100)


def test_wifi_tracker_roam_grace_and_departure(tmp_path: Path) -> None:
    """A roam is one event and stays home; gone from every AP it turns not_home after the grace only."""
    clock = Clock()
    tracker, seen = _tracker(tmp_path, clock)
    tracker.update_ap("ap1", [_station(PHONE)])
    clock.now += 10
    tracker.update_ap("ap2", [_station(PHONE, "2.4")])
    tracker.update_ap("ap1", [])
    kinds = [kind for kind, _ in seen["events"]]
    assert kinds == ["wifi_connected", "wifi_roamed"]
    assert tracker.presence[PHONE].state == "home" and tracker.presence[PHONE].ap == "ap2"
    tracker.update_ap("ap2", [])
    clock.now += 59
    tracker.expire()
    assert tracker.presence[PHONE].state == "home"  # within the grace period
    clock.now += 2
    tracker.expire()
    assert tracker.presence[PHONE].state == "not_home"
    assert [kind for kind, _ in seen["events"]][-1] == "wifi_disconnected"
    assert seen["presence"][-1][1]["state"] == "not_home"


def test_wifi_tracker_wired_clients_are_home_and_wifi_wins(tmp_path: Path) -> None:
    """A device behind an adapter's LAN port is home (`wired_connected`, medium `lan`, the adapter as
    its place); moving ports is no event; listed by an access point too it is placed by WiFi; gone
    from every list it leaves after the grace (`wired_left`); each adapter's wired list is published."""
    clock = Clock()
    tracker, seen = _tracker(tmp_path, clock)
    tracker.update_wired("office", [PHONE])
    presence = tracker.presence[PHONE]
    assert (presence.state, presence.medium, presence.ap) == ("home", "lan", "office")
    assert seen["events"] == [("wired_connected", {**seen["events"][0][1], "device": "office"})]
    assert (
        seen["wired"][-1][0] == "office" and seen["wired"][-1][1]["clients"][0]["mac"] == "00:11:22:33:44:55"
    )
    clock.now += 5
    tracker.update_wired("garage", [PHONE])
    tracker.update_wired("office", [])
    assert tracker.presence[PHONE].ap == "garage" and len(seen["events"]) == 1  # moved ports: no event
    tracker.update_ap("ap1", [_station(PHONE)])
    assert (tracker.presence[PHONE].medium, tracker.presence[PHONE].ap) == ("wifi", "ap1")
    assert seen["presence"][-1][1]["medium"] == "wifi"
    tracker.update_ap("ap1", [])
    assert (tracker.presence[PHONE].medium, tracker.presence[PHONE].ap) == ("lan", "garage")
    tracker.update_wired("garage", [])
    clock.now += 61
    tracker.expire()
    assert tracker.presence[PHONE].state == "not_home"
    assert seen["events"][-1][0] == "wired_left" and seen["events"][-1][1]["device"] == "garage"


def test_wifi_tracker_random_macs_untracked_unless_asked(tmp_path: Path) -> None:
    """A random (locally administered) MAC is listed but gets no presence, unless `track_random`."""
    clock = Clock()
    tracker, seen = _tracker(tmp_path, clock)
    tracker.update_ap("ap1", [_station(RANDOM)])
    assert RANDOM not in tracker.presence and seen["events"] == []
    assert seen["lists"][-1][1]["clients"][0]["random"] is True
    tracker_all, seen_all = _tracker(tmp_path / "b", clock, track_random=True)
    tracker_all.update_ap("ap1", [_station(RANDOM)])
    assert tracker_all.presence[RANDOM].state == "home"
    assert [kind for kind, _ in seen_all["events"]] == ["wifi_connected"]


def test_wifi_tracker_last_seen_refreshed_once_a_minute_and_no_list_for_lan_devices(tmp_path: Path) -> None:
    """A present client's `last_seen` goes out again once a minute old (not on every poll); a device
    that never listed clients (no WiFi) gets no client list when it goes offline."""
    clock = Clock()
    tracker, seen = _tracker(tmp_path, clock)
    tracker.update_ap("ap1", [_station(PHONE)])
    first = seen["presence"][-1][1]["last_seen"]
    for _ in range(3):  # polls within the minute: nothing new
        clock.now += 15
        tracker.update_ap("ap1", [_station(PHONE)])
    assert len(seen["presence"]) == 1
    clock.now += 15
    tracker.update_ap("ap1", [_station(PHONE)])
    assert len(seen["presence"]) == 2 and seen["presence"][-1][1]["last_seen"] >= first
    lists = len(seen["lists"])
    tracker.ap_lost("lan-only")
    assert len(seen["lists"]) == lists  # nothing published for a device without WiFi
    tracker.ap_lost("ap1")
    assert seen["lists"][-1] == ("ap1", {"last_seen": seen["lists"][-1][1]["last_seen"], "clients": []})


def test_last_restart_ignores_jitter_but_not_a_restart() -> None:
    """Readings seconds apart are the same restart (the first estimate stays); a new boot replaces it."""
    booted = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
    assert same_restart(booted, booted + timedelta(seconds=2)) == booted
    assert same_restart(booted, booted - timedelta(seconds=1)) == booted
    later = booted + timedelta(hours=3)
    assert same_restart(booted, later) == later


def test_stored_int_survives_a_restart_and_a_damaged_file(tmp_path: Path) -> None:
    """A value set over MQTT is there for the next run; a damaged file falls back to the default."""
    path = tmp_path / "guest_wifi.json"
    first = StoredInt(path, 0)
    assert first.value == 0 and not path.exists()  # the default is not written
    first.value = 45
    assert StoredInt(path, 0).value == 45
    path.write_text("{not json", encoding="utf-8")
    assert StoredInt(path, 7).value == 7
    path.write_text("true", encoding="utf-8")
    assert StoredInt(path, 7).value == 7  # a boolean is not a number of minutes


def _overview(rates: dict[tuple[str, str], float], router: str = A1) -> Overview:
    macs = sorted({m for pair in rates for m in pair})
    devices = tuple(
        PlcDevice(mac, f"name {mac}", "Magic 2 LAN", "MT3001", mac == router, False, "") for mac in macs
    )
    return Overview(devices, tuple(PlcRate(s, d, r, r / 2) for (s, d), r in rates.items()))


def test_network_monitor_ids_matrix_and_members_leaving(tmp_path: Path) -> None:
    """A network keeps its id across overviews and restarts (by any remembered member), its matrix names
    every member and marks the router adapter, and a member missing from the next overview is dropped."""
    published: list[tuple[str, Any]] = []
    measured: list[list[str]] = []

    def monitor() -> NetworkMonitor:
        return NetworkMonitor(
            interval=60,
            ids=NetworkIds(tmp_path / "networks.json"),
            members=list,
            adapters={},
            names=lambda mac: "Living room" if mac == B2 else None,
            configured_network=lambda mac: None,
            out=NetworkOutput(
                rates=lambda network, matrix: published.append((network, matrix)),
                map=lambda network, svg: None,
                event=lambda kind, data: None,
                wired=lambda device, macs: None,
                networks_changed=lambda: None,
                forget=lambda network: None,
            ),
            watch=LinkWatch(tmp_path / "plc_links.json"),
            measured=measured.append,
            heartbeat=300,
            clock=Clock(),
        )

    first = monitor()
    assert first.take(_overview({(A1, B2): 100.0, (B2, C3): 50.0})) == {A1, B2, C3}
    network, matrix = published[-1]
    assert network == "plc-00005e0053a1" and set(first.unmanaged) == {A1, B2, C3}
    names = {d["mac"]: (d["name"], d["attached_to_router"]) for d in matrix["devices"]}
    assert names == {
        shown(A1): (f"name {A1}", True),
        shown(B2): ("Living room", False),
        shown(C3): (f"name {C3}", False),
    }
    assert {(r["from"], r["to"], r["tx_rate"], r["rx_rate"]) for r in matrix["rates"]} == {
        (shown(A1), shown(B2), 100.0, 50.0),
        (shown(B2), shown(C3), 50.0, 25.0),
    }
    # People read the network by its router-attached adapter, not by its id.
    assert first.display_names() == {"plc-00005e0053a1": f"Network of name {A1}"}
    first.take(_overview({(B2, A1): 90.0}))  # C3 left the network
    assert published[-1][0] == "plc-00005e0053a1" and set(first.unmanaged) == {A1, B2}
    assert measured == [[A1, B2, C3], [A1, B2]]
    # After a restart, a new member joining a remembered one keeps the remembered id (not plc-0…).
    monitor().take(_overview({(B2, ZERO): 10.0}, router=B2))
    assert published[-1][0] == "plc-00005e0053a1"


async def test_fair_limiter_a_hanging_call_gives_its_slot_back() -> None:
    """With one slot, a call that hangs (a dead device retried by the library) lets the next call in
    after `hold`, while it still runs; a quick call gives its slot back at once."""
    limiter = FairLimiter(1, hold=0.05)
    release = asyncio.Event()
    entered = asyncio.Event()

    async def hanging() -> None:
        async with limiter.slot():
            entered.set()
            await release.wait()

    stuck = asyncio.create_task(hanging())
    await entered.wait()
    async with asyncio.timeout(5):  # without the hold this waits forever (the event is never set)
        async with limiter.slot():
            assert not stuck.done()  # the hanging call still runs: it only gave its slot back
    for _ in range(3):
        async with asyncio.timeout(5), limiter.slot():
            pass
    release.set()
    await stuck
    assert limiter._slots._value == 1


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def test_memory_give_back_returns_freed_heap_pages() -> None:
    """Objects freed in the middle of the heap (a start-up burst, some survivors) stay resident until
    `give_back`, which returns their pages to the system."""
    burst = [bytes(2000) for _ in range(40_000)]  # ~80 MiB from glibc's heap (not pymalloc: > 512 B)
    survivors = burst[::16]  # keep a few: the heap cannot simply shrink from its top
    del burst
    before = _rss_mib()
    assert memory.give_back()
    assert before - _rss_mib() > 30, (before, _rss_mib())
    assert len(survivors) == 2500


def test_log_vanished_interface_is_one_info_line_without_traceback() -> None:
    """zeroconf failing to send on an interface that went away (a container network removed): one
    INFO line that says so, no traceback; other zeroconf errors keep theirs."""
    import io  # noqa: PLC0415
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    from devolo_mqtt import log  # noqa: PLC0415

    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    log.configure("INFO", "json", stream=stream)
    try:
        zeroconf = logging.getLogger("zeroconf")
        gone = OSError(101, "Network is unreachable")
        zeroconf.warning("Error sending through socket %d", 7, exc_info=gone)
        zeroconf.warning("Something else", exc_info=ValueError("bad"))
    finally:
        root.handlers[:], root.level = handlers, level
        structlog.reset_defaults()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "info" and "interface went away: Network is unreachable" in first["event"]
    assert "socket 7" in first["event"] and "exception" not in first
    assert second["level"] == "warning" and "ValueError" in second["exception"]


async def test_store_save_soon_writes_the_latest_value_once_flushed(tmp_path: Path) -> None:
    """A burst of changes is one write of the last value; `flush_all` writes it at once (a stop)."""
    store = JsonStore(tmp_path / "known.json")
    values = {"a": 1}
    store.save_soon(lambda: values)
    values = {"a": 2}
    store.save_soon(lambda: values)
    assert not store.path.exists()  # not yet: the burst may go on
    JsonStore.flush_all()
    assert store.load() == {"a": 2}
    JsonStore.flush_all()  # nothing pending: nothing written again
    store.path.unlink()
    JsonStore.flush_all()
    assert not store.path.exists()
