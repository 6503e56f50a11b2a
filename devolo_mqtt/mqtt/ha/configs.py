"""Home Assistant discovery: pure payload builders from the capability table, and the ledger of what
was published (so configs go out only when changed and removed entities are cleared).

Compatibility floor: Home Assistant 2024.3+ and openHAB 4's Home Assistant binding — per-entity
(component-based) topics, a `device` block with long-standing keys only, simple templates.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from devolo_mqtt import __version__
from devolo_mqtt.core.capabilities import Capability, HaEntity, link_keys
from devolo_mqtt.core.inbound import BadPayload, decode_json
from devolo_mqtt.core.mac import colon_mac, display_mac
from devolo_mqtt.core.model import Json
from devolo_mqtt.mqtt.topics import Topics

SUPPORT_URL = "https://github.com/devolo-mqtt/devolo-mqtt"
ORIGIN = {"name": "devolo-mqtt", "sw_version": __version__, "support_url": SUPPORT_URL}
Payload = dict[str, object]


@dataclass(frozen=True, slots=True)
class HaLink:
    """A directed PLC link from the device to `destination` (`AABBCCDDEEFF`)."""

    destination: str
    name: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class HaDevice:
    """What discovery needs to know about one devolo device."""

    id: str
    serial: str
    name: str
    model: str
    mt: str
    firmware: str
    mac: str | None
    ip: str | None
    capabilities: tuple[Capability, ...]
    links: tuple[HaLink, ...] = ()
    guest_qr: bool = False  # an image entity with the guest WiFi's QR code (opt-in: it holds the key)
    events: tuple[str, ...] = ()  # the event types of its event entity (none: no entity)
    # The state keys that have a value. An entity whose key has none yet waits for it: openHAB cannot
    # parse the `None` (Home Assistant's "unknown") a template renders for a missing key, in a switch,
    # binary sensor, number or numeric sensor. None: every entity (no state known to wait for).
    known: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class HaContext:
    """Topics and identity of this bridge instance."""

    topics: Topics
    instance_id: str | None = None
    link_expire_after: int = 900  # seconds: a link not measured for this long goes unavailable
    entity_ids: Literal["bridge", "homeassistant"] = "bridge"  # who chooses entity ids

    def suffix(self) -> str:
        """Appended to unique ids so several bridges can share one Home Assistant."""
        return f"_{self.instance_id}" if self.instance_id else ""

    @property
    def bridge_identifier(self) -> str:
        """The bridge's own device identifier."""
        return f"devolo_mqtt_bridge{self.suffix()}"


def _entity_id(ctx: HaContext, component: str, object_id: str) -> Payload:
    """The entity id the bridge suggests (`devolo_<serial>_leds`), unless Home Assistant is to choose
    (2026.6+ can put the area into entity ids, 2026.8+ lets users pick the format)."""
    if ctx.entity_ids == "homeassistant":
        return {}
    return {"object_id": object_id, "default_entity_id": f"{component}.{object_id}"}


def bridge_device(ctx: HaContext) -> Payload:
    """The bridge as a device of its own; every devolo device points to it with `via_device`."""
    name = "devolo-mqtt bridge" + (f" ({ctx.instance_id})" if ctx.instance_id else "")
    return {
        "identifiers": [ctx.bridge_identifier],
        "name": name,
        "manufacturer": "devolo-mqtt",
        "model": "devolo-mqtt",
        "sw_version": __version__,
    }


def device_block(ctx: HaContext, device: HaDevice) -> Payload:
    """The `device` block, limited to keys every supported Home Assistant/openHAB version accepts."""
    block: Payload = {
        "identifiers": [f"devolo_{device.serial}{ctx.suffix()}"],
        "name": device.name,
        "manufacturer": "devolo",
        "model": device.model,
        "serial_number": device.serial,
        "via_device": ctx.bridge_identifier,
    }
    if device.mt:
        block["hw_version"] = f"MT{device.mt}"
    if device.firmware:
        block["sw_version"] = device.firmware
    if device.ip:
        block["configuration_url"] = f"http://{device.ip}"
    if device.mac:
        block["connections"] = [["mac", display_mac(device.mac)]]
    return block


