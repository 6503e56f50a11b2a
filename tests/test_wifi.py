"""WiFi clients: lists, presence across access points, events, random MACs, vendors and names."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import aiomqtt
import pytest

from devolo_mqtt.app import Bridge
from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.server import Emulator
from tests.conftest import StartBridge, StartEmulator, bridge_settings
from tests.helpers import Broker, Probe, running

WIFI_NEXT, WIFI_6, REPEATER = "1000000000000002", "1000000000000003", "1000000000000007"
ROUTER = "1000000000000001"
PHONE, RANDOM, AWAY = "3C:22:FB:11:22:01", "DA:A1:19:33:44:02", "3C:22:FB:11:22:06"
WIFI = {"polling": {"wifi": 0.5}, "wifi": {"consider_home": 2}}


def topic_mac(mac: str) -> str:
    """A MAC as it appears in topics."""
    return mac.replace(":", "").lower()


def events(probe: Probe, base: str, kind: str, mac: str) -> list[dict[str, object]]:
    """Events of one kind about one client."""
    found = [m.json() for m in probe.on(f"{base}/bridge/event")]
    return [e for e in found if e["type"] == kind and e["data"]["mac"] == mac.lower()]


async def start(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base: str,
    **overrides: object,
) -> Emulator:
    """Demo home + bridge polling stations twice a second with a 2 s consider-home grace."""
    emulator = await start_emulator(demo_scenario)
    await start_bridge(**{**WIFI, **overrides})
    await probe.wait_json(f"{base}/{WIFI_NEXT}/wifi/clients", lambda p: len(p["clients"]) == 2)
    return emulator


async def rename(broker: Broker, base: str, mac: str, name: str | None) -> None:
    """Name a MAC through the bridge request."""
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(
            f"{base}/bridge/request/mac/rename", json.dumps({"mac": mac, "name": name, "transaction": 7})
        )


async def test_wifi_lists_per_access_point_with_vendor_and_flags(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Each AP publishes its clients with vendor, band, main/guest, rates and connected-since."""
    await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    listing = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/wifi/clients", lambda p: True)
    by_mac = {c["mac"]: c for c in listing["clients"]}
    phone = by_mac[PHONE.lower()]
    assert (phone["vendor"], phone["random"], phone["band"], phone["wifi"]) == (
        "Apple, Inc.",
        False,
        "5",
        "main",
    )
    assert phone["rx_rate"] == 87800 and phone["connected_since"].endswith("Z")
    assert (by_mac[RANDOM.lower()]["random"], by_mac[RANDOM.lower()]["vendor"]) == (True, None)
    guest = await probe.wait_json(f"{base_topic}/{WIFI_6}/wifi/clients", lambda p: len(p["clients"]) == 2)
    assert {c["wifi"] for c in guest["clients"]} == {"main", "guest"}
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "wifi_clients" in s)
    assert state["wifi_clients"] == 2


