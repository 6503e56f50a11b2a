"""Plain data the bridge passes around: what a device is and what its sources read."""

from __future__ import annotations

from dataclasses import dataclass, field

PLCNET = "plcnet"  # pseudo feature: the device has a plcnet API (PLC network overview, locate, pair)


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

    def supports(self, feature: str) -> bool:
        """Whether a Features flag (or `plcnet`) is announced; an empty feature means always."""
        if not feature:
            return True
        if feature == PLCNET:
            return self.mac is not None
        return feature in self.features


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
