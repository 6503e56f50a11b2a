"""One bridge per base topic. Two instances on the same topics take each other's session, flip
`bridge/state` and run every command twice; this notices and stops one of them (exit code 3).

Each run publishes a retained hello on `<base>/bridge/instance` whenever it connects, after subscribing
to that topic, and listens until its own hello comes back before publishing anything else. What arrives
before that echo is the hello stored earlier; what arrives after it is live.

- A live hello from another run: both are connected at once (different client ids). The older run
  answers with its own hello; the newer one stops.
- A stored hello from another run when reconnecting: another run connected while this one was away.
  With the same client id the two can never be connected together (each connection takes the other's
  session), so this is the only trace; the run that finds it stops.
- A stored hello of another run at the first connection is the previous run's (crashed, or still
  running): never an obstacle in itself, but a running one answers within `listen` (0.5 s). A run that
  stops cleanly clears its hello, so without a stored hello there is nobody to wait for.
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

from devolo_mqtt.core.errors import DuplicateInstanceError
from devolo_mqtt.core.inbound import BadPayload, decode_json
from devolo_mqtt.mqtt.session import Outgoing, Send

log = structlog.get_logger("devolo_mqtt.mqtt.instance")


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
        self._connections = 0
        self._echoed: asyncio.Event | None = None  # set when our own hello came back
        self._stored: Hello | None = None  # another run's hello that was there before ours
        self._conflict: asyncio.Future[DuplicateInstanceError] | None = None
        self.cleared = asyncio.Event()  # the first check passed: this run may work
        self.answer: Callable[[bytes], None] = lambda _: None  # set by the bridge: publish our hello

    def _future(self) -> asyncio.Future[DuplicateInstanceError]:
        if self._conflict is None:
            self._conflict = asyncio.get_running_loop().create_future()
        return self._conflict

    async def check(self, send: Send) -> None:
        """On every connection: say hello and listen until it echoes; raise if another run is active."""
        self._connections += 1
        self._echoed, self._stored = asyncio.Event(), None
        await send(self.topic, self.me.payload())
        conflict = self._future()
        try:
            async with asyncio.timeout(self._listen):
                await self._echoed.wait()
                # The first time, give a running bridge time to answer — if there is one to expect: a
                # run leaves its hello retained while it runs (and clears it when it stops cleanly).
                if self._connections == 1 and self._stored is not None:
                    await asyncio.shield(conflict)
        except TimeoutError:
            pass
        if (
            self._connections > 1
            and self._stored is not None
            and self._stored < self.me
            and not conflict.done()
        ):
            # An older run holds these topics (with our client id, its connection and ours take the
            # session from each other): this run is the newcomer. Give it back its hello and stop.
            # (A newer run found here is the newcomer: it hears our hello, just sent, and stops.)
            await send(self.topic, self._stored.payload())
            conflict.set_result(self._error(self._stored, "is older"))
        if conflict.done():
            raise conflict.result()
        self.cleared.set()

    def heard(self, payload: bytes) -> None:
        """A hello on the instance topic (ours included)."""
        try:
            data = decode_json(payload, max_bytes=1024)
            other = Hello(float(data["started"]), str(data["run_id"]), str(data.get("host", ""))[:100])
        except (BadPayload, KeyError, TypeError, ValueError):
            return  # not a hello (or an emptied topic): ignore
        if other.run_id == self.me.run_id:
            if self._echoed is not None:
                self._echoed.set()
            return
        if self._echoed is not None and not self._echoed.is_set():
            self._stored = other  # there before our hello: the last run that connected
            return
        if other < self.me:
            if not self._future().done():
                self._future().set_result(self._error(other, "is older"))
            return
        log.warning("duplicate_instance_refused", other_host=other.host, other_run=other.run_id)
        self.answer(self.me.payload())  # it must hear of us to stop

    def farewell(self) -> list[Outgoing]:
        """At a clean stop: clear this run's retained hello, so the next run need not wait for an answer."""
        return [Outgoing(self.topic, b"", 1, True)]

    async def watch(self) -> None:
        """Never return; raise DuplicateInstanceError once another active run is known."""
        raise await asyncio.shield(self._future())

    def _error(self, other: Hello, why: str) -> DuplicateInstanceError:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.started))
        return DuplicateInstanceError(
            f"another devolo-mqtt bridge (host {other.host or '?'}, started {started}) {why} on base topic "
            f"{self._base_topic!r}: stop one of them, or give each bridge its own mqtt.base_topic and "
            "mqtt.instance_id"
        )
