"""Plain data the bridge passes around: what a device is and what its sources read."""

from __future__ import annotations

from dataclasses import dataclass, field

Json = str | int | float | bool | None  # a scalar as published in JSON
EventData = dict[str, Json | list[str]]  # an event's data: scalars, and lists of ids

# Pseudo features, next to the devices' own Features flags:
API = "api"  # a manageable device (it has the device API)
PLCNET = "plcnet"  # it has the plcnet API (network overview, locate, pairing)
PLC = "plc"  # it is a member of a PLC network (manageable or not)


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What mDNS told about a manageable device."""

    serial: str
    ip: str
    product: str
    mt: str
    features: frozenset[str]
    mac: str | None  # PLC MAC, `AABBCCDDEEFF`; None for devices without plcnet API (repeaters)
    firmware: str
    hostname: str
    manageable: bool = True

    def supports(self, feature: str) -> bool:
        """Whether a Features flag or pseudo feature applies; an empty feature means always."""
        pseudo = {
            "": True,
            API: self.manageable,
            PLCNET: self.manageable and self.mac is not None,
            PLC: self.mac is not None,
        }
        return pseudo.get(feature, feature in self.features)


@dataclass(frozen=True, slots=True)
class GuestWifi:
    """Guest WiFi as read from an access point (the key is a secret: never published by default)."""

    enabled: bool
    remaining: int
    ssid: str
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class FirmwareCheck:
    """Result of the firmware check; `version` is empty when up to date."""

    available: bool
    version: str


@dataclass(frozen=True, slots=True)
class Station:
    """One connected WiFi client as an access point reports it."""

    mac: str  # AABBCCDDEEFF
    band: str  # "2.4" / "5" / "unknown"
    wifi: str  # "main" / "guest"
    rx_rate: int
    tx_rate: int


@dataclass(frozen=True, slots=True)
class PlcDevice:
    """One device of a PLC network overview."""

    mac: str
    name: str
    product: str
    product_id: str
    attached_to_router: bool
    local: bool
    ip: str
    firmware: str = ""
    bridged: tuple[str, ...] = ()  # the LAN devices behind it (`AABBCCDDEEFF`), as its overview lists them


@dataclass(frozen=True, slots=True)
class PlcRate:
    """One directed link's rates, Mbit/s."""

    src: str
    dst: str
    tx: float
    rx: float


@dataclass(frozen=True, slots=True)
class Overview:
    """A PLC network overview as one member sees it."""

    devices: tuple[PlcDevice, ...]
    rates: tuple[PlcRate, ...]


@dataclass(frozen=True, slots=True)
class PlcHealth:
    """What an adapter's PLC chip says of itself (its support dump); None: its firmware does not say."""

    temperature: float | None  # °C
    hops: int | None  # to the domain master: 0 is the master, 1 direct, more is relayed (a poor link)
    wire_length: int | None  # m, to the device it uplinks to (None without an uplink)
    lost_maps: int | None  # media access plans lost since the adapter's last start
    neighbor_networks: int | None  # other PLC networks it sees


@dataclass(frozen=True, slots=True)
class RepeatedAp:
    """The access point a WiFi repeater repeats, as the repeater hears it."""

    mac: str  # AABBCCDDEEFF
    ssid: str
    band: str
    channel: int
    signal: int  # dBm
    rate: float  # Mbit/s


@dataclass(frozen=True, slots=True)
class MultiAp:
    """A repeater's place in a devolo WiFi mesh (multi-AP): whether it is on, and its controller."""

    enabled: bool
    controller_mac: str | None
    controller_ip: str | None


@dataclass(frozen=True, slots=True)
class NeighborAp:
    """A foreign WiFi network an access point sees."""

    ssid: str
    band: str
    channel: int
    signal: int  # dBm


@dataclass(frozen=True, slots=True)
class PlcView:
    """What the last network overview said about one device: its links are keyed by destination MAC.

    A link that was measured before but is missing now maps to None ("no value", never a stale number).
    """

    network: str
    attached_to_router: bool
    devices: int
    links: dict[str, tuple[float, float] | None]
    router_macs: frozenset[str] = frozenset()
    bridged: tuple[str, ...] = ()  # the LAN devices behind it (PLC members left out)
