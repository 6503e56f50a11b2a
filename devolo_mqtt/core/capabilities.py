"""The capability table: one declaration per key drives state, Home Assistant discovery and commands.

Three generic consumers read it (the poller builds state from `value`, `homeassistant.py` builds
entities from `ha`, `commands.py` executes `parse` + `write`); nothing elsewhere names a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from devolo_mqtt.core.clock import iso
from devolo_mqtt.core.errors import CommandError
from devolo_mqtt.core.model import (
    API,
    PLC,
    PLCNET,
    DeviceIdentity,
    FirmwareCheck,
    GuestWifi,
    Json,
    MultiAp,
    NeighborAp,
    PlcHealth,
    PlcView,
    RepeatedAp,
    Station,
)
from devolo_mqtt.settings import PollingSettings, SourceSetting

WIFI = "wifi1"  # the Features flag of access points (guest WiFi, clients, neighbours, WPS)
LOCATE_SECONDS = 120.0
INSTALL_SECONDS = 20 * 60.0  # an install not seen to end (a new firmware over mDNS) stops counting after this
GUEST_MAX_MINUTES = 24 * 60
# Two uptime readings that put the last restart less than this apart are the same restart (request
# latency and whole-second uptimes make every reading differ by a second or two).
RESTART_TOLERANCE = 30.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SourceKey(Generic[T]):
    """What one source reads, as a typed key: `data(GUEST)` is a `GuestWifi` (or None before a read)."""

    name: str


LEDS: SourceKey[bool] = SourceKey("leds")
RESTARTED: SourceKey[datetime] = SourceKey("last_restart")
GUEST: SourceKey[GuestWifi] = SourceKey("guest")
NEIGHBORS: SourceKey[list[NeighborAp]] = SourceKey("neighbors")
STATIONS: SourceKey[list[Station]] = SourceKey("stations")  # also feeds the WiFi tracker
FIRMWARE: SourceKey[FirmwareCheck] = SourceKey("firmware")
PLC_VIEW: SourceKey[PlcView] = SourceKey("plc")  # fed by the network monitor, not polled per device
PLC_HEALTH: SourceKey[PlcHealth] = SourceKey("plc_health")
REPEATED: SourceKey[list[RepeatedAp]] = SourceKey("repeated_ap")  # WiFi repeaters: their uplink
MULTI_AP: SourceKey[MultiAp] = SourceKey("multi_ap")  # WiFi repeaters: their mesh controller


class DeviceClient(Protocol):
    """What the table reads and writes on a device (implemented by `device.DevoloClient`); a Protocol so
    that the table stays free of I/O libraries."""

    async def leds(self) -> bool: ...
    async def last_restart(self) -> datetime: ...
    async def guest(self) -> GuestWifi: ...
    async def firmware_check(self) -> FirmwareCheck: ...
    async def stations(self) -> list[Station]: ...
    async def neighbors(self) -> list[NeighborAp]: ...
    async def plc_health(self) -> PlcHealth: ...
    async def repeated_aps(self) -> list[RepeatedAp]: ...
    async def multi_ap(self) -> MultiAp: ...
    async def set_leds(self, on: bool) -> None: ...
    async def locate(self, on: bool) -> None: ...
    async def set_guest(self, enable: bool, minutes: int) -> None: ...
    async def restart(self) -> None: ...
    async def pair(self) -> None: ...
    async def wps(self) -> None: ...
    async def install_update(self) -> None: ...
    async def set_name(self, name: str) -> str: ...


class Readings(Protocol):
    """What a capability may read: the device's identity, its last source data and bridge memory."""

    @property
    def identity(self) -> DeviceIdentity: ...

    @property
    def firmware(self) -> str: ...

    @property
    def now(self) -> float: ...

    def data(self, key: SourceKey[T]) -> T | None: ...

    locate_until: float
    guest_duration: int
    overview_name: str  # the name set in the device, as its PLC network's overview shows it
    # An install started: the firmware it started from, and until when it counts as in progress
    # (the new version seen over mDNS ends it earlier).
    installing: tuple[str, float] | None


class Target(Readings, Protocol):
    """What a write may use: the client, plus the bridge-side memory it updates."""

    @property
    def client(self) -> DeviceClient: ...

    async def refresh(self, sources: Collection[SourceKey[Any]] | None = None) -> dict[str, str]: ...

    def network_changed(self) -> None:
        """Something every member's view shows changed (a name): its network is looked at again now."""


