"""Hostile MQTT input: no payload, size, rate or property can end the bridge, every command and request
gets exactly one answer, and nothing but a valid command ever writes to a device."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.server import Emulator
from tests.conftest import MANAGEABLE, StartBridge, StartEmulator, start_home
from tests.helpers import Broker, Probe

ROUTER, WIFI_NEXT = "1000000000000001", "1000000000000002"
WRITES = ("Set", "Start", "Stop", "Restart")  # endpoint names that change a device


def _writes(emulator: Emulator) -> dict[str, int]:
    return {
        f"{serial}:{name}": count
        for serial, device in emulator.world.devices.items()
        for name, count in device.requests.items()
        if name.endswith(WRITES) or name == "SetUserDeviceName"
    }


async def _answered(probe: Probe, topic: str, count: int, within: float = 10.0) -> None:
    """Wait until `topic` has received `count` messages."""
    async with asyncio.timeout(within):
        while len(probe.on(topic)) < count:
            await probe.wait_for(
                topic, lambda _: True, after=asyncio.get_running_loop().time(), within=within
            )


def _v5(response_topic: str) -> Any:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = response_topic
    properties.CorrelationData = b"c-1"
    return properties


async def test_hostile_deep_nesting_is_answered_and_the_bridge_lives_on(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """1 KB of `[[[[` on requests and `/set`: an error answer each, then a normal command still works."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    deep = b"[" * 1024
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for op in ("refresh", "mac/rename"):
            await client.publish(f"{base_topic}/bridge/request/{op}", deep, qos=1)
            answer = await probe.wait_json(f"{base_topic}/bridge/response/{op}", lambda _: True)
            assert answer["status"] == "error" and "nested" in answer["error"]
        await client.publish(f"{base_topic}/{WIFI_NEXT}/set", deep, qos=1)
        result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda _: True)
        assert result["status"] == "error" and "nested" in result["error"]
        await client.publish(f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", qos=1)
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: r["status"] == "ok")
    assert emulator.device(WIFI_NEXT).leds is False


async def test_hostile_refresh_burst_gets_one_answer_each(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """150 refresh requests at once: 150 answers (ok or busy), reads coalesced, the bridge lives on."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    before = emulator.device(WIFI_NEXT).requests.get("LedSettingsGet", 0)
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for i in range(150):
            body = json.dumps({"device": WIFI_NEXT, "transaction": i})
            await client.publish(f"{base_topic}/bridge/request/refresh", body, qos=0)
    topic = f"{base_topic}/bridge/response/refresh"
    await _answered(probe, topic, 150, within=20)
    answers = [m.json() for m in probe.on(topic)]
    assert len(answers) == 150
    assert {a["status"] for a in answers} <= {"ok", "error"}
    assert all(a["status"] == "ok" or a["error"].startswith("busy") for a in answers)
    reads = emulator.device(WIFI_NEXT).requests.get("LedSettingsGet", 0) - before
    assert reads < 50  # coalesced: far fewer reads than requests
    await client_set_ok(broker, probe, base_topic)


async def client_set_ok(broker: Broker, probe: Probe, base: str) -> None:
    """A normal command still gets its `ok`."""
    mark = asyncio.get_running_loop().time()
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(f"{base}/{WIFI_NEXT}/set/leds", "OFF", qos=1)
    await probe.wait_json(f"{base}/{WIFI_NEXT}/set/result", lambda r: r["status"] == "ok", after=mark)


@pytest.mark.parametrize("target", ["bridge/request/discovery/purge", "{router}/set/leds", "ha/x"])
async def test_hostile_response_topic_into_our_namespace_is_refused(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
    target: str,
) -> None:
    """A response topic pointing at our requests, another device's `/set` or the discovery prefix: refused."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    response_topic = (
        f"{base_topic}{target}"
        if target.startswith("ha/")
        else f"{base_topic}/{target.format(router=ROUTER)}"
    )
    writes = _writes(emulator)
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.publish(
            f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", qos=1, properties=_v5(response_topic)
        )
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda _: True)
    assert result["status"] == "error" and "response topic" in result["error"]
    await asyncio.sleep(1.0)
    assert not probe.on(response_topic)
    assert not [m for m in probe.messages if m.topic.startswith(f"{base_topic}ha/") and m.payload == b""]
    assert _writes(emulator) == writes
    assert emulator.device(ROUTER).leds is True and emulator.device(WIFI_NEXT).leds is True


def _fuzz_payloads() -> list[bytes]:
    return [
        b"",
        b"\x00\xff\xfe\x80",
        b"[" * 2000,
        b'{"a":' * 300,
        b"x" * 1_000_000,
        b"null",
        b"[]",
        b"{}",
        b"[1,2,3]",
        b'"just a string"',
        b"-1",
        b"1e309",
        b"NaN",
        b"1.5",
        "ÄÖÜ € 🚀".encode(),
        b"MAYBE",
        b'{"leds": [1, 2]}',
        b'{"leds": {"on": true}}',
        b'{"leds": "maybe"}',
        b'{"guest_duration": 1e9}',
        b'{"transaction": 7}',
        b'{"leds": "ON", "nope": 1}',
        b'{"firmware": "9.9"}',
        b'{"device": ["x"], "mac": 5, "name": {"a": 1}}',
        b'{"mac": "00:11:22:33:44:55", "name": "' + b"n" * 100 + b'"}',
    ]


