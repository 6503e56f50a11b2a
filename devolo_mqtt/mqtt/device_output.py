"""What devices report, on MQTT: the one implementation of `devices.actor.DeviceOutput`. Every state,
availability, event, discovery config and inventory a device causes leaves through here; the registry
only knows which devices exist."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from devolo_mqtt.core import capabilities
from devolo_mqtt.core.capabilities import SourceKey
from devolo_mqtt.core.commands import Command
from devolo_mqtt.core.model import PLCNET, EventData, GuestWifi, Json, NeighborAp, Station
from devolo_mqtt.devices.actor import DeviceActor
from devolo_mqtt.devices.registry import DeviceRegistry, Node
from devolo_mqtt.mqtt import inventory
from devolo_mqtt.mqtt.ha.configs import known_keys
from devolo_mqtt.mqtt.ha.publisher import HaPublisher
from devolo_mqtt.mqtt.publisher import Publisher
from devolo_mqtt.mqtt.session import Outgoing
from devolo_mqtt.plc.monitor import NetworkMonitor
from devolo_mqtt.settings import Settings
from devolo_mqtt.wifi import guestqr
from devolo_mqtt.wifi.tracker import WifiTracker

NAME_WAIT = 10.0  # seconds discovery of an unnamed PLC device waits for its network's overview
INVENTORY_DELAY = 0.25  # seconds: a burst of changes (every device at start) is one `bridge/devices`


class MqttDeviceOutput:
    """Devices' reports turned into MQTT messages and Home Assistant discovery."""

    def __init__(self, settings: Settings, publisher: Publisher, ha: HaPublisher) -> None:
        self._settings = settings
        self._out = publisher
        self._ha = ha
        self._devices: DeviceRegistry
        self._networks: NetworkMonitor | None = None
        self._wifi: WifiTracker | None = None
        self._inventory_due: asyncio.TimerHandle | None = None
        self._keys_seen: dict[str, frozenset[str]] = {}  # state keys with a value, by device id

    def attach(self, devices: DeviceRegistry, *, networks: NetworkMonitor, wifi: WifiTracker) -> None:
        """The parts built after this one (they report through it in turn)."""
        self._devices, self._networks, self._wifi = devices, networks, wifi

    # --- what the registry reports ------------------------------------------------------------------------
    def discover(self, node: Node) -> None:
        """A device's discovery configs."""
        self._ha.device(node)

    def forget(self, device_id: str) -> None:
        """Clear the retained topics of an id no longer used."""
        self._out.forget(device_id)

    def answer(self, device_id: str, command: Command, payload: dict[str, Any]) -> None:
        """A command's answer: on `set/result`, and on its MQTT 5 response topic."""
        self._out.set_result(device_id, command.response_topic, command.correlation, payload)

    # --- what a device reports (devices.actor.DeviceOutput) ---------------------------------------------
    def device_identified(self, runtime: DeviceActor) -> None:
        """Settle the device's id (the registry may refuse it), then discovery configs and inventory."""
        self._devices.settle(runtime)
        self._features_known(runtime, changed=False)
        plc = runtime.identity.supports(PLCNET)
        if plc and self._networks is not None:
            self._networks.device_joined(runtime)  # its network's last overview: its name, if known
        if plc and not runtime.named:
            # Its name is in its network's overview, due in a moment: discovery waits for it (Home
            # Assistant would otherwise create the device under its product name, then rename it).
            asyncio.get_running_loop().call_later(NAME_WAIT, self._discover_unnamed, runtime)
        else:
            self._discover(runtime)
        self.publish_inventory()

    def identity_changed(self, runtime: DeviceActor) -> None:
        """The live mDNS view changed (a late PLC service, new features or product): entities follow."""
        self._features_known(runtime, changed=True)
        if runtime.identity.supports(PLCNET) and self._networks is not None:
            self._networks.device_joined(runtime)
        self._discover(runtime)
        self.publish_inventory()

    def entities_changed(self, runtime: DeviceActor) -> None:
        """A source turned out unsupported: its entities' configs go (once discovery is out)."""
        if self._ha.discovered(runtime):
            self._discover(runtime)

    def _features_known(self, runtime: DeviceActor, *, changed: bool) -> None:
        identity = runtime.identity
        wifi = identity.supports(capabilities.WIFI)
        if changed and not wifi:
            self._out.neighbors(runtime.id, None)  # an access point no more: its lists go
        if (changed or wifi) and not (wifi and self._settings.guest_wifi.publish_credentials):
            self._out.guest_qr(runtime.id, b"")  # a code from a run that published credentials goes

    def _discover(self, node: Node) -> None:
        """Discovery for a device, and for unnamed devices of the same product (their suffixes)."""
        self._ha.device(node)
        for other in self._alike(node):
            self._ha.device(other)

    def _alike(self, node: Node) -> list[Node]:
        """Other unnamed devices of an unnamed device's product."""
        if node.named or node.identity_ is None:
            return []
        product = node.identity_.product
        return [
            n
            for n in self._devices.nodes()
            if n is not node and not n.named and n.identity_ is not None and n.identity_.product == product
        ]

    def _discover_unnamed(self, runtime: DeviceActor) -> None:
        if self._devices.runtimes.get(runtime.id) is runtime and runtime.identity_ is not None:
            self._discover(runtime)  # no overview named it in time (none answered): go with the product

    def display_name(self, node: Node) -> str:
        """A node's name; unnamed devices of one product are told apart by the end of their serial."""
        identity = node.identity_
        alike = identity is not None and bool(self._alike(node))
        return f"{node.name} ({identity.serial[-4:]})" if alike and identity else node.name

    def device_state(self, runtime: Node, state: dict[str, Json], *, force: bool) -> None:
        """A device's state object (`force`: even when the broker holds the same one). A key that has
        its first value brings its entity's discovery config (entities wait for their value)."""
        self._out.state(runtime.id, state, force=force)
        self._update_availability(runtime, installing=state.get("update_in_progress") is True)
        keys = known_keys(state)
        seen = self._keys_seen.get(runtime.id, frozenset())
        if not keys <= seen:
            self._keys_seen[runtime.id] = seen | keys
            if self._ha.discovered(runtime):
                self._discover(runtime)

    def source_read(self, runtime: DeviceActor, source: SourceKey[Any], value: Any) -> None:
        """A reading that goes somewhere besides the state (the table's `Source.also`)."""
        also = capabilities.SOURCE_BY_KEY[source].also
        if also == "guest_qr" and self._settings.guest_wifi.publish_credentials:
            guest: GuestWifi = value
            self._out.guest_qr(runtime.id, guestqr.png(guest.ssid, guest.key))
        elif also == "wifi_clients" and self._wifi is not None:
            stations: list[Station] = value
            self._wifi.update_ap(runtime.id, stations)
        elif also == "neighbors" and not runtime.provisional:
            neighbors: list[NeighborAp] = value
            self._out.neighbors(runtime.id, {"networks": [asdict(n) for n in neighbors]})

    def network_changed(self, runtime: DeviceActor) -> None:
        """A device's name changed in the device: its network is read again now (matrix, map, names)."""
        if self._networks is not None:
            self._networks.look_again()

    def device_availability(self, runtime: Node) -> None:
        """A device's availability; an access point going offline loses its clients."""
        if runtime.online is False and isinstance(runtime, DeviceActor) and self._wifi is not None:
            self._wifi.ap_lost(runtime.id)
        if runtime.identity_ is not None or runtime.online is not None:
            self._out.availability(runtime.id, online=bool(runtime.online))
            self._update_availability(runtime)
        self.publish_inventory()

    def _update_availability(self, runtime: Node, *, installing: bool | None = None) -> None:
        """The update entity's availability: the device's, except that an install in progress keeps it
        available through the device's reboot (Home Assistant shows the install running meanwhile)."""
        if not isinstance(runtime, DeviceActor) or runtime.identity_ is None:
            return
        if not runtime.identity_.supports("update"):
            return
        if installing is None:
            installing = runtime.current_state().get("update_in_progress") is True
        self._out.update_availability(runtime.id, online=bool(runtime.online) or installing)

    def event(self, kind: str, data: EventData) -> None:
        """An event on `bridge/event`."""
        self._out.event(kind, data)

    # --- what others ask of the devices --------------------------------------------------------------
    def republish_states(self) -> None:
        """Every state and availability again (Home Assistant came online)."""
        for runtime in list(self._devices.runtimes.values()):
            runtime.publish_state(force=True)
            self.device_availability(runtime)

    def farewell(self) -> list[Outgoing]:
        """Retained `offline` for every known device (at shutdown)."""
        topics = self._out.topics
        return [
            Outgoing(topics.availability(n.id), b"offline", 1, True)
            for n in self._devices.nodes()
            if n.identity_
        ]

    def mac_renamed(self, mac: str) -> None:
        """Re-publish everything that shows a MAC's name."""
        if self._wifi is not None:
            self._wifi.renamed(mac)
        for node in self._devices.nodes():
            if node.identity_ is not None and node.identity_.mac == mac:
                self._ha.device(node)

    def network_measured(self, macs: list[str]) -> None:
        """A PLC overview came in: new links get sensors (unchanged configs are skipped)."""
        for node in self._devices.nodes():
            if node.identity_ is not None and node.identity_.mac in macs:
                self._discover(node)
        self.publish_inventory()

    def publish_inventory(self) -> None:
        """`bridge/devices`, once for a burst of changes: at start, 200 devices identified are a few
        messages, not 200 messages of up to 200 entries each."""
        if self._inventory_due is None:
            self._inventory_due = asyncio.get_running_loop().call_later(INVENTORY_DELAY, self._inventory)

    def _inventory(self) -> None:
        self._inventory_due = None
        items = [inventory.adapter_entry(a) for a in self._devices.adapters.values()]
        if self._networks is not None:
            items += [
                inventory.unmanaged_entry(mac, u, self._networks.name_for(mac, u.device.name))
                for mac, u in self._networks.unmanaged.items()
            ]
        items += [inventory.device_entry(r) for r in self._devices.runtimes.values()]
        self._out.inventory(items)