@dataclass(frozen=True, slots=True)
class Source:
    """One poll of one device: what it reads, which feature gates it, how often."""

    key: SourceKey[Any]
    feature: str
    setting: SourceSetting  # the polling setting that says how often (per device: `devices[].polling`)
    read: Callable[[DeviceClient], Awaitable[Any]]
    shared: bool = False  # one value across a WiFi mesh: a write refreshes every access point
    # How a new reading combines with the last one (e.g. keep a timestamp that only jittered).
    merge: Callable[[Any, Any], Any] | None = None
    # Where a reading goes besides the state object (an output handles each kind).
    also: Literal["guest_qr", "wifi_clients", "neighbors"] | None = None

    @property
    def name(self) -> str:
        """The source's name (task names, logs)."""
        return self.key.name

    def interval(self, polling: PollingSettings) -> float:
        """Seconds between two reads."""
        return float(getattr(polling, self.setting))


@dataclass(frozen=True, slots=True)
class HaEntity:
    """A capability's Home Assistant entity, as data."""

    component: Literal[
        "switch", "sensor", "binary_sensor", "number", "button", "update", "image", "camera", "event", "text"
    ]
    name: str
    icon: str | None = None
    device_class: str | None = None
    entity_category: Literal["config", "diagnostic"] | None = None
    unit: str | None = None
    state_class: str | None = None
    enabled_by_default: bool = True
    # Where the entity's state comes from: the device's state object, or its availability topic.
    state_from: Literal["state", "availability"] = "state"
    installed_key: str | None = None  # update entities: the state key with the installed version…
    install_key: str | None = None  # …and the action key that installs
    attributes_from: Literal["neighbors"] | None = None  # a topic of the device whose JSON are attributes
    extra: dict[str, Json] = field(default_factory=dict)  # static keys copied into the payload as is


@dataclass(frozen=True, slots=True)
class Capability:
    """One wire key."""

    key: str
    feature: str
    kind: Literal["state", "action"] = "state"
    value: Callable[[Readings], Json] | None = None
    parse: Callable[[Json], Any] | None = None
    # A write may return what it could not do ({source: reason}; the refresh action's partial failures).
    write: Callable[[Target, Any], Awaitable[dict[str, str] | None]] | None = None
    refresh: tuple[SourceKey[Any], ...] = ()
    order: int = 0  # writes of one command run by ascending order
    ha: HaEntity | None = None
    # An event when the value turns True: (its type, the state key whose value it carries as `version`).
    announce: tuple[str, str] | None = None
    # The polled source its value comes from: a device that says it cannot serve it loses the entity.
    source: SourceKey[Any] | None = None

    @property
    def writable(self) -> bool:
        """Whether `/set` accepts this key."""
        return self.write is not None


# --- value helpers --------------------------------------------------------------------------------
def on_off(value: bool | None) -> str | None:
    """A boolean as the contract's `ON`/`OFF`."""
    return None if value is None else ("ON" if value else "OFF")


def parse_on_off(raw: Json) -> bool:
    """`ON`/`OFF` (any case), JSON booleans, 1/0; anything else is a bad value."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().upper()
    if text in ("ON", "TRUE", "1"):
        return True
    if text in ("OFF", "FALSE", "0"):
        return False
    raise ValueError(f"expected ON or OFF, got {raw!r}")


def parse_minutes(raw: Json) -> int:
    """Whole minutes, 0 (no limit) to 24 h."""
    if isinstance(raw, bool):
        raise ValueError("expected a number of minutes")  # noqa: TRY004 - callers report ValueError as "bad value"
    try:
        number = float(str(raw).strip())
    except ValueError:
        raise ValueError(f"expected a number of minutes, got {raw!r}") from None
    if not number.is_integer() or not 0 <= number <= GUEST_MAX_MINUTES:
        raise ValueError(f"minutes must be a whole number from 0 to {GUEST_MAX_MINUTES}")
    return int(number)


NAME_MAX = 32  # characters of a device name (what devolo's own apps accept)


def parse_name(raw: Json) -> str:
    """A device name: 1 to 32 printable characters, trimmed."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError("expected a name (text)")  # noqa: TRY004 - callers report ValueError as "bad value"
    name = str(raw).strip()
    if not 1 <= len(name) <= NAME_MAX or not name.isprintable():
        raise ValueError(f"a name is 1 to {NAME_MAX} printable characters")
    return name


def parse_action(raw: Json) -> None:
    """Actions accept any payload."""