def value(key: str) -> str:
    """A template for one state key that renders `None` (HA: unknown) when the key is missing or null —
    never an undefined-variable warning in Home Assistant's log."""
    return f"{{{{ value_json.{key} | default('None') }}}}"


def on_off_value(key: str) -> str:
    """A boolean state key as `ON`/`OFF`, `None` (unknown) when missing or null."""
    known = f"value_json.{key} is defined and value_json.{key} is not none"
    return f"{{{{ ('ON' if value_json.{key} else 'OFF') if {known} else 'None' }}}}"


def _entity_base(ctx: HaContext, device: HaDevice, key: str, ha: HaEntity) -> Payload:
    object_id = f"devolo_{device.id}_{key}".lower()
    payload: Payload = {
        "name": ha.name,
        "unique_id": f"devolo_{device.serial}_{key}{ctx.suffix()}",
        **_entity_id(ctx, ha.component, object_id),
        "device": device_block(ctx, device),
        "origin": ORIGIN,
        "availability_mode": "all",
        "availability": [{"topic": ctx.topics.bridge_state}, {"topic": ctx.topics.availability(device.id)}],
    }
    optional: dict[str, Json] = {
        "icon": ha.icon,
        "device_class": ha.device_class,
        "entity_category": ha.entity_category,
        "unit_of_measurement": ha.unit,
        "state_class": ha.state_class,
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    if not ha.enabled_by_default:
        payload["enabled_by_default"] = False
    return payload


def entity_config(ctx: HaContext, device: HaDevice, capability: Capability) -> Payload | None:
    """One entity's discovery payload (None when the capability has no entity)."""
    ha = capability.ha
    if ha is None:
        return None
    t = ctx.topics
    payload = _entity_base(ctx, device, capability.key, ha)
    state_topic, template = t.state(device.id), value(capability.key)
    if ha.state_from == "availability":
        # Connectivity shows the device's own availability, so it must stay available itself. Its
        # availability_mode stays `all` (of its one topic): openHAB keeps one rule per Thing, the last
        # component's, and every component of the device must agree.
        payload["availability"] = [{"topic": t.bridge_state}]
        payload.update(state_topic=t.availability(device.id), payload_on="online", payload_off="offline")
    elif ha.component == "button":
        payload.update(command_topic=t.set(device.id, capability.key), payload_press="PRESS")
    elif ha.component == "update":
        assert ha.installed_key is not None  # table invariants (tests/test_capabilities.py)
        assert ha.install_key is not None
        installed = f"value_json.{ha.installed_key} | default('')"
        latest = f"value_json.{capability.key} | default(value_json.{ha.installed_key}, true) | default('')"
        running = "'true' if value_json.update_in_progress | default(false) else 'false'"
        # The device reports no progress: an install in progress shows without a percentage.
        payload.update(
            state_topic=state_topic,
            # JSON, written out (no filter an older template engine may lack): Home Assistant 2024.11+
            # shows `in_progress`; older versions and openHAB read the versions and ignore the rest.
            value_template=(
                '{"installed_version": "{{ ' + installed + ' }}", '
                '"latest_version": "{{ ' + latest + ' }}", '
                '"in_progress": {{ ' + running + ' }}, "update_percentage": null}'
            ),
            latest_version_topic=state_topic,
            # No update offered (or not checked yet): the installed version is the latest one known.
            latest_version_template=(
                f"{{{{ value_json.{capability.key} | default(value_json.{ha.installed_key}, true)"
                " | default('None') }}"
            ),
            command_topic=t.set(device.id, ha.install_key),
            payload_install="install",
            # Available through an install's reboot (the device itself is offline meanwhile).
            availability=[{"topic": t.bridge_state}, {"topic": t.update_availability(device.id)}],
        )
    elif ha.component == "binary_sensor":
        payload.update(
            state_topic=state_topic,
            payload_on="ON",
            payload_off="OFF",
            value_template=on_off_value(capability.key),
        )
    else:
        payload.update(state_topic=state_topic, value_template=template)
        if capability.writable:
            payload["command_topic"] = t.set(device.id, capability.key)
        if ha.component == "switch":
            payload.update(payload_on="ON", payload_off="OFF", state_on="ON", state_off="OFF")
    if "command_topic" in payload:
        # QoS 1: a command sent while the bridge reconnects waits in its persistent session.
        payload["qos"] = 1
    if ha.attributes_from == "neighbors":
        payload["json_attributes_topic"] = t.wifi_neighbors(device.id)
    payload.update(ha.extra)
    return payload


def known_keys(state: Mapping[str, object]) -> frozenset[str]:
    """The keys of a state object that have a value."""
    return frozenset(k for k, v in state.items() if v is not None)


def _value_known(device: HaDevice, capability: Capability) -> bool:
    """Whether an entity's value is there to show (entities without a state value need none)."""
    ha = capability.ha
    if device.known is None or ha is None or capability.kind != "state" or ha.state_from != "state":
        return True
    return capability.key in device.known


def device_configs(ctx: HaContext, device: HaDevice) -> dict[str, Payload]:
    """Every discovery config of one device, by topic."""
    node = f"devolo_{device.id}"
    configs: dict[str, Payload] = {}
    for capability in device.capabilities:
        if not _value_known(device, capability):
            continue
        payload = entity_config(ctx, device, capability)
        if payload is not None and capability.ha is not None:
            configs[ctx.topics.discovery(capability.ha.component, node, capability.key)] = payload
    for link in device.links:
        for key, direction in zip(link_keys(link.destination), ("tx", "rx"), strict=True):
            ha = HaEntity(
                "sensor",
                f"PLC {direction} rate to {link.name}",
                icon="mdi:speedometer",
                device_class="data_rate",
                unit="Mbit/s",
                state_class="measurement",
                enabled_by_default=link.enabled,
            )
            payload = _entity_base(ctx, device, key, ha)
            payload.update(
                state_topic=ctx.topics.state(device.id),
                value_template=value(key),
                expire_after=ctx.link_expire_after,
            )
            configs[ctx.topics.discovery("sensor", node, key)] = payload
    if device.guest_qr:
        ha = HaEntity("image", "Guest WiFi QR code", icon="mdi:qrcode")
        image = _entity_base(ctx, device, "guest_wifi_qr", ha)
        image.update(image_topic=ctx.topics.guest_qr(device.id), content_type="image/png")
        configs[ctx.topics.discovery("image", node, "guest_wifi_qr")] = image
        # openHAB has no image component; it builds a camera as an Image channel. Disabled in Home
        # Assistant, which shows the image entity.
        ha = HaEntity("camera", "Guest WiFi QR code (camera)", icon="mdi:qrcode", enabled_by_default=False)
        camera = _entity_base(ctx, device, "guest_wifi_qr_camera", ha)
        camera["topic"] = ctx.topics.guest_qr(device.id)
        configs[ctx.topics.discovery("camera", node, "guest_wifi_qr_camera")] = camera
    if device.events:
        ha = HaEntity("event", "Events", icon="mdi:bell-ring-outline")
        event = _entity_base(ctx, device, "events", ha)
        # Events come from the bridge: an offline device's `device_offline` must reach automations.
        event["availability"] = [{"topic": ctx.topics.bridge_state}]
        event.update(state_topic=ctx.topics.device_event(device.id), event_types=list(device.events))
        configs[ctx.topics.discovery("event", node, "events")] = event
    return configs


def bridge_configs(ctx: HaContext, networks: Mapping[str, str] | Collection[str] = ()) -> dict[str, Payload]:
    """The bridge's own entities: its connection state, and per PLC network (id, or id → the name
    people read) its map and weakest link."""
    node = "devolo_bridge" + ctx.suffix()
    connection: Payload = {
        "name": "Connection state",
        "unique_id": f"{node}_connection",
        **_entity_id(ctx, "binary_sensor", f"{node}_connection"),
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": ctx.topics.bridge_state,
        "payload_on": "online",
        "payload_off": "offline",
        "device": bridge_device(ctx),
        "origin": ORIGIN,
    }
    configs = {ctx.topics.discovery("binary_sensor", node, "connection"): connection}
    names = networks if isinstance(networks, Mapping) else {n: f"PLC network {n}" for n in networks}
    for network in sorted(names):
        configs.update(_network_configs(ctx, node, network, names[network]))
    return configs


def _network_configs(ctx: HaContext, node: str, network: str, shown: str) -> dict[str, Payload]:
    """A PLC network's map (an image entity) and weakest link (a sensor), on the bridge device."""
    key = network.replace("-", "_")
    common: Payload = {
        "device": bridge_device(ctx),
        "origin": ORIGIN,
        "availability": [{"topic": ctx.topics.bridge_state}],
    }
    rates = ctx.topics.network_rates(network)
    image: Payload = {
        **common,
        "name": f"{shown} map",
        "unique_id": f"{node}_plc_map_{key}",
        **_entity_id(ctx, "image", f"{node}_plc_map_{key}"),
        "image_topic": ctx.topics.network_map(network),
        "content_type": "image/svg+xml",
    }
    # The PNG twin, for openHAB (no image component; cameras become Image channels). Disabled in Home
    # Assistant, which shows the image entity.
    camera: Payload = {
        **common,
        "name": f"{shown} map (camera)",
        "unique_id": f"{node}_plc_map_camera_{key}",
        **_entity_id(ctx, "camera", f"{node}_plc_map_camera_{key}"),
        "topic": ctx.topics.network_map_png(network),
        "enabled_by_default": False,
    }
    weakest: Payload = {
        **common,
        "name": f"{shown} weakest link",
        "unique_id": f"{node}_plc_weakest_{key}",
        **_entity_id(ctx, "sensor", f"{node}_plc_weakest_{key}"),
        "icon": "mdi:speedometer-slow",
        "device_class": "data_rate",
        "unit_of_measurement": "Mbit/s",
        "state_class": "measurement",
        "state_topic": rates,
        "value_template": "{{ value_json.weakest.rate | default('None') }}",
        "json_attributes_topic": rates,
        "json_attributes_template": "{{ value_json.weakest | default({}, true) | tojson }}",
    }
    return {
        ctx.topics.discovery("image", node, f"plc_map_{key}"): image,
        ctx.topics.discovery("camera", node, f"plc_map_camera_{key}"): camera,
        ctx.topics.discovery("sensor", node, f"plc_weakest_{key}"): weakest,
    }


def tracker_config(ctx: HaContext, mac: str, name: str | None, vendor: str | None) -> tuple[str, Payload]:
    """A `device_tracker` for one WiFi client, across every access point; enabled when named."""
    lower = mac.lower()
    node = f"devolo_wifi_{lower}"
    label = name or (f"{vendor} {colon_mac(mac)}" if vendor else colon_mac(mac))
    payload: Payload = {
        "name": None,
        "unique_id": f"devolo_wifi_{lower}{ctx.suffix()}",
        **_entity_id(ctx, "device_tracker", node),
        "state_topic": ctx.topics.wifi_presence(mac),
        "value_template": "{{ value_json.state }}",
        "payload_home": "home",
        "payload_not_home": "not_home",
        "source_type": "router",
        "json_attributes_topic": ctx.topics.wifi_presence(mac),
        "availability": [{"topic": ctx.topics.bridge_state}],
        "origin": ORIGIN,
        "device": {
            "identifiers": [f"{node}{ctx.suffix()}"],
            "name": label,
            "connections": [["mac", display_mac(mac)]],
            "via_device": ctx.bridge_identifier,
        },
    }
    if vendor:
        payload["device"]["manufacturer"] = vendor  # type: ignore[index]
    if not name:
        payload["enabled_by_default"] = False
    return ctx.topics.discovery("device_tracker", node, "presence"), payload


def is_ours(ctx: HaContext, payload: bytes) -> bool:
    """Whether a retained discovery config on the broker was published by this bridge instance."""
    try:
        data = decode_json(payload, max_bytes=65536, max_depth=16)  # anyone may publish here
    except BadPayload:
        return False
    if not isinstance(data, dict):
        return False
    device = data.get("device")
    if isinstance(device, dict) and ctx.bridge_identifier in (device.get("identifiers") or []):
        return True
    return isinstance(device, dict) and device.get("via_device") == ctx.bridge_identifier


class DiscoveryLedger:
    """What this bridge has published (and found on the broker from earlier runs), by topic and by node.

    Payloads are kept as the very bytes handed to the MQTT session, which keeps them for re-publishing
    after a reconnect: one copy of every config in memory, not two (~6 MiB at 200 devices). The index
    by node makes a device's update cost its own configs, not every config of the bridge (at 200
    devices the scan over all of them was the largest cost of a start).
    """

    def __init__(self) -> None:
        self.published: dict[str, bytes] = {}
        self.found: dict[str, bytes] = {}  # ours on the broker, not (yet) confirmed by this run
        self._published_by_node: dict[str, set[str]] = {}
        self._found_by_node: dict[str, set[str]] = {}

    def has_node(self, node: str) -> bool:
        """Whether configs of `node` (`devolo_<id>`) are published."""
        return bool(self._published_by_node.get(node))

    def object_ids(self, node: str) -> set[str]:
        """The `<object_id>`s of `node`'s configs published by this run or found from an earlier one."""
        topics = self._published_by_node.get(node, set()) | self._found_by_node.get(node, set())
        return {t.split("/")[-2] for t in topics}

    def found_on_broker(self, topic: str, payload: bytes) -> bool:
        """Remember a config seen on the broker (empty: it is gone); whether it is stale already.

        Stale already: its node's configs were published by this run without it (the device is known,
        the entity no longer exists), so it is to be cleared now rather than at the sweep.
        """
        if not payload:
            self._drop(self.found, self._found_by_node, topic)
            return False
        if topic in self.published:
            return False
        node = Topics.discovery_node(topic)
        if self.has_node(node):
            return True
        self.found[topic] = payload
        self._found_by_node.setdefault(node, set()).add(topic)
        return False

    def update(
        self, owner_prefix: str, configs: Mapping[str, Mapping[str, object]]
    ) -> list[tuple[str, bytes]]:
        """The (topic, payload) to publish so that `owner_prefix`'s configs become exactly `configs`.

        Unchanged configs are skipped; ones no longer produced (by this run or an earlier one) get ''.
        """
        out: list[tuple[str, bytes]] = []
        for topic, payload in configs.items():
            text = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
            held = self.published.get(topic)
            if held != text or topic in self.found:
                out.append((topic, text))
            else:
                text = held  # keep the copy the MQTT session holds too
            self.published[topic] = text
            self._published_by_node.setdefault(Topics.discovery_node(topic), set()).add(topic)
            self._drop(self.found, self._found_by_node, topic)
        owned = self._published_by_node.get(owner_prefix, set()) | self._found_by_node.get(
            owner_prefix, set()
        )
        for topic in sorted(owned - configs.keys()):
            self._drop(self.published, self._published_by_node, topic)
            self._drop(self.found, self._found_by_node, topic)
            out.append((topic, b""))
        return out

    def sweep(self, keep: set[str]) -> list[str]:
        """Configs found on the broker whose node is not in `keep`: to be cleared."""
        stale = [t for t in self.found if Topics.discovery_node(t) not in keep]
        for topic in stale:
            self._drop(self.found, self._found_by_node, topic)
        return stale

    def forget_found(self) -> None:
        """After a purge: what was found on the broker is gone."""
        self.found.clear()
        self._found_by_node.clear()

    def republish(self) -> list[tuple[str, bytes]]:
        """Everything published, again (on request)."""
        return list(self.published.items())

    @staticmethod
    def _drop(topics: dict[str, bytes], by_node: dict[str, set[str]], topic: str) -> None:
        if topics.pop(topic, None) is None:
            return
        node = Topics.discovery_node(topic)
        held = by_node.get(node)
        if held is not None:
            held.discard(topic)
            if not held:
                del by_node[node]
