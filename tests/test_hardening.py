"""Hardening: final ids before publishing, shutdown that always leaves `offline`, commands that survive
a short outage, one bridge per base topic, refused device ids, quiet logs."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from devolo_mqtt.app import Bridge
from devolo_mqtt.emulator.scenario import Scenario, parse_scenario
from tests.conftest import StartEmulator, bridge_settings
from tests.helpers import Broker, Probe, Proxy, address_block, retained

ROUTER, WIFI_NEXT = "1000000000000001", "1000000000000002"
CLI = [sys.executable, "-m", "devolo_mqtt"]


async def publish(port: int, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False) -> None:
    """Publish as a user would."""
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.publish(topic, payload, qos=qos, retain=retain)


@contextlib.asynccontextmanager
async def proxy_to(broker: Broker) -> AsyncIterator[Proxy]:
    """A relay between the bridge and the broker that the test controls."""
    relay = Proxy(broker.port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


async def stop(task: asyncio.Task[None]) -> BaseException | None:
    """Cancel a bridge the way SIGTERM does; what it ended with (None: a clean cancellation)."""
    task.cancel()
    try:
        await asyncio.wait_for(task, 15)
    except asyncio.CancelledError:
        return None
    except BaseException as err:
        return err
    return None


# --- one identity per device --------------------------------------------------------------------------
async def test_hardening_device_configured_by_ip_publishes_only_under_its_serial(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """`devices: [{ip}]`: availability, state and discovery under the serial; `ip-*` leftovers cleared."""
    await start_emulator(demo_scenario)
    ip = demo_scenario.addresses()[WIFI_NEXT]
    leftover = f"{base_topic}/ip-{ip}/availability"
    await publish(broker.port, leftover, "online", retain=True)  # what 0.1.0 left behind
    settings = bridge_settings(
        broker, base_topic, devices=[{"ip": ip}], discovery={"enabled": False}, data_dir=str(tmp_path)
    )
    task = asyncio.create_task(Bridge(settings).run())
    try:
        await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online")
        state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "leds" in s)
        assert state["leds"] == "ON"
        config = await probe.wait_json(
            f"{base_topic}ha/switch/devolo_{WIFI_NEXT}/leds/config", lambda c: True
        )
        assert {"topic": f"{base_topic}/{WIFI_NEXT}/availability"} in config["availability"]
        await probe.wait_for(leftover, lambda m: m.payload == b"")
        under_ip = [m for m in probe.messages if f"/ip-{ip}" in m.topic and m.payload]
        assert [m.topic for m in under_ip] == [leftover]  # only the planted leftover, never ours
        inventory = await probe.wait_json(
            f"{base_topic}/bridge/devices", lambda d: any(x["id"] == WIFI_NEXT for x in d)
        )
        assert all(not str(x["id"]).startswith("ip-") for x in inventory)
    finally:
        assert await stop(task) is None


@pytest.mark.parametrize("serial", ["x/y+#", "bridge", "a b"])
async def test_hardening_device_with_unsafe_serial_is_refused_once(
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
    serial: str,
) -> None:
    """A serial that cannot be a topic level: one log line and one event; the other devices work."""
    scenario = parse_scenario(
        {
            "address_base": address_block(),
            "dynamics": False,
            "devices": [
                {"serial": "20000001", "model": "repeater_ac", "password": "demo-secret"},
                {
                    "serial": "20000002",
                    "model": "repeater_ac",
                    "password": "demo-secret",
                    "announce_serial": serial,
                },
            ],
        }
    )
    await start_emulator(scenario)
    task = asyncio.create_task(Bridge(bridge_settings(broker, base_topic, data_dir=str(tmp_path))).run())
    try:
        await probe.wait_for(f"{base_topic}/20000001/availability", lambda m: m.payload == b"online")
        event = await probe.wait_json(
            f"{base_topic}/bridge/event", lambda e: e["type"] == "device_refused", within=10
        )
        assert event["data"]["serial"] == serial and "reason" in event["data"]
        await asyncio.sleep(1.5)  # more announcements and polls: still one event
        refused = [m for m in probe.on(f"{base_topic}/bridge/event") if b"device_refused" in m.payload]
        assert len(refused) == 1
        for topic in (f"{base_topic}/{serial}", f"{base_topic}/{serial}/availability"):
            assert not probe.on(topic), topic
        bridge_config = f"{base_topic}ha/binary_sensor/devolo_bridge/connection/config"
        configs = [m.topic for m in probe.messages if f"/devolo_{serial}/" in m.topic]
        assert set(configs) <= {bridge_config}  # no discovery for the refused device
        assert all(m.payload for m in probe.on(bridge_config))  # never emptied
    finally:
        assert await stop(task) is None
    assert await retained(broker.port, f"{base_topic}/bridge/state") == b"offline"
