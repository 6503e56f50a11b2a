"""Devices as they really answer, end to end: mDNS services that answer late (the emulator withholds
them), devices configured by address, by serial or found by mDNS; and commands that arrive before the
devices are known (held for the bridge by the broker during a restart)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devolo_mqtt.app import Bridge
from devolo_mqtt.tools.emulator.scenario import Scenario
from tests.conftest import StartBridge, StartEmulator, bridge_settings
from tests.helpers import Broker, Probe, publish

ROUTER, WIFI_NEXT, WIFI_6 = "1000000000000001", "1000000000000002", "1000000000000003"


async def test_identity_device_api_late_by_address_nothing_under_a_wrong_id(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Configured by address, its device API silent for 4 s (the PLC service answers): no state, no
    availability and no discovery under `0` or the address; then everything under its serial."""
    emulator = await start_emulator(demo_scenario)
    emulator.silence(WIFI_NEXT, "deviceapi", seconds=4)
    await start_bridge(discovery={"enabled": False}, devices=[{"ip": demo_scenario.addresses()[WIFI_NEXT]}])
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "leds" in s, within=30)
    assert "guest_wifi" in state and "locate" in state  # its whole identity: WiFi and PLC features
    # (Empty retained messages under the address clear what versions before 0.2 left there.)
    wrong = [
        m.topic
        for m in probe.messages
        if m.payload and m.topic.startswith((f"{base_topic}/0", f"{base_topic}/ip-"))
    ]
    assert wrong == []
    assert not [
        m.topic for m in probe.messages if m.payload and ("/devolo_0/" in m.topic or "/devolo_ip-" in m.topic)
    ]


async def test_identity_plc_service_late_entities_appear_when_it_answers(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Found by mDNS, its PLC service silent past the connect timeout: adopted without the PLC entities,
    which appear (state keys and discovery configs) once the service answers."""
    emulator = await start_emulator(demo_scenario)
    emulator.silence(WIFI_6, "plcnet")  # until it speaks
    await start_bridge()
    early = await probe.wait_json(f"{base_topic}/{WIFI_6}", lambda s: "leds" in s, within=30)
    assert "locate" not in early
    locate_config = f"{base_topic}ha/switch/devolo_{WIFI_6}/locate/config"
    assert not probe.on(locate_config)
    emulator.speak(WIFI_6, "plcnet")
    late = await probe.wait_json(f"{base_topic}/{WIFI_6}", lambda s: "locate" in s, within=30)
    assert late["locate"] == "OFF"
    config = await probe.wait_json(locate_config, lambda c: True, within=5)
    assert config["command_topic"] == f"{base_topic}/{WIFI_6}/set/locate"


async def test_identity_commands_held_during_a_restart_are_executed(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """QoS 1 commands sent while the bridge restarts run once it is back, for a device found by mDNS in
    the last run (remembered) and one configured by serial: none is answered `unknown device`."""
    emulator = await start_emulator(demo_scenario)
    settings = bridge_settings(
        broker, base_topic, data_dir=str(tmp_path), devices=[{"serial": ROUTER, "name": "Router"}]
    )
    task = asyncio.create_task(Bridge(settings).run())
    await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("leds") == "ON", within=20)
    await probe.wait_json(f"{base_topic}/{ROUTER}", lambda s: s.get("leds") == "ON", within=20)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", qos=1)
    await publish(broker, f"{base_topic}/{ROUTER}/set/leds", "OFF", qos=1)
    task = asyncio.create_task(Bridge(settings).run())
    try:
        for device in (WIFI_NEXT, ROUTER):
            result = await probe.wait_json(f"{base_topic}/{device}/set/result", lambda r: True, within=20)
            assert result["status"] == "ok", result
            assert emulator.device(device).leds is False
        await asyncio.sleep(0.5)
        assert len(probe.on(f"{base_topic}/{WIFI_NEXT}/set/result")) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
