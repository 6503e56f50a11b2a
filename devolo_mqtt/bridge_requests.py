"""Bridge requests: `bridge/request/<op>` → `bridge/response/<op>`, each answered, never raising."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog

from devolo_mqtt.errors import CommandError, DevoloMqttError
from devolo_mqtt.inbound import BadPayload, decode_json
from devolo_mqtt.mac import display_mac, normalise_mac
from devolo_mqtt.names import MacNames
from devolo_mqtt.poller import DeviceRuntime
from devolo_mqtt.settings import MAX_NAME


class Bridge(Protocol):
    """What requests may use (the composition root provides it; this module never imports it)."""

    @property
    def runtimes(self) -> Mapping[str, DeviceRuntime]: ...

    @property
    def names(self) -> MacNames: ...

    def mac_renamed(self, mac: str) -> None: ...

    def republish_discovery(self) -> int: ...

    def purge_discovery(self) -> int: ...


Handler = Callable[[Bridge, dict[str, Any]], Awaitable[dict[str, Any]]]
log = structlog.get_logger("devolo_mqtt.requests")


def error(reason: str, transaction: Any = None) -> dict[str, Any]:
    """An error response."""
    return {"status": "error", "error": reason, "transaction": transaction}


async def answer(bridge: Bridge, op: str, payload: bytes) -> dict[str, Any]:
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
        return {"status": "ok", "data": await handler(bridge, body), "transaction": transaction}
    except BadPayload as err:
        return error(err.reason, transaction)
    except CommandError as err:
        return error(err.reason, transaction)
    except DevoloMqttError as err:
        return error(str(err), transaction)
    except Exception:  # every request is answered, whatever went wrong inside
        log.exception("request_failed", op=op)
        return error("internal error (see the bridge's log)", transaction)


async def _refresh(bridge: Bridge, body: dict[str, Any]) -> dict[str, Any]:
    wanted = body.get("device")
    if wanted is not None and not isinstance(wanted, str):
        raise CommandError("refresh", "device must be a device id (a string)")
    targets = [r for r in bridge.runtimes.values() if wanted in (None, r.id) and not r.provisional]
    if wanted is not None and not targets:
        raise CommandError("refresh", f"unknown device {wanted[:80]!r}")
    for runtime in targets:
        runtime.request_refresh()  # coalesced: a burst of requests is one read per device
    return {"devices": [r.id for r in targets]}


async def _rename(bridge: Bridge, body: dict[str, Any]) -> dict[str, Any]:
    try:
        mac = normalise_mac(str(body.get("mac", "")))
    except ValueError as err:
        raise CommandError("mac/rename", str(err)) from None
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise CommandError("mac/rename", f"name must be a string of at most {MAX_NAME} characters, or null")
    bridge.names.rename(mac, name)
    bridge.mac_renamed(mac)
    return {"mac": display_mac(mac), "name": name or None}


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
