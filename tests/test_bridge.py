"""The bridge end to end: real Mosquitto, emulated devices, the unmodified library."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from typing import Any

import aiomqtt
import pytest

from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.world import Fault
from tests.conftest import MANAGEABLE, StartBridge, StartEmulator, start_home
from tests.helpers import Broker, Probe, publish, until

ROUTER, WIFI_NEXT, WIFI_6, GARAGE, DLAN_WIFI, SHED, REPEATER = (f"100000000000000{i}" for i in range(1, 8))


def _keys_are(keys: set[str], state: dict[str, Any]) -> bool:
    return set(state) == keys


async def test_bridge_start_publishes_retained_state_per_model(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Every device gets retained state with exactly the keys its model supports."""
    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    assert (await probe.wait_for(f"{base_topic}/bridge/state")).payload == b"online"
    common = {"leds", "firmware", "update_available", "next_firmware", "update_in_progress", "last_restart"}
    common |= {"ip", "last_seen"}
    wifi = {"guest_wifi", "guest_duration", "guest_remaining", "guest_ssid", "neighbor_aps", "wifi_clients"}
    plc = {"locate", "connected_to_router", "plc_devices", "name", "wired_clients"}
    # The PLC chip's support dump; the domain master (the router adapter) has no uplink: no wire length.
    health = {"plc_temperature", "plc_hops", "plc_lost_maps", "plc_neighbor_networks"}

    def links(own: int) -> set[str]:
        return {f"{d}_rate_00005e00530{i}" for d in ("tx", "rx") for i in (1, 2, 3, 4) if i != own}

    expected = {
        ROUTER: common | plc | health | links(1),
        WIFI_NEXT: common | wifi | plc | health | {"plc_wire_length"} | links(2),
        # A repeater has no PLC (no locate, no rates); it has an uplink and a mesh controller.
        REPEATER: common | wifi | {"uplink_ssid", "uplink_signal", "uplink_rate", "mesh_controller"},
    }
    states: dict[str, Any] = {}
    for serial, keys in expected.items():
        # Sources arrive at different moments (the PLC view comes from the network round): wait for all.
        states[serial] = await probe.wait_json(f"{base_topic}/{serial}", functools.partial(_keys_are, keys))
    assert states[ROUTER]["leds"] == "ON" and states[ROUTER]["locate"] == "OFF"
    assert states[REPEATER]["uplink_ssid"] == "home" and states[REPEATER]["uplink_signal"] == -55
    assert states[REPEATER]["mesh_controller"] == demo_scenario.addresses()[ROUTER]
    assert (
        states[WIFI_NEXT]["guest_wifi"] == "OFF"
        and states[WIFI_NEXT]["ip"] == demo_scenario.addresses()[WIFI_NEXT]
    )
    for serial in MANAGEABLE:  # (retained flags are checked by a late subscriber in the next test)
        availability = probe.last(f"{base_topic}/{serial}/availability")
        assert availability is not None and availability.payload == b"online", serial

    def manageable(inventory: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [x for x in inventory if x["manageable"]]

    devices = manageable(
        await probe.wait_json(
            f"{base_topic}/bridge/devices",
            lambda d: len(manageable(d)) == 5 and all(x["online"] for x in manageable(d)),
        )
    )
    assert {d["serial"] for d in devices} == set(MANAGEABLE)
    info = await probe.wait_json(f"{base_topic}/bridge/info", lambda i: "version" in i)
    assert info["schema_version"] == 1
    assert info["config"]["device_password"] == "**********"  # secrets masked
    health = await probe.wait_json(f"{base_topic}/bridge/health", lambda h: len(h["devices"]) == 5, within=5)
    assert health["mqtt"]["connects"] == 1
    assert health["devices"][WIFI_NEXT]["online"] is True and health["devices"][WIFI_NEXT]["latency_ms"] > 0


async def test_bridge_retained_flags_on_the_broker(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """A late subscriber gets state, availability, bridge state and discovery configs as retained messages."""
    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    for serial in MANAGEABLE:  # everything published once (on a loaded machine some devices are late)
        await probe.wait_for(f"{base_topic}ha/switch/devolo_{serial}/leds/config")
    seen: dict[str, aiomqtt.Message] = {}
    async with aiomqtt.Client("127.0.0.1", broker.port) as late:
        await late.subscribe(f"{base_topic}/#")
        await late.subscribe(f"{base_topic}ha/#")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):
                async for message in late.messages:
                    seen.setdefault(str(message.topic), message)  # the replay comes first
    for topic in (
        f"{base_topic}/bridge/state",
        f"{base_topic}/{ROUTER}",
        f"{base_topic}/{ROUTER}/availability",
        f"{base_topic}/bridge/info",
        f"{base_topic}/bridge/devices",
        f"{base_topic}ha/switch/devolo_{ROUTER}/leds/config",
    ):
        assert topic in seen and seen[topic].retain, topic
    # Events are never retained (one that happens while the late subscriber listens arrives live).
    event = seen.get(f"{base_topic}/bridge/event")
    assert event is None or not event.retain


async def test_bridge_discovery_entities_follow_features(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """LAN-only: no guest entities; repeaters: no locate; configs carry via_device and availability."""
    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    ha = f"{base_topic}ha"
    config = await probe.wait_json(f"{ha}/switch/devolo_{WIFI_NEXT}/guest_wifi/config", lambda c: True)
    assert config["command_topic"] == f"{base_topic}/{WIFI_NEXT}/set/guest_wifi"
    assert config["state_topic"] == f"{base_topic}/{WIFI_NEXT}"
    assert config["value_template"] == "{{ value_json.guest_wifi | default('None') }}"
    assert config["unique_id"] == f"devolo_{WIFI_NEXT}_guest_wifi"
    assert config["availability"] == [
        {"topic": f"{base_topic}/bridge/state"},
        {"topic": f"{base_topic}/{WIFI_NEXT}/availability"},
    ]
    assert config["availability_mode"] == "all"
    # openHAB keeps one availability rule per Thing (the last component's): every component of a
    # device asks for the same one, the connectivity sensor included.
    connectivity = await probe.wait_json(
        f"{ha}/binary_sensor/devolo_{WIFI_NEXT}/online/config", lambda c: True
    )
    assert connectivity["availability"] == [{"topic": f"{base_topic}/bridge/state"}]

    def device_configs() -> list[dict[str, object]]:
        return [m.json() for m in probe.messages if f"/devolo_{WIFI_NEXT}/" in m.topic and m.payload]

    await until(lambda: len(device_configs()) >= 15, what="the device's configs")
    assert {c.get("availability_mode") for c in device_configs()} == {"all"}
    assert config["device"]["via_device"] == "devolo_mqtt_bridge"
    assert set(config["device"]) <= {
        "identifiers",
        "connections",
        "name",
        "manufacturer",
        "model",
        "sw_version",
        "hw_version",
        "serial_number",
        "configuration_url",
        "via_device",
        "suggested_area",
    }
    assert set(config["origin"]) == {"name", "sw_version", "support_url"}
    await probe.wait_for(f"{ha}/switch/devolo_{REPEATER}/guest_wifi/config")
    await asyncio.sleep(0.5)
    topics = {m.topic for m in probe.messages}
    assert f"{ha}/switch/devolo_{ROUTER}/guest_wifi/config" not in topics
    assert f"{ha}/switch/devolo_{ROUTER}/locate/config" in topics
    assert f"{ha}/switch/devolo_{REPEATER}/locate/config" not in topics
    # The update entity comes with the firmware check's first answer (a slower source).
    await probe.wait_for(f"{ha}/update/devolo_{ROUTER}/next_firmware/config", lambda m: bool(m.payload))


@pytest.mark.parametrize(
    ("serial", "key", "payload", "check"),
    [
        (WIFI_NEXT, "leds", "OFF", lambda d, w, n: d.leds is False),
        (WIFI_NEXT, "locate", "ON", lambda d, w, n: d.locating(w.now)),
        (WIFI_NEXT, "guest_wifi", "ON", lambda d, w, n: d.guest.enabled),
        # The duration is the bridge's setting for the next switch-on: nothing is written to the device.
        (WIFI_NEXT, "guest_duration", "45", lambda d, w, n: not d.guest.enabled and n == {}),
        (WIFI_NEXT, "pair", "PRESS", lambda d, w, n: d.pairing_until > w.now),
        (WIFI_NEXT, "wps", "PRESS", lambda d, w, n: n.get("WifiWpsPbcStart") == 1),
        (ROUTER, "restart", "PRESS", lambda d, w, n: not d.reachable(w.now)),
        # A refresh reads every source at once, the rarely polled neighbour networks included.
        (WIFI_NEXT, "refresh", "PRESS", lambda d, w, n: n.get("WifiNeighborAPsGet", 0) >= 1),
    ],
)
async def test_bridge_set_key_round_trips(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
    serial: str,
    key: str,
    payload: str,
    check: object,
) -> None:
    """`/set/<key>` changes the emulated device, and an `ok` result carries the confirmed state."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    device = emulator.device(serial)
    before = dict(device.requests)
    await publish(broker, f"{base_topic}/{serial}/set/{key}", payload)
    result = await probe.wait_json(f"{base_topic}/{serial}/set/result", lambda r: r["key"] == key)
    assert result["status"] == "ok", result
    # Calls the device received for this command, writes only (reads are counted by name too).
    new = {
        name: count - before.get(name, 0)
        for name, count in device.requests.items()
        if count > before.get(name, 0) and (name.endswith(("Set", "Start")) or key == "refresh")
    }
    assert callable(check) and check(device, emulator.world, new), new
    if key in ("leds", "locate", "guest_wifi", "guest_duration"):
        expected = {"leds": "OFF", "locate": "ON", "guest_wifi": "ON", "guest_duration": 45}[key]
        assert result["state"] == {key: expected}
        state = await probe.wait_json(f"{base_topic}/{serial}", lambda s: s.get(key) == expected)
        assert state[key] == expected


async def test_bridge_set_json_guest_with_duration_propagates_to_mesh(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """`{"guest_wifi": "ON", "guest_duration": 60}` switches the mesh on for 60 min; the other AP follows."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    await publish(
        broker,
        f"{base_topic}/{WIFI_NEXT}/set",
        json.dumps({"guest_wifi": "ON", "guest_duration": 60, "transaction": "t-1"}),
    )
    result = await probe.wait_json(
        f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: r["transaction"] == "t-1"
    )
    assert result["status"] == "ok"
    assert result["key"] == ["guest_wifi", "guest_duration"]
    assert result["state"] == {"guest_wifi": "ON", "guest_duration": 60}
    guest = emulator.device(WIFI_NEXT).guest
    assert guest is not None and guest.enabled and guest.remaining_minutes(emulator.world.now) == 60
    other = await probe.wait_json(f"{base_topic}/{WIFI_6}", lambda s: s.get("guest_wifi") == "ON")
    assert other["guest_remaining"] == 60


@pytest.mark.parametrize(
    ("topic_suffix", "payload", "error"),
    [
        ("set/colour", "red", "unknown key"),
        ("set/last_restart", "5", "read-only"),
        ("set/leds", "maybe", "bad value"),
        ("set/guest_duration", "99999", "bad value"),
        ("set", "{not json", "not valid JSON"),
        ("set", "[1, 2]", "JSON object"),
        ("set", "x" * 5000, "too large"),
    ],
)
async def test_bridge_bad_commands_get_error_results(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
    topic_suffix: str,
    payload: str,
    error: str,
) -> None:
    """Each bad command is answered with an error naming the reason, and the true state is re-published."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    after = time.monotonic()
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/{topic_suffix}", payload)
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
    assert result["status"] == "error" and error in result["error"], result
    await probe.wait_for(f"{base_topic}/{WIFI_NEXT}", after=after)  # true state re-published
    assert emulator.device(WIFI_NEXT).leds is True


async def test_bridge_unsupported_feature_is_an_error(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """Guest WiFi on a LAN-only adapter is refused as unsupported."""
    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    await publish(broker, f"{base_topic}/{ROUTER}/set", json.dumps({"guest_wifi": "ON"}))
    result = await probe.wait_json(f"{base_topic}/{ROUTER}/set/result", lambda r: True)
    assert result == {
        "key": "guest_wifi",
        "status": "error",
        "error": "not supported by this device",
        "state": {},
        "transaction": None,
    }


async def test_bridge_retained_command_is_cleared_not_executed(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """A retained `/set` is reported, cleared from the broker, and never touches the device."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", retain=True)
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
    assert result["status"] == "error" and "retained" in result["error"]
    await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/set/leds", lambda m: m.payload == b"")
    assert emulator.device(WIFI_NEXT).leds is True


