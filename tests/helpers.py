"""Test helpers: a real Mosquitto broker, an MQTT probe that records what the bridge publishes, and
address blocks so every test's emulated devices live on loopback addresses of their own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
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

_BLOCKS = itertools.count(1)


def address_block() -> str:
    """A fresh loopback /24 for one test's emulated devices (127.64.N.1 …)."""
    n = next(_BLOCKS)
    return f"127.{64 + n // 250}.{n % 250}.1"


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
