"""A non-manageable PLC adapter (no API: dLAN 1200+ LAN, dLAN 550, third-party): configured by MAC,
known only through its network's overview. Its `online` is its presence there; it takes no commands.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from devolo_mqtt.core import capabilities
from devolo_mqtt.core.capabilities import PLC_VIEW, SourceKey, T
from devolo_mqtt.core.changes import ChangeFilter
from devolo_mqtt.core.clock import iso
from devolo_mqtt.core.model import DeviceIdentity, EventData, Json, PlcDevice, PlcView
from devolo_mqtt.settings import DeviceConfig

log = structlog.get_logger("devolo_mqtt.devices.adapter")


class AdapterOutput(Protocol):
    """What an adapter reports: the part of `devices.actor.DeviceOutput` it uses."""

    def device_state(self, runtime: Any, state: dict[str, Json], *, force: bool) -> None: ...

    def device_availability(self, runtime: Any) -> None: ...

    def event(self, kind: str, data: EventData) -> None: ...


class AdapterRuntime:
    """State of one configured non-manageable adapter."""

    locate_until = 0.0  # Readings: adapters cannot locate
    unsupported: frozenset[SourceKey[Any]] = frozenset()  # adapters are not polled
    guest_duration = 0  # Readings: adapters have no WiFi
    installing: tuple[str, float] | None = None  # Readings: adapters cannot be updated by the bridge

    def __init__(
        self,
        config: DeviceConfig,
        *,
        hooks: AdapterOutput,
        heartbeat: float,
        clock: Callable[[], float],
        now: Callable[[], datetime],
    ) -> None:
        assert config.mac is not None
        assert config.topic_id is not None
        self.id = config.topic_id
        self.config = config
        self.mac = config.mac
        self.identity_: DeviceIdentity | None = DeviceIdentity(
            serial=config.mac.lower(),
            ip="",
            product=config.model or "PLC adapter",
            mt="",
            features=frozenset(),
            mac=config.mac,
            firmware="",
            hostname="",
            manageable=False,
        )
        self.online: bool | None = None
        self.overview_name = ""
        self.last_seen: datetime | None = None
        self._firmware = ""
        self._data: dict[SourceKey[Any], Any] = {}
        self._hooks = hooks
        self._clock = clock
        self._wall = now
        self._published = ChangeFilter(heartbeat, clock)

    # --- capabilities.Readings -----------------------------------------------------------------------
    @property
    def identity(self) -> DeviceIdentity:
        """The configured identity."""
        assert self.identity_ is not None
        return self.identity_

    @property
    def firmware(self) -> str:
        """The version the overview reports for it."""
        return self._firmware

    @property
    def now(self) -> float:
        """The bridge clock."""
        return self._clock()

    def data(self, key: SourceKey[T]) -> T | None:
        """The last PLC view (adapters have no other source)."""
        value: T | None = self._data.get(key)
        return value

    @property
    def name(self) -> str:
        """Configured name, else the name set in the device, else its MAC."""
        return self.config.name or self.overview_name or self.id

    @property
    def named(self) -> bool:
        """Whether the adapter has a name of its own."""
        return bool(self.config.name or self.overview_name)

    # --- updates from the network monitor ------------------------------------------------------------
    def seen(self, device: PlcDevice | None, view: PlcView | None) -> None:
        """The adapter's network was measured: present (with its view) or absent (None)."""
        present = device is not None and view is not None
        if device is not None and view is not None:
            self.overview_name, self._firmware = device.name, device.firmware
            self.last_seen = self._wall()
            self._data[PLC_VIEW] = view
        elif (old := self.data(PLC_VIEW)) is not None:
            self._data[PLC_VIEW] = PlcView(
                old.network, old.attached_to_router, old.devices, dict.fromkeys(old.links), old.router_macs
            )
        if self.online is not present:
            self.online = present
            log.info("adapter_present" if present else "adapter_absent", device=self.id)
            self._hooks.event("device_online" if present else "device_offline", {"device": self.id})
            self._hooks.device_availability(self)
        self.publish_state()

    def current_state(self) -> dict[str, Json]:
        """The state object."""
        return capabilities.build_state(self, self.identity)

    def publish_state(self, *, force: bool = False) -> None:
        """Publish on change, when forced, or at the heartbeat."""
        state = self.current_state()
        if self._published.should_publish(state, force=force):
            self._hooks.device_state(self, {**state, "last_seen": iso(self.last_seen)}, force=force)