async def test_bridge_mqtt5_response_topic_and_correlation(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """A command with an MQTT 5 response topic is answered there too, with its correlation data."""
    from paho.mqtt.packettypes import PacketTypes  # noqa: PLC0415
    from paho.mqtt.properties import Properties  # noqa: PLC0415

    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = f"{base_topic}-replies/me"
    properties.CorrelationData = b"abc-123"
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(f"{base_topic}-replies/me")
        await client.publish(f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", properties=properties)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert json.loads(message.payload)["status"] == "ok"
                assert message.properties is not None
                assert message.properties.CorrelationData == b"abc-123"  # type: ignore[attr-defined]
                break


async def test_bridge_unreachable_device_goes_offline_others_keep_cadence(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """A dead device is offline within one poll while the others keep polling; it comes back online."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    emulator.set_fault(WIFI_6, Fault.UNREACHABLE)
    await probe.wait_for(f"{base_topic}/{WIFI_6}/availability", lambda m: m.payload == b"offline", within=6)
    requests_before = emulator.device(WIFI_NEXT).requests.get("LedSettingsGet", 0)
    await until(
        lambda: emulator.device(WIFI_NEXT).requests.get("LedSettingsGet", 0) >= requests_before + 2,
        within=5,
        what="two more polls of the healthy device (polling.state is 1 s)",
    )
    events = [m.json() for m in probe.on(f"{base_topic}/bridge/event")]
    assert any(e["type"] == "device_offline" and e["data"]["device"] == WIFI_6 for e in events)
    emulator.set_fault(WIFI_6, Fault.NONE)
    await probe.wait_for(f"{base_topic}/{WIFI_6}/availability", lambda m: m.payload == b"online", within=15)


async def test_bridge_slow_device_does_not_delay_the_others(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """A device slower than the request timeout goes offline; the others are polled every second."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    emulator.set_fault(ROUTER, Fault.SLOW, slow_seconds=30)
    before = {s: emulator.device(s).requests.get("LedSettingsGet", 0) for s in (WIFI_NEXT, WIFI_6, DLAN_WIFI)}
    await probe.wait_for(f"{base_topic}/{ROUTER}/availability", lambda m: m.payload == b"offline", within=8)
    for serial, count in before.items():
        assert emulator.device(serial).requests.get("LedSettingsGet", 0) >= count + 2, serial


async def test_bridge_command_to_offline_device_is_an_error(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """Commands to an unreachable device are answered with an error, not left hanging."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    emulator.set_fault(WIFI_NEXT, Fault.UNREACHABLE)
    await probe.wait_for(
        f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"offline", within=6
    )
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF")
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
    assert result["status"] == "error" and "offline" in result["error"]


async def test_bridge_wrong_password_write_is_an_error(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """A rejected password is reported on the result, the device stays online."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    emulator.set_fault(WIFI_NEXT, Fault.WRONG_PASSWORD)
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF")
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
    assert result["status"] == "error" and "password" in result["error"]
    assert probe.last(f"{base_topic}/{WIFI_NEXT}/availability").payload == b"online"  # type: ignore[union-attr]


async def test_bridge_reconnects_after_broker_restart(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    broker: Broker,
    base_topic: str,
    probe: Probe,
) -> None:
    """The broker restarts (losing retained messages): the bridge reconnects and re-publishes everything."""
    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    broker.stop()
    await asyncio.sleep(1)
    broker.start()
    seen: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(f"{base_topic}/#")
        async with asyncio.timeout(20):
            async for message in client.messages:
                seen[str(message.topic)] = message.payload
                wanted = [f"{base_topic}/{s}/availability" for s in MANAGEABLE] + [
                    f"{base_topic}/bridge/state"
                ]
                if all(seen.get(t) == b"online" for t in wanted) and all(
                    f"{base_topic}/{s}" in seen for s in MANAGEABLE
                ):
                    break


async def test_bridge_retained_command_left_on_broker_is_not_replayed(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """A retained command waiting on the broker before start is cleared and reported, never executed."""
    emulator = await start_emulator(demo_scenario)
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", retain=True)
    await start_bridge()
    await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online")
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
    assert result["status"] == "error" and "retained" in result["error"]
    await asyncio.sleep(1.5)
    assert emulator.device(WIFI_NEXT).leds is True


async def test_bridge_multi_key_command_names_the_bad_key_and_writes_nothing(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """Every key is validated before any write: one bad key fails the command and changes nothing."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set", json.dumps({"leds": "OFF", "guest_duration": -5}))
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
    assert result["status"] == "error" and result["key"] == ["leds", "guest_duration"]
    assert result["error"].startswith("guest_duration: bad value")
    assert emulator.device(WIFI_NEXT).leds is True
