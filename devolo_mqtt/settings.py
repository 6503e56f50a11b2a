"""Configuration: a YAML file, overridden by `DEVOLO_MQTT_*` environment variables, validated before
any I/O. Secrets are `SecretStr` and can come from files (`*_file`, e.g. Docker secrets).
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import re
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from devolo_mqtt.core.errors import ConfigError
from devolo_mqtt.core.mac import normalise_mac
from devolo_mqtt.mqtt.topics import device_id_problem

# A topic prefix: no wildcards, no whitespace, no NUL (MQTT forbids U+0000 in topics), bounded length.
_TOPIC_PREFIX = r"^[^#+\s\x00]+$"
_TOPIC_PREFIX_MAX = 128
MAX_NAME = 64  # a MAC's or device's name, from the config or `mac/rename`
# The polling settings that pace a device's own sources (`devices[].polling` may override each).
SourceSetting = Literal["state", "firmware", "plc_health", "neighbors", "uptime", "wifi"]
_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("config_file", default=None)


def _read_secret(value: SecretStr | None, file: Path | None, field: str) -> SecretStr | None:
    if file is None:
        return value
    try:
        return SecretStr(file.read_text(encoding="utf-8").strip())
    except OSError as err:
        raise ValueError(f"{field}_file: cannot read {file}: {err.strerror}{_who(err)}") from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    """The broker connection."""

    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    client_id: Annotated[str, Field(pattern=r"^[^\x00]{1,128}$")] | None = None
    protocol: Literal["3.1.1", "5"] = "5"
    base_topic: Annotated[str, Field(pattern=_TOPIC_PREFIX, max_length=_TOPIC_PREFIX_MAX)] = "devolo"
    instance_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] | None = None
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 60
    reconnect_min: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max: Annotated[float, Field(gt=0)] = 60.0
    # How long the broker keeps the bridge's session (subscriptions and queued QoS 1 commands) while it
    # is away: commands sent during a short outage run once after the reconnect; older ones never do.
    # 0 = a clean session on every connect.
    session_expiry: Annotated[int, Field(ge=0, le=7 * 86400)] = 300

    @model_validator(mode="after")
    def _files(self) -> Self:
        object.__setattr__(self, "password", _read_secret(self.password, self.password_file, "password"))
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.base_topic.endswith("/") or self.base_topic.startswith("/"):
            raise ValueError("base_topic must not start or end with '/'")
        return self


Interval = Annotated[float, Field(gt=0)]


class DevicePolling(_Section):
    """One device's own pace: seconds, or `off` (YAML's `off` is false too) to never read that source —
    its entities go. E.g. a slow adapter's state every 5 minutes, a repeater's neighbour scans off."""

    state: Interval | None = None
    firmware: Interval | Literal[False, "off"] | None = None
    plc_health: Interval | Literal[False, "off"] | None = None
    neighbors: Interval | Literal[False, "off"] | None = None
    uptime: Interval | Literal[False, "off"] | None = None
    wifi: Interval | Literal[False, "off"] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _seconds_or_off(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise ValueError("must be above 0 (seconds), or off")
        return value

    def applied_to(self, polling: PollingSettings) -> PollingSettings:
        """The bridge's polling with this device's intervals."""
        update = {k: v for k, v in self.model_dump().items() if isinstance(v, int | float) and v is not False}
        return polling.model_copy(update=update)

    @property
    def off(self) -> frozenset[SourceSetting]:
        """The settings switched off: their sources are never read."""
        return frozenset(k for k, v in self.model_dump().items() if v is False or v == "off")  # type: ignore[misc]


class DeviceConfig(_Section):
    """One device: a manageable one (serial and/or ip) or a non-manageable PLC adapter (mac)."""

    id: str | None = None
    serial: Annotated[str, Field(pattern=r"^[0-9A-Za-z]{1,32}$")] | None = None
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] | None = None
    ip: IPvAnyAddress | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    mac: str | None = None
    model: str | None = None
    network: str | None = None
    enabled: bool = True
    manageable: bool = True
    standby_expected: bool = False
    polling: DevicePolling | None = None

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        return None if value is None else normalise_mac(value)

    @field_validator("id")
    @classmethod
    def _topic_id(cls, value: str | None) -> str | None:
        if value is not None and (problem := device_id_problem(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _identity(self) -> Self:
        object.__setattr__(self, "password", _read_secret(self.password, self.password_file, "password"))
        if self.manageable and self.serial is None and self.ip is None:
            raise ValueError("a manageable device needs a serial or an ip")
        if not self.manageable and self.mac is None:
            raise ValueError("a non-manageable device needs its PLC mac")
        return self

    @property
    def topic_id(self) -> str | None:
        """The configured id, else the serial, else (non-manageable) the MAC in lower case."""
        return self.id or self.serial or (self.mac.lower() if self.mac else None)


class DiscoverySettings(_Section):
    """Continuous mDNS discovery of manageable devices."""

    enabled: bool = True
    interfaces: list[str] | None = None  # IPv4 addresses of the interfaces to browse on; None = all
    # Only devices announced with an address inside one of these networks are adopted; None = any.
    # (A neighbour's adapters on a shared segment, or another site's, stay out.)
    networks: list[IPv4Network] | None = None

    @field_validator("interfaces")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            ipaddress.ip_address(item)
        return value


class PollingSettings(_Section):
    """How often each source is read, and how long one request to a device may take."""

    state: Annotated[float, Field(gt=0)] = 60.0
    firmware: Annotated[float, Field(gt=0)] = 6 * 3600.0
    # The PLC chip's support dump (temperature, hops, lost MAPs …): slow on real adapters (seconds).
    plc_health: Annotated[float, Field(gt=0)] = 6 * 3600.0
    neighbors: Annotated[float, Field(gt=0)] = 300.0
    uptime: Annotated[float, Field(gt=0)] = 3600.0  # last restart (also read on every reconnection)
    network: Annotated[float, Field(gt=0)] = 300.0
    wifi: Annotated[float, Field(gt=0)] = 15.0
    heartbeat: Annotated[float, Field(gt=0)] = 300.0
    request_timeout: Annotated[float, Field(gt=0)] = 20.0
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    max_concurrency: Annotated[int, Field(ge=1, le=512)] = 16
    offline_retry_max: Annotated[float, Field(gt=0)] = 300.0

    @property
    def link_expire_after(self) -> int:
        """`expire_after` of the PLC rate sensors: longer than the widest gap between two state messages
        of a reachable device (an unchanged state comes at the heartbeat; a device is asked after a round
        of slow requests at worst; an adapter without API is published with its network's overview),
        and at least three network rounds (a link not measured for that long goes unavailable)."""
        gap = self.heartbeat + self.network + 3 * self.request_timeout
        return int(max(3 * self.network, gap) + 1)


class PlcWatchdogSettings(_Section):
    """Restart an adapter whose PLC links stay degraded, or that stays missing (opt-in), within limits."""

    enabled: bool = False
    dry_run: bool = False  # decide and report (events, diagnostics), restart nothing
    after: Annotated[int, Field(ge=2, le=100)] = 3  # bad network overviews in a row before a restart
    max_restarts: Annotated[int, Field(ge=1, le=20)] = 3  # per adapter within `window`…
    window: Annotated[float, Field(gt=0)] = 6 * 3600.0  # …seconds; then it gives up on that adapter
    allow_router: bool = False  # may restart the router-attached adapter (cuts the network off a while)


class HomeAssistantSettings(_Section):
    """Home Assistant MQTT discovery."""

    enabled: bool = True
    discovery_prefix: Annotated[str, Field(pattern=r"^[^#+\s/\x00]+$", max_length=_TOPIC_PREFIX_MAX)] = (
        "homeassistant"
    )
    # default: <discovery_prefix>/status; a plain topic (no wildcards: it must not subscribe to everything)
    status_topic: Annotated[str, Field(pattern=_TOPIC_PREFIX, max_length=_TOPIC_PREFIX_MAX)] | None = None
    stale_grace: Annotated[float, Field(ge=0)] = 120.0
    # `bridge`: every entity id suggested (`switch.devolo_<serial>_leds`); `homeassistant`: none, Home
    # Assistant's own format (with the area since 2026.6, as the user chose since 2026.8).
    entity_ids: Literal["bridge", "homeassistant"] = "bridge"


class WifiSettings(_Section):
    """WiFi clients and presence."""

    consider_home: Annotated[float, Field(ge=0)] = 180.0  # seconds away before `not_home`
    track_random: bool = False  # track clients with random (locally administered) MACs too
    max_clients_per_ap: Annotated[int, Field(ge=1, le=1000)] = 100


class LoggingSettings(_Section):
    """Log level and format (console on a TTY, JSON otherwise, unless set)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "console", "json"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class GuestSettings(_Section):
    """Guest WiFi."""

    default_duration: Annotated[int, Field(ge=0, le=1440)] = 0
    # Publish a QR code that joins the guest WiFi (`<id>/guest_wifi/qr`). It holds the WiFi key: off
    # unless asked for, and its retained picture is cleared again when switched off.
    publish_credentials: bool = False


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="DEVOLO_MQTT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mqtt: MqttSettings = MqttSettings()
    devices: list[DeviceConfig] = []
    device_password: SecretStr | None = None  # default for devices without their own
    device_password_file: Path | None = None
    discovery: DiscoverySettings = DiscoverySettings()
    polling: PollingSettings = PollingSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    guest_wifi: GuestSettings = GuestSettings()
    wifi: WifiSettings = WifiSettings()
    plc_watchdog: PlcWatchdogSettings = PlcWatchdogSettings()
    mac_names: dict[str, Annotated[str, Field(min_length=1, max_length=MAX_NAME)]] = {}
    logging: LoggingSettings = LoggingSettings()
    data_dir: Path = Path("data")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Priority: explicit arguments, environment, the YAML file, defaults."""
        return init_settings, env_settings, _YamlSource(settings_cls, _CONFIG_FILE.get())

    @field_validator("mac_names")
    @classmethod
    def _mac_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for mac in value:
            normalise_mac(mac)
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        object.__setattr__(
            self,
            "device_password",
            _read_secret(self.device_password, self.device_password_file, "device_password"),
        )
        for attr in ("serial", "ip", "mac", "topic_id"):
            seen: dict[str, int] = {}
            for index, device in enumerate(self.devices):
                value = getattr(device, attr)
                if value is None:
                    continue
                key = str(value).lower()
                if key in seen:
                    name = "id" if attr == "topic_id" else attr
                    raise ValueError(
                        f"devices.{index}.{name}: duplicate of devices.{seen[key]}.{name} ({value})"
                    )
                seen[key] = index
        return self

    def password_for(self, device: DeviceConfig | None) -> str:
        """The device's own password, else the default one, else empty (no password set)."""
        secret = (device.password if device else None) or self.device_password
        return secret.get_secret_value() if secret else ""

    def secrets(self) -> list[str]:
        """Every secret of the configuration, for log redaction."""
        values = [self.mqtt.password, self.device_password, *(d.password for d in self.devices)]
        return [v.get_secret_value() for v in values if v is not None]


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is None:
            return
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"{path}: cannot read: {err.strerror}{_who(err)}", field="--config") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}", field="--config") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping", field="--config")
        self._data = loaded or {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the configuration; a `ConfigError` names the first bad field."""
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(_describe(err), field=_message(err.errors()[0])[0]) from None
    finally:
        _CONFIG_FILE.reset(token)


def _location(loc: tuple[int | str, ...], message: str = "") -> str:
    where = ".".join(str(part) for part in loc if "[" not in str(part))
    if not where and re.match(r"^[\w.]+: ", message):
        where = message.split(":", 1)[0]  # a cross-field check names its field first
    return where or "(top level)"


def _message(item: Any) -> tuple[str, str]:
    message = str(item["msg"]).removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "unknown setting"
    where = _location(item["loc"], message)
    return where, message.removeprefix(f"{where}: ")


def _describe(err: ValidationError) -> str:
    lines = [": ".join(_message(item)) for item in err.errors()]
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _who(err: OSError) -> str:
    """For a refused read: which user needs access (in a container, not the one on the host)."""
    if not isinstance(err, PermissionError) or not hasattr(os, "geteuid"):
        return ""
    return f" (the bridge runs as uid {os.geteuid()}, gid {os.getegid()}: that user needs read access)"