def same_restart(last: datetime, new: datetime) -> datetime:
    """The last restart as first estimated, unless the device restarted since (uptime jitter is not a
    restart, so the published timestamp never moves by a second)."""
    return last if abs((new - last).total_seconds()) < RESTART_TOLERANCE else new


def _guest(r: Readings) -> GuestWifi | None:
    return r.data(GUEST)


def _plc(r: Readings) -> PlcView | None:
    return r.data(PLC_VIEW)


def _fw(r: Readings) -> FirmwareCheck | None:
    return r.data(FIRMWARE)


# --- writes ---------------------------------------------------------------------------------------
async def _write_leds(t: Target, on: bool) -> None:
    await t.client.set_leds(on)


async def _write_locate(t: Target, on: bool) -> None:
    await t.client.locate(on)
    t.locate_until = t.now + LOCATE_SECONDS if on else 0.0


async def _write_name(t: Target, name: str) -> None:
    t.overview_name = await t.client.set_name(name)  # as read back from the device's overview
    t.network_changed()  # the matrix, the map and every peer's link sensors follow


async def _write_guest(t: Target, on: bool) -> None:
    await t.client.set_guest(on, t.guest_duration if on else 0)


async def _write_guest_duration(t: Target, minutes: int) -> None:
    if _guest(t) is None:
        # Not read yet (a command right after the connect runs before the first poll): the mesh — the
        # guest SSID — tells where the value is kept, so read it first.
        await t.refresh((GUEST,))
    t.guest_duration = minutes
    guest = _guest(t)
    if guest is not None and guest.enabled:
        await t.client.set_guest(True, minutes)  # restart the running countdown with the new duration


async def _refresh(t: Target, _: None) -> dict[str, str]:
    return await t.refresh(None)


async def _write_install(t: Target, _: None) -> None:
    await t.client.install_update()
    t.installing = (t.firmware, t.now + INSTALL_SECONDS)


def _installing(r: Readings) -> bool:
    """An install runs: started, the firmware it started from still installed, not timed out."""
    return r.installing is not None and r.firmware == r.installing[0] and r.now < r.installing[1]


def _action(call: Callable[[DeviceClient], Awaitable[None]]) -> Callable[[Target, None], Awaitable[None]]:
    async def write(t: Target, _: None) -> None:
        await call(t.client)

    return write


def _uplink(r: Readings) -> RepeatedAp | None:
    """The access point a repeater repeats: the strongest it lists."""
    aps = r.data(REPEATED)
    return max(aps, key=lambda a: a.signal) if aps else None


def _controller(r: Readings) -> str | None:
    mesh = r.data(MULTI_AP)
    if mesh is None or not mesh.enabled:
        return None
    return mesh.controller_ip or mesh.controller_mac


def _health(field: str) -> Callable[[Readings], Json]:
    """One value of the PLC chip's support dump (None: not read yet, or not reported)."""

    def value(r: Readings) -> Json:
        health = r.data(PLC_HEALTH)
        found: Json = getattr(health, field) if health is not None else None
        return found

    return value


# --- the tables -----------------------------------------------------------------------------------
SOURCES: tuple[Source, ...] = (
    Source(LEDS, "led", "state", lambda c: c.leds()),
    Source(RESTARTED, "restart", "uptime", lambda c: c.last_restart(), merge=same_restart),
    Source(GUEST, WIFI, "state", lambda c: c.guest(), shared=True, also="guest_qr"),
    Source(NEIGHBORS, WIFI, "neighbors", lambda c: c.neighbors(), also="neighbors"),
    Source(STATIONS, WIFI, "wifi", lambda c: c.stations(), also="wifi_clients"),
    Source(FIRMWARE, "update", "firmware", lambda c: c.firmware_check()),
    Source(PLC_HEALTH, "support", "plc_health", lambda c: c.plc_health()),
    # A repeater's uplink and mesh: at the neighbour scan's pace (a signal moves with every reading).
    Source(REPEATED, "repeater0", "neighbors", lambda c: c.repeated_aps()),
    Source(MULTI_AP, "multiap", "neighbors", lambda c: c.multi_ap()),
)

