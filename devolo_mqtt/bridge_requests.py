"""Bridge requests: `bridge/request/<op>` → `bridge/response/<op>`, each answered, never raising."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from devolo_mqtt import capabilities
from devolo_mqtt.errors import CommandError, DevoloMqttError
from devolo_mqtt.mac import colon_mac, normalise_mac
from devolo_mqtt.poller import Command

if TYPE_CHECKING:
    from devolo_mqtt.app import Bridge

Handler = Callable[["Bridge", dict[str, Any]], Awaitable[dict[str, Any]]]


async def answer(bridge: Bridge, op: str, payload: bytes) -> dict[str, Any]:
    """Run one request; the response object (`status`, `data` or `error`, `transaction`)."""
    transaction = None
    try:
        body = json.loads(payload) if payload.strip() else {}
        if not isinstance(body, dict):
            raise CommandError(op, "expected a JSON object")
        transaction = body.pop("transaction", None)
        handler = HANDLERS.get(op)
        if handler is None:
            raise CommandError(op, f"unknown request; known: {', '.join(sorted(HANDLERS))}")
        return {"status": "ok", "data": await handler(bridge, body), "transaction": transaction}
    except ValueError:
        return {"status": "error", "error": "payload is not valid JSON", "transaction": transaction}
    except CommandError as err:
        return {"status": "error", "error": err.reason, "transaction": transaction}
    except DevoloMqttError as err:
        return {"status": "error", "error": str(err), "transaction": transaction}


async def _refresh(bridge: Bridge, body: dict[str, Any]) -> dict[str, Any]:
    wanted = body.get("device")
    targets = [r for r in bridge.runtimes.values() if wanted in (None, r.id)]
    if wanted is not None and not targets:
        raise CommandError("refresh", f"unknown device {wanted!r}")
    every_source = tuple(s.name for s in capabilities.SOURCES)
    for runtime in targets:
        runtime.commands.put_nowait(Command({}, internal_refresh=every_source))
    return {"devices": [r.id for r in targets]}


async def _rename(bridge: Bridge, body: dict[str, Any]) -> dict[str, Any]:
    try:
        mac = normalise_mac(str(body.get("mac", "")))
    except ValueError as err:
        raise CommandError("mac/rename", str(err)) from None
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 64):
        raise CommandError("mac/rename", "name must be a string of at most 64 characters, or null")
    bridge.names.rename(mac, name)
    bridge.mac_renamed(mac)
    return {"mac": colon_mac(mac).lower(), "name": name or None}


async def _republish(bridge: Bridge, _: dict[str, Any]) -> dict[str, Any]:
    return {"configs": bridge.republish_discovery()}


async def _purge(bridge: Bridge, _: dict[str, Any]) -> dict[str, Any]:
    return {"cleared": bridge.purge_discovery()}


HANDLERS: dict[str, Handler] = {
    "refresh": _refresh,
    "mac/rename": _rename,
    "discovery/republish": _republish,
    "discovery/purge": _purge,
}
