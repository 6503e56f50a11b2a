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
from typing import Any, Literal

import aiomqtt
import httpx
import structlog
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt import __version__, bridge_requests, capabilities, commands, health, homeassistant, inventory
from devolo_mqtt.adapter import AdapterRuntime
from devolo_mqtt.capabilities import Json
from devolo_mqtt.device import DevoloClient
from devolo_mqtt.discovery import Discovery, Found
from devolo_mqtt.errors import CommandError, DevoloMqttError, honour_cancellation
from devolo_mqtt.homeassistant import DiscoveryLedger, HaContext, HaDevice, HaLink
from devolo_mqtt.log import REDACTOR
from devolo_mqtt.model import PLC, PLCNET, PlcView
from devolo_mqtt.mqtt import MqttSession, Outgoing, SessionHooks
from devolo_mqtt.names import MacNames
from devolo_mqtt.network import NetworkIds, NetworkMonitor
from devolo_mqtt.poller import Command, DeviceRuntime
from devolo_mqtt.settings import DeviceConfig, Settings
from devolo_mqtt.state import iso, utc_now
from devolo_mqtt.topics import Topics
from devolo_mqtt.wifi import WifiOutput, WifiTracker

log = structlog.get_logger("devolo_mqtt.app")
Node = DeviceRuntime | AdapterRuntime  # anything with a state topic


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
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._group: asyncio.TaskGroup | None = None
        self._zeroconf: AsyncZeroconf | None = None
        self._http: httpx.AsyncClient | None = None
        self._limiter = asyncio.Semaphore(settings.polling.max_concurrency)
        REDACTOR.add_all(settings.secrets())
        client_id = settings.mqtt.client_id or f"devolo-mqtt-{settings.mqtt.instance_id or 'default'}"
        self.mqtt = MqttSession(
            settings.mqtt,
            self.topics.bridge_state,
            SessionHooks(
                on_connect=self._on_connect,
                on_message=self._on_message,
                farewell=self._farewell,
                subscriptions=self._subscriptions,
            ),
            client_id=client_id,
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
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self.mqtt.run(), name="devolo_mqtt.mqtt")
                group.create_task(self._job_worker(), name="devolo_mqtt.jobs")
                group.create_task(self._housekeeping(), name="devolo_mqtt.housekeeping")
                group.create_task(self.networks.run(), name="devolo_mqtt.networks")
                await self.wifi.start()
                group.create_task(self.wifi.run(), name="devolo_mqtt.wifi")
                for adapter in self.adapters.values():
                    self._publish_discovery(adapter)
                for config in self._configs:
                    if config.enabled and config.ip is not None:
                        self._add(config.topic_id or f"ip-{config.ip}", str(config.ip), config)
                if self.settings.discovery.enabled:
                    discovery = Discovery(self._zeroconf, self._on_found, self._on_gone)
                    group.create_task(discovery.run(), name="devolo_mqtt.discovery")

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
        delay = 5.0
        while True:
            try:
                await runtime.run()
            except* Exception as group:
                log.exception("device_task_crashed", device=runtime.id, errors=len(group.exceptions))
                runtime.vanished()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.polling.offline_retry_max)

    async def _job_worker(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except DevoloMqttError as err:
                log.warning("bridge_job_failed", error=str(err))
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
        log.info("device_discovered", device=device_id, ip=found.ip, product=found.product)
        self.event("device_discovered", {"device": device_id, "ip": found.ip, "product": found.product})
        self._add(device_id, found.ip, config).discovered_serial = found.serial

    def _on_gone(self, serial: str) -> None:
        for runtime in self.runtimes.values():
            if runtime.identity_ and runtime.identity_.serial == serial:
                runtime.vanished()

    # --- RuntimeHooks --------------------------------------------------------------------------------
    def device_identified(self, runtime: DeviceRuntime) -> None:
        """Publish discovery configs and inventory once a device's features are known."""
        if runtime.config is None or runtime.config.topic_id is None:
            self._rename(runtime, runtime.identity.serial)
        self._publish_discovery(runtime)
        self._publish_inventory()
        if runtime.identity.supports(PLCNET):
            self.networks.device_joined()

    def _rename(self, runtime: DeviceRuntime, device_id: str) -> None:
        if runtime.id != device_id:
            self.runtimes.pop(runtime.id, None)
            runtime.id = device_id
            self.runtimes[device_id] = runtime

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
                try:
                    runtime.commands.put_nowait(Command({}, internal_refresh=(source_name,)))
                except asyncio.QueueFull:
                    log.warning("refresh_dropped", device=runtime.id, source=source_name)

    def event(self, kind: str, data: dict[str, Json]) -> None:
        """A non-retained event on `bridge/event`."""
        self.mqtt.publish(self.topics.bridge_event, dumps({"type": kind, "ts": iso(utc_now()), "data": data}))

    async def execute(self, runtime: DeviceRuntime, command: Command) -> None:
        """Run a command (or an internal refresh) for a device."""
        if command.internal_refresh:
            try:
                await runtime.refresh(command.internal_refresh)
            except DevoloMqttError as err:
                log.info("refresh_failed", device=runtime.id, error=str(err))
            return
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
        subs = [*self.topics.set_subscriptions, self.topics.bridge_requests]
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

    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        payload = (
            message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        )
        if topic == self.topics.ha_status:
            if payload.strip().lower() == b"online":
                self._jobs.put_nowait(self._ha_came_online)
            return
        if topic.startswith(f"{self.topics.discovery_prefix}/"):
            if homeassistant.is_ours(self._ha, payload) or not payload:
                self.ledger.found_on_broker(topic, payload)
            return
        if (op := self.topics.request_op(topic)) is not None:
            self._jobs.put_nowait(lambda: self._bridge_request(op, payload))
            return
        if (parsed := self.topics.parse_set(topic)) is not None:
            self._on_command(topic, parsed[0], parsed[1], message)

    def _on_command(self, topic: str, device_id: str, key: str | None, message: aiomqtt.Message) -> None:
        if message.retain and not message.payload:
            return  # a cleared retained command (possibly our own clearing): nothing to do
        if message.retain:
            self.mqtt.publish(topic, b"", retain=True)  # clear it, so no broker ever replays it
        runtime = self.runtimes.get(device_id)
        try:
            command = commands.parse_command(key, message)
            if runtime is None:
                raise CommandError(key or "set", f"unknown device {device_id!r}")
            runtime.commands.put_nowait(command)
        except CommandError as err:
            self._answer(device_id, None, commands.result_payload(None, err.key, "error", error=err.reason))
            if runtime is not None:
                runtime.publish_state(force=True)
        except asyncio.QueueFull:
            self._answer(
                device_id,
                None,
                commands.result_payload(None, key or "set", "error", error="too many queued commands"),
            )

    async def _ha_came_online(self) -> None:
        await asyncio.sleep(random.uniform(0.5, 3.0))  # let Home Assistant subscribe first
        for runtime in list(self.runtimes.values()):
            runtime.publish_state(force=True)
            self.device_availability(runtime)

    # --- bridge requests -----------------------------------------------------------------------------
    async def _bridge_request(self, op: str, payload: bytes) -> None:
        response = await bridge_requests.answer(self, op, payload)
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
        for out_topic, text in self.ledger.update(topic.split("/")[-3], {topic: payload}):
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