CAPABILITIES: tuple[Capability, ...] = (
    Capability(
        "leds",
        "led",
        source=LEDS,
        value=lambda r: on_off(r.data(LEDS)),
        parse=parse_on_off,
        write=_write_leds,
        refresh=(LEDS,),
        ha=HaEntity("switch", "LEDs", icon="mdi:led-on", entity_category="config"),
    ),
    Capability(
        "locate",
        PLCNET,
        value=lambda r: on_off(r.now < r.locate_until),
        parse=parse_on_off,
        write=_write_locate,
        ha=HaEntity("switch", "Locate", icon="mdi:map-marker-radius"),
    ),
    Capability(
        "guest_wifi",
        WIFI,
        source=GUEST,
        value=lambda r: on_off(g.enabled) if (g := _guest(r)) else None,
        parse=parse_on_off,
        write=_write_guest,
        refresh=(GUEST,),
        order=1,
        ha=HaEntity("switch", "Guest WiFi", icon="mdi:wifi-lock-open"),
    ),
    Capability(
        "guest_duration",
        WIFI,
        source=GUEST,
        value=lambda r: r.guest_duration,
        parse=parse_minutes,
        write=_write_guest_duration,
        refresh=(GUEST,),
        order=0,
        ha=HaEntity(
            "number",
            "Guest WiFi duration",
            icon="mdi:timer-outline",
            entity_category="config",
            unit="min",
            extra={"min": 0, "max": GUEST_MAX_MINUTES, "step": 1, "mode": "box"},
        ),
    ),
    Capability(
        "guest_remaining",
        WIFI,
        source=GUEST,
        value=lambda r: (g.remaining if g.enabled else 0) if (g := _guest(r)) else None,
        ha=HaEntity(
            "sensor", "Guest WiFi remaining", icon="mdi:timer-sand", unit="min", device_class="duration"
        ),
    ),
    Capability(
        "guest_ssid",
        WIFI,
        source=GUEST,
        value=lambda r: g.ssid if (g := _guest(r)) else None,
        ha=HaEntity("sensor", "Guest WiFi SSID", icon="mdi:wifi", entity_category="diagnostic"),
    ),
    Capability(
        "firmware",
        "",
        value=lambda r: r.firmware or None,
        ha=HaEntity("sensor", "Firmware version", icon="mdi:chip", entity_category="diagnostic"),
    ),
    Capability(
        "update_available",
        "update",
        source=FIRMWARE,
        value=lambda r: f.available if (f := _fw(r)) else None,
        announce=("firmware_available", "next_firmware"),
        ha=HaEntity(
            "binary_sensor",
            "Firmware update",
            device_class="update",
            entity_category="diagnostic",
            enabled_by_default=False,
        ),
    ),
    Capability(
        "next_firmware",
        "update",
        source=FIRMWARE,
        value=lambda r: f.version if (f := _fw(r)) else None,
        ha=HaEntity(
            "update",
            "Firmware",
            entity_category="config",
            installed_key="firmware",
            install_key="install_update",
        ),
    ),
    Capability(
        "update_in_progress",
        "update",
        value=_installing,
    ),
    Capability(
        "last_restart",
        "restart",
        source=RESTARTED,
        value=lambda r: iso(r.data(RESTARTED)),
        ha=HaEntity(
            "sensor",
            "Last restart",
            icon="mdi:restart",
            device_class="timestamp",
            entity_category="diagnostic",
            enabled_by_default=False,
        ),
    ),
    Capability(
        "neighbor_aps",
        WIFI,
        source=NEIGHBORS,
        value=lambda r: len(n) if (n := r.data(NEIGHBORS)) is not None else None,
        ha=HaEntity(
            "sensor",
            "Neighboring WiFi networks",
            icon="mdi:wifi-marker",
            state_class="measurement",
            entity_category="diagnostic",
            enabled_by_default=False,
            attributes_from="neighbors",  # each network's SSID, band, channel and signal
        ),
    ),
    *(
        Capability(
            key,
            "support",
            source=PLC_HEALTH,
            value=_health(field),
            ha=ha,
        )
        for key, field, ha in (
            (
                "plc_temperature",
                "temperature",
                HaEntity(
                    "sensor",
                    "PLC chip temperature",
                    device_class="temperature",
                    unit="°C",
                    state_class="measurement",
                    entity_category="diagnostic",
                ),
            ),
            (
                "plc_hops",
                "hops",
                HaEntity(
                    "sensor",
                    "PLC hops to the master",
                    icon="mdi:transit-connection-variant",
                    state_class="measurement",
                    entity_category="diagnostic",
                ),
            ),
            (
                "plc_lost_maps",
                "lost_maps",
                HaEntity(
                    "sensor",
                    "PLC lost MAPs",
                    icon="mdi:map-marker-off",
                    state_class="total_increasing",
                    entity_category="diagnostic",
                    enabled_by_default=False,
                ),
            ),
            (
                "plc_wire_length",
                "wire_length",
                HaEntity(
                    "sensor",
                    "PLC wire length",
                    device_class="distance",
                    unit="m",
                    state_class="measurement",
                    entity_category="diagnostic",
                    enabled_by_default=False,
                ),
            ),
            (
                "plc_neighbor_networks",
                "neighbor_networks",
                HaEntity(
                    "sensor",
                    "Neighbouring PLC networks",
                    icon="mdi:lan-pending",
                    state_class="measurement",
                    entity_category="diagnostic",
                    enabled_by_default=False,
                ),
            ),
        )
    ),
    Capability(
        "uplink_ssid",
        "repeater0",
        source=REPEATED,
        value=lambda r: u.ssid if (u := _uplink(r)) else None,
        ha=HaEntity("sensor", "Repeated network", icon="mdi:wifi-sync", entity_category="diagnostic"),
    ),
    Capability(
        "uplink_signal",
        "repeater0",
        source=REPEATED,
        value=lambda r: u.signal if (u := _uplink(r)) else None,
        ha=HaEntity(
            "sensor",
            "Uplink signal",
            device_class="signal_strength",
            unit="dBm",
            state_class="measurement",
            entity_category="diagnostic",
        ),
    ),
    Capability(
        "uplink_rate",
        "repeater0",
        source=REPEATED,
        value=lambda r: round_rate(u.rate) if (u := _uplink(r)) else None,
        ha=HaEntity(
            "sensor",
            "Uplink rate",
            device_class="data_rate",
            unit="Mbit/s",
            state_class="measurement",
            entity_category="diagnostic",
            enabled_by_default=False,
        ),
    ),
    Capability(
        "mesh_controller",
        "multiap",
        source=MULTI_AP,
        value=_controller,
        ha=HaEntity("sensor", "Mesh controller", icon="mdi:router-wireless", entity_category="diagnostic"),
    ),
    Capability(
        "wired_clients",
        PLC,
        value=lambda r: len(v.bridged) if (v := r.data(PLC_VIEW)) else None,
        ha=HaEntity("sensor", "Wired clients", icon="mdi:ethernet", state_class="measurement"),
    ),
    Capability(
        "name",
        PLCNET,
        value=lambda r: r.overview_name or None,
        parse=parse_name,
        write=_write_name,
        ha=HaEntity(
            "text", "Name in the device", icon="mdi:rename", entity_category="config", extra={"max": NAME_MAX}
        ),
    ),
    Capability(
        "online",
        "",
        ha=HaEntity(
            "binary_sensor",
            "Connectivity",
            device_class="connectivity",
            entity_category="diagnostic",
            state_from="availability",
        ),
    ),
    Capability(
        "wifi_clients",
        WIFI,
        source=STATIONS,
        value=lambda r: len(s) if (s := r.data(STATIONS)) is not None else None,
        ha=HaEntity("sensor", "WiFi clients", icon="mdi:wifi", state_class="measurement"),
    ),
    Capability(
        "connected_to_router",
        PLC,
        value=lambda r: p.attached_to_router if (p := _plc(r)) else None,
        ha=HaEntity(
            "binary_sensor", "Connected to router", icon="mdi:router-network", entity_category="diagnostic"
        ),
    ),
    Capability(
        "plc_devices",
        PLC,
        value=lambda r: p.devices if (p := _plc(r)) else None,
        ha=HaEntity(
            "sensor", "PLC devices", icon="mdi:lan", state_class="measurement", entity_category="diagnostic"
        ),
    ),
    Capability(
        "ip",
        API,
        value=lambda r: r.identity.ip,
        ha=HaEntity(
            "sensor",
            "IP address",
            icon="mdi:ip-network",
            entity_category="diagnostic",
            enabled_by_default=False,
        ),
    ),
    Capability(
        "refresh",
        API,
        kind="action",
        parse=parse_action,
        write=_refresh,
        ha=HaEntity("button", "Refresh", icon="mdi:refresh", entity_category="diagnostic"),
    ),
    Capability(
        "restart",
        "restart",
        kind="action",
        parse=parse_action,
        write=_action(lambda c: c.restart()),
        ha=HaEntity("button", "Restart", device_class="restart", entity_category="config"),
    ),
    Capability(
        "pair",
        PLCNET,
        kind="action",
        parse=parse_action,
        write=_action(lambda c: c.pair()),
        ha=HaEntity("button", "Start PLC pairing", icon="mdi:plus-network-outline", entity_category="config"),
    ),
    Capability(
        "wps",
        WIFI,
        kind="action",
        parse=parse_action,
        write=_action(lambda c: c.wps()),
        ha=HaEntity("button", "Start WPS", icon="mdi:wifi-plus", entity_category="config"),
    ),
    Capability(
        "install_update",
        "update",
        kind="action",
        parse=parse_action,
        # No read-back: the device reboots into the new firmware; the version arrives over mDNS and
        # triggers a fresh update check (see DeviceActor.publish_state). Meanwhile the state says the
        # install is in progress (`update_in_progress`, shown by Home Assistant's update entity).
        write=_write_install,
    ),
)

