"""Shared fixtures: a real Mosquitto, emulated devices on loopback, the bridge in-process, a probe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import tenacity
from devolo_plc_api.clients.protobuf import Protobuf
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt.app import Bridge
from devolo_mqtt.settings import Settings, load_settings
from devolo_mqtt.tools.emulator.builtin import DEMO_HOME
from devolo_mqtt.tools.emulator.scenario import Scenario, parse_scenario
from devolo_mqtt.tools.emulator.server import Emulator
from devolo_mqtt.tools.emulator.world import Fault
from tests.helpers import Broker, Probe, address_block, new_test, own_networks, unique_base

StartEmulator = Callable[..., Awaitable[Emulator]]
StartBridge = Callable[..., Awaitable[Bridge]]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One real Mosquitto for the whole run."""
    instance = Broker(tmp_path_factory.mktemp("mosquitto"))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(autouse=True)
def own_addresses() -> None:
    """Each test's bridges adopt only the emulated devices of that test (see `own_networks`)."""
    new_test()


@pytest.fixture(autouse=True)
def fast_library_retries() -> Iterator[None]:
    """Only time is faked: devolo_plc_api's retry waits (5 s, 10 s) become zero via tenacity's knob."""
    retrying: Any = Protobuf._async_request.retry
    original = retrying.wait
    retrying.wait = tenacity.wait_none()
    yield
    retrying.wait = original


@pytest.fixture
def demo_scenario() -> Scenario:
    """The demo home on this test's own loopback addresses, with random dynamics off."""
    return parse_scenario({**DEMO_HOME, "address_base": address_block(), "dynamics": False})


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    """Start emulators (clock stopped unless asked: tests move time with `advance`)."""
    running: list[Emulator] = []

    async def start(scenario: Scenario, faults: dict[str, Fault] | None = None, **kwargs: Any) -> Emulator:
        kwargs.setdefault("run_clock", False)
        emulator = Emulator(scenario, **kwargs)
        for serial, fault in (faults or {}).items():
            emulator.set_fault(serial, fault)  # before start: not even the start-up announcement goes out
        await emulator.start()
        running.append(emulator)
        return emulator

    yield start
    for emulator in running:
        await emulator.close()


@pytest.fixture
async def library() -> AsyncIterator[tuple[AsyncZeroconf, httpx.AsyncClient]]:
    """One shared AsyncZeroconf (loopback only) and httpx client, as the bridge uses them."""
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    async with httpx.AsyncClient() as client:
        yield zeroconf, client
    await zeroconf.async_close()


@pytest.fixture
def base_topic() -> str:
    """This test's base topic (its discovery prefix is `<base>ha`)."""
    return unique_base()


@pytest.fixture
async def probe(broker: Broker, base_topic: str) -> AsyncIterator[Probe]:
    """Records everything under the test's base topic and discovery prefix."""
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(f"{base_topic}/#")
            await client.subscribe(f"{base_topic}ha/#")
            recorder = Probe(client)
            task = asyncio.create_task(recorder.collect())
            yield recorder
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    except aiomqtt.MqttError:
        pass  # the broker was restarted under the probe


MANAGEABLE = (
    "1000000000000001",
    "1000000000000002",
    "1000000000000003",
    "1000000000000005",
    "1000000000000007",
)


async def start_home(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base: str,
    **overrides: Any,
) -> Emulator:
    """The emulated demo home and a bridge, waited until every manageable device published its state."""
    emulator = await start_emulator(demo_scenario)
    await start_bridge(**overrides)
    for serial in MANAGEABLE:
        await probe.wait_for(f"{base}/{serial}/availability", lambda m: m.payload == b"online")
        await probe.wait_json(f"{base}/{serial}", lambda s: "firmware" in s)
    return emulator


def bridge_settings(broker: Broker, base_topic: str, **overrides: Any) -> Settings:
    """Settings for a bridge on the test broker, loopback mDNS, short intervals."""
    sections: dict[str, Any] = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "base_topic": base_topic,
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
            "client_id": f"bridge-{base_topic}",
        },
        # Loopback only, and only this run's addresses: a demo or real adapters elsewhere stay out.
        "discovery": {"interfaces": ["127.0.0.1"], "networks": own_networks()},
        "polling": {"state": 1, "request_timeout": 2, "connect_timeout": 8, "heartbeat": 300},
        "homeassistant": {"discovery_prefix": f"{base_topic}ha", "stale_grace": 2},
        "device_password": "demo-secret",
        "data_dir": "data",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(sections.get(key), dict):
            sections[key] = {**sections[key], **value}
        else:
            sections[key] = value
    return load_settings(None, **sections)


@pytest.fixture
async def start_bridge(broker: Broker, base_topic: str, tmp_path: Path) -> AsyncIterator[StartBridge]:
    """Run bridges in-process; each is cancelled (SIGTERM's path) at teardown."""
    tasks: list[asyncio.Task[None]] = []

    async def start(**overrides: Any) -> Bridge:
        overrides.setdefault("data_dir", str(tmp_path / "data"))
        bridge = Bridge(bridge_settings(broker, base_topic, **overrides))
        tasks.append(asyncio.create_task(bridge.run()))
        return bridge

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
