"""The one exception family of devolo-mqtt; each carries what a caller needs as attributes."""

from __future__ import annotations


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


class UnsupportedError(CommandError):
    """The device does not offer this call (not in its features, or it answers 404): not an error of
    the device, just something it cannot do."""

    def __init__(self, key: str) -> None:
        super().__init__(key, "not supported by this device")


class DeviceRefusedError(DevoloMqttError):
    """A device cannot be bridged as it identifies itself (its id is not a safe topic level, or taken)."""

    def __init__(self, serial: str, reason: str) -> None:
        super().__init__(f"device {serial!r} refused: {reason}")
        self.serial = serial
        self.reason = reason


class DuplicateInstanceError(DevoloMqttError):
    """Another bridge runs on the same base topic or with the same MQTT client id."""


def reason_of(err: Exception) -> str:
    """What a result or a report says about an error, in the contract's words."""
    if isinstance(err, CommandError):
        return err.reason
    if isinstance(err, DeviceUnavailableError):
        return "device unavailable"
    if isinstance(err, DeviceAuthError):
        return "the device rejected the password"
    if isinstance(err, DeviceProtocolError):
        return f"bad answer from the device: {err.reason}"
    return str(err)
