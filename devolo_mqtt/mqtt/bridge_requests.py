"""Bridge requests: `bridge/request/<op>` → `bridge/response/<op>`, each answered, never raising."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from devolo_mqtt.core.capabilities import INSTALL_SECONDS
from devolo_mqtt.core.errors import CommandError, DevoloMqttError
from devolo_mqtt.core.inbound import BadPayload, decode_json
from devolo_mqtt.core.mac import display_mac, normalise_mac
from devolo_mqtt.devices.registry import DeviceRegistry
from devolo_mqtt.devices.rollout import Rollout
from devolo_mqtt.mqtt.device_output import MqttDeviceOutput
from devolo_mqtt.mqtt.ha.publisher import HaPublisher
from devolo_mqtt.settings import MAX_NAME


@dataclass(frozen=True, slots=True)
class Context:
    """What requests may use: the devices, the discovery publisher and the bridge's self-description."""

    registry: DeviceRegistry
    output: MqttDeviceOutput
    ha: HaPublisher
    diagnostics: Callable[[], dict[str, Any]]
    rollout: Rollout


Handler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
log = structlog.get_logger("devolo_mqtt.requests")


def error(reason: str, transaction: Any = None) -> dict[str, Any]:
    """An error response."""
    return {"status": "error", "error": reason, "transaction": transaction}


async def answer(ctx: Context, op: str, payload: bytes) -> dict[str, Any]:
    """Run one request; the response object (`status`, `data` or `error`, `transaction`)."""
    transaction = None
    try:
        body = decode_json(payload) if payload.strip() else {}
        if not isinstance(body, dict):
            raise CommandError(op, "expected a JSON object")
        transaction = body.pop("transaction", None)
        handler = HANDLERS.get(op)
        if handler is None:
            raise CommandError(op, f"unknown request; known: {', '.join(sorted(HANDLERS))}")
        return {"status": "ok", "data": await handler(ctx, body), "transaction": transaction}
    except BadPayload as err:
        return error(err.reason, transaction)
    except CommandError as err:
        return error(err.reason, transaction)
    except DevoloMqttError as err:
        return error(str(err), transaction)
    except Exception:  # every request is answered, whatever went wrong inside
        log.exception("request_failed", op=op)
        return error("internal error (see the bridge's log)", transaction)


async def _refresh(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    wanted = body.get("device")
    if wanted is not None and not isinstance(wanted, str):
        raise CommandError("refresh", "device must be a device id (a string)")
    targets = [r for r in ctx.registry.runtimes.values() if wanted in (None, r.id) and not r.provisional]
    if wanted is not None and not targets:
        raise CommandError("refresh", f"unknown device {wanted[:80]!r}")
    for runtime in targets:
        runtime.request_refresh()  # coalesced: a burst of requests is one read per device
    return {"devices": [r.id for r in targets]}


async def _rename(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    try:
        mac = normalise_mac(str(body.get("mac", "")))
    except ValueError as err:
        raise CommandError("mac/rename", str(err)) from None
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise CommandError("mac/rename", f"name must be a string of at most {MAX_NAME} characters, or null")
    ctx.registry.names.rename(mac, name)
    ctx.output.mac_renamed(mac)
    return {"mac": display_mac(mac), "name": name or None}


async def _republish(ctx: Context, _: dict[str, Any]) -> dict[str, Any]:
    return {"configs": ctx.ha.republish()}


async def _purge(ctx: Context, _: dict[str, Any]) -> dict[str, Any]:
    return {"cleared": ctx.ha.purge()}


async def _firmware_update(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """A roll-out of the offered updates: the devices listed (default: every one with an update),
    one at a time, the router-attached adapter last; answered with the order at once, progress as
    events. `timeout`: seconds each device may take to come back with its new firmware."""
    devices = body.get("devices")
    if devices is not None and (
        not isinstance(devices, list) or not devices or not all(isinstance(d, str) for d in devices)
    ):
        raise CommandError("firmware/update", "devices must be a non-empty list of device ids")
    timeout = body.get("timeout", INSTALL_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 1 <= timeout <= 24 * 3600:
        raise CommandError("firmware/update", "timeout must be seconds from 1 to 86400")
    order = ctx.rollout.start(devices, timeout=float(timeout))
    return {"order": [r.id for r in order], "timeout": timeout}


async def _diagnostics(ctx: Context, _: dict[str, Any]) -> dict[str, Any]:
    return ctx.diagnostics()


HANDLERS: dict[str, Handler] = {
    "diagnostics": _diagnostics,
    "refresh": _refresh,
    "mac/rename": _rename,
    "discovery/republish": _republish,
    "discovery/purge": _purge,
    "firmware/update": _firmware_update,
}
