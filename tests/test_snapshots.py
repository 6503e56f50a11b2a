"""Snapshots per model: the discovery configs and state keys each model produces (syrupy).

Volatile values (rates, uptime, timestamps) are masked; topics are normalised to the defaults.
Update after an intended contract change with `pytest --snapshot-update` and a CHANGELOG entry.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from syrupy.assertion import SnapshotAssertion

from devolo_mqtt import __version__
from devolo_mqtt.tools.emulator.scenario import Scenario
from tests.conftest import StartBridge, StartEmulator
from tests.helpers import Probe

MODELS = {
    "magic2_lan_router": "1000000000000001",
    "magic2_wifi_next": "1000000000000002",
    "dlan1200_wifi_ac": "1000000000000005",
    "repeater_ac": "1000000000000007",
    "dlan1200_lan_adapter": "00005e005304",
}
VOLATILE = ("last_restart", "last_seen", "tx_rate_", "rx_rate_", "neighbor_aps", "guest_remaining")


def _normalise(text: str, base: str, scenario: Scenario) -> Any:
    text = text.replace(f"{base}ha/", "homeassistant/").replace(f"{base}/", "devolo/")
    for serial, ip in scenario.addresses().items():  # each test gets its own loopback block
        text = text.replace(f'{ip}"', f'<ip of {serial}>"')
    return json.loads(text.replace(f'"{__version__}"', '"<version>"'))


def _mask(state: dict[str, Any]) -> dict[str, Any]:
    return {k: ("<varies>" if k.startswith(VOLATILE) else v) for k, v in sorted(state.items())}


async def test_snapshot_discovery_and_state_per_model(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
    snapshot: SnapshotAssertion,
) -> None:
    """Each model's entities and state keys match the committed snapshot."""
    await start_emulator(demo_scenario)
    await start_bridge(
        devices=[{"mac": "00:00:5E:00:53:04", "manageable": False, "name": "Garage"}], polling={"network": 1}
    )
    for serial in MODELS.values():
        await probe.wait_json(f"{base_topic}/{serial}", lambda s: "firmware" in s or "plc_devices" in s)
    await probe.wait_json(f"{base_topic}/{MODELS['magic2_lan_router']}", lambda s: "plc_devices" in s)
    await asyncio.sleep(1.5)
    for model, serial in MODELS.items():
        prefix = f"{base_topic}ha/"
        configs = {
            m.topic.replace(prefix, "homeassistant/"): _normalise(
                m.payload.decode(), base_topic, demo_scenario
            )
            for m in probe.messages
            if m.topic.startswith(prefix) and f"/devolo_{serial}/" in m.topic and m.payload
        }
        last = probe.last(f"{base_topic}/{serial}")
        assert last is not None
        state = _mask(_normalise(last.payload.decode(), base_topic, demo_scenario))
        assert {"state": state, "discovery": dict(sorted(configs.items()))} == snapshot(name=model)
