"""Incoming MQTT: what the bridge subscribes to, and where each message goes — commands to their
device's queue, requests to the request worker, Home Assistant's status and leftover discovery configs
to the discovery publisher, hellos to the instance check. Every command and request is answered once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import aiomqtt
import structlog

from devolo_mqtt.core import commands
from devolo_mqtt.core.commands import Command
from devolo_mqtt.core.errors import CommandError
from devolo_mqtt.core.inbound import as_bytes
from devolo_mqtt.core.tasks import honour_cancellation
from devolo_mqtt.devices.registry import DeviceRegistry
from devolo_mqtt.mqtt import bridge_requests
from devolo_mqtt.mqtt.ha.publisher import HaPublisher
from devolo_mqtt.mqtt.instance import InstanceGuard
from devolo_mqtt.mqtt.publisher import Publisher
from devolo_mqtt.mqtt.session import Subscription
from devolo_mqtt.mqtt.topics import Topics

log = structlog.get_logger("devolo_mqtt.mqtt.router")
MAX_PENDING_REQUESTS = 32  # bridge requests waiting for the worker; more are answered `busy`


class Router:
    """Subscriptions and the handling of every incoming message."""

    def __init__(
        self,
        topics: Topics,
        *,
        publisher: Publisher,
        registry: DeviceRegistry,
        ha: HaPublisher,
        instance: InstanceGuard,
        requests: bridge_requests.Context,
    ) -> None:
        self.topics = topics
        self._out = publisher
        self._registry = registry
        self._ha = ha
        self._instance = instance
        self._requests = requests
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue(MAX_PENDING_REQUESTS)
        self._ha_republish_pending = False

    def subscriptions(self) -> list[Subscription]:
        """What the bridge listens to now."""
        t = self.topics
        # Its own hello on bridge/instance is how a run orders itself: that one echoes.
        subs = [Subscription(t.bridge_instance), Subscription(t.bridge_requests, echo=False)]
        subs += [Subscription(topic, echo=False) for topic in t.set_subscriptions]
        if self._ha.enabled:
            subs.append(Subscription(t.ha_status))
        if self._ha.listening:
            # Only to find our own stale configs of earlier runs (published under this client id, which
            # No Local would hide); after the sweep it is dropped (on a busy broker it carries every
            # integration's retained configs).
            subs.append(Subscription(t.discovery_subscription))
        return subs

    async def run(self) -> None:
        """Work through queued requests, one at a time, forever."""
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except Exception:  # a failing job must never end the bridge (requests answer themselves)
                log.exception("bridge_job_failed")
            honour_cancellation()

    # --- routing -------------------------------------------------------------------------------------
    def on_early_message(self, message: aiomqtt.Message) -> bool:
        """Before the session is up only hellos are handled; everything else waits."""
        if str(message.topic) != self.topics.bridge_instance:
            return False
        self._instance.heard(as_bytes(message.payload))
        return True

    def on_message(self, message: aiomqtt.Message) -> None:
        """One incoming message."""
        topic = str(message.topic)
        payload = as_bytes(message.payload)
        if topic == self.topics.bridge_instance:
            self._instance.heard(payload)
        elif topic == self.topics.ha_status:
            if payload.strip().lower() == b"online" and not self._ha_republish_pending:
                # A burst of `online` is one re-publish (and a full queue must not block the next one).
                self._ha_republish_pending = self._enqueue(self._ha_came_online)
        elif topic.startswith(f"{self.topics.discovery_prefix}/"):
            self._ha.seen_on_broker(topic, payload)
        elif (op := self.topics.request_op(topic)) is not None:
            self._on_request(topic, op, payload, retain=message.retain)
        elif (parsed := self.topics.parse_set(topic)) is not None:
            properties = message.properties
            self._on_command(
                topic,
                parsed[0],
                parsed[1],
                payload,
                retain=message.retain,
                response_topic=getattr(properties, "ResponseTopic", None) if properties else None,
                correlation=getattr(properties, "CorrelationData", None) if properties else None,
            )

    def _on_command(
        self,
        topic: str,
        device_id: str,
        key: str | None,
        payload: bytes,
        *,
        retain: bool,
        response_topic: str | None,
        correlation: bytes | None,
    ) -> None:
        """Every command gets exactly one answer: queued for its device, or an error result now."""
        if retain and not payload:
            return  # a cleared retained command (possibly our own clearing): nothing to do
        if retain:
            self._out.clear_retained(topic)  # so that no broker ever replays it
        runtime = self._registry.runtimes.get(device_id)
        if runtime is not None and runtime.provisional:
            runtime = None
        label = key or "set"
        command: Command | None = None
        # An unusable response topic is not answered on (the result topic says why); a usable one is
        # answered on whatever happens, an unparseable payload included.
        problem = self.topics.response_topic_problem(response_topic) if response_topic is not None else None
        reply_to = (response_topic, correlation) if problem is None else (None, None)
        try:
            command = commands.parse_command(
                key, payload, retain=retain, response_topic=reply_to[0], correlation=reply_to[1]
            )
            if problem is not None:
                raise CommandError(label, problem)  # parsed first: the answer keeps its transaction
            if runtime is None:
                raise CommandError(label, f"unknown device {device_id[:80]!r}")
            runtime.submit(command)  # answered by the device, within its deadline
        except CommandError as err:
            result = commands.result_payload(command, err.key, "error", error=err.reason)
            self._out.set_result(device_id, reply_to[0], reply_to[1], result)
            if runtime is not None:
                runtime.publish_state(force=True)

    def _on_request(self, topic: str, op: str, payload: bytes, *, retain: bool) -> None:
        """Queue a bridge request; retained ones and overflow are answered at once."""
        if retain:
            if payload:
                self._out.clear_retained(topic)  # never replayed on the next start
                self._out.response(op, bridge_requests.error("retained request ignored (it was cleared)"))
            return
        if not self._enqueue(lambda: self._request(op, payload)):
            self._out.response(op, bridge_requests.error("busy: too many pending requests, try again"))

    async def _request(self, op: str, payload: bytes) -> None:
        self._out.response(op, await bridge_requests.answer(self._requests, op, payload))

    def _enqueue(self, job: Callable[[], Awaitable[None]]) -> bool:
        try:
            self._jobs.put_nowait(job)
        except asyncio.QueueFull:
            return False
        return True

    async def _ha_came_online(self) -> None:
        await asyncio.sleep(random.uniform(0.5, 3.0))  # let Home Assistant subscribe first
        self._ha_republish_pending = False
        self._requests.output.republish_states()
