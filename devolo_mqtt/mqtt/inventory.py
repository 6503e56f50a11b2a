"""The bridge's self-description: `bridge/devices`, `bridge/health` and `bridge/info` payloads."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from devolo_mqtt import __version__
from devolo_mqtt.core.capabilities import PLC_HEALTH
from devolo_mqtt.core.clock import iso
from devolo_mqtt.core.model import Json
from devolo_mqtt.devices.actor import DeviceActor
from devolo_mqtt.devices.adapter import AdapterRuntime
from devolo_mqtt.log import REDACTOR
from devolo_mqtt.mqtt.session import Counters
from devolo_mqtt.plc.monitor import Unmanaged
from devolo_mqtt.settings import Settings

SCHEMA_VERSION = 1
Entry = dict[str, Json | list[str]]


def _entry(
    *,
    name: str,
    manageable: bool,
    online: bool | None,
    mac: str | None,
    device_id: str | None = None,
    serial: str | None = None,
    model: str | None = None,
    mt: str | None = None,
    ip: str | None = None,
    features: Iterable[str] = (),
    network: str | None = None,
) -> Entry:
    return {
        "id": device_id,
        "serial": serial,
        "name": name,
        "model": model,
        "mt": mt,
        "ip": ip,
        "mac": mac,
        "manageable": manageable,
        "features": sorted(features),
        "network": network,
        "online": online,
    }


def device_entry(runtime: DeviceActor) -> Entry:
    """A manageable device (its identity may not be known yet)."""
    identity = runtime.identity_
    return _entry(
        device_id=None if runtime.provisional else runtime.id,  # not final before the first connection
        name=runtime.name,
        manageable=True,
        online=runtime.online,
        ip=runtime.ip or None,
        serial=identity.serial if identity else None,
        model=identity.product if identity else None,
        mt=identity.mt if identity else None,
        mac=identity.mac if identity else None,
        features=identity.features if identity else (),
        network=runtime.config.network if runtime.config else None,
    )


def adapter_entry(adapter: AdapterRuntime) -> Entry:
    """A configured adapter without an API."""
    return _entry(
        device_id=adapter.id,
        name=adapter.name,
        manageable=False,
        online=adapter.online,
        mac=adapter.mac,
        model=adapter.identity.product,
        network=adapter.config.network,
    )


def unmanaged_entry(mac: str, seen: Unmanaged, name: str) -> Entry:
    """An adapter seen in an overview that nobody configured."""
    return _entry(
        name=name,
        manageable=False,
        online=True,
        mac=mac,
        model=seen.device.product or None,
        ip=seen.device.ip or None,
        network=seen.network,
    )


def health(uptime: float, counters: Counters, runtimes: Iterable[DeviceActor]) -> dict[str, Any]:
    """`bridge/health`."""
    return {
        "uptime": round(uptime),
        "mqtt": counters.as_dict(),
        "devices": {
            r.id: {
                "online": r.online,
                "last_poll": iso(r.stats.last_poll),
                "last_error": r.stats.last_error,
                "latency_ms": r.stats.latency_ms,
            }
            for r in runtimes
        },
    }


def health_essence(health: dict[str, Any]) -> dict[str, Any]:
    """What makes `bridge/health` worth publishing before its heartbeat: a device's online state or
    last error changed (not the counters, poll times and latencies that move on every poll)."""
    return {device: [entry["online"], entry["last_error"]] for device, entry in health["devices"].items()}


def diagnostics(
    settings: Settings,
    *,
    uptime: float,
    connected: bool,
    counters: Counters,
    runtimes: Iterable[DeviceActor],
    adapters: Iterable[AdapterRuntime],
    networks: dict[str, list[str]],
) -> dict[str, Any]:
    """A snapshot for a bug report: version, effective configuration, every device's identity,
    features, firmware, errors and timings, and the MQTT counters. Secrets are left out by
    construction (the configuration dumps them as '**********'), and every string passes the log
    redactor as well (a device's error text could quote one)."""
    snapshot = {
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in ("devolo-plc-api", "aiomqtt", "zeroconf", "httpx")},
        "generated": iso(datetime.now(UTC)),
        "uptime": round(uptime),
        "config": settings.model_dump(mode="json"),
        "mqtt": {"connected": connected, **counters.as_dict()},
        "devices": [_diagnosed(r) for r in runtimes],
        "adapters": [adapter_entry(a) for a in adapters],
        "networks": networks,
    }
    return dict(REDACTOR.scrub(snapshot))


def _diagnosed(runtime: DeviceActor) -> dict[str, Any]:
    return {
        **device_entry(runtime),
        "id": runtime.id,
        "firmware": runtime.firmware or None,
        "last_seen": iso(runtime.last_seen),
        "last_poll": iso(runtime.stats.last_poll),
        "latency_ms": runtime.stats.latency_ms,
        "last_error": runtime.stats.last_error,
        "errors": dict(runtime.stats.errors),
        "unsupported_sources": runtime.unsupported_sources,
        "plc_health": asdict(chip) if (chip := runtime.data(PLC_HEALTH)) else None,
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def info(settings: Settings) -> dict[str, Any]:
    """`bridge/info`: version, schema and the effective configuration (secrets dump as '**********')."""
    return {
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "instance_id": settings.mqtt.instance_id,
        "started": iso(datetime.now(UTC)),
        "config": settings.model_dump(mode="json"),
    }
