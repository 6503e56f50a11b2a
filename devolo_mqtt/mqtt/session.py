"""The MQTT session: connect, keep reconnecting with capped jittered backoff, re-publish every retained
message after each reconnect, and hand incoming messages to the router. Pollers never wait for it:
`publish` only queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from devolo_mqtt.core.backoff import Backoff
from devolo_mqtt.core.errors import DuplicateInstanceError
from devolo_mqtt.core.tasks import first_of, honour_cancellation
from devolo_mqtt.settings import MqttSettings

log = structlog.get_logger("devolo_mqtt.mqtt.session")
_SHUTDOWN_SECONDS = 3.0  # for the farewell; past that the connection is dropped so the broker sends the Will
_IN_FLIGHT = 64  # publishes awaiting their acknowledgement at once
_MAX_HELD = 10_000  # messages held while the session starts
# Answers and events published while the broker is away (or in flight when it went), kept for the next
# connection: the newest this many (older ones are dropped and counted).
MAX_KEPT = 1_000
FAST_RETRY = 2.0  # seconds between connection attempts during the first minutes of an outage…
FAST_RETRY_FOR = 600.0  # …this long: a broker that comes back is reached within seconds
_RETAKE = 0.1  # seconds before taking back a session a newcomer with our client id took
_SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: another client connected with our client id


Send = Callable[[str, bytes], Awaitable[None]]  # publish directly (QoS 1, retained) before the session is up


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    correlation: bytes | None = None
    bulk: bool = False  # goes out after everything else that is waiting (discovery configs, maps)


@dataclass
class Counters:
    """MQTT statistics for `bridge/health`."""

    connects: int = 0
    published: int = 0
    received: int = 0
    dropped: int = 0
    unchanged: int = 0  # retained messages not sent again: the broker holds the same payload

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return {
            "connects": self.connects,
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
            "unchanged": self.unchanged,
        }


@dataclass(frozen=True, slots=True)
class Subscription:
    """A topic filter to listen to. `echo=False`: not our own publications matching it (MQTT 5 No Local;
    e.g. our `set/result` answers match the command filter `+/set/+`, and each echo the broker sends
    back makes the next command wait for our delayed TCP acknowledgement of it, ~40 ms)."""

    topic: str
    echo: bool = True


@dataclass
class SessionHooks:
    """What the session calls back: on each (re)connect, per incoming message, at shutdown."""

    on_connect: Callable[[], None]
    on_message: Callable[[aiomqtt.Message], None]
    farewell: Callable[[], list[Outgoing]]
    subscriptions: Callable[[], list[Subscription]] = field(default=list)
    # Awaited after subscribing and before `on_connect` (the instance check listens there first);
    # meanwhile incoming messages go to `on_early_message` and, unless it consumed them (True), are held
    # for `on_message` until after.
    before_publishing: Callable[[Send], Coroutine[Any, Any, None]] | None = None
    on_early_message: Callable[[aiomqtt.Message], bool] | None = None
    on_disconnect: Callable[[], None] = lambda: None  # the session dropped (the health file says so now)


@dataclass(frozen=True, slots=True)
class _Resubscribe:
    """Queued control item: bring the live subscriptions in line with `subscriptions()`."""


class _Lanes:
    """The outgoing queue, in two lanes: states, availability, answers and events first; bulk messages
    (Home Assistant's discovery configs, network maps) when nothing else waits. At start-up 50 devices'
    ~1,000 configs would otherwise hold every device's first state for a second, and after Home
    Assistant restarts every answer would wait behind the re-published configs."""

    def __init__(self, size: int) -> None:
        self._first: deque[Outgoing | _Resubscribe] = deque()
        self._bulk: deque[Outgoing | _Resubscribe] = deque()
        self._size = size
        self._ready = asyncio.Event()

    def put(self, item: Outgoing | _Resubscribe) -> bool:
        """Queue an item; False when the queue is full."""
        if len(self._first) + len(self._bulk) >= self._size:
            return False
        (self._bulk if isinstance(item, Outgoing) and item.bulk else self._first).append(item)
        self._ready.set()
        return True

    def take(self) -> Outgoing | _Resubscribe | None:
        """The next item, or None."""
        lane = self._first or self._bulk
        return lane.popleft() if lane else None

    async def get(self) -> Outgoing | _Resubscribe:
        """Wait for the next item."""
        while (item := self.take()) is None:
            self._ready.clear()
            await self._ready.wait()
        return item


class MqttSession:
    """Owns the broker connection for the bridge's whole life."""

    def __init__(
        self,
        settings: MqttSettings,
        will_topic: str,
        *,
        client_id: str,
        max_queue: int = 10_000,
    ) -> None:
        self._settings = settings
        self._will_topic = will_topic
        self._hooks = SessionHooks(on_connect=lambda: None, on_message=lambda _: None, farewell=list)
        self._client_id = client_id
        self._queue = _Lanes(max_queue)
        self.retained: dict[str, Outgoing] = {}
        self.counters = Counters()
        self.connected = asyncio.Event()
        self._subscribed: set[str] = set()  # what the (possibly persistent) broker session holds
        self.abandoned = False  # leaving without a farewell (another instance owns the topics)
        self._checked = False  # the first instance check passed (a takeover before it: we are new)
        self._held: list[aiomqtt.Message] | None = None  # messages that arrived before `on_connect`
        self._kept: deque[Outgoing] = deque()  # live-only messages waiting for the broker

    # --- the API the rest of the bridge uses ---------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool = False,
        qos: int = 0,
        correlation: bytes | None = None,
        force: bool = False,
        bulk: bool = False,
    ) -> None:
        """Queue a message; retained ones are also remembered for re-publishing after a reconnect;
        `bulk` ones go out when nothing else waits.

        A retained payload equal to the one the topic already holds is not sent again (unless `force`):
        every retained topic is published on change only, and a reconnect replays them all anyway.
        """
        data = payload.encode() if isinstance(payload, str) else payload
        message = Outgoing(topic, data, qos, retain, correlation, bulk)
        if retain:
            if not force and data and (held := self.retained.get(topic)) is not None and held == message:
                self.counters.unchanged += 1
                return
            if data:
                self.retained[topic] = message
            else:
                self.retained.pop(topic, None)
        elif not self.connected.is_set():
            self._keep(message)  # answers and events wait for the broker (the newest MAX_KEPT)
            return
        if not self._queue.put(message):
            self.counters.dropped += 1

    def _keep(self, message: Outgoing) -> None:
        if len(self._kept) >= MAX_KEPT:
            self._kept.popleft()
            self.counters.dropped += 1
        self._kept.append(message)

    def resubscribe(self) -> None:
        """`subscriptions()` changed: subscribe and unsubscribe on the live connection (or the next)."""
        if self.connected.is_set():
            self._queue.put(_Resubscribe())

    def abandon(self) -> None:
        """Leave without saying goodbye: another instance owns these topics, its state must stand."""
        self.abandoned = True

    # --- the session loop ----------------------------------------------------------------------------
    async def run(self, hooks: SessionHooks) -> None:
        """Connect and serve until cancelled; on cancellation say goodbye (retained offline states)."""
        self._hooks = hooks
        backoff = Backoff(self._settings.reconnect_min, self._settings.reconnect_max, jitter=0.2)
        loop = asyncio.get_running_loop()
        away_since: float | None = None
        while True:
            try:
                async with self._client() as client:
                    backoff.reset()
                    away_since = None
                    await self._serve(client)
            except aiomqtt.MqttError as err:
                delay = backoff.next()
                was_connected = self.connected.is_set()
                self.connected.clear()
                if was_connected:
                    self._hooks.on_disconnect()
                if _reason_code(err) == _SESSION_TAKEN_OVER:
                    if not self._checked:
                        # Taken over before our first instance check passed: this run is the
                        # newcomer (the running one took its session back). It stops.
                        raise DuplicateInstanceError(
                            f"another bridge is running with this bridge's client id {self._client_id!r}"
                            " (the same configuration twice?): it stays, this one stops"
                        ) from None
                    # A newcomer with our client id took the session: take it back at once; the
                    # instance check then tells the newer run to stop (see InstanceGuard.check).
                    log.warning("mqtt_session_taken_over", client_id=self._client_id)
                    delay = _RETAKE
                    away_since = None
                log.warning(
                    "mqtt_disconnected" if was_connected else "mqtt_connect_failed",
                    host=self._settings.host,
                    port=self._settings.port,
                    error=str(err),
                    retry_in=round(delay, 1),
                )
            else:
                delay = backoff.next()
            self.connected.clear()
            away_since = away_since if away_since is not None else loop.time()
            if delay > _RETAKE and loop.time() - away_since < FAST_RETRY_FOR:
                # A broker restart takes seconds: ask every few seconds at first (a TCP connect to a
                # closed port costs it nothing), the slow back-off only for a broker that stays away.
                delay = min(delay, FAST_RETRY * random.uniform(0.8, 1.2))
            await asyncio.sleep(delay)

    def _client(self) -> aiomqtt.Client:
        s = self._settings
        v5 = s.protocol == "5"
        tls = tls_context(s)
        persistent = s.session_expiry > 0
        properties: Any = None
        if v5 and persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = s.session_expiry
        client = aiomqtt.Client(
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
            # A persistent session: QoS 1 commands sent while the bridge is away are kept by the broker
            # (for `session_expiry` seconds) and delivered once it is back.
            clean_session=None if v5 else not persistent,
            clean_start=not persistent if v5 else MQTT_CLEAN_START_FIRST_ONLY,  # (3.1.1: not applicable)
            properties=properties,
            max_inflight_messages=_IN_FLIGHT,
            # Small packets (a result, then a state) must not wait for the previous one's ACK.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # aiomqtt warns above 10 pending calls; we keep up to _IN_FLIGHT on purpose (bounded by a window).
        client.pending_calls_threshold = 2 * _IN_FLIGHT + 16
        return client

    async def _serve(self, client: aiomqtt.Client) -> None:
        self.counters.connects += 1
        try:
            await self._sync_subscriptions(client, fresh=True)
            self._held = []
            await first_of(self._start(client), self._pump_in(client), name="devolo_mqtt.mqtt.pump")
        except asyncio.CancelledError:
            # Whenever the stop comes (even mid-reconnect), the last word on `bridge/state` is `offline`.
            await self._leave(client)
            raise

    async def _start(self, client: aiomqtt.Client) -> None:
        """Check, announce, replay every retained message, then publish whatever is queued."""
        if self._hooks.before_publishing is not None:

            async def send(topic: str, payload: bytes) -> None:
                await client.publish(topic, payload, qos=1, retain=True)

            await self._hooks.before_publishing(send)
        self._checked = True
        # Everything retained goes out again: the broker may have lost it, or it changed meanwhile.
        # Queued retained messages are in `self.retained`; queued answers and events are kept.
        self._drain_queue()
        self._hooks.on_connect()
        self._drain_queue()
        self.connected.set()
        held, self._held = self._held or [], None
        for incoming in held:  # e.g. commands the broker kept for our session while we were away
            self._handle(incoming)
        await self._sync_subscriptions(client)  # what `on_connect` and the held messages changed
        # The bridge's own state first: a subscriber arriving mid-replay must find it retained.
        # Then the answers and events kept through the outage, then the rest.
        # Bulk ones (discovery configs) last, as when queued.
        retained = sorted(self.retained.values(), key=lambda m: (m.topic != self._will_topic, m.bulk))
        kept, self._kept = list(self._kept), deque()
        replay = deque([*retained[:1], *kept, *retained[1:]])
        log.info("mqtt_connected", host=self._settings.host, port=self._settings.port, retained=len(replay))
        await self._pump_out(client, replay)

    async def _sync_subscriptions(self, client: aiomqtt.Client, *, fresh: bool = False) -> None:
        wanted = self._hooks.subscriptions()
        topics = {w.topic for w in wanted}
        # A resumed persistent session still holds what an earlier connection subscribed.
        for topic in sorted(self._subscribed - topics):
            await client.unsubscribe(topic)
            self._subscribed.discard(topic)
        for subscription in wanted:
            topic = subscription.topic
            if topic in self._subscribed and not fresh:
                continue
            if self._settings.protocol == "5":
                # Retain-as-published: a retained command is recognisable even when delivered live.
                options = SubscribeOptions(qos=1, retainAsPublished=True, noLocal=not subscription.echo)
                await client.subscribe(topic, options=options)
            else:
                await client.subscribe(topic, qos=1)
            self._subscribed.add(topic)

    def _drain_queue(self) -> None:
        """Empty the queue; live-only messages in it are kept for the connection's replay."""
        while (item := self._queue.take()) is not None:
            if isinstance(item, Outgoing) and not item.retain:
                self._keep(item)

    async def _pump_out(self, client: aiomqtt.Client, replay: deque[Outgoing]) -> None:
        """Publish `replay`, then queued messages, several awaiting their acknowledgement at once.

        paho writes each publish to the socket when it is called, so order is kept; only the waits for
        PUBACKs overlap (one at a time, 200 devices' discovery configs would take half a minute).
        """
        window = asyncio.Semaphore(_IN_FLIGHT)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = replay.popleft() if replay else await self._queue.get()
                if isinstance(message, _Resubscribe):
                    await self._sync_subscriptions(client)
                    continue
                await window.acquire()
                task = asyncio.create_task(self._send(client, message), name="devolo_mqtt.mqtt.publish")
                in_flight.add(task)
                task.add_done_callback(functools.partial(self._sent, in_flight, window, message))
                honour_cancellation()
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _sent(
        self,
        in_flight: set[asyncio.Task[None]],
        window: asyncio.Semaphore,
        message: Outgoing,
        task: asyncio.Task[None],
    ) -> None:
        in_flight.discard(task)
        window.release()
        if task.cancelled() or task.exception() is not None:
            # Retained messages go out again after the reconnect this implies; answers and events are
            # kept for it (a QoS 0 message may then arrive twice: better than never).
            if not message.retain:
                self._keep(message)
            log.debug("mqtt_publish_failed", error=None if task.cancelled() else str(task.exception()))

    async def _pump_in(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.counters.received += 1
            honour_cancellation()
            early = self._hooks.on_early_message
            if self._held is None:
                self._handle(message)
            elif early is not None and early(message):
                pass
            elif len(self._held) < _MAX_HELD:
                self._held.append(message)
            else:
                self.counters.dropped += 1

    def _handle(self, message: aiomqtt.Message) -> None:
        try:
            self._hooks.on_message(message)
        except Exception:  # a bad message must never end the session
            log.exception("mqtt_message_failed", topic=str(message.topic)[:200])

    async def _send(self, client: aiomqtt.Client, message: Outgoing) -> None:
        properties: Any = None
        if message.correlation is not None and self._settings.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = message.correlation
        await client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain, properties=properties
        )
        self.counters.published += 1

    async def _take_received(self, client: aiomqtt.Client) -> None:
        """Handle the messages the client has received but nobody has read yet (the session stops).
        Not before the session started (its instance check passed): nothing may be routed before."""
        if self._held is not None:
            return
        messages = client.messages
        while len(messages):
            message = await anext(messages)
            self.counters.received += 1
            self._handle(message)

    async def _leave(self, client: aiomqtt.Client) -> None:
        """The farewell (bridge `offline` first, then every device), then a clean DISCONNECT.

        If the farewell cannot finish in time (a hung broker), the connection is dropped without a
        DISCONNECT instead, so the broker publishes the Will (`offline`). Never raises.
        """
        if self.abandoned:
            return  # a clean DISCONNECT (on leaving the client's context) suppresses the Will: silence
        try:
            async with asyncio.timeout(_SHUTDOWN_SECONDS):
                # Commands the client received (and acknowledged) but the bridge had not handled yet
                # join their devices' inboxes first: the farewell answers every command in hand.
                await self._take_received(client)
                farewell = self._hooks.farewell()  # answers every command in hand: queued just now
                self._drain_queue()
                last = [*self._kept, Outgoing(self._will_topic, b"offline", 1, True), *farewell]
                self._kept.clear()
                for message in last:
                    await self._send(client, message)
                # What arrived while saying goodbye is answered too (`bridge stopping`, at once).
                await self._take_received(client)
                self._drain_queue()
                late, self._kept = list(self._kept), deque()
                for message in late:
                    await self._send(client, message)
            log.info("mqtt_goodbye")
        except (TimeoutError, aiomqtt.MqttError) as err:
            log.warning("mqtt_goodbye_incomplete", error=str(err) or type(err).__name__)
            _drop(client)


def tls_context(s: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context the settings ask for (None: plain TCP)."""
    if not (s.tls or s.ca_file):
        return None
    tls = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
    if s.cert_file and s.key_file:
        tls.load_cert_chain(str(s.cert_file), str(s.key_file))
    if s.tls_insecure:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    return tls


def _drop(client: aiomqtt.Client) -> None:
    """Close the connection without a DISCONNECT packet: to the broker it is a lost client (Will)."""
    paho = client._client
    sock = paho.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    paho._sock_close()
    if not client._disconnected.done():
        client._disconnected.set_result(None)  # leaving the context then sends nothing more


def _reason_code(err: BaseException) -> int | None:
    """The MQTT reason code behind an aiomqtt error, if any."""
    for candidate in (err, err.__cause__):
        if isinstance(candidate, aiomqtt.MqttCodeError) and candidate.rc is not None:
            rc = candidate.rc
            return rc if isinstance(rc, int) else int(rc.value)
    return None
