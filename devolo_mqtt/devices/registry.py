"""The devices of this bridge: which exist (configured, remembered, found over mDNS), their ids and
refusals, and the supervision of each device's actor. What their life means on MQTT is the output's
(`mqtt/device_output.py`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Literal, Protocol

import structlog

from devolo_mqtt.core import capabilities, commands
from devolo_mqtt.core.backoff import Backoff
from devolo_mqtt.core.capabilities import SourceKey
from devolo_mqtt.core.clock import Clock, utc_now
from devolo_mqtt.core.errors import DeviceRefusedError
from devolo_mqtt.core.names import MacNames
from devolo_mqtt.core.store import JsonStore, StoredInts
from devolo_mqtt.devices.actor import STAGGER, ClientFactory, DeviceActor, DeviceClient, DeviceOutput
from devolo_mqtt.devices.adapter import AdapterRuntime
from devolo_mqtt.devices.discovery import Found
from devolo_mqtt.mqtt.topics import device_id_problem
from devolo_mqtt.settings import DeviceConfig, Settings

log = structlog.get_logger("devolo_mqtt.devices.registry")
REMEMBER_DAYS = 7  # a device no run has reached for this long is no longer expected at start


Node = DeviceActor | AdapterRuntime  # anything with a state topic


class RegistryOutput(DeviceOutput, Protocol):
    """What the registry itself reports: devices found, refused, renamed and the inventory."""

    def discover(self, node: Node) -> None: ...

    def forget(self, device_id: str) -> None: ...

    def publish_inventory(self) -> None: ...

    def answer(self, device_id: str, command: commands.Command, payload: dict[str, Any]) -> None: ...


class DeviceRegistry:
    """Every device runtime and configured adapter, by id."""

    def __init__(
        self,
        settings: Settings,
        output: RegistryOutput,
        names: MacNames,
        *,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._out = output
        self.names = names
        self._clock = clock
        self.runtimes: dict[str, DeviceActor] = {}
        self._configs = [d for d in settings.devices if d.manageable]
        self.adapters: dict[str, AdapterRuntime] = {
            d.mac: AdapterRuntime(
                d, hooks=output, heartbeat=settings.polling.heartbeat, clock=clock, now=utc_now
            )
            for d in settings.devices
            if not d.manageable and d.enabled and d.mac
        }
        # One guest WiFi duration for the mesh (every access point shows it), kept across restarts.
        self._guest_durations = StoredInts(
            settings.data_dir / "guest_wifi.json", settings.guest_wifi.default_duration
        )
        self._refused: dict[str, str] = {}  # serial → why it is not bridged (logged once)
        self._executor = commands.Executor(answer=output.answer, shared_changed=self._shared_changed)
        self._group: asyncio.TaskGroup | None = None
        self._client_factory: ClientFactory | None = None
        # Devices earlier runs reached, with their last address: known (and commandable) from the first
        # message on, before mDNS has found them again.
        self._known = JsonStore(settings.data_dir / "devices.json")
        self._remembered = _load_remembered(self._known.load())
        self._expected()

    def _expected(self) -> None:
        """A runtime for every device configured by address and every device an earlier run reached:
        commands for them wait for their connection instead of being refused as unknown."""
        for config in self._configs:
            if not config.enabled:
                continue
            if config.ip is not None:
                remembered = self._remembered.get(f"ip-{config.ip}")
                device_id = config.topic_id or (remembered or {}).get("id") or f"ip-{config.ip}"
                self._add(device_id, str(config.ip), config)
            elif config.topic_id is not None:  # by serial: connects once mDNS says where it is
                self._add(
                    config.topic_id, (self._remembered.get(config.topic_id) or {}).get("ip", ""), config
                )
        for device_id, entry in self._remembered.items():
            if device_id.startswith("ip-") or device_id in self.runtimes:
                continue
            configured = next((c for c in self._configs if device_id in (c.topic_id, c.serial)), None)
            if (configured is None or configured.enabled) and not self._id_problem(device_id, None):
                self._add(device_id, entry["ip"], configured, serial=entry.get("serial"))

    def start(self, group: asyncio.TaskGroup, client_factory: ClientFactory) -> None:
        """Adapters' discovery configs, then every expected device's task."""
        self._group, self._client_factory = group, client_factory
        for adapter in self.adapters.values():
            self._out.discover(adapter)
        for runtime in list(self.runtimes.values()):
            self._start(runtime)
        self._out.publish_inventory()

    def stop(self) -> None:
        """The bridge stops: every device answers the commands it holds (`bridge stopping`)."""
        for runtime in self.runtimes.values():
            runtime.abandon()

    def nodes(self) -> list[Node]:
        """Every device with a state topic."""
        return [*self.runtimes.values(), *self.adapters.values()]

    # --- finding devices -----------------------------------------------------------------------------
    def found(self, found: Found) -> None:
        """mDNS announced a device (again)."""
        if found.serial in self._refused:
            return
        config = next((c for c in self._configs if c.serial == found.serial), None)
        if config is not None and not config.enabled:
            return
        for runtime in self.runtimes.values():
            if runtime.serial == found.serial:
                runtime.move(found.ip)
                return
            if runtime.ip == found.ip:
                return  # a configured address still being resolved
        device_id = (config.topic_id if config else None) or found.serial
        if problem := self._id_problem(device_id, None):
            self._refuse(found.serial, found.ip, problem)
            return
        log.debug("device_discovered", device=device_id, ip=found.ip, product=found.product)
        self._out.event("device_discovered", {"device": device_id, "ip": found.ip, "product": found.product})
        self._add(device_id, found.ip, config)

    def gone(self, serial: str) -> None:
        """mDNS says a device left."""
        for runtime in self.runtimes.values():
            if runtime.identity_ and runtime.identity_.serial == serial:
                runtime.vanished()

    def _add(
        self, device_id: str, ip: str, config: DeviceConfig | None, *, serial: str | None = None
    ) -> None:
        runtime = DeviceActor(
            device_id,
            ip,
            config,
            settings=self._settings,
            client_factory=self._client,
            hooks=self._out,
            executor=self._executor,
            clock=self._clock,
            guest_durations=self._guest_durations,
            stagger=len(self.runtimes) * STAGGER,
        )
        runtime.serial_hint = (
            serial or (config.serial if config else None) or (device_id if config is None else None)
        )
        self.runtimes[device_id] = runtime
        if self._group is not None and not self._start(runtime):
            del self.runtimes[device_id]
            return
        if self._group is not None:
            self._out.publish_inventory()

    def _client(self, ip: str, password: str) -> DeviceClient:
        assert self._client_factory is not None, "devices are started by start()"
        return self._client_factory(ip, password)

    def _start(self, runtime: DeviceActor) -> bool:
        assert self._group is not None
        supervision = self._supervise(runtime)
        try:
            self._group.create_task(supervision, name=f"devolo_mqtt[{runtime.id}]")
        except RuntimeError:  # the bridge is stopping (its task group takes no new task): no new device
            supervision.close()
            return False
        return True

    async def _supervise(self, runtime: DeviceActor) -> None:
        """The outermost per-device loop: the only place that catches any Exception."""
        backoff = Backoff(5.0, self._settings.polling.offline_retry_max)
        while True:
            refused: DeviceRefusedError | None = None
            try:
                await runtime.run()
            except* DeviceRefusedError as group:
                refused = group.exceptions[0]  # type: ignore[assignment]
            except* Exception as group:
                log.exception("device_task_crashed", device=runtime.id, errors=len(group.exceptions))
            if refused is not None:
                self.runtimes.pop(runtime.id, None)
                self._refuse(refused.serial, runtime.ip, refused.reason)
                self._out.publish_inventory()
                return
            await asyncio.sleep(backoff.next())

    def _refuse(self, serial: str, ip: str, reason: str) -> None:
        """A device that cannot be bridged: one log line and one event, however often it is announced."""
        if serial in self._refused:
            return
        self._refused[serial] = reason
        shown = serial[:80]
        log.error("device_refused", serial=shown, ip=ip, reason=reason)
        self._out.event("device_refused", {"serial": shown, "ip": ip, "reason": reason})

    def _id_problem(self, device_id: str, runtime: DeviceActor | None) -> str | None:
        """Why `device_id` cannot be used for `runtime` (a new one when None)."""
        if problem := device_id_problem(device_id):
            return problem
        other = self.runtimes.get(device_id)
        taken = (other is not None and other is not runtime) or any(
            a.id.lower() == device_id.lower() for a in self.adapters.values()
        )
        return f"id {device_id!r} is already used by another device" if taken else None

    # --- ids ---------------------------------------------------------------------------------------------
    def settle(self, runtime: DeviceActor) -> None:
        """The device identified itself: its id becomes final (its serial, unless configured), and it is
        remembered for the next run. Raises DeviceRefusedError when the serial cannot become its id."""
        if runtime.config is None or runtime.config.topic_id is None:
            serial = runtime.identity.serial
            if problem := self._id_problem(serial, runtime):
                hint = " (give it an `id` in the config)" if runtime.config is not None else ""
                raise DeviceRefusedError(serial, problem + hint)
            self._rename(runtime, serial)
        self._remember(runtime)

    def _remember(self, runtime: DeviceActor) -> None:
        """Keep the device (id, serial, address) for the next run's first messages."""
        identity = runtime.identity
        entry = {
            "id": runtime.id,
            "ip": runtime.ip,
            "serial": identity.serial,
            "seen": utc_now().date().isoformat(),
        }
        key = (
            f"ip-{runtime.config.ip}"
            if runtime.config and runtime.config.ip and not runtime.config.topic_id
            else runtime.id
        )
        if self._remembered.get(key) != entry:
            self._remembered[key] = entry
            self._known.save_soon(lambda: self._remembered)

    def _rename(self, runtime: DeviceActor, device_id: str) -> None:
        if runtime.id == device_id:
            return
        old, was_provisional = runtime.id, runtime.provisional
        self.runtimes.pop(old, None)
        runtime.renamed(device_id)
        self.runtimes[device_id] = runtime
        if was_provisional:
            self._out.forget(old)  # what versions before 0.2 left under the address-based id

    def _shared_changed(self, changed: commands.Device, key: SourceKey[Any]) -> None:
        """A write changed what a whole mesh shares: its other access points are read again (not those
        of another mesh, e.g. a garden house's own)."""
        source = capabilities.SOURCE_BY_KEY[key]
        mesh = _mesh(changed)
        for runtime in self.runtimes.values():
            if (
                runtime is changed
                or runtime.identity_ is None
                or not runtime.identity_.supports(source.feature)
            ):
                continue
            if mesh is None or runtime.mesh in (None, mesh):
                runtime.request_refresh((key,))

    def id_for_mac(self, mac: str) -> str | None:
        """The id of the device (manageable or not) with this PLC MAC, if it is known."""
        return next((n.id for n in self.nodes() if n.identity_ is not None and n.identity_.mac == mac), None)

    def configured_name(self, mac: str) -> str | None:
        """The name given to a PLC MAC: `mac_names`, else its device's configured name."""
        return self.names.get(mac) or self._configured(mac, "name")

    def configured_network(self, mac: str) -> str | None:
        """The network name configured for the device with this PLC MAC."""
        return self._configured(mac, "network")

    def _configured(self, mac: str, attr: Literal["name", "network"]) -> str | None:
        configs = [n.config for n in self.nodes() if n.identity_ is not None and n.identity_.mac == mac]
        configs += [c for c in self._settings.devices if c.mac == mac]
        return next((value for c in configs if c is not None and (value := getattr(c, attr))), None)


def _mesh(device: commands.Device) -> str | None:
    guest = device.data(capabilities.GUEST)
    return guest.ssid if guest is not None else None


def _load_remembered(loaded: object) -> dict[str, dict[str, str]]:
    """The devices file, leniently: entries with an id and an address, seen within REMEMBER_DAYS."""
    if not isinstance(loaded, dict):
        return {}
    oldest = (utc_now() - timedelta(days=REMEMBER_DAYS)).date().isoformat()
    out: dict[str, dict[str, str]] = {}
    for key, entry in loaded.items():
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("id", "ip", "seen")
        ):
            continue
        if entry["seen"] >= oldest and not device_id_problem(entry["id"]):
            out[str(key)] = {k: str(v) for k, v in entry.items() if isinstance(v, str)}
    return out
