"""What users see: quiet state (no message when nothing changed), Home Assistant names and templates
as Home Assistant renders them, purge and republish, partial refreshes, the guest duration kept."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from devolo_mqtt.app import Bridge
from devolo_mqtt.tools.emulator.scenario import Scenario, parse_scenario
from tests.conftest import MANAGEABLE, StartBridge, StartEmulator, bridge_settings, start_home
from tests.helpers import Broker, Probe, Received, publish, running, until

WIFI_NEXT, LAN_ONLY = "1000000000000002", "1000000000000001"
# Home Assistant renders MQTT templates in a sandbox; an undefined variable is logged as a warning
# there ("'dict object' has no attribute …"): StrictUndefined turns that warning into a failure here.
JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
# Each template, and the topic whose payloads it renders.
TEMPLATES = {
    "value_template": "state_topic",
    "latest_version_template": "latest_version_topic",
    "json_attributes_template": "json_attributes_topic",
}


def _configs(probe: Probe, ha: str) -> dict[str, dict[str, Any]]:
    """The newest non-empty discovery config per topic."""
    newest: dict[str, bytes] = {}
    for message in probe.messages:
        if message.topic.startswith(f"{ha}/"):
            newest[message.topic] = message.payload
    return {t: json.loads(p) for t, p in newest.items() if p}


def _render(template: str, payload: bytes) -> str:
    value_json = json.loads(payload)
    return str(JINJA.from_string(template).render(value_json=value_json, value=payload.decode()))


def _check_templates(topic: str, config: dict[str, Any], states: dict[str, list[Received]]) -> int:
    """Render one entity's templates with every payload of its topics; how many renderings."""
    component, checked = topic.split("/")[1], 0
    for field, topic_key in TEMPLATES.items():
        if field not in config:
            continue
        source = config[topic_key]
        assert states.get(source), f"{topic}: nothing published on {source}"
        for message in states[source]:
            try:
                rendered = _render(config[field], message.payload)
            except TemplateError as err:
                raise AssertionError(f"{topic} {field} on {message.payload[:300]!r}: {err}") from None
            checked += 1
            if field == "json_attributes_template":
                assert isinstance(json.loads(rendered), dict), (topic, rendered)  # HA wants an object
            elif component in ("binary_sensor", "switch"):
                assert rendered in ("ON", "OFF", "None"), (topic, rendered)
            elif config.get("device_class") == "signal_strength":
                assert rendered == "None" or -120 <= float(rendered) <= 0, (topic, rendered)  # dBm
            elif config.get("state_class") == "measurement" or component == "number":
                assert rendered == "None" or float(rendered) >= 0, (topic, rendered)
            elif component == "update" and field == "value_template":
                update = json.loads(rendered)  # JSON for Home Assistant 2024.11+ (in_progress)
                keys = {"installed_version", "latest_version", "in_progress", "update_percentage"}
                assert set(update) == keys, rendered
                assert update["installed_version"] and update["latest_version"], rendered
                assert isinstance(update["in_progress"], bool), rendered
            elif config.get("device_class") == "timestamp":
                assert rendered == "None" or rendered.endswith("Z"), (topic, rendered)
    return checked


def _check_openhab(
    topic: str, config: dict[str, Any], since: float, states: dict[str, list[Received]]
) -> int:
    """What openHAB gets from the moment the entity's config arrived (the retained state then, every
    state after) renders to a value its parsers accept: `OnOffType.valueOf` for switches and binary
    sensors, `new BigDecimal` for numbers and numeric sensors — never Home Assistant's `None` —, and
    no literal `None` in a text sensor. Only a link's rates may stay unknown (they expire anyway)."""
    component = topic.split("/")[1]
    if "value_template" not in config or component not in ("binary_sensor", "switch", "number", "sensor"):
        return 0
    if "expire_after" in config:
        return 0
    messages = states.get(config["state_topic"], [])
    retained = [m for m in messages if m.at <= since][-1:]
    checked = 0
    for message in [*retained, *(m for m in messages if m.at > since)]:
        rendered = _render(config["value_template"], message.payload)
        assert rendered != "None", f"openHAB would get None for {topic} from {message.payload[:200]!r}"
        if component in ("binary_sensor", "switch"):
            assert rendered in ("ON", "OFF"), (topic, rendered)
        elif component == "number" or "unit_of_measurement" in config:
            float(rendered)  # BigDecimal accepts it
        checked += 1
    return checked


