"""Hardening: final ids before publishing, shutdown that always leaves `offline`, commands that survive
a short outage, one bridge per base topic, refused device ids, quiet logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from devolo_mqtt.app import Bridge
from devolo_mqtt.core.errors import DuplicateInstanceError
from devolo_mqtt.tools.emulator.scenario import Scenario, parse_scenario
from tests.conftest import StartEmulator, bridge_settings
from tests.helpers import Broker, Probe, Proxy, address_block, cli_config, publish, retained

ROUTER, WIFI_NEXT = "1000000000000001", "1000000000000002"
CLI = [sys.executable, "-m", "devolo_mqtt"]


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
    await publish(broker, leftover, "online", retain=True)  # what 0.1.0 left behind
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


# --- shutdown always leaves `offline` ---------------------------------------------------------------
async def test_hardening_stop_right_after_a_reconnect_leaves_offline(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """Stopped while re-subscribing or replaying after a reconnect: the last word is `offline`."""
    await start_emulator(demo_scenario)
    for delay in (0.0, 0.02, 0.1):
        async with proxy_to(broker) as relay:
            settings = bridge_settings(broker, base_topic, data_dir=str(tmp_path), mqtt={"port": relay.port})
            task = asyncio.create_task(Bridge(settings).run())
            await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online")
            relay.cut()  # the network goes; the broker sends the Will
            await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"offline")
            mark = asyncio.get_running_loop().time()
            relay.restore()
            await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"online", after=mark)
            await asyncio.sleep(delay)  # stop at once, or in the middle of the replay
            assert await stop(task) is None, delay
        assert await retained(broker.port, f"{base_topic}/bridge/state") == b"offline", delay


async def test_hardening_sigterm_with_a_hung_broker_exits_0_and_the_will_says_offline(
    demo_scenario: Scenario, start_emulator: StartEmulator, broker: Broker, base_topic: str, tmp_path: Path
) -> None:
    """A hung broker: the farewell cannot finish, the connection is dropped (Will); exit 0."""
    await start_emulator(demo_scenario)
    async with proxy_to(broker) as relay:
        config = cli_config(broker, base_topic, tmp_path, mqtt={"port": relay.port})
        process = await asyncio.create_subprocess_exec(
            *CLI, "run", "--config", str(config), stderr=asyncio.subprocess.PIPE
        )
        try:
            async with aiomqtt.Client("127.0.0.1", broker.port) as watcher:
                await watcher.subscribe(f"{base_topic}/{WIFI_NEXT}/availability")
                async with asyncio.timeout(30):
                    async for message in watcher.messages:
                        if message.payload == b"online":
                            break
            relay.frozen = True
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 15)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, stderr.decode()[-2000:]
        assert b"mqtt_goodbye_incomplete" in stderr
    assert await retained(broker.port, f"{base_topic}/bridge/state") == b"offline"


# --- commands survive a short outage ------------------------------------------------------------------
async def test_hardening_command_sent_during_an_outage_runs_once_after_reconnect(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """A QoS 1 command published while the bridge is away is kept by the broker and answered once."""
    emulator = await start_emulator(demo_scenario)
    async with proxy_to(broker) as relay:
        settings = bridge_settings(broker, base_topic, data_dir=str(tmp_path), mqtt={"port": relay.port})
        task = asyncio.create_task(Bridge(settings).run())
        try:
            await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("leds") == "ON")
            relay.cut()
            await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"offline")
            await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", qos=1)
            await asyncio.sleep(0.5)
            assert emulator.device(WIFI_NEXT).leds is True  # nobody executed it yet
            relay.restore()
            result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
            assert result["status"] == "ok" and result["state"] == {"leds": "OFF"}
            assert emulator.device(WIFI_NEXT).leds is False
            await asyncio.sleep(1.0)
            assert len(probe.on(f"{base_topic}/{WIFI_NEXT}/set/result")) == 1  # exactly once
        finally:
            assert await stop(task) is None


async def test_hardening_command_older_than_the_session_expiry_never_runs(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """No ghost switching: a command that waited longer than `session_expiry` is not executed late."""
    emulator = await start_emulator(demo_scenario)
    async with proxy_to(broker) as relay:
        settings = bridge_settings(
            broker, base_topic, data_dir=str(tmp_path), mqtt={"port": relay.port, "session_expiry": 1}
        )
        task = asyncio.create_task(Bridge(settings).run())
        try:
            await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("leds") == "ON")
            relay.cut()
            await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"offline")
            await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", qos=1)
            await asyncio.sleep(2.5)  # the broker's clock: the session expires after 1 s
            mark = asyncio.get_running_loop().time()
            relay.restore()
            await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"online", after=mark)
            await asyncio.sleep(1.5)
            assert not probe.on(f"{base_topic}/{WIFI_NEXT}/set/result")
            assert emulator.device(WIFI_NEXT).leds is True
        finally:
            assert await stop(task) is None


# --- one bridge per base topic ------------------------------------------------------------------------
async def test_hardening_second_bridge_on_the_same_topics_stops_and_the_first_goes_on(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """Different client ids: the newer run stops with DuplicateInstanceError; commands still run once."""
    emulator = await start_emulator(demo_scenario)
    first = asyncio.create_task(
        Bridge(bridge_settings(broker, base_topic, data_dir=str(tmp_path / "a"))).run()
    )
    try:
        await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online")
        settings = bridge_settings(
            broker, base_topic, data_dir=str(tmp_path / "b"), mqtt={"client_id": f"other-{base_topic}"}
        )
        with pytest.raises(DuplicateInstanceError, match="instance_id"):
            await asyncio.wait_for(Bridge(settings).run(), 10)
        assert not first.done()
        assert await retained(broker.port, f"{base_topic}/bridge/state") == b"online"
        await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF")
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: r["status"] == "ok")
        await asyncio.sleep(1.0)
        assert len(probe.on(f"{base_topic}/{WIFI_NEXT}/set/result")) == 1
        assert emulator.device(WIFI_NEXT).leds is False
    finally:
        assert await stop(first) is None


async def test_hardening_same_client_id_the_running_bridge_stays_the_newcomer_stops(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """Same configuration twice (same client id): the running bridge takes its session back and the
    newcomer stops (exit 3) — under Docker's restart policy the two must not take turns for ever."""
    await start_emulator(demo_scenario)
    first = asyncio.create_task(
        Bridge(bridge_settings(broker, base_topic, data_dir=str(tmp_path / "a"))).run()
    )
    await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online")
    second = asyncio.create_task(
        Bridge(bridge_settings(broker, base_topic, data_dir=str(tmp_path / "b"))).run()
    )
    try:
        done, _ = await asyncio.wait({first, second}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert done == {second}
        assert isinstance(second.exception(), DuplicateInstanceError)
        survivor = first
        await asyncio.sleep(3)  # several reconnect rounds: the survivor must not stop as well
        assert not survivor.done()
        assert await retained(broker.port, f"{base_topic}/bridge/state") == b"online"
    finally:
        for task in (first, second):
            if not task.done():
                assert await stop(task) is None


async def test_hardening_cli_second_instance_exits_3_naming_the_setting(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """`devolo-mqtt run` next to a running bridge on the same base topic: exit code 3 and what to change."""
    await start_emulator(demo_scenario)
    first = asyncio.create_task(
        Bridge(bridge_settings(broker, base_topic, data_dir=str(tmp_path / "a"))).run()
    )
    try:
        await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"online")
        config = cli_config(broker, base_topic, tmp_path)
        process = await asyncio.create_subprocess_exec(
            *CLI, "run", "--config", str(config), stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 3
        assert b"mqtt.instance_id" in stderr and b"base_topic" in stderr
        assert not first.done()
    finally:
        assert await stop(first) is None


# --- quiet logs ----------------------------------------------------------------------------------------
async def test_hardening_start_with_many_devices_logs_a_handful_of_lines(
    broker: Broker, base_topic: str, tmp_path: Path
) -> None:
    """30 devices: no `pending publish calls` warning, and only a few lines at INFO or above."""
    block = address_block()
    count = 30
    emulator = await asyncio.create_subprocess_exec(
        *CLI,
        "emulate",
        "--count",
        str(count),
        "--address-base",
        block,
        "--speed",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert emulator.stdout is not None
    for _ in range(count):
        await asyncio.wait_for(emulator.stdout.readline(), 30)
    config = cli_config(broker, base_topic, tmp_path)
    bridge = await asyncio.create_subprocess_exec(
        *CLI, "run", "--config", str(config), stderr=asyncio.subprocess.PIPE
    )
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as watcher:
            await watcher.subscribe(f"{base_topic}/+/availability")
            online: set[str] = set()
            async with asyncio.timeout(60):
                async for message in watcher.messages:
                    if message.payload == b"online":
                        online.add(str(message.topic))
                    if len(online) == count:
                        break
        await asyncio.sleep(2)
        bridge.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(bridge.communicate(), 20)
    finally:
        for process in (bridge, emulator):
            if process.returncode is None:
                process.terminate()
                await process.wait()
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert not [line for line in lines if "pending publish" in line["event"]]
    loud = [line["event"] for line in lines if line["level"] != "debug"]
    assert len(loud) <= 8, loud


def test_hardening_emulate_with_stdin_from_dev_null_logs_no_error(tmp_path: Path) -> None:
    """`devolo-mqtt emulate < /dev/null` serves quietly (no traceback for an unwatchable stdin)."""
    import subprocess  # noqa: PLC0415

    with subprocess.Popen(
        [*CLI, "emulate", "--address-base", address_block()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        for _ in range(7):
            assert process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr[-2000:]
    assert "error" not in stderr.lower(), stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