def _fuzz_cases(base: str) -> list[tuple[str, bytes, bool, str | None]]:
    """(topic, payload, retain, answer topic or None)."""
    sets = [
        (f"{base}/{WIFI_NEXT}/set", f"{base}/{WIFI_NEXT}/set/result"),
        (f"{base}/{WIFI_NEXT}/set/leds", f"{base}/{WIFI_NEXT}/set/result"),
        (f"{base}/{WIFI_NEXT}/set/guest_duration", f"{base}/{WIFI_NEXT}/set/result"),
        (f"{base}/{WIFI_NEXT}/set/firmware", f"{base}/{WIFI_NEXT}/set/result"),
        (f"{base}/{WIFI_NEXT}/set/no_such_key", f"{base}/{WIFI_NEXT}/set/result"),
        (f"{base}/nodevice/set/leds", f"{base}/nodevice/set/result"),
        (f"{base}/network/set", f"{base}/network/set/result"),
        (f"{base}/{WIFI_NEXT}/set/leds/extra", None),  # not a command topic: no answer, no write
    ]
    requests = ["refresh", "mac/rename", "discovery/purge", "no/such/op"]
    cases: list[tuple[str, bytes, bool, str | None]] = []
    for (topic, answer), payload in itertools.product(sets, _fuzz_payloads()):
        valid = topic.endswith("/leds") and payload.strip().upper() in (b"ON", b"OFF", b"1", b"0")
        if not valid:
            cases.append((topic, payload, False, answer))
    for op, payload in itertools.product(requests, _fuzz_payloads()):
        if op == "discovery/purge" and payload in (b"", b"{}", b'{"transaction": 7}'):
            continue  # a valid purge
        if op == "refresh" and payload in (b"", b"{}", b'{"transaction": 7}'):
            continue  # valid (reads only) — tested elsewhere
        cases.append((f"{base}/bridge/request/{op}", payload, False, f"{base}/bridge/response/{op}"))
    for payload in (b"OFF", b'{"leds": "OFF"}', b"garbage"):  # retained: cleared and refused
        cases.append((f"{base}/{WIFI_NEXT}/set/leds", payload, True, f"{base}/{WIFI_NEXT}/set/result"))
        cases.append(
            (
                f"{base}/bridge/request/discovery/purge",
                payload,
                True,
                f"{base}/bridge/response/discovery/purge",
            )
        )
    return cases


@pytest.mark.timeout(300)
async def test_hostile_fuzz_every_input_path_one_answer_no_write(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """≥200 malformed commands and requests: the bridge lives, answers each exactly once, writes nothing."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    cases = _fuzz_cases(base_topic)
    assert len(cases) >= 200
    writes = _writes(emulator)
    expected: Counter[str] = Counter()
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic, payload, retain, answer in cases:
            await client.publish(topic, payload, qos=1, retain=retain)
            if answer is not None:
                expected[answer] += 1
                await _answered(probe, answer, expected[answer])
    await asyncio.sleep(1.5)  # late doubles would show now
    for topic, count in expected.items():
        assert len(probe.on(topic)) == count, topic
    assert not probe.on(f"{base_topic}/{WIFI_NEXT}/set/leds/extra/result")
    assert _writes(emulator) == writes
    for serial in MANAGEABLE:
        assert emulator.device(serial).leds is True
    # Nothing retained was left behind on a command or request topic, and the bridge still works.
    async with aiomqtt.Client("127.0.0.1", broker.port) as late:
        await late.subscribe(f"{base_topic}/+/set/#")
        await late.subscribe(f"{base_topic}/bridge/request/#")
        leftovers: list[str] = []
        try:
            async with asyncio.timeout(1.0):
                async for message in late.messages:
                    leftovers.append(str(message.topic))
        except TimeoutError:
            pass
    assert leftovers == []
    await client_set_ok(broker, probe, base_topic)


async def test_hostile_unparseable_commands_answered_on_their_response_topic(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    broker: Broker,
    probe: Probe,
    base_topic: str,
) -> None:
    """Bad JSON, an array, empty, not UTF-8: each answered where the asker listens (its MQTT 5 response
    topic, with its correlation data), not only on `set/result`; a refused response topic keeps the
    command's transaction in the answer on `set/result`."""
    await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    reply_topic = f"replies-{base_topic}/leds"
    bad = [b"{bad", b"[1]", b"", b"\xff\xfe"]
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(reply_topic, qos=1)
        for payload in bad:
            await client.publish(f"{base_topic}/{WIFI_NEXT}/set", payload, qos=1, properties=_v5(reply_topic))
        replies = []
        async with asyncio.timeout(10):
            async for message in client.messages:
                replies.append((json.loads(bytes(message.payload)), message.properties.CorrelationData))  # type: ignore[union-attr]
                if len(replies) == len(bad):
                    break
        assert all(r["status"] == "error" for r, _ in replies)
        assert {c for _, c in replies} == {b"c-1"}
        own = f"{base_topic}/bridge/request/refresh"
        await client.publish(
            f"{base_topic}/{WIFI_NEXT}/set", b'{"leds": "OFF", "transaction": 42}', qos=1, properties=_v5(own)
        )
    result = await probe.wait_json(
        f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: r.get("transaction") == 42
    )
    assert result["status"] == "error" and "response topic" in result["error"]