async def test_wifi_join_then_leave_after_grace(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Join → list, `home`, wifi_connected; leave → `not_home` only after the grace, wifi_disconnected."""
    emulator = await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    presence = f"{base_topic}/wifi/{topic_mac(AWAY)}"
    emulator.world.move_station(AWAY, WIFI_NEXT)
    home = await probe.wait_json(presence, lambda p: p["state"] == "home")
    assert home["ap"] == WIFI_NEXT and home["vendor"] == "Apple, Inc." and home["random"] is False
    await probe.wait_json(
        f"{base_topic}/{WIFI_NEXT}/wifi/clients", lambda p: AWAY.lower() in [c["mac"] for c in p["clients"]]
    )
    assert len(events(probe, base_topic, "wifi_connected", AWAY)) == 1
    emulator.world.move_station(AWAY, None)
    left = asyncio.get_running_loop().time()
    gone = await probe.wait_json(presence, lambda p: p["state"] == "not_home", within=10)
    assert asyncio.get_running_loop().time() - left >= 1.5  # the 2 s grace, less one poll
    assert gone["ap"] == WIFI_NEXT
    (event,) = events(probe, base_topic, "wifi_disconnected", AWAY)
    assert event["data"]["ap"] == WIFI_NEXT  # type: ignore[index]


async def test_wifi_roam_stays_home_with_one_event(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """A roam from one AP to another: still `home`, AP updated, one wifi_roamed event, never not_home."""
    emulator = await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    presence = f"{base_topic}/wifi/{topic_mac(PHONE)}"
    await probe.wait_json(presence, lambda p: p["state"] == "home" and p["ap"] == WIFI_NEXT)
    emulator.world.move_station(PHONE, WIFI_6)
    roamed = await probe.wait_json(presence, lambda p: p["ap"] == WIFI_6)
    assert roamed["state"] == "home"
    await asyncio.sleep(3)  # longer than the grace
    assert all(m.json()["state"] == "home" for m in probe.on(presence))
    (event,) = events(probe, base_topic, "wifi_roamed", PHONE)
    assert (event["data"]["from"], event["data"]["to"]) == (WIFI_NEXT, WIFI_6)  # type: ignore[index]
    assert events(probe, base_topic, "wifi_disconnected", PHONE) == []


async def test_wifi_random_mac_is_flagged_untracked_until_named(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """A random MAC: no presence, no events, no tracker — until the user names it."""
    emulator = await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    presence = f"{base_topic}/wifi/{topic_mac(RANDOM)}"
    emulator.world.move_station(RANDOM, WIFI_6)
    await probe.wait_json(
        f"{base_topic}/{WIFI_6}/wifi/clients", lambda p: RANDOM.lower() in [c["mac"] for c in p["clients"]]
    )
    await asyncio.sleep(1)
    assert probe.on(presence) == []
    assert (
        events(probe, base_topic, "wifi_roamed", RANDOM)
        == events(probe, base_topic, "wifi_connected", RANDOM)
        == []
    )
    await rename(broker, base_topic, RANDOM, "Anna's phone")
    response = await probe.wait_json(f"{base_topic}/bridge/response/mac/rename", lambda r: True)
    assert response == {
        "status": "ok",
        "data": {"mac": RANDOM.lower(), "name": "Anna's phone"},
        "transaction": 7,
    }
    tracked = await probe.wait_json(presence, lambda p: p["state"] == "home")
    assert tracked["name"] == "Anna's phone" and tracked["random"] is True and tracked["vendor"] is None
    tracker = await probe.wait_json(
        f"{base_topic}ha/device_tracker/devolo_wifi_{topic_mac(RANDOM)}/presence/config", lambda c: True
    )
    assert tracker["source_type"] == "router" and tracker["device"]["name"] == "Anna's phone"
    assert "enabled_by_default" not in tracker  # named: enabled


async def test_wifi_rename_everywhere_and_survives_restart(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """A run-time name shows in lists, presence, events and Home Assistant, and after a restart."""
    emulator = await start_emulator(demo_scenario)
    settings = bridge_settings(broker, base_topic, data_dir=str(tmp_path / "data"), **WIFI)
    async with running(Bridge(settings)):
        await probe.wait_json(f"{base_topic}/wifi/{topic_mac(PHONE)}", lambda p: p["state"] == "home")
        await rename(broker, base_topic, PHONE, "Kitchen iPad")
        await probe.wait_json(f"{base_topic}/wifi/{topic_mac(PHONE)}", lambda p: p["name"] == "Kitchen iPad")
        await probe.wait_json(
            f"{base_topic}/{WIFI_NEXT}/wifi/clients",
            lambda p: any(c["name"] == "Kitchen iPad" for c in p["clients"]),
        )
        emulator.world.move_station(PHONE, WIFI_6)
        roam = await probe.wait_json(f"{base_topic}/bridge/event", lambda e: e["type"] == "wifi_roamed")
        assert roam["data"]["name"] == "Kitchen iPad"
    probe.messages.clear()
    async with running(Bridge(settings)):
        listing = await probe.wait_json(
            f"{base_topic}/{WIFI_6}/wifi/clients",
            lambda p: any(c["name"] == "Kitchen iPad" for c in p["clients"]),
        )
        assert listing["clients"]
        config = await probe.wait_json(
            f"{base_topic}ha/device_tracker/devolo_wifi_{topic_mac(PHONE)}/presence/config", lambda c: True
        )
        assert config["device"]["name"] == "Kitchen iPad"
        assert probe.on(f"{base_topic}/wifi/{topic_mac(AWAY)}") == []  # never seen: nothing to re-publish


async def test_wifi_known_clients_republished_after_restart(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """A client seen before a restart is re-published from the data directory, then expires if gone."""
    emulator = await start_emulator(demo_scenario)
    settings = bridge_settings(broker, base_topic, data_dir=str(tmp_path / "data"), **WIFI)
    presence = f"{base_topic}/wifi/{topic_mac(PHONE)}"
    async with running(Bridge(settings)):
        await probe.wait_json(presence, lambda p: p["state"] == "home")
    emulator.world.move_station(PHONE, None)  # leaves while the bridge is down
    probe.messages.clear()
    async with running(Bridge(settings)):
        again = await probe.wait_json(presence, lambda p: p["state"] == "home")
        assert again["ap"] == WIFI_NEXT
        await probe.wait_json(presence, lambda p: p["state"] == "not_home", within=10)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (ip netns)"
)
def test_wifi_vendor_lookup_without_any_network() -> None:
    """Vendor names come from the package's own registry copy: it works in a namespace with no network."""
    ns = f"dvm-nonet-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        code = (
            "import asyncio, aiooui\n"
            "asyncio.run(aiooui.async_load())\n"
            "print(aiooui.get_vendor('3C:22:FB:11:22:01'), '|', aiooui.get_vendor('B8:27:EB:00:00:01'))\n"
        )
        result = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "Apple, Inc. | Raspberry Pi Foundation"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