BY_KEY: dict[str, Capability] = {c.key: c for c in CAPABILITIES}
SOURCE_BY_KEY: dict[SourceKey[Any], Source] = {s.key: s for s in SOURCES}


# The events about one device (on `bridge/event`, and on `devolo/<id>/event` for Home Assistant's and
# openHAB's event entity), by the feature that makes them possible ("" = every device).
DEVICE_EVENTS: tuple[tuple[str, str], ...] = (
    ("device_online", ""),
    ("device_offline", ""),
    ("command_failed", API),
    ("firmware_available", "update"),
    ("plc_link_degraded", PLC),
    ("plc_link_recovered", PLC),
    ("plc_device_joined", PLC),
    ("plc_device_left", PLC),
    ("wifi_connected", WIFI),
    ("wifi_disconnected", WIFI),
    ("wifi_roamed", WIFI),
    ("firmware_update_started", "update"),
    ("firmware_updated", "update"),
    ("firmware_rollout_failed", "update"),
    ("plc_watchdog_restart", PLC),
    ("plc_watchdog_gave_up", PLC),
    ("wired_connected", PLC),
    ("wired_left", PLC),
)


def device_events(identity: DeviceIdentity) -> tuple[str, ...]:
    """The event types one device can have."""
    return tuple(kind for kind, feature in DEVICE_EVENTS if identity.supports(feature))


