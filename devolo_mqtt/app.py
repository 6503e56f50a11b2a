"""The composition root: builds the shared resources once (one AsyncZeroconf, the MQTT session), wires
the parts together and runs them in one TaskGroup. It does no work of its own; whoever creates a
resource closes it (each device's client its own HTTP connections)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from ipaddress import ip_address
from typing import Any

import structlog
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt import __version__, heartbeat, memory
from devolo_mqtt.core.changes import ChangeFilter
from devolo_mqtt.core.clock import Clock, MonotonicClock
from devolo_mqtt.core.commands import Command
from devolo_mqtt.core.errors import DuplicateInstanceError
from devolo_mqtt.core.mac import display_mac
from devolo_mqtt.core.names import MacNames
from devolo_mqtt.core.store import JsonStore
from devolo_mqtt.core.tasks import FairLimiter
from devolo_mqtt.devices.actor import DeviceActor
from devolo_mqtt.devices.client import DevoloClient
from devolo_mqtt.devices.discovery import Discovery
from devolo_mqtt.devices.registry import DeviceRegistry
from devolo_mqtt.devices.rollout import Rollout
from devolo_mqtt.log import REDACTOR
from devolo_mqtt.mqtt import bridge_requests, inventory
from devolo_mqtt.mqtt.device_output import MqttDeviceOutput
from devolo_mqtt.mqtt.ha.configs import HaContext
from devolo_mqtt.mqtt.ha.publisher import HaPublisher
from devolo_mqtt.mqtt.instance import InstanceGuard
from devolo_mqtt.mqtt.pictures import NetworkPictures
from devolo_mqtt.mqtt.publisher import Publisher
from devolo_mqtt.mqtt.router import Router
from devolo_mqtt.mqtt.session import MqttSession, Outgoing, SessionHooks
from devolo_mqtt.mqtt.topics import Topics
from devolo_mqtt.plc.linkwatch import LinkWatch
from devolo_mqtt.plc.monitor import NetworkIds, NetworkMonitor, NetworkOutput
from devolo_mqtt.plc.watchdog import PlcWatchdog
from devolo_mqtt.settings import Settings
from devolo_mqtt.wifi.tracker import WifiOutput, WifiTracker

log = structlog.get_logger("devolo_mqtt.app")


class Bridge:
    """devolo devices ⇄ MQTT."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock = clock = clock or MonotonicClock()
        self._started = clock()
        REDACTOR.add_all(settings.secrets())
        s, ha = settings, settings.homeassistant
        self.topics = Topics(
            s.mqtt.base_topic, ha.discovery_prefix, ha.status_topic or f"{ha.discovery_prefix}/status"
        )
        self.instance = InstanceGuard(self.topics.bridge_instance, s.mqtt.base_topic)
        self.mqtt = MqttSession(
            s.mqtt,
            self.topics.bridge_state,
            client_id=s.mqtt.client_id or f"devolo-mqtt-{s.mqtt.instance_id or 'default'}",
        )
        self.publisher = Publisher(self.mqtt, self.topics)
        self.instance.answer = self.publisher.instance_hello
        self.ha = HaPublisher(
            self.publisher,
            HaContext(
                self.topics,
                s.mqtt.instance_id,
                link_expire_after=s.polling.link_expire_after,
                entity_ids=ha.entity_ids,
            ),
            enabled=ha.enabled,
            # The monitor and the registry are built below (they publish through this).
            link_name=lambda mac: self.networks.name_for(mac),  # noqa: PLW0108
            device_name=lambda node: self.output.display_name(node),  # noqa: PLW0108
            networks=lambda: self.networks.display_names(),  # noqa: PLW0108
            guest_qr=s.guest_wifi.publish_credentials,
        )
        names = MacNames(s.mac_names, s.data_dir / "mac_names.json")
        self.output = MqttDeviceOutput(s, self.publisher, self.ha)
        self.registry = DeviceRegistry(s, self.output, names, clock=clock)
        self.publisher.device_for_mac = self.registry.id_for_mac
        self.rollout = Rollout(lambda: self.registry.runtimes, event=self.output.event, clock=clock)
        self.wifi = WifiTracker(
            s.wifi,
            names,
            WifiOutput(
                client_list=self.publisher.client_list,
                wired_list=self.publisher.wired_list,
                presence=self.publisher.presence,
                event=self.publisher.event,
                tracker_config=lambda mac: self.ha.tracker(mac, names.get(mac), self.wifi.vendor(mac)),
            ),
            state_file=s.data_dir / "wifi_clients.json",
            clock=clock,
            heartbeat=s.polling.heartbeat,
        )
        pictures = NetworkPictures(self.publisher)
        self.networks = NetworkMonitor(
            interval=s.polling.network,
            ids=NetworkIds(s.data_dir / "networks.json"),
            members=lambda: list(self.registry.runtimes.values()),
            adapters=self.registry.adapters,
            names=self.registry.configured_name,
            configured_network=self.registry.configured_network,
            out=NetworkOutput(
                rates=self.publisher.rates,
                map=pictures.show,
                event=self.publisher.event,
                wired=self.wifi.update_wired,
                restart=self._watchdog_restart,
                networks_changed=self.ha.bridge,
                forget=pictures.forget,
            ),
            watch=LinkWatch(s.data_dir / "plc_links.json"),
            measured=self.output.network_measured,
            heartbeat=s.polling.heartbeat,
            clock=clock,
            watchdog=PlcWatchdog(s.plc_watchdog, clock),
        )
        self.output.attach(self.registry, networks=self.networks, wifi=self.wifi)
        self.router = Router(
            self.topics,
            publisher=self.publisher,
            registry=self.registry,
            ha=self.ha,
            instance=self.instance,
            requests=bridge_requests.Context(
                self.registry, self.output, self.ha, self.diagnostics, self.rollout
            ),
        )
        # A call holds a shared slot for half a second at most (a healthy device answers in
        # milliseconds): dead devices, retried by the library for seconds, never stall the others.
        self._limiter = FairLimiter(s.polling.max_concurrency, hold=0.5)
        self._health_filter = ChangeFilter(s.polling.heartbeat, clock)

    @property
    def runtimes(self) -> dict[str, DeviceActor]:
        """Every manageable device's runtime, by id."""
        return self.registry.runtimes

    def diagnostics(self) -> dict[str, Any]:
        """`bridge/request/diagnostics`: a redacted snapshot for bug reports (with the bridge's asyncio
        tasks: one per device and a few of its own)."""
        snapshot = inventory.diagnostics(
            self.settings,
            uptime=self._clock() - self._started,
            connected=self.mqtt.connected.is_set(),
            counters=self.mqtt.counters,
            runtimes=list(self.registry.runtimes.values()),
            adapters=list(self.registry.adapters.values()),
            networks={
                n: sorted(display_mac(m) for m in net.macs) for n, net in self.networks.networks.items()
            },
        )
        watchdog = self.networks.watchdog.status() if self.networks.watchdog else None
        return {
            **snapshot,
            "rollout": self.rollout.status,
            "plc_watchdog": watchdog,
            "tasks": len(asyncio.all_tasks()),
        }

    # --- running -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled; shutdown unwinds the exit stack (MQTT goodbye, then mDNS)."""
        async with AsyncExitStack() as stack:
            stack.callback(heartbeat.write, self.settings.data_dir, connected=False)  # last, on the way out
            stack.callback(JsonStore.flush_all)  # what the last seconds changed
            interfaces = self.settings.discovery.interfaces or InterfaceChoice.All
            zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            stack.push_async_callback(zeroconf.async_close)
            log.info("bridge_starting", version=__version__, devices_configured=len(self.settings.devices))
            try:
                await self._run_parts(zeroconf)
            except* DuplicateInstanceError as group:
                raise group.exceptions[0] from None  # the CLI exits 3 with its message

    async def _run_parts(self, zeroconf: AsyncZeroconf) -> None:
        async with asyncio.TaskGroup() as group:
            hooks = SessionHooks(
                on_connect=self._on_connect,
                on_message=self.router.on_message,
                farewell=self._farewell,
                subscriptions=self.router.subscriptions,
                before_publishing=self.instance.check,
                on_early_message=self.router.on_early_message,
                on_disconnect=lambda: heartbeat.write(self.settings.data_dir, connected=False),
            )
            group.create_task(self.mqtt.run(hooks), name="devolo_mqtt.mqtt")
            group.create_task(self._watch_instances(), name="devolo_mqtt.instance")
            group.create_task(self.router.run(), name="devolo_mqtt.requests")
            group.create_task(self._housekeeping(), name="devolo_mqtt.housekeeping")
            # No device is touched before the broker confirmed that no other bridge runs on these topics.
            await self.instance.cleared.wait()
            group.create_task(self.networks.run(), name="devolo_mqtt.networks")
            await self.wifi.start()
            group.create_task(self.wifi.run(), name="devolo_mqtt.wifi")
            self.registry.start(group, lambda ip, password: self._client(zeroconf, ip, password))
            if self.settings.discovery.enabled:
                discovery = Discovery(zeroconf, self.registry.found, self.registry.gone, accept=self._adopted)
                group.create_task(discovery.run(), name="devolo_mqtt.discovery")

    def _watchdog_restart(self, device: str, reason: str) -> None:
        """The PLC watchdog restarts a device: an ordinary `restart` command (its answer is logged)."""
        runtime = self.registry.runtimes.get(device)
        if runtime is not None:
            runtime.submit(Command({"restart": reason}, single_key=True))

    def _farewell(self) -> list[Outgoing]:
        """At shutdown: every command in hand answered (`bridge stopping`), then every device offline."""
        self.rollout.cancel()
        self.registry.stop()
        return [*self.output.farewell(), *self.instance.farewell()]

    async def _watch_instances(self) -> None:
        try:
            await self.instance.watch()
        except DuplicateInstanceError:
            self.mqtt.abandon()  # this run is the newcomer: leave the other one's state alone
            raise

    def _client(self, zeroconf: AsyncZeroconf, ip: str, password: str) -> DevoloClient:
        REDACTOR.add(password)
        p = self.settings.polling
        return DevoloClient(
            ip,
            password,
            zeroconf=zeroconf,
            limiter=self._limiter,
            timeout=p.request_timeout,
            connect_timeout=p.connect_timeout,
        )

    def _adopted(self, ip: str) -> bool:
        """Whether a device announced at `ip` belongs to this bridge (`discovery.networks`)."""
        networks = self.settings.discovery.networks
        return networks is None or any(ip_address(ip) in n for n in networks)

    async def _housekeeping(self) -> None:
        """Health every state interval; stale discovery configs cleared after the grace period."""
        while True:
            await asyncio.sleep(min(self.settings.polling.state, 60.0))
            uptime = self._clock() - self._started
            health = inventory.health(uptime, self.mqtt.counters, self.registry.runtimes.values())
            if self._health_filter.should_publish(inventory.health_essence(health)):
                self.publisher.health(health)
            heartbeat.write(self.settings.data_dir, connected=self.mqtt.connected.is_set())
            memory.give_back()  # what start-up bursts and reconnects freed (glibc keeps it otherwise)
            if self.ha.enabled and not self.ha.swept and uptime >= self.settings.homeassistant.stale_grace:
                keep = {f"devolo_{r.id}" for r in self.registry.runtimes.values()}
                keep |= {f"devolo_{c.topic_id}" for c in self.settings.devices if c.topic_id}
                self.ha.sweep(keep)
                self.mqtt.resubscribe()  # drop the discovery prefix from the (persistent) session

    def _on_connect(self) -> None:
        heartbeat.write(self.settings.data_dir, connected=True)
        if self.ha.listening:
            # The instance check's hello echoed after the retained configs the discovery subscription
            # brought (the broker sends them at SUBSCRIBE, before our later PUBLISH): every leftover of
            # an earlier run is in hand. Listening on would echo each of our own ~25 configs per device.
            self.ha.heard_all = True
            self.mqtt.resubscribe()
        self.publisher.bridge_online(inventory.info(self.settings))
        self.ha.bridge()
