"""Commands from `/set` topics: parse, validate every key before touching the device, write, read the
device back, and answer on `set/result` (and the MQTT 5 response topic) — every time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from devolo_mqtt.core import capabilities
from devolo_mqtt.core.capabilities import SourceKey
from devolo_mqtt.core.errors import (
    CommandError,
    DeviceAuthError,
    DeviceProtocolError,
    DeviceUnavailableError,
    reason_of,
)
from devolo_mqtt.core.inbound import BadPayload, decode_json, decode_text
from devolo_mqtt.core.model import DeviceIdentity, Json

log = structlog.get_logger("devolo_mqtt.core.commands")


@dataclass
class Command:
    """A command for one device, as parsed from MQTT."""

    values: dict[str, Json]
    single_key: bool = False
    transaction: Json = None
    response_topic: str | None = None
    correlation: bytes | None = None
    answered: bool = False  # each command is answered once, whoever gets there first (a stop, a reply)
    # Told the answer too (a roll-out waits for its installs); MQTT commands have none.
    on_answer: Callable[[dict[str, Any]], None] | None = None


class Device(capabilities.Target, Protocol):
    """What a command needs of a device (a `runtime.DeviceActor`)."""

    id: str
    online: bool | None

    @property
    def identity_(self) -> DeviceIdentity | None: ...

    def current_state(self) -> dict[str, Json]: ...

    def publish_state(self, *, force: bool = False) -> None: ...


Answer = Callable[[str, Command, dict[str, Any]], None]  # (device id, command, result payload)
SharedChanged = Callable[[Device, SourceKey[Any]], None]  # a write changed a source every mesh peer shares


def parse_command(
    key: str | None,
    payload: bytes,
    *,
    retain: bool = False,
    response_topic: str | None = None,
    correlation: bytes | None = None,
) -> Command:
    """Turn a `/set` or `/set/<key>` payload into a Command; CommandError says what is wrong with it."""
    label = key or "set"
    if retain:
        raise CommandError(label, "retained command ignored (it was cleared from the broker)")
    try:
        if key is not None:
            return Command(
                {key: decode_text(payload).strip()},
                single_key=True,
                response_topic=response_topic,
                correlation=correlation,
            )
        body = decode_json(payload)
    except BadPayload as err:
        raise CommandError(label, err.reason) from None
    if not isinstance(body, dict) or not body:
        raise CommandError(label, "expected a JSON object with at least one key")
    transaction = body.pop("transaction", None)
    if not body:
        raise CommandError(label, "no key to set")
    values = {str(k): v if _scalar(v) else json.dumps(v) for k, v in body.items()}
    return Command(
        values,
        single_key=len(values) == 1,
        transaction=transaction,
        response_topic=response_topic,
        correlation=correlation,
    )


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def result_payload(
    command: Command | None,
    key: str | list[str],
    status: str,
    *,
    error: str | None = None,
    state: dict[str, Json] | None = None,
) -> dict[str, Any]:
    """The `set/result` object."""
    payload: dict[str, Any] = {"key": key, "status": status}
    if error is not None:
        payload["error"] = error
    payload["state"] = state or {}
    payload["transaction"] = command.transaction if command else None
    return payload


class Executor:
    """Runs commands (injected into every device runtime): write, read back, answer — every time."""

    def __init__(self, *, answer: Answer, shared_changed: SharedChanged) -> None:
        self._answer = answer
        self._shared_changed = shared_changed

    async def __call__(
        self, runtime: Device, command: Command, *, budget: float
    ) -> DeviceUnavailableError | None:
        """Run one command against one device within `budget` seconds and answer it; the device's
        unavailability if that is why it failed (the runtime then takes it offline)."""
        outcome = await execute(runtime, command, shared_changed=self._shared_changed, budget=budget)
        self._once(runtime.id, command, outcome.payload)
        return outcome.unavailable

    def refuse(
        self, device_id: str, command: Command, reason: str, state: dict[str, Json] | None = None
    ) -> None:
        """Answer a command with an error without touching the device (offline, stopping, busy)."""
        keys = list(command.values)
        label: str | list[str] = keys[0] if command.single_key else keys
        log.info("command_refused", device=device_id, key=label, error=reason)
        self._once(device_id, command, result_payload(command, label, "error", error=reason, state=state))

    def _once(self, device_id: str, command: Command, payload: dict[str, Any]) -> None:
        if not command.answered:
            command.answered = True
            self._answer(device_id, command, payload)
            if command.on_answer is not None:
                command.on_answer(payload)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running a command came to: its answer, and whether the device did not answer at all."""

    payload: dict[str, Any]
    unavailable: DeviceUnavailableError | None = None


async def execute(
    runtime: Device,
    command: Command,
    *,
    shared_changed: SharedChanged,
    budget: float,
) -> Outcome:
    """Run one command against one device within `budget` seconds: the answer, never an exception."""
    keys = list(command.values)
    label: str | list[str] = keys[0] if command.single_key else keys
    unavailable: DeviceUnavailableError | None = None
    try:
        if runtime.identity_ is None or runtime.online is False:
            raise CommandError(keys[0], "device offline")
        plan = []
        for key, raw in command.values.items():
            capability = capabilities.lookup(runtime.identity, key)
            assert capability.parse is not None
            try:
                plan.append((capability, capability.parse(raw)))
            except ValueError as err:
                raise CommandError(key, f"bad value: {err}") from None
        plan.sort(key=lambda item: item[0].order)
        try:
            async with asyncio.timeout(budget):
                failed = await _write_and_read_back(runtime, plan, shared_changed)
        except TimeoutError:
            raise DeviceUnavailableError(runtime.id, f"no answer within {budget:.1f} s") from None
    except (CommandError, DeviceUnavailableError, DeviceAuthError, DeviceProtocolError) as err:
        reason = reason_of(err)
        if isinstance(err, CommandError) and not command.single_key:
            reason = f"{err.key}: {reason}"  # several keys: say which one failed
        if isinstance(err, DeviceUnavailableError):
            unavailable = err
        log.warning("command_failed", device=runtime.id, key=label, error=reason)
    except Exception as err:  # a bug must cost one error answer, never the device or the bridge
        log.exception("command_crashed", device=runtime.id, key=label)
        reason = f"internal error: {type(err).__name__}"
    else:
        result = result_payload(command, label, "ok", state=_subset(runtime, keys))
        if failed:
            result["failed_sources"] = failed  # done, except these optional reads
        return Outcome(result)
    if unavailable is None:
        runtime.publish_state(force=True)  # the true state, so optimistic UIs revert
    return Outcome(
        result_payload(command, label, "error", error=reason, state=_subset(runtime, keys)), unavailable
    )


async def _write_and_read_back(
    runtime: Device, plan: list[tuple[capabilities.Capability, Any]], shared_changed: SharedChanged
) -> dict[str, str]:
    refresh: set[SourceKey[Any]] = set()
    failed: dict[str, str] = {}
    for capability, value in plan:
        assert capability.write is not None
        failed |= await capability.write(runtime, value) or {}
        refresh.update(capability.refresh)
    if refresh:
        failed |= await runtime.refresh(refresh)  # read back: confirmed, not assumed (and published)
    else:
        runtime.publish_state(force=True)
    for source in capabilities.SOURCES:
        if source.shared and source.key in refresh:
            shared_changed(runtime, source.key)
    return failed


def _subset(runtime: Device, keys: list[str]) -> dict[str, Json]:
    state = runtime.current_state()
    return {k: state[k] for k in keys if k in state}
