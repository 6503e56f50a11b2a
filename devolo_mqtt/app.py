"""The composition root: builds the shared resources once, wires the parts together and runs them in
one TaskGroup. Whoever creates a resource closes it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from ipaddress import ip_address
from typing import Any, Literal

import aiomqtt
import httpx
import structlog
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt import __version__, bridge_requests, capabilities, commands, health, homeassistant, inventory
from devolo_mqtt.adapter import AdapterRuntime
from devolo_mqtt.backoff import Backoff
from devolo_mqtt.device import DevoloClient
from devolo_mqtt.discovery import Discovery, Found
from devolo_mqtt.errors import (
    CommandError,
    DeviceRefusedError,
    DuplicateInstanceError,
    honour_cancellation,
)
from devolo_mqtt.homeassistant import DiscoveryLedger, HaContext, HaDevice, HaLink
from devolo_mqtt.inbound import as_bytes
from devolo_mqtt.instance import InstanceGuard
from devolo_mqtt.log import REDACTOR
from devolo_mqtt.model import PLC, PLCNET, Json, PlcView
from devolo_mqtt.mqtt import MqttSession, Outgoing, SessionHooks
from devolo_mqtt.names import MacNames
from devolo_mqtt.network import NetworkIds, NetworkMonitor
from devolo_mqtt.poller import Command, DeviceRuntime
from devolo_mqtt.settings import DeviceConfig, Settings
from devolo_mqtt.state import iso, utc_now
from devolo_mqtt.topics import Topics, device_id_problem
from devolo_mqtt.wifi import WifiOutput, WifiTracker

log = structlog.get_logger("devolo_mqtt.app")
Node = DeviceRuntime | AdapterRuntime  # anything with a state topic
_MAX_PENDING_REQUESTS = 32  # bridge requests waiting for the worker; more are answered `busy`


def dumps(payload: Any) -> str:
    """Compact JSON, as published."""
    return json.dumps(payload, separators=(",", ":"))


class Bridge:
    """devolo devices ⇄ MQTT."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        ha = settings.homeassistant
        self.topics = Topics(
            settings.mqtt.base_topic, ha.discovery_prefix, ha.status_topic or f"{ha.discovery_prefix}/status"
        )
        self._ha = HaContext(
            self.topics, settings.mqtt.instance_id, link_expire_after=int(settings.polling.network * 3)
        )
        self.ledger = DiscoveryLedger()
        self._swept = False  # stale discovery configs of earlier runs cleared
        self.runtimes: dict[str, DeviceRuntime] = {}
        self._configs = [d for d in settings.devices if d.manageable]
        self.adapters: dict[str, AdapterRuntime] = {
            d.mac: AdapterRuntime(
                d, hooks=self, heartbeat=settings.polling.heartbeat, clock=clock, now=utc_now
            )
            for d in settings.devices
            if not d.manageable and d.enabled and d.mac
        }
        self.names = MacNames(settings.mac_names, settings.data_dir / "mac_names.json")
        self.wifi = WifiTracker(
            settings.wifi,
            self.names,
            WifiOutput(
                client_list=self._publish_client_list,
                presence=self._publish_presence,
                event=self.event,
                tracker_config=self._publish_tracker,
            ),
            state_file=settings.data_dir / "wifi_clients.json",
            clock=clock,
            heartbeat=settings.polling.heartbeat,
        )
        self.networks = NetworkMonitor(
            interval=settings.polling.network,
            ids=NetworkIds(settings.data_dir / "networks.json"),
            members=lambda: list(self.runtimes.values()),
            adapters=self.adapters,
            names=self._configured_name,
            configured_network=self._configured_network,
            publish=self._publish_rates,
            measured=self._network_measured,
        )
        self._started = clock()
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue(_MAX_PENDING_REQUESTS)
        self._ha_republish_pending = False
        self._refused: dict[str, str] = {}  # serial → why it is not bridged (logged once)
        self._group: asyncio.TaskGroup | None = None
        self._zeroconf: AsyncZeroconf | None = None
        self._http: httpx.AsyncClient | None = None
        self._limiter = asyncio.Semaphore(settings.polling.max_concurrency)
        REDACTOR.add_all(settings.secrets())
        client_id = settings.mqtt.client_id or f"devolo-mqtt-{settings.mqtt.instance_id or 'default'}"
        self.instance = InstanceGuard(self.topics.bridge_instance, settings.mqtt.base_topic)
        self.mqtt = MqttSession(
            settings.mqtt,
            self.topics.bridge_state,
            SessionHooks(
                on_connect=self._on_connect,
                on_message=self._on_message,
                farewell=self._farewell,
                subscriptions=self._subscriptions,
                before_publishing=self.instance.check,
                on_early_message=self._on_early_message,
            ),
            client_id=client_id,
        )
        self.instance.answer = lambda hello: self.mqtt.publish(
            self.topics.bridge_instance, hello, qos=1, retain=True
        )

    # --- running -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled; shutdown unwinds the exit stack (MQTT goodbye, then HTTP, then mDNS)."""
        async with AsyncExitStack() as stack:
            stack.callback(health.write, self.settings.data_dir, connected=False)  # last, on the way out
            interfaces = self.settings.discovery.interfaces or InterfaceChoice.All
            self._zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            stack.push_async_callback(self._zeroconf.async_close)
            self._http = await stack.enter_async_context(httpx.AsyncClient())
            log.info("bridge_starting", version=__version__, devices_configured=len(self.settings.devices))
            try:
                await self._run_parts(self._zeroconf)
            except* DuplicateInstanceError as group:
                raise group.exceptions[0] from None  # the CLI exits 3 with its message

    async def _run_parts(self, zeroconf: AsyncZeroconf) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self.mqtt.run(), name="devolo_mqtt.mqtt")
            group.create_task(self._watch_instances(), name="devolo_mqtt.instance")
            group.create_task(self._job_worker(), name="devolo_mqtt.jobs")
            group.create_task(self._housekeeping(), name="devolo_mqtt.housekeeping")
            # No device is touched before the broker confirmed that no other bridge runs on these topics.
            await self.instance.cleared.wait()
            group.create_task(self.networks.run(), name="devolo_mqtt.networks")
            await self.wifi.start()
            group.create_task(self.wifi.run(), name="devolo_mqtt.wifi")
            for adapter in self.adapters.values():
                self._publish_discovery(adapter)
            for config in self._configs:
                if config.enabled and config.ip is not None:
                    self._add(config.topic_id or f"ip-{config.ip}", str(config.ip), config)
            if self.settings.discovery.enabled:
                discovery = Discovery(zeroconf, self._on_found, self._on_gone)
                group.create_task(discovery.run(), name="devolo_mqtt.discovery")

    async def _watch_instances(self) -> None:
        try:
            await self.instance.watch()
        except DuplicateInstanceError:
            self.mqtt.abandon()  # this run is the newcomer: leave the other one's state alone
            raise

    def _add(self, device_id: str, ip: str, config: DeviceConfig | None) -> DeviceRuntime:
        assert self._group is not None
        runtime = DeviceRuntime(
            device_id,
            ip,
            config,
            settings=self.settings,
            client_factory=self._client,
            hooks=self,
            clock=self._clock,
        )
        self.runtimes[device_id] = runtime
        self._group.create_task(self._supervise(runtime), name=f"devolo_mqtt[{device_id}]")
        self._publish_inventory()
        return runtime

    def _client(self, ip: str, password: str) -> DevoloClient:
        assert self._zeroconf is not None
        assert self._http is not None
        REDACTOR.add(password)
        p = self.settings.polling
        return DevoloClient(
            ip,
            password,
            zeroconf=self._zeroconf,
            http=self._http,
            limiter=self._limiter,
            timeout=p.request_timeout,
            connect_timeout=p.connect_timeout,
        )

    async def _supervise(self, runtime: DeviceRuntime) -> None:
        """The outermost per-device loop: the only place that catches any Exception."""
        backoff = Backoff(5.0, self.settings.polling.offline_retry_max)
        while True:
            refused: DeviceRefusedError | None = None
            try:
                await runtime.run()
            except* DeviceRefusedError as group:
                refused = group.exceptions[0]  # type: ignore[assignment]
            except* Exception as group:
                log.exception("device_task_crashed", device=runtime.id, errors=len(group.exceptions))
                runtime.vanished()
            if refused is not None:
                self.runtimes.pop(runtime.id, None)
                self._refuse(refused.serial, runtime.ip, refused.reason)
                self._publish_inventory()
                return
            await asyncio.sleep(backoff.next())

    def _refuse(self, serial: str, ip: str, reason: str) -> None:
        """A device that cannot be bridged: one log line and one event, however often it is announced."""
        if serial in self._refused:
            return
        self._refused[serial] = reason
        shown = serial[:80]
        log.error("device_refused", serial=shown, ip=ip, reason=reason)
        self.event("device_refused", {"serial": shown, "ip": ip, "reason": reason})

    def _id_problem(self, device_id: str, runtime: DeviceRuntime | None) -> str | None:
        """Why `device_id` cannot be used for `runtime` (a new one when None)."""
        if problem := device_id_problem(device_id):
            return problem
        other = self.runtimes.get(device_id)
        taken = (other is not None and other is not runtime) or any(
            a.id.lower() == device_id.lower() for a in self.adapters.values()
        )
        return f"id {device_id!r} is already used by another device" if taken else None

    async def _job_worker(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except Exception:  # a failing job must never end the bridge (requests answer themselves)
                log.exception("bridge_job_failed")
            honour_cancellation()

    async def _housekeeping(self) -> None:
        """Health every state interval; stale discovery configs cleared after the grace period."""
        while True:
            await asyncio.sleep(min(self.settings.polling.state, 60.0))
            self._publish_health()
            health.write(self.settings.data_dir, connected=self.mqtt.connected.is_set())
            if not self._swept and self._clock() - self._started >= self.settings.homeassistant.stale_grace:
                self._swept = True
                self._sweep_discovery()

    # --- discovery callbacks -------------------------------------------------------------------------
    def _config_for(self, serial: str) -> DeviceConfig | None:
        return next((c for c in self._configs if c.serial == serial), None)

    def _on_found(self, found: Found) -> None:
        networks = self.settings.discovery.networks
        if networks is not None and not any(ip_address(found.ip) in n for n in networks):
            return  # announced outside the networks this bridge serves
        if found.serial in self._refused:
            return
        config = self._config_for(found.serial)
        if config is not None and not config.enabled:
            return
        for runtime in self.runtimes.values():
            serial = (
                runtime.identity_.serial if runtime.identity_ else (runtime.config and runtime.config.serial)
            )
            if serial == found.serial:
                runtime.move(found.ip)
                return
            if runtime.ip == found.ip:
                return  # a configured address still being resolved
        device_id = (config.topic_id if config else None) or found.serial
        if problem := self._id_problem(device_id, None):
            self._refuse(found.serial, found.ip, problem)
            return
        log.debug("device_discovered", device=device_id, ip=found.ip, product=found.product)
        self.event("device_discovered", {"device": device_id, "ip": found.ip, "product": found.product})
        self._add(device_id, found.ip, config)

    def _on_gone(self, serial: str) -> None:
        for runtime in self.runtimes.values():
            if runtime.identity_ and runtime.identity_.serial == serial:
                runtime.vanished()

    # --- RuntimeHooks --------------------------------------------------------------------------------
    def device_identified(self, runtime: DeviceRuntime) -> None:
        """Settle the device's id, then publish discovery configs and inventory.

        Raises DeviceRefusedError when the serial the device reports cannot become its id.
        """
        if runtime.config is None or runtime.config.topic_id is None:
            serial = runtime.identity.serial
            if problem := self._id_problem(serial, runtime):
                hint = " (give it an `id` in the config)" if runtime.config is not None else ""
                raise DeviceRefusedError(serial, problem + hint)
            self._rename(runtime, serial)
        self._publish_discovery(runtime)
        self._publish_inventory()
        if runtime.identity.supports(PLCNET):
            self.networks.device_joined(runtime)

    def _rename(self, runtime: DeviceRuntime, device_id: str) -> None:
        if runtime.id == device_id:
            return
        old, was_provisional = runtime.id, runtime.provisional
        self.runtimes.pop(old, None)
        runtime.renamed(device_id)
        self.runtimes[device_id] = runtime
        if was_provisional:  # clear what versions before 0.2 left under the address-based id
            for topic in (
                self.topics.availability(old),
                self.topics.state(old),
                self.topics.wifi_clients(old),
            ):
                self.mqtt.publish(topic, b"", retain=True)

    def device_state(self, runtime: Node, state: dict[str, Json]) -> None:
        """Publish a device's state object (retained)."""
        self.mqtt.publish(self.topics.state(runtime.id), dumps(state), retain=True)

    def source_read(self, runtime: DeviceRuntime, source: str, value: Any) -> None:
        """Station lists go to the WiFi tracker."""
        if source == "stations":
            self.wifi.update_ap(runtime.id, value)

    def device_availability(self, runtime: Node) -> None:
        """Publish a device's availability (retained, QoS 1); an AP going offline loses its clients."""
        if runtime.online is False and isinstance(runtime, DeviceRuntime):
            self.wifi.ap_lost(runtime.id)
        if runtime.identity_ is not None or runtime.online is not None:
            self.mqtt.publish(
                self.topics.availability(runtime.id),
                "online" if runtime.online else "offline",
                retain=True,
                qos=1,
            )
        self._publish_inventory()

    def _shared_changed(self, changed: DeviceRuntime, source_name: str) -> None:
        source = capabilities.SOURCE_BY_NAME[source_name]
        for runtime in self.runtimes.values():
            if runtime is not changed and runtime.identity_ and runtime.identity_.supports(source.feature):
                runtime.request_refresh((source_name,))

    def event(self, kind: str, data: dict[str, Json]) -> None:
        """A non-retained event on `bridge/event`."""
        self.mqtt.publish(self.topics.bridge_event, dumps({"type": kind, "ts": iso(utc_now()), "data": data}))

    async def execute(self, runtime: DeviceRuntime, command: Command) -> None:
        """Run a command for a device."""
        await commands.execute(
            runtime,
            command,
            answer=lambda c, p: self._answer(runtime.id, c, p),
            shared_changed=self._shared_changed,
        )

    def _answer(self, device_id: str, command: Command | None, payload: dict[str, Any]) -> None:
        text = dumps(payload)
        self.mqtt.publish(self.topics.set_result(device_id), text)
        if command is not None and command.response_topic:
            self.mqtt.publish(command.response_topic, text, correlation=command.correlation)
        if payload["status"] == "error":
            self.event(
                "command_failed", {"device": device_id, "key": payload["key"], "error": payload["error"]}
            )

    # --- MQTT callbacks ------------------------------------------------------------------------------
    def _subscriptions(self) -> list[str]:
        subs = [self.topics.bridge_instance, *self.topics.set_subscriptions, self.topics.bridge_requests]
        if self.settings.homeassistant.enabled:
            subs.append(self.topics.ha_status)
        if self.settings.homeassistant.enabled and not self._swept:
            # Only to find our own stale configs of earlier runs; after the sweep, reconnects skip it
            # (on a busy broker it replays every integration's retained configs).
            subs.append(self.topics.discovery_subscription)
        return subs

    def _on_connect(self) -> None:
        health.write(self.settings.data_dir, connected=True)
        self.mqtt.publish(self.topics.bridge_state, "online", retain=True, qos=1)
        self.mqtt.publish(self.topics.bridge_info, dumps(inventory.info(self.settings)), retain=True)
        if self.settings.homeassistant.enabled:
            for topic, payload in homeassistant.bridge_configs(self._ha).items():
                self._publish_config(topic, dumps(payload))

    def _farewell(self) -> list[Outgoing]:
        return [
            Outgoing(self.topics.availability(r.id), b"offline", 1, True)
            for r in self._nodes()
            if r.identity_ is not None
        ]

    def _nodes(self) -> list[Node]:
        return [*self.runtimes.values(), *self.adapters.values()]

    def _on_early_message(self, message: aiomqtt.Message) -> bool:
        if str(message.topic) != self.topics.bridge_instance:
            return False  # held until the session is up
        self.instance.heard(as_bytes(message.payload))
        return True

    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        payload = as_bytes(message.payload)
        if topic == self.topics.bridge_instance:
            self.instance.heard(payload)
        elif topic == self.topics.ha_status:
            if payload.strip().lower() == b"online" and not self._ha_republish_pending:
                self._ha_republish_pending = True  # a burst of `online` is one re-publish
                self._enqueue(self._ha_came_online)
        elif topic.startswith(f"{self.topics.discovery_prefix}/"):
            if (not payload or homeassistant.is_ours(self._ha, payload)) and self.ledger.found_on_broker(
                topic, payload
            ):
                log.info("discovery_stale_cleared", topic=topic)
                self._publish_config(topic, "")
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
            self.mqtt.publish(topic, b"", retain=True)  # clear it, so no broker ever replays it
        runtime = self.runtimes.get(device_id)
        if runtime is not None and runtime.provisional:
            runtime = None
        label = key or "set"
        command: Command | None = None
        try:
            if response_topic is not None and (problem := self.topics.response_topic_problem(response_topic)):
                raise CommandError(label, problem)
            command = commands.parse_command(
                key, payload, retain=retain, response_topic=response_topic, correlation=correlation
            )
            if runtime is None:
                raise CommandError(label, f"unknown device {device_id[:80]!r}")
            runtime.commands.put_nowait(command)
        except CommandError as err:
            self._answer(
                device_id, command, commands.result_payload(command, err.key, "error", error=err.reason)
            )
            if runtime is not None:
                runtime.publish_state(force=True)
        except asyncio.QueueFull:
            reason = "busy: too many queued commands for this device"
            self._answer(device_id, command, commands.result_payload(command, label, "error", error=reason))

    async def _ha_came_online(self) -> None:
        await asyncio.sleep(random.uniform(0.5, 3.0))  # let Home Assistant subscribe first
        self._ha_republish_pending = False
        for runtime in list(self.runtimes.values()):
            runtime.publish_state(force=True)
            self.device_availability(runtime)

    # --- bridge requests -----------------------------------------------------------------------------
    def _on_request(self, topic: str, op: str, payload: bytes, *, retain: bool) -> None:
        """Queue a bridge request for the worker; retained ones and overflow are answered at once."""
        if retain:
            if payload:
                self.mqtt.publish(topic, b"", retain=True)  # never replayed on the next start
                self._respond(op, bridge_requests.error("retained request ignored (it was cleared)"))
            return
        if not self._enqueue(lambda: self._bridge_request(op, payload)):
            self._respond(op, bridge_requests.error("busy: too many pending requests, try again"))

    def _enqueue(self, job: Callable[[], Awaitable[None]]) -> bool:
        try:
            self._jobs.put_nowait(job)
        except asyncio.QueueFull:
            return False
        return True

    async def _bridge_request(self, op: str, payload: bytes) -> None:
        self._respond(op, await bridge_requests.answer(self, op, payload))

    def _respond(self, op: str, response: dict[str, Any]) -> None:
        self.mqtt.publish(self.topics.bridge_response(op), dumps(response))

    def mac_renamed(self, mac: str) -> None:
        """Re-publish everything that shows a MAC's name."""
        self.wifi.renamed(mac)
        for node in self._nodes():
            if node.identity_ is not None and node.identity_.mac == mac:
                self._publish_discovery(node)

    def republish_discovery(self) -> int:
        """Every discovery config again; how many."""
        items = self.ledger.republish()
        for topic, text in items:
            self._publish_config(topic, text)
        return len(items)

    def purge_discovery(self) -> int:
        """Empty every discovery config of this bridge; how many."""
        topics = [*self.ledger.published, *self.ledger.found]
        for topic in topics:
            self._publish_config(topic, "")
        self.ledger = DiscoveryLedger()
        return len(topics)

    # --- publishing helpers --------------------------------------------------------------------------
    def _ha_device(self, runtime: Node) -> HaDevice:
        identity = runtime.identity
        plc: PlcView | None = runtime.data(PLC)
        links = (
            tuple(
                HaLink(dst, self.networks.name_for(dst), enabled=bool({identity.mac, dst} & plc.router_macs))
                for dst in sorted(plc.links)
            )
            if plc
            else ()
        )
        return HaDevice(
            links=links,
            id=runtime.id,
            serial=identity.serial,
            name=runtime.name,
            model=identity.product,
            mt=identity.mt,
            firmware=runtime.firmware,
            mac=identity.mac,
            ip=identity.ip,
            capabilities=tuple(capabilities.supported(identity)),
        )

    def _publish_discovery(self, runtime: Node) -> None:
        if not self.settings.homeassistant.enabled:
            return
        configs = homeassistant.device_configs(self._ha, self._ha_device(runtime))
        for topic, text in self.ledger.update(f"devolo_{runtime.id}", configs):
            self._publish_config(topic, text)

    def _publish_config(self, topic: str, text: str) -> None:
        self.mqtt.publish(topic, text, retain=True, qos=1)

    def _sweep_discovery(self) -> None:
        keep = {f"devolo_{r.id}" for r in self.runtimes.values()}
        keep |= {f"devolo_{c.topic_id}" for c in self.settings.devices if c.topic_id}
        keep.add("devolo_bridge" + self._ha.suffix())
        for topic in self.ledger.sweep(keep):
            log.info("discovery_stale_cleared", topic=topic)
            self._publish_config(topic, "")

    def _publish_inventory(self) -> None:
        items = [inventory.adapter_entry(a) for a in self.adapters.values()]
        items += [
            inventory.unmanaged_entry(mac, u, self.networks.name_for(mac, u.device.name))
            for mac, u in self.networks.unmanaged.items()
        ]
        items += [inventory.device_entry(r) for r in self.runtimes.values()]
        self.mqtt.publish(self.topics.bridge_devices, dumps(items), retain=True)

    # --- PLC networks --------------------------------------------------------------------------------
    def _configured(self, mac: str, attr: Literal["name", "network"]) -> str | None:
        """A setting of the device with this PLC MAC, from its config (found by MAC or by serial)."""
        configs = [n.config for n in self._nodes() if n.identity_ is not None and n.identity_.mac == mac]
        configs += [c for c in self.settings.devices if c.mac == mac]
        return next((value for c in configs if c is not None and (value := getattr(c, attr))), None)

    def _configured_name(self, mac: str) -> str | None:
        return self.names.get(mac) or self._configured(mac, "name")

    def _configured_network(self, mac: str) -> str | None:
        return self._configured(mac, "network")

    # --- WiFi ----------------------------------------------------------------------------------------
    def _publish_client_list(self, ap: str, payload: dict[str, Any]) -> None:
        self.mqtt.publish(self.topics.wifi_clients(ap), dumps(payload), retain=True)

    def _publish_presence(self, mac: str, payload: dict[str, Any]) -> None:
        self.mqtt.publish(self.topics.wifi_presence(mac), dumps(payload), retain=True)

    def _publish_tracker(self, mac: str) -> None:
        if not self.settings.homeassistant.enabled:
            return
        topic, payload = homeassistant.tracker_config(
            self._ha, mac, self.names.get(mac), self.wifi.vendor(mac)
        )
        for out_topic, text in self.ledger.update(self.topics.discovery_node(topic), {topic: payload}):
            self._publish_config(out_topic, text)

    def _publish_rates(self, network_id: str, matrix: object) -> None:
        self.mqtt.publish(self.topics.network_rates(network_id), dumps(matrix), retain=True)

    def _network_measured(self, macs: list[str]) -> None:
        for node in self._nodes():
            if node.identity_ is not None and node.identity_.mac in macs:
                self._publish_discovery(node)  # new links get sensors; the ledger skips unchanged ones
        self._publish_inventory()

    def _publish_health(self) -> None:
        payload = inventory.health(self._clock() - self._started, self.mqtt.counters, self.runtimes.values())
        self.mqtt.publish(self.topics.bridge_health, dumps(payload), retain=True)
