"""The one exception family of devolo-mqtt; each carries what a caller needs as attributes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class DevoloMqttError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(DevoloMqttError):
    """A configuration or scenario is invalid; `field` names where."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class DeviceUnavailableError(DevoloMqttError):
    """A device did not answer (standby, unplugged, timed out, vanished from mDNS)."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__(f"device {device_id} unavailable: {reason}")
        self.device_id = device_id
        self.reason = reason


class DeviceAuthError(DevoloMqttError):
    """A device refused the configured password."""

    def __init__(self, device_id: str) -> None:
        super().__init__(f"device {device_id} rejected the password")
        self.device_id = device_id


class DeviceProtocolError(DevoloMqttError):
    """A device answered with something unusable (HTTP error status, malformed protobuf)."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__(f"device {device_id} answered badly: {reason}")
        self.device_id = device_id
        self.reason = reason


class CommandError(DevoloMqttError):
    """A command cannot be executed; `reason` is what the result topic says."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class DeviceRefusedError(DevoloMqttError):
    """A device cannot be bridged as it identifies itself (its id is not a safe topic level, or taken)."""

    def __init__(self, serial: str, reason: str) -> None:
        super().__init__(f"device {serial!r} refused: {reason}")
        self.serial = serial
        self.reason = reason


class DuplicateInstanceError(DevoloMqttError):
    """Another bridge runs on the same base topic or with the same MQTT client id."""


def honour_cancellation() -> None:
    """Raise CancelledError if the current task has been asked to stop.

    On Python 3.11, `asyncio.wait_for` (used inside aiomqtt and zeroconf) can swallow a cancellation
    that arrives just as the awaited operation completes; a `while True` loop would then run forever
    and shutdown would hang. Every long-running loop calls this once per turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def first_of(*coroutines: Coroutine[Any, Any, Any], name: str) -> None:
    """Run coroutines as tasks until the first one ends; cancel and await the rest; re-raise its error.

    Used instead of a TaskGroup where one side ending is normal (a reconnect, a device that moved):
    on Python 3.11 a TaskGroup aborted by a failing child leaves its parent task counted as
    cancelling, which would make every later `honour_cancellation()` stop the parent for good.
    """
    try:
        honour_cancellation()  # a cancellation swallowed just before must not be followed by a long wait
    except asyncio.CancelledError:
        for coroutine in coroutines:
            coroutine.close()
        raise
    tasks = [asyncio.create_task(c, name=f"{name}.{i}") for i, c in enumerate(coroutines)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
