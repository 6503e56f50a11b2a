"""The MQTT session: connect, keep reconnecting with capped jittered backoff, re-publish every retained
message after each reconnect, and hand incoming messages to the router. Pollers never wait for it:
`publish` only queues.
"""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from devolo_mqtt.errors import first_of, honour_cancellation
from devolo_mqtt.settings import MqttSettings

log = structlog.get_logger("devolo_mqtt.mqtt")
_SHUTDOWN_SECONDS = 5.0
_IN_FLIGHT = 64  # publishes awaiting their acknowledgement at once


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    correlation: bytes | None = None


@dataclass
class Counters:
    """MQTT statistics for `bridge/health`."""

    connects: int = 0
    published: int = 0
    received: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return {
            "connects": self.connects,
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
        }


@dataclass
class SessionHooks:
    """What the session calls back: on each (re)connect, per incoming message, at shutdown."""

    on_connect: Callable[[], None]
    on_message: Callable[[aiomqtt.Message], None]
    farewell: Callable[[], list[Outgoing]]
    subscriptions: Callable[[], list[str]] = field(default=list)


class MqttSession:
    """Owns the broker connection for the bridge's whole life."""

    def __init__(
        self,
        settings: MqttSettings,
        will_topic: str,
        hooks: SessionHooks,
        *,
        client_id: str,
        max_queue: int = 10_000,
    ) -> None:
        self._settings = settings
        self._will_topic = will_topic
        self._hooks = hooks
        self._client_id = client_id
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=max_queue)
        self.retained: dict[str, Outgoing] = {}
        self.counters = Counters()
        self.connected = asyncio.Event()

    # --- the API the rest of the bridge uses ---------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool = False,
        qos: int = 0,
        correlation: bytes | None = None,
    ) -> None:
        """Queue a message; retained ones are also remembered for re-publishing after a reconnect."""
        data = payload.encode() if isinstance(payload, str) else payload
        message = Outgoing(topic, data, qos, retain, correlation)
        if retain:
            if data:
                self.retained[topic] = message
            else:
                self.retained.pop(topic, None)
        elif not self.connected.is_set():
            self.counters.dropped += 1  # live-only messages (events, results) are not replayed
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.counters.dropped += 1

    # --- the session loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect and serve until cancelled; on cancellation say goodbye (retained offline states)."""
        delay = self._settings.reconnect_min
        while True:
            try:
                async with self._client() as client:
                    delay = self._settings.reconnect_min
                    await self._serve(client)
            except aiomqtt.MqttError as err:
                was_connected = self.connected.is_set()
                self.connected.clear()
                log.warning(
                    "mqtt_disconnected" if was_connected else "mqtt_connect_failed",
                    host=self._settings.host,
                    port=self._settings.port,
                    error=str(err),
                    retry_in=round(delay, 1),
                )
            self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._settings.reconnect_max)

    def _client(self) -> aiomqtt.Client:
        s = self._settings
        v5 = s.protocol == "5"
        tls: ssl.SSLContext | None = None
        if s.tls or s.ca_file:
            tls = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
            if s.cert_file and s.key_file:
                tls.load_cert_chain(str(s.cert_file), str(s.key_file))
            if s.tls_insecure:
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            identifier=self._client_id,
            keepalive=s.keepalive,
            tls_context=tls,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self._will_topic, b"offline", qos=1, retain=True),
            timeout=10,
        )

    async def _serve(self, client: aiomqtt.Client) -> None:
        self.counters.connects += 1
        for topic in self._hooks.subscriptions():
            if self._settings.protocol == "5":
                # Retain-as-published: a retained command is recognisable even when delivered live.
                await client.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
            else:
                await client.subscribe(topic, qos=1)
        # Everything retained goes out again: the broker may have lost it, or it changed meanwhile.
        # Queued messages are stale: retained ones are in `self.retained`, live-only ones expired.
        self._drain_queue()
        self._hooks.on_connect()
        self._drain_queue()
        self.connected.set()
        for message in list(self.retained.values()):
            await self._send(client, message)
            honour_cancellation()  # aiomqtt's waits can swallow a cancellation on Python 3.11
        log.info("mqtt_connected", host=self._settings.host, port=self._settings.port)
        try:
            await first_of(self._pump_out(client), self._pump_in(client), name="devolo_mqtt.mqtt.pump")
        except asyncio.CancelledError:
            async with asyncio.timeout(_SHUTDOWN_SECONDS):
                await self._farewell(client)
            raise

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _pump_out(self, client: aiomqtt.Client) -> None:
        """Publish queued messages, several awaiting their acknowledgement at once.

        paho writes each publish to the socket when it is called, so order is kept; only the waits for
        PUBACKs overlap (one at a time, 200 devices' discovery configs would take half a minute).
        """
        window = asyncio.Semaphore(_IN_FLIGHT)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = await self._queue.get()
                await window.acquire()
                task = asyncio.create_task(self._send(client, message), name="devolo_mqtt.mqtt.publish")
                in_flight.add(task)
                task.add_done_callback(functools.partial(self._sent, in_flight, window))
                honour_cancellation()
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _sent(
        self, in_flight: set[asyncio.Task[None]], window: asyncio.Semaphore, task: asyncio.Task[None]
    ) -> None:
        in_flight.discard(task)
        window.release()
        if not task.cancelled() and task.exception() is not None:
            self.counters.dropped += 1  # retained messages go out again after the reconnect this implies
            log.debug("mqtt_publish_failed", error=str(task.exception()))

    async def _pump_in(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.counters.received += 1
            honour_cancellation()
            try:
                self._hooks.on_message(message)
            except Exception:  # a bad message must never end the session
                log.exception("mqtt_message_failed", topic=str(message.topic))

    async def _send(self, client: aiomqtt.Client, message: Outgoing) -> None:
        properties: Any = None
        if message.correlation is not None and self._settings.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = message.correlation
        await client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain, properties=properties
        )
        self.counters.published += 1

    async def _farewell(self, client: aiomqtt.Client) -> None:
        """Retained `offline` for every device, then for the bridge, then a clean disconnect."""
        for message in [*self._hooks.farewell(), Outgoing(self._will_topic, b"offline", 1, True)]:
            await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        log.info("mqtt_goodbye")
