"""Test helpers: a real Mosquitto broker, an MQTT probe that records what the bridge publishes, and
address blocks so every test's emulated devices live on loopback addresses of their own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

# Inside 127.64.0.0/10, from a random start: two test runs at once, or the demo (127.0.x.x), never
# share an address; and each test's bridges adopt only the blocks handed out to that test. Parallel
# workers (pytest-xdist) each draw from a range of their own.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_SPAN = 12_000 // max(1, _WORKERS)
_BLOCKS = itertools.count(_WORKER * _SPAN + random.randrange(1, max(2, _SPAN - 1_000)))
_HANDED_OUT: list[str] = []


def address_block() -> str:
    """A fresh loopback /24 for one test's emulated devices (127.64.N.1 …)."""
    n = next(_BLOCKS)
    block = f"127.{64 + n // 250}.{n % 250}.1"
    _HANDED_OUT.append(block)
    return block


def new_test() -> None:
    """A test starts: it owns no address block yet."""
    _HANDED_OUT.clear()


def own_networks() -> list[str]:
    """The networks of the current test's address blocks: all that its bridges may adopt over mDNS."""
    return [f"{block.rsplit('.', 1)[0]}.0/24" for block in _HANDED_OUT] or ["127.64.0.0/10"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    """A real Mosquitto on a free loopback port; can be stopped and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_type error\nlog_dest stderr\n"
            # The 200-device test's probe must not lose the start-up burst (mosquitto's default is 1000).
            "max_queued_messages 100000\n",
            encoding="utf-8",
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        """Stop (it forgets retained messages: persistence is off)."""
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None


def unique_base() -> str:
    """A base topic no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Received:
    """One message the probe saw."""

    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        """The payload as JSON."""
        return json.loads(self.payload)


@dataclass
class Probe:
    """Subscribes to topics and records every message, for assertions."""

    client: aiomqtt.Client
    messages: list[Received] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def collect(self) -> None:
        """Record until cancelled (or until the broker goes away, in broker-restart tests)."""
        try:
            async for message in self.client.messages:
                payload = (
                    message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                )
                self.messages.append(Received(str(message.topic), payload, message.retain, time.monotonic()))
                self._changed.set()
        except aiomqtt.MqttError:
            return

    def last(self, topic: str) -> Received | None:
        """The newest message on a topic."""
        return next((m for m in reversed(self.messages) if m.topic == topic), None)

    def on(self, topic: str) -> list[Received]:
        """Every message on a topic, oldest first."""
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[Received], bool] = lambda _: True,
        within: float = 15.0,
        after: float = 0.0,
    ) -> Received:
        """The first message on `topic` (received after `after`) that satisfies `predicate`."""
        deadline = time.monotonic() + within
        while True:
            for message in self.messages:
                if message.topic == topic and message.at >= after and _safe(predicate, message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [m.payload[:200] for m in self.on(topic)]
                raise AssertionError(f"nothing matching on {topic} within {within}s; seen: {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    async def wait_json(
        self, topic: str, predicate: Callable[[Any], bool], within: float = 15.0, after: float = 0.0
    ) -> Any:
        """Like wait_for, on the JSON payload."""
        message = await self.wait_for(topic, lambda m: bool(m.payload) and predicate(m.json()), within, after)
        return message.json()


def _safe(predicate: Callable[[Received], bool], message: Received) -> bool:
    try:
        return predicate(message)
    except (ValueError, KeyError, TypeError):
        return False


@asynccontextmanager
async def running(bridge: Any) -> AsyncIterator[Any]:
    """Run a bridge for the duration of a block, then stop it the way SIGTERM does (cancellation)."""
    task = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Proxy:
    """A TCP relay to the broker that a test can cut (the network is gone) or freeze (the broker hangs)."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True
        self.frozen = False  # data is swallowed both ways, connections stay open

    async def start(self) -> None:
        """Listen on `port`."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Stop listening and drop every relayed connection."""
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Drop every connection (to the broker: a lost client) and refuse new ones until `restore`."""
        self.accepting = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        """Accept connections again."""
        self.accepting = True

    def go_away(self) -> None:
        """Like a broker that is down: drop every connection and stop listening (connects are refused)."""
        self.cut()
        if self._server is not None:
            self._server.close()

    async def come_back(self) -> None:
        """Listen again on the same port and accept connections."""
        self.restore()
        await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._copy(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _copy(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if not self.frozen:
                    sink.write(data)
                    await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()  # the other side sees the connection end, with no goodbye
            self._writers.discard(sink)


def cli_config(broker: Broker, base_topic: str, data_dir: Path, **overrides: Any) -> Path:
    """A config file for `devolo-mqtt run` against the test broker and this test's devices.

    Sections in `overrides` are merged into the defaults (`mqtt={"port": …}` keeps the host etc.).
    """
    config: dict[str, Any] = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "base_topic": base_topic,
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
        },
        "discovery": {"interfaces": ["127.0.0.1"], "networks": own_networks()},
        "polling": {"state": 1, "request_timeout": 3},
        "homeassistant": {"discovery_prefix": f"{base_topic}ha"},
        "device_password": "demo-secret",
        "logging": {"level": "INFO", "format": "json"},
        "data_dir": str(data_dir / "data"),
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    path = data_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def until(condition: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Wait until `condition()` holds (checked every 20 ms), instead of sleeping for a guessed time."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.02)


async def publish(
    broker: Broker,
    topic: str,
    payload: str | bytes,
    *,
    qos: int = 1,
    retain: bool = False,
    properties: Any = None,
) -> None:
    """Publish as a user (or Home Assistant) would: a fresh MQTT 5 client, QoS 1 unless told."""
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.publish(topic, payload, qos=qos, retain=retain, properties=properties)


async def retained(port: int, topic: str, within: float = 2.0) -> bytes | None:
    """What a fresh subscriber gets as the retained message of `topic` (None: nothing retained)."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                async for message in client.messages:
                    if message.retain:
                        return bytes(message.payload) if isinstance(message.payload, bytes) else b""
    return None
