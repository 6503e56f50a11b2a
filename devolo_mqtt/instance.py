"""One bridge per base topic. Two instances on the same topics take each other's session, flip
`bridge/state` and run every command twice; this notices and stops the newer one.

Each run says hello (non-retained) on `<base>/bridge/instance` when it connects, after subscribing to it,
and listens before publishing anything else. Whoever hears a hello from an older run stops; whoever hears
a newer one answers with its own hello, so the newcomer learns of it. A crashed run says nothing, so it
can never block a new one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from devolo_mqtt.errors import DuplicateInstanceError
from devolo_mqtt.inbound import BadPayload, decode_json
from devolo_mqtt.mqtt import Send

log = structlog.get_logger("devolo_mqtt.instance")


@dataclass(frozen=True, slots=True, order=True)
class Hello:
    """Who is running: compared by start time, then run id (the smaller one is the older run)."""

    started: float
    run_id: str
    host: str = ""

    def payload(self) -> bytes:
        """As published."""
        return json.dumps({"run_id": self.run_id, "started": self.started, "host": self.host}).encode()


class InstanceGuard:
    """This run's identity and what it heard of others."""

    def __init__(self, topic: str, base_topic: str, *, listen: float = 0.5) -> None:
        self.topic = topic
        self._base_topic = base_topic
        self._listen = listen
        self.me = Hello(time.time(), uuid.uuid4().hex, socket.gethostname())
        self._checked = False
        self._answer_due = False
        self._older_run: asyncio.Future[Hello] | None = None
        self.cleared = asyncio.Event()  # no older run answered the first hello: this run may work
        self.answer: Callable[[bytes], None] = lambda _: None  # set by the bridge: publish a live hello

    @property
    def _older(self) -> asyncio.Future[Hello]:
        """Resolves with the first older run heard (created on first use, inside the event loop)."""
        if self._older_run is None:
            self._older_run = asyncio.get_running_loop().create_future()
        return self._older_run

    async def check(self, send: Send) -> None:
        """Say hello; on the first connection, listen a moment before anything else is published."""
        await send(self.topic, self.me.payload())
        if not self._checked:
            self._checked = True
            try:
                async with asyncio.timeout(self._listen):
                    await asyncio.shield(self._older)
            except TimeoutError:
                pass
        if self._older.done():
            raise self._error(self._older.result())
        self.cleared.set()
        if self._answer_due:  # a newer run spoke while we listened: make sure it hears us
            self._answer_due = False
            await send(self.topic, self.me.payload())

    def heard(self, payload: bytes, *, live: bool) -> None:
        """A hello on the instance topic (ours included)."""
        try:
            data = decode_json(payload, max_bytes=1024)
            other = Hello(float(data["started"]), str(data["run_id"]), str(data.get("host", ""))[:100])
        except (BadPayload, KeyError, TypeError, ValueError):
            return  # not a hello of ours: ignore
        if other.run_id == self.me.run_id:
            return
        if other < self.me:
            if not self._older.done():
                self._older.set_result(other)
            return
        log.warning("duplicate_instance_refused", other_host=other.host, other_run=other.run_id)
        if live:
            self.answer(self.me.payload())
        else:
            self._answer_due = True

    async def watch(self) -> None:
        """Return never; raise DuplicateInstanceError once an older run is heard."""
        raise self._error(await asyncio.shield(self._older))

    def _error(self, other: Hello) -> DuplicateInstanceError:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.started))
        return DuplicateInstanceError(
            f"another devolo-mqtt bridge already runs on base topic {self._base_topic!r} "
            f"(host {other.host or '?'}, started {started}): stop it, or give each bridge its own "
            "mqtt.base_topic and mqtt.instance_id"
        )