async def test_users_see_every_template_renders_every_published_state(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Every entity's templates render, as Home Assistant would, with every state the bridge published
    in a whole session — the first ones too (before any PLC overview) — to values the entity accepts;
    device names are unique, never a serial; a device's discovery is published once, under its name."""
    ha = f"{base_topic}ha"
    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic, polling={"network": 2})
    await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "plc_devices" in s)
    await asyncio.sleep(2.5)  # one more network round: link sensors and their states
    configs = _configs(probe, ha)
    states: dict[str, list[Received]] = {}
    for message in probe.messages:
        if message.payload[:1] == b"{":
            states.setdefault(message.topic, []).append(message)
    checked = sum(_check_templates(topic, config, states) for topic, config in configs.items())
    assert checked > 100  # every entity (each asserted above to have states), most with several
    first_config: dict[str, float] = {}
    for message in probe.messages:
        if message.topic in configs and message.payload:
            first_config.setdefault(message.topic, message.at)
    openhab = sum(_check_openhab(t, c, first_config[t], states) for t, c in configs.items())
    assert openhab > 50
    first = [m.json() for m in states[f"{base_topic}/{WIFI_NEXT}"]]
    # The first states were rendered: the very first one carries the state poll's sources only (the
    # WiFi client count comes with the slower sources a moment later).
    assert "wifi_clients" not in first[0] and "wifi_clients" in first[-1]
    devices: dict[str, str] = {}
    for config in configs.values():
        block = config.get("device", {})
        ident = block.get("identifiers", [""])[0]
        devices.setdefault(ident, block.get("name"))
        assert block.get("name") == devices[ident], f"{ident} has two names"
        if "serial_number" in block:  # a devolo device (not the bridge, not a WiFi client)
            assert block["serial_number"] not in block["name"], block
    named = [n for i, n in devices.items() if i.startswith(("devolo_1", "devolo_0"))]
    assert len(named) == len(set(named)), named
    # One name per device in the whole session: Home Assistant never renamed a device.
    for serial in MANAGEABLE:
        names = {
            json.loads(m.payload)["device"]["name"]
            for m in probe.messages
            if m.topic.startswith(f"{ha}/") and f"/devolo_{serial}/" in m.topic and m.payload
        }
        assert len(names) == 1 and serial not in next(iter(names)), (serial, names)
    # Entity names within a device are unique (the firmware sensor and the update entity differ).
    for serial in MANAGEABLE:
        entity_names = Counter(
            c["name"] for t, c in configs.items() if f"/devolo_{serial}/" in t and "name" in c
        )
        assert all(n == 1 for n in entity_names.values()), entity_names
    # Link sensors carry the peer's name, not its MAC.
    links = [c["name"] for t, c in configs.items() if "/tx_rate_" in t and f"devolo_{WIFI_NEXT}/" in t]
    assert links and all(":" not in name for name in links), links


async def test_users_see_no_message_while_nothing_changes(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Five poll cycles of every source with nothing changing on the devices publish nothing at all:
    no state (no uptime counter), no health, no matrix, no inventory, no client list."""
    polling = {"state": 1, "wifi": 1, "network": 1, "neighbors": 1, "uptime": 1, "firmware": 1}
    emulator = await start_home(
        demo_scenario, start_emulator, start_bridge, probe, base_topic, polling=polling
    )
    await until(lambda: any("/network/" in m.topic for m in probe.messages), what="a rate matrix")
    # The start's last one-off messages: each map's PNG, painted once its picture has settled.
    await until(lambda: _pngs(probe) >= 2, within=20, what="both maps' PNGs")
    await until(lambda: time.monotonic() - probe.messages[-1].at > 2.5, within=20, what="a quiet moment")
    reads = sum(sum(d.requests.values()) for d in emulator.world.devices.values())
    quiet_from = time.monotonic()
    await asyncio.sleep(5.5)
    published = [m.topic for m in probe.messages if m.at >= quiet_from]
    assert sum(sum(d.requests.values()) for d in emulator.world.devices.values()) - reads >= 5 * 5 * 3
    assert published == [], Counter(published)


def _pngs(probe: Probe) -> int:
    return len({m.topic for m in probe.messages if m.topic.endswith("/map/png") and m.payload})


async def test_users_see_purge_then_republish_restores_every_config(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """`discovery/purge` empties every config and none comes back by itself; `discovery/republish`
    restores all of them — the bridge's own entity and WiFi trackers included."""
    ha = f"{base_topic}ha"
    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    await probe.wait_for(f"{ha}/binary_sensor/devolo_bridge/connection/config")
    await until(lambda: any("/device_tracker/" in t for t in _configs(probe, ha)), what="a tracker")
    await asyncio.sleep(1)
    before = _configs(probe, ha)
    await publish(broker, f"{base_topic}/bridge/request/discovery/purge", "{}")
    purged = await probe.wait_json(f"{base_topic}/bridge/response/discovery/purge", lambda r: True)
    assert purged["data"]["cleared"] >= len(before)
    await asyncio.sleep(2)  # polls, overviews and WiFi changes happen meanwhile: nothing comes back
    assert _configs(probe, ha) == {}
    await publish(broker, f"{base_topic}/bridge/request/discovery/republish", "{}")
    await probe.wait_json(f"{base_topic}/bridge/response/discovery/republish", lambda r: True)
    await until(lambda: set(_configs(probe, ha)) >= set(before), within=5, what="every config back")
    restored = _configs(probe, ha)
    assert {t: restored[t] for t in before} == before


async def test_users_see_refresh_ok_with_an_unsupported_source(
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
    demo_scenario: Scenario,
) -> None:
    """A firmware that does not offer neighbour networks (HTTP 404): `refresh` answers `ok`, the
    source is not an error (no `last_error`), it is not asked again, and its entity is removed."""
    raw = demo_scenario.model_dump(mode="json")
    for device in raw["devices"]:
        if device["serial"] == WIFI_NEXT:
            device["unsupported"] = ["WifiNeighborAPsGet"]
    scenario = parse_scenario(raw)
    emulator = await start_home(scenario, start_emulator, start_bridge, probe, base_topic)
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/refresh", "PRESS")
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: r["key"] == "refresh")
    assert result["status"] == "ok" and "failed_sources" not in result, result
    health = await probe.wait_json(f"{base_topic}/bridge/health", lambda h: WIFI_NEXT in h["devices"], 90)
    assert health["devices"][WIFI_NEXT]["last_error"] is None
    assert (
        "neighbor_aps"
        not in (probe.last(f"{base_topic}/{WIFI_NEXT}") or Received("", b"{}", False, 0)).json()
    )
    assert emulator.device(WIFI_NEXT).requests.get("WifiNeighborAPsGet", 0) == 0
    # Its entity goes (never offered, or emptied if it was): a sensor that could only ever show
    # "unknown"; the entities of the device's other sources stay.
    clients = f"{base_topic}ha/sensor/devolo_{WIFI_NEXT}/wifi_clients/config"
    await probe.wait_for(clients, lambda m: bool(m.payload))
    sensor = f"{base_topic}ha/sensor/devolo_{WIFI_NEXT}/neighbor_aps/config"
    await until(lambda: not probe.on(sensor) or not probe.on(sensor)[-1].payload, what="no neighbours entity")
    assert probe.on(clients)[-1].payload


