"""What openHAB's Home Assistant binding makes of the bridge: every discovery config and every payload on
its topics, checked against the binding's rules (`tests/openhab.py`, written from its source) as an
openHAB that starts after the bridge sees them — retained configs and states, then live events."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import aiomqtt

from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.world import Fault
from tests import openhab
from tests.conftest import StartBridge, StartEmulator, start_home
from tests.helpers import Broker, Probe, Received, until

ROUTER, WIFI_NEXT, WIFI_6 = "1000000000000001", "1000000000000002", "1000000000000003"
HOME = [{"serial": ROUTER, "network": "Home Net"}]


async def test_openhab_builds_every_entity_with_values_it_accepts(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    broker: Broker,
    probe: Probe,
    base_topic: str,
) -> None:
    """No component openHAB lacks without a twin it builds (the maps and QR codes as PNG cameras), no
    required field missing, no value its parsers reject, no event it drops, one availability mode per
    Thing — for every config and payload an openHAB started after the bridge receives."""
    base, ha = base_topic, f"{base_topic}ha"
    emulator = await start_home(
        demo_scenario,
        start_emulator,
        start_bridge,
        probe,
        base,
        devices=HOME,
        guest_wifi={"publish_credentials": True},
        polling={"network": 1},
    )
    await probe.wait_for(f"{base}/network/home-net/map/png", lambda m: m.payload.startswith(openhab.PNG))
    await probe.wait_for(f"{base}/{WIFI_NEXT}/guest_wifi/qr", lambda m: bool(m.payload))
    await probe.wait_for(f"{ha}/event/devolo_{WIFI_6}/events/config", lambda m: bool(m.payload))
    seen: list[Received] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:  # openHAB starts now (MQTT 3.1.1)
        await client.subscribe(f"{base}/#")
        await client.subscribe(f"{ha}/#")
        listener = asyncio.create_task(_record(client, seen))
        await asyncio.sleep(1.0)  # the retained configs and states
        await client.publish(f"{base}/{WIFI_NEXT}/set/leds", "maybe")  # → command_failed
        emulator.set_fault(WIFI_6, Fault.UNREACHABLE)  # → device_offline, then device_online
        await until(lambda: _events(seen, base, WIFI_6) >= {"device_offline"}, within=20, what="offline")
        emulator.set_fault(WIFI_6, Fault.NONE)
        await until(lambda: _events(seen, base, WIFI_6) >= {"device_online"}, within=20, what="online")
        await until(lambda: "command_failed" in _events(seen, base, WIFI_NEXT), what="command_failed")
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    configs: dict[str, dict[str, Any]] = {}
    arrived: dict[str, int] = {}  # the index of each config's first message
    for index, message in enumerate(seen):
        if message.topic.startswith(f"{ha}/"):
            configs[message.topic] = message.json() if message.payload else {}
            arrived.setdefault(message.topic, index)
    configs = {t: c for t, c in configs.items() if c}

    def payloads(topic: str, config_topic: str) -> list[bytes]:
        """What the component gets: the payload held when its config came, then every later one."""
        on_topic = [(i, m.payload) for i, m in enumerate(seen) if m.topic == topic and m.payload]
        since = arrived[config_topic]
        return [p for i, p in on_topic if i < since][-1:] + [p for i, p in on_topic if i > since]

    found = openhab.problems(configs, payloads)
    assert found == [], "\n".join(found)
    # The rules had something to check: every kind of component we publish, with its payloads.
    components = Counter(t.split("/")[-4] for t in configs)
    assert components["image"] >= 2 and components["camera"] == components["image"], components
    assert components["event"] >= 5 and components["update"] >= 3 and components["switch"] >= 5, components
    assert all(payloads(c["topic"], t) for t, c in configs.items() if "/camera/" in t)


def _events(seen: list[Received], base: str, device: str) -> set[str]:
    return {m.json()["event_type"] for m in seen if m.topic == f"{base}/{device}/event"}


async def _record(client: aiomqtt.Client, seen: list[Received]) -> None:
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        seen.append(Received(str(message.topic), payload, message.retain, 0.0))


# --- the rules can fail -------------------------------------------------------------------------------
DEVICE = {"identifiers": ["devolo_1"], "name": "Office"}
ALL = "all"


def _payloads(by_topic: dict[str, list[bytes]]) -> openhab.Payloads:
    return lambda topic, _config: by_topic.get(topic, [])


def test_openhab_rules_reject_what_openhab_rejects() -> None:
    """An image without a PNG camera twin, a switch rendering None, a number rendering text, an event
    type not declared, a camera showing SVG and availability modes that disagree are each reported."""
    configs = {
        "ha/image/devolo_1/map/config": {
            "device": DEVICE,
            "image_topic": "d/map",
            "availability_mode": "all",
        },
        "ha/camera/devolo_1/map_camera/config": {
            "device": DEVICE,
            "topic": "d/map",
            "availability_mode": "all",
        },
        "ha/switch/devolo_1/leds/config": {
            "device": DEVICE,
            "command_topic": "d/set/leds",
            "state_topic": "d",
            "value_template": "{{ value_json.leds | default('None') }}",
        },
        "ha/number/devolo_1/minutes/config": {
            "device": DEVICE,
            "command_topic": "d/set/minutes",
            "state_topic": "d",
            "value_template": "{{ value_json.minutes }}",
        },
        "ha/event/devolo_1/events/config": {"device": DEVICE, "state_topic": "d/event", "event_types": ["a"]},
        "ha/image/devolo_1/qr/config": {"device": DEVICE, "image_topic": "d/qr"},
    }
    found = openhab.problems(
        configs,
        _payloads(
            {
                "d/map": [b"<svg/>"],
                "d": [b'{"minutes": "soon"}'],
                "d/event": [b'{"event_type": "b"}'],
                "d/qr": [openhab.PNG + b"..."],
            }
        ),
    )
    text = "\n".join(found)
    assert "map/config: openHAB has no image component" in text
    assert "qr/config: openHAB has no image component" in text  # a PNG, but no camera shows it
    assert "the camera's image is not PNG" in text
    assert "OnOffType.valueOf('None')" in text
    assert "new BigDecimal('soon')" in text
    assert "event 'b' is not among ['a']" in text
    assert "availability modes ['all', 'latest'] disagree" in text
    assert len(found) == 7, found