async def test_wifi_wired_clients_behind_adapters_are_listed_and_home(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """The LAN devices an adapter bridges (its overview's `bridged_devices`) are listed per adapter
    with their vendor, counted in its state, home in presence (medium `lan`, the adapter as place) with
    `wired_connected` on the adapter's event topic; plugged elsewhere they follow without an event;
    unplugged they leave after the grace (`wired_left`)."""
    router_mac, router_lan = "B0BE76123456", "b0:be:76:12:34:56"
    emulator = await start_emulator(demo_scenario)
    await start_bridge(polling={"network": 0.5}, wifi={"consider_home": 2})
    listed = await probe.wait_json(f"{base_topic}/{ROUTER}/wired/clients", lambda p: bool(p["clients"]))
    assert [c["mac"] for c in listed["clients"]] == [router_lan]
    assert listed["clients"][0]["vendor"]  # from the IEEE registry (B0:BE:76)
    await probe.wait_json(f"{base_topic}/{ROUTER}", lambda s: s.get("wired_clients") == 1)
    presence = await probe.wait_json(f"{base_topic}/wifi/{router_mac.lower()}", lambda p: True)
    assert (presence["state"], presence["medium"], presence["ap"]) == ("home", "lan", ROUTER)
    event = await probe.wait_json(
        f"{base_topic}/{ROUTER}/event", lambda e: e["event_type"] == "wired_connected"
    )
    assert event["mac"] == router_lan and event["device"] == ROUTER
    emulator.world.wire(router_mac, WIFI_NEXT)
    await probe.wait_json(f"{base_topic}/wifi/{router_mac.lower()}", lambda p: p["ap"] == WIFI_NEXT)
    await probe.wait_json(f"{base_topic}/{ROUTER}", lambda s: s.get("wired_clients") == 0)
    emulator.world.wire(router_mac, None)
    gone = await probe.wait_json(
        f"{base_topic}/wifi/{router_mac.lower()}", lambda p: p["state"] == "not_home", within=10
    )
    assert gone["medium"] == "lan"
    left = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/event", lambda e: e["event_type"] == "wired_left")
    assert left["mac"] == router_lan
    kinds = [
        m.json()["event_type"]
        for m in probe.messages
        if m.topic.endswith("/event") and "/bridge/" not in m.topic
    ]
    assert kinds.count("wired_connected") == 1  # the move to another port was no new arrival