async def test_users_see_guest_duration_on_every_peer_and_after_a_restart(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    probe: Probe,
    broker: Broker,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """The guest WiFi duration set on one access point shows on every peer of its mesh — not on the
    garden house's access point, a mesh of its own (another guest network) — and the next bridge run
    (same data directory) still has both values."""
    await start_emulator(demo_scenario)
    settings = bridge_settings(broker, base_topic, data_dir=str(tmp_path / "data"))
    garden = "1000000000000005"
    async with running(Bridge(settings)):
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "guest_duration" in s)
        await until(lambda: len(_guest_peers(probe, base_topic)) >= 3, what="three access points")
        peers = [s for s in _guest_peers(probe, base_topic) if s != garden]
        assert WIFI_NEXT in peers and len(peers) >= 2
        await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/guest_duration", "45")
        for serial in peers:
            await probe.wait_json(f"{base_topic}/{serial}", lambda s: s.get("guest_duration") == 45)
        await publish(broker, f"{base_topic}/{garden}/set/guest_duration", "90")
        await probe.wait_json(f"{base_topic}/{garden}", lambda s: s.get("guest_duration") == 90)
        for serial in peers:
            assert (probe.last(f"{base_topic}/{serial}") or Received("", b"{}", False, 0)).json()[
                "guest_duration"
            ] == 45
    restarted = time.monotonic()
    async with running(Bridge(settings)):
        for serial, minutes in [*((p, 45) for p in peers), (garden, 90)]:
            state = await probe.wait_json(
                f"{base_topic}/{serial}", lambda s: "guest_duration" in s, after=restarted
            )
            assert state["guest_duration"] == minutes, serial


def _guest_peers(probe: Probe, base_topic: str) -> list[str]:
    return [
        s
        for s in MANAGEABLE
        if (m := probe.last(f"{base_topic}/{s}")) is not None and b"guest_duration" in m.payload
    ]


async def test_users_see_neighbour_networks_as_attributes_and_no_client_list_without_wifi(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """The neighbouring networks an access point sees are a retained list that the count sensor shows
    as attributes; a LAN-only adapter never gets a WiFi client list, not even when it goes offline."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    neighbors = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/wifi/neighbors", lambda n: True)
    assert neighbors["networks"] and all(
        set(n) == {"ssid", "band", "channel", "signal"} for n in neighbors["networks"]
    )
    signals = [n["signal"] for n in neighbors["networks"]]
    assert signals == sorted(signals, reverse=True)
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "neighbor_aps" in s)
    assert state["neighbor_aps"] == len(neighbors["networks"])
    config = await probe.wait_json(f"{base_topic}ha/sensor/devolo_{WIFI_NEXT}/neighbor_aps/config", bool)
    assert config["json_attributes_topic"] == f"{base_topic}/{WIFI_NEXT}/wifi/neighbors"
    emulator.unplug(LAN_ONLY)
    await probe.wait_for(f"{base_topic}/{LAN_ONLY}/availability", lambda m: m.payload == b"offline", 20)
    assert probe.on(f"{base_topic}/{LAN_ONLY}/wifi/clients") == []
    assert probe.on(f"{base_topic}/{LAN_ONLY}/wifi/neighbors") == []
