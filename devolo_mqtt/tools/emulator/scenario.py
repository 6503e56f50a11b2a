"""The scenario file: which devices, PLC networks and WiFi stations an emulator serves.

A scenario is YAML validated by pydantic before anything starts, so a typo gets an error naming the
field instead of a half-started emulator.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devolo_mqtt.core.errors import ConfigError
from devolo_mqtt.core.mac import colon_mac, normalise_mac
from devolo_mqtt.tools.emulator.catalog import PRODUCTS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpdateSpec(_Strict):
    """A firmware update that becomes available and can be installed."""

    version: str
    date: str = "2024-06-01"
    available_after: Annotated[float, Field(ge=0)] = 0.0
    install_seconds: Annotated[float, Field(ge=0)] = 30.0


class DeviceSpec(_Strict):
    """One emulated device."""

    serial: Annotated[str, Field(pattern=r"^[0-9A-Za-z]{4,20}$")]
    model: str
    name: str = ""
    ip: ipaddress.IPv4Address | None = None
    password: str = ""
    plc_mac: str | None = None
    network: str | None = None
    attached_to_router: bool = False
    firmware: str | None = None
    update: UpdateSpec | None = None
    mesh: str = "default"
    guest_ssid: str = "devolo-guest-930"
    guest_key: str = "HMANPGBA"
    restart_seconds: Annotated[float, Field(ge=0)] = 20.0
    # What the device announces as its serial (mDNS `SN`) instead: a broken or hostile device.
    announce_serial: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # The LAN devices behind it (MACs), listed as `bridged_devices` in its network's overview.
    wired: list[str] = []
    # Device API calls this firmware does not offer although its features suggest them (HTTP 404),
    # e.g. ["WifiNeighborAPsGet"] on older firmware.
    unsupported: list[str] = []

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in PRODUCTS:
            raise ValueError(f"unknown model {value!r}; known: {', '.join(sorted(PRODUCTS))}")
        return value

    @field_validator("plc_mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        return None if value is None else normalise_mac(value)

    @field_validator("wired")
    @classmethod
    def _macs(cls, value: list[str]) -> list[str]:
        return [normalise_mac(v) for v in value]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        product = PRODUCTS[self.model]
        if product.plcnet and (self.plc_mac is None or self.network is None):
            raise ValueError(f"model {self.model} is a PLC device: plc_mac and network are required")
        if not product.plcnet and (self.plc_mac or self.network):
            raise ValueError(f"model {self.model} has no PLC: drop plc_mac and network")
        if not product.manageable and self.ip is not None:
            raise ValueError(f"model {self.model} is not manageable: it has no ip")
        return self


class StationSpec(_Strict):
    """A WiFi client; `ap` is the serial of the access point it starts on (None: away)."""

    mac: str
    ap: str | None = None
    band: Literal["2.4", "5"] = "5"
    wifi: Literal["main", "guest"] = "main"
    rate: Annotated[int, Field(ge=0)] = 87800

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return colon_mac(normalise_mac(value))


class Scenario(_Strict):
    """The whole emulated site."""

    seed: int = 1
    tick_seconds: Annotated[float, Field(gt=0)] = 1.0
    dynamics: bool = True
    http_port: Annotated[int, Field(ge=0, le=65535)] = 14791
    address_base: ipaddress.IPv4Address = ipaddress.IPv4Address("127.0.10.1")
    devices: list[DeviceSpec]
    stations: list[StationSpec] = []

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        _unique("devices[].serial", [d.serial for d in self.devices])
        _unique("devices[].plc_mac", [d.plc_mac for d in self.devices if d.plc_mac])
        _unique("devices[].ip", [str(d.ip) for d in self.devices if d.ip])
        _unique("stations[].mac", [s.mac for s in self.stations])
        aps = {d.serial for d in self.devices if PRODUCTS[d.model].has_wifi}
        for station in self.stations:
            if station.ap is not None and station.ap not in aps:
                raise ValueError(f"stations[{station.mac}].ap: {station.ap} is not a WiFi access point")
        return self

    def addresses(self) -> dict[str, str]:
        """Each manageable device's address: its own, else the next free one from `address_base`."""
        taken = {str(d.ip) for d in self.devices if d.ip}
        result: dict[str, str] = {}
        candidate = int(self.address_base)
        for device in self.devices:
            if not PRODUCTS[device.model].manageable:
                continue
            if device.ip is not None:
                result[device.serial] = str(device.ip)
                continue
            while str(ipaddress.IPv4Address(candidate)) in taken:
                candidate += 1
            result[device.serial] = str(ipaddress.IPv4Address(candidate))
            taken.add(result[device.serial])
        return result


def _unique(field: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{field}: duplicate value {value!r}")
        seen.add(value)


def parse_scenario(data: object, source: str = "scenario") -> Scenario:
    """Validate scenario data; errors name the offending field."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {where}: {first['msg']}", field=where) from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read scenario: {err}", field=str(path)) from None
    return parse_scenario(data, str(path))