def supported(identity: DeviceIdentity, unsupported: Collection[SourceKey[Any]] = ()) -> list[Capability]:
    """The capabilities a device's features allow, less those fed by a source it said it cannot serve."""
    return [c for c in CAPABILITIES if identity.supports(c.feature) and c.source not in unsupported]


def announcements(before: dict[str, Json], now: dict[str, Json]) -> list[tuple[str, Json]]:
    """The events a new state brings: (type, version) for each announcing key that turned True."""
    return [
        (c.announce[0], now.get(c.announce[1]))
        for c in CAPABILITIES
        if c.announce and now.get(c.key) is True and before.get(c.key) is not True
    ]


def sources_for(identity: DeviceIdentity) -> list[Source]:
    """The sources a device's features allow."""
    return [s for s in SOURCES if identity.supports(s.feature)]


def lookup(identity: DeviceIdentity, key: str) -> Capability:
    """A writable capability for a command, or CommandError saying why not."""
    capability = BY_KEY.get(key)
    if capability is None:
        raise CommandError(key, "unknown key")
    if not identity.supports(capability.feature):
        raise CommandError(key, "not supported by this device")
    if not capability.writable:
        raise CommandError(key, "read-only")
    return capability


def round_rate(mbits: float) -> float:
    """A data rate as published: 0.1 Mbit/s (devices report 1/16 steps that mean nothing to a user)."""
    return round(mbits, 1)


def link_keys(destination: str) -> tuple[str, str]:
    """The state keys of one directed PLC link's rates (`destination` as `AABBCCDDEEFF`)."""
    return f"tx_rate_{destination.lower()}", f"rx_rate_{destination.lower()}"


def build_state(readings: Readings, identity: DeviceIdentity) -> dict[str, Json]:
    """The state object: every supported capability with a value, plus each PLC link's rates."""
    state: dict[str, Json] = {}
    for capability in supported(identity):
        if capability.kind == "state" and capability.value is not None:
            value = capability.value(readings)
            if value is not None:
                state[capability.key] = value
    plc = _plc(readings)
    for destination, rates in sorted((plc.links if plc else {}).items()):
        tx_key, rx_key = link_keys(destination)
        state[tx_key], state[rx_key] = (round_rate(rates[0]), round_rate(rates[1])) if rates else (None, None)
    return state
