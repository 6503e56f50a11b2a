"""Nothing lost, end to end: answers within the request timeout even from a hanging device, every command
in hand answered at a stop, answers and events kept through a broker outage, and back within seconds of
the broker's return."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from devolo_mqtt import heartbeat
from devolo_mqtt.app import Bridge
from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.world import Fault
from tests.conftest import StartEmulator, bridge_settings
from tests.helpers import Broker, Probe, Proxy, publish, retained, until

ROUTER, WIFI_NEXT = "1000000000000001", "1000000000000002"
REQUEST_TIMEOUT = 2.0  # bridge_settings' polling.request_timeout


@contextlib.asynccontextmanager
async def bridge(
    settings_port: int, broker: Broker, base_topic: str, tmp_path: Path, **mqtt: float
) -> AsyncIterator[tuple[Bridge, asyncio.Task[None]]]:
    """A bridge (through `settings_port`), stopped the way SIGTERM stops it."""
    settings = bridge_settings(
        broker, base_topic, data_dir=str(tmp_path), mqtt={"port": settings_port, **mqtt}
    )
    running = Bridge(settings)
    task = asyncio.create_task(running.run())
    try:
        yield running, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_lost_hanging_device_answers_within_the_request_timeout(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """A device that hangs, asked for a refresh and then three commands: every command is answered
    within the request timeout (+1.5 s) of its arrival — not one after the other, nor behind the
    refresh — and another device's command is answered before the hanging device's first timeout."""
    emulator = await start_emulator(demo_scenario)
    async with bridge(broker.port, broker, base_topic, tmp_path):
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("leds") == "ON", within=20)
        await probe.wait_json(f"{base_topic}/{ROUTER}", lambda s: s.get("leds") == "ON", within=20)
        emulator.set_fault(WIFI_NEXT, Fault.SLOW, slow_seconds=60)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await publish(broker, f"{base_topic}/bridge/request/refresh", json.dumps({"device": WIFI_NEXT}))
        for value in ("OFF", "ON", "OFF"):
            await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", value, qos=1)
        await publish(broker, f"{base_topic}/{ROUTER}/set/leds", "OFF", qos=1)
        other = await probe.wait_for(f"{base_topic}/{ROUTER}/set/result", within=10)
        assert other.json()["status"] == "ok" and other.at - sent < REQUEST_TIMEOUT  # not behind the dead one
        mine = f"{base_topic}/{WIFI_NEXT}/set/result"
        await until(lambda: len(probe.on(mine)) >= 3, within=15, what="three answers from the hanging device")
        answers = probe.on(f"{base_topic}/{WIFI_NEXT}/set/result")
        assert len(answers) == 3
        assert all(m.json()["status"] == "error" for m in answers)
        assert max(m.at for m in answers) - sent <= REQUEST_TIMEOUT + 1.5  # not 3 x 2 s in a row


async def test_lost_stop_answers_every_command_in_hand_once(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """Commands running and queued behind a slow device when the bridge stops: each answered
    `bridge stopping`, once, before the bridge's `offline`."""
    emulator = await start_emulator(demo_scenario)
    async with bridge(broker.port, broker, base_topic, tmp_path, session_expiry=0) as (running, task):
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("leds") == "ON", within=20)
        emulator.set_fault(WIFI_NEXT, Fault.SLOW, slow_seconds=1.5)  # answers, slowly: stays online
        for value in ("OFF", "ON", "OFF", "ON"):
            await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", value, qos=1)
        actor = running.runtimes[WIFI_NEXT]
        await until(lambda: actor.commands_in_hand == 4, what="the first running, the others waiting")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.5)
    answers = [m.json() for m in probe.on(f"{base_topic}/{WIFI_NEXT}/set/result")]
    assert len(answers) == 4
    assert [a["error"] for a in answers if a["status"] == "error"].count("bridge stopping") >= 3
    assert await retained(broker.port, f"{base_topic}/bridge/state") == b"offline"


async def test_lost_events_kept_through_a_broker_outage(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """A device that goes offline while the broker is away: its `device_offline` event arrives after
    the reconnect, not never."""
    emulator = await start_emulator(demo_scenario)
    relay = Proxy(broker.port)
    await relay.start()
    try:
        async with bridge(relay.port, broker, base_topic, tmp_path):
            await probe.wait_for(
                f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online", within=20
            )
            relay.cut()
            await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"offline")
            emulator.set_fault(WIFI_NEXT, Fault.UNREACHABLE)
            await asyncio.sleep(REQUEST_TIMEOUT + 2)  # the next poll finds it gone, with nobody to tell
            relay.restore()
            event = await probe.wait_json(
                f"{base_topic}/bridge/event",
                lambda e: e["type"] == "device_offline" and e["data"]["device"] == WIFI_NEXT,
                within=10,
            )
            assert event["data"]["reason"]
    finally:
        await relay.close()


async def test_lost_back_within_seconds_of_the_broker(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """A broker away for 8 s, with the default 60 s back-off ceiling: the health file says disconnected
    at once, and the bridge is online again within a few seconds of the broker's return (it does not
    sleep through a doubling back-off)."""
    await start_emulator(demo_scenario)
    relay = Proxy(broker.port)
    await relay.start()
    try:
        async with bridge(relay.port, broker, base_topic, tmp_path, reconnect_min=1, reconnect_max=60):
            await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"online", within=20)
            assert heartbeat.check(tmp_path)[0]
            relay.go_away()
            await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"offline")
            # The health check says so at once, not at the next housekeeping minute.
            await until(lambda: not heartbeat.check(tmp_path)[0], within=5, what="health: disconnected")
            await asyncio.sleep(8)  # a doubling back-off would now wait 8 s more
            await relay.come_back()
            back = asyncio.get_running_loop().time()
            message = await probe.wait_for(
                f"{base_topic}/bridge/state", lambda m: m.payload == b"online" and m.at > back, within=10
            )
            assert message.at - back < 4.0
    finally:
        await relay.close()
