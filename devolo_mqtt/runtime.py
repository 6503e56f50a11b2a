"""One manageable device's life: connect, poll each source at its cadence, publish state on change,
execute its commands one at a time, and go offline/online with one log line per transition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from devolo_mqtt import capabilities
from devolo_mqtt.backoff import Backoff
from devolo_mqtt.capabilities import Source, SourceKey, T
from devolo_mqtt.changes import ChangeFilter
from devolo_mqtt.clock import iso, utc_now
from devolo_mqtt.commands import Command, Executor
from devolo_mqtt.device import DevoloClient
from devolo_mqtt.errors import (
    CommandError,
    DeviceAuthError,
    DeviceProtocolError,
    DeviceUnavailableError,
    DevoloMqttError,
    UnsupportedError,
    reason_of,
)
from devolo_mqtt.model import DeviceIdentity, FirmwareCheck, Json
from devolo_mqtt.settings import DeviceConfig, Settings
from devolo_mqtt.store import StoredInt
from devolo_mqtt.tasks import first_of, honour_cancellation

log = structlog.get_logger("devolo_mqtt.runtime")
_FIRST_RETRY = 5.0


class RuntimeHooks(Protocol):
    """What a device runtime tells the bridge."""

    def device_identified(self, runtime: DeviceRuntime) -> None: ...

    def device_state(self, runtime: DeviceRuntime, state: dict[str, Json], *, force: bool) -> None: ...

    def device_availability(self, runtime: DeviceRuntime) -> None: ...

    def event(self, kind: str, data: dict[str, Json]) -> None: ...

    def source_read(self, runtime: DeviceRuntime, source: SourceKey[Any], value: Any) -> None: ...


@dataclass
class PollStats:
    """Per-device figures for `bridge/health`."""

    last_poll: datetime | None = None
    last_error: str | None = None
    latency_ms: float | None = None
    errors: dict[str, str] = field(default_factory=dict)


class DeviceRuntime:
    """Everything the bridge knows and does about one manageable device."""

    def __init__(
        self,
        device_id: str,
        ip: str,
        config: DeviceConfig | None,
        *,
        settings: Settings,
        client_factory: Callable[[str, str], DevoloClient],
        hooks: RuntimeHooks,
        executor: Executor,
        clock: Callable[[], float],
        guest_duration: StoredInt,
    ) -> None:
        self.id = device_id
        # Configured by address only: the id (its serial) is not known before the first connection, and
        # nothing is published under a provisional id.
        self.provisional = config is not None and config.topic_id is None and device_id.startswith("ip-")
        self.ip = ip
        self.config = config
        self._settings = settings
        self._client_factory = client_factory
        self._hooks = hooks
        self._execute = executor
        self._clock = clock
        self._client = client_factory(ip, settings.password_for(config))
        self.identity_: DeviceIdentity | None = None
        self.online: bool | None = None
        self.overview_name = ""
        self.stats = PollStats()
        self.last_seen: datetime | None = None
        self._locate_until = 0.0
        self._guest_duration = guest_duration
        self._data: dict[SourceKey[Any], Any] = {}
        self._unsupported: set[SourceKey[Any]] = set()  # sources the device said it cannot serve
        self._retry_at = 0.0
        # Offline: only one probe per back-off step (never longer than a state interval).
        self._probe_backoff = Backoff(
            _FIRST_RETRY, min(settings.polling.state, settings.polling.offline_retry_max)
        )
        self._published = ChangeFilter(settings.polling.heartbeat, clock)
        self._firmware_seen = ""
        self._moved = asyncio.Event()
        self._locate_changed = asyncio.Event()
        self.commands: asyncio.Queue[Command] = asyncio.Queue(maxsize=100)
        self._refresh_wanted: set[SourceKey[Any]] = set()
        self._refresh_due = asyncio.Event()
        self._log = log.bind(device=device_id, ip=ip)

    # --- what capabilities read (capabilities.Target) ------------------------------------------------
    @property
    def identity(self) -> DeviceIdentity:
        """The device's identity (only read once connected)."""
        assert self.identity_ is not None
        return self.identity_

    @property
    def client(self) -> DevoloClient:
        """The device's client."""
        return self._client

    @property
    def firmware(self) -> str:
        """Firmware as announced over mDNS now."""
        return self._client.firmware or (self.identity_.firmware if self.identity_ else "")

    @property
    def now(self) -> float:
        """The bridge's monotonic clock."""
        return self._clock()

    @property
    def locate_until(self) -> float:
        """When the emulated locate state turns OFF (the device never reports it)."""
        return self._locate_until

    @locate_until.setter
    def locate_until(self, value: float) -> None:
        self._locate_until = value
        self._locate_changed.set()

    @property
    def unsupported_sources(self) -> list[str]:
        """The sources this device said it cannot serve (no longer asked)."""
        return sorted(key.name for key in self._unsupported)

    @property
    def guest_duration(self) -> int:
        """Minutes guest WiFi stays on when switched on: one value for the whole mesh, kept in data_dir."""
        return self._guest_duration.value

    @guest_duration.setter
    def guest_duration(self, minutes: int) -> None:
        self._guest_duration.value = minutes

    def data(self, key: SourceKey[T]) -> T | None:
        """The last value a source read (None before the first read)."""
        value: T | None = self._data.get(key)
        return value

    def feed(self, key: SourceKey[T], value: T) -> None:
        """Data read on the device's behalf elsewhere (its PLC network's overview); publish if changed."""
        self._data[key] = value
        self.publish_state()

    @property
    def name(self) -> str:
        """Configured name, else the name set in the device, else its product (else its id)."""
        if self.config and self.config.name:
            return self.config.name
        return self.overview_name or (self.identity_.product if self.identity_ else "") or self.id

    @property
    def named(self) -> bool:
        """Whether the device has a name of its own (configured or set in the device)."""
        return bool((self.config and self.config.name) or self.overview_name)

    def request_refresh(self, sources: Collection[SourceKey[Any]] | None = None) -> None:
        """Read these sources (all when None) soon; requests coalesce until the read starts."""
        self._refresh_wanted.update(sources or (s.key for s in capabilities.SOURCES))
        self._refresh_due.set()

    def renamed(self, device_id: str) -> None:
        """The id became final (a device configured by address only): log under it from now on."""
        self.id, self.provisional = device_id, False
        self._log = log.bind(device=device_id, ip=self.ip)
        structlog.contextvars.bind_contextvars(device=device_id)

    async def refresh(self, sources: Collection[SourceKey[Any]] | None = None) -> dict[str, str]:
        """Read sources now (all of them when None) and publish the result; the sources that failed,
        with why. Raises when the device is unreachable, or when every source asked for failed."""
        if self.identity_ is None:
            raise DeviceUnavailableError(self.id, "not connected yet")
        wanted = [
            s
            for s in capabilities.sources_for(self.identity_)
            if (sources is None or s.key in sources) and s.key not in self._unsupported
        ]
        failed: dict[str, str] = {}
        last: DevoloMqttError | None = None
        for source in wanted:
            try:
                await self._poll(source, force=True, raise_errors=True)
            except DeviceUnavailableError:
                raise
            except DevoloMqttError as err:
                failed[source.name], last = reason_of(err), err
        self.publish_state(force=True)
        if last is not None and len(failed) == len(wanted):
            raise last
        return failed

    # --- life ----------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve commands and keep the device connected and polled until cancelled."""
        structlog.contextvars.bind_contextvars(device=self.id)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._command_worker(), name=f"devolo_mqtt[{self.id}].commands")
            group.create_task(self._refresh_worker(), name=f"devolo_mqtt[{self.id}].refresh")
            group.create_task(self._lifecycle(), name=f"devolo_mqtt[{self.id}].lifecycle")

    def move(self, ip: str) -> None:
        """The device showed up at another address (DHCP): reconnect there."""
        if ip != self.ip:
            self._log.info("device_moved", new_ip=ip)
            self.ip = ip
            self._moved.set()

    def vanished(self) -> None:
        """mDNS says the device left: offline until it answers again (never silently forgotten)."""
        self._set_online(False, "left mDNS")

    async def _lifecycle(self) -> None:
        while True:
            self._moved.clear()
            self._client = self._client_factory(self.ip, self._settings.password_for(self.config))
            try:
                await self._connect()
                honour_cancellation()  # zeroconf's waits can swallow a cancellation on Python 3.11
                # Serve until the device moves. (Not a TaskGroup child raising "moved": on Python 3.11
                # a TaskGroup aborted by a child leaves its parent task marked as cancelling.)
                await first_of(self._serve_connected(), self._moved.wait(), name=f"devolo_mqtt[{self.id}]")
            except _DeviceMovedError:
                pass
            finally:
                await self._client.close()

    async def _serve_connected(self) -> None:
        # The state poll's sources first and published at once (at start-up 200 devices queue for
        # the shared request slots: users see LEDs and guest WiFi seconds earlier), then the slower
        # ones (firmware check, WiFi clients, neighbours, last restart) in one more state.
        sources = capabilities.sources_for(self.identity)
        state_cadence = self._settings.polling.state
        first = [s for s in sources if s.interval(self._settings.polling) <= state_cadence]
        for source in first:
            await self._poll(source, force=True)
        self.publish_state(force=True)
        for source in sources:
            if source not in first:
                await self._poll(source, force=True)
        self.publish_state()
        async with asyncio.TaskGroup() as group:
            for source in capabilities.sources_for(self.identity):
                group.create_task(self._poller(source), name=f"devolo_mqtt[{self.id}].poll.{source.name}")
            group.create_task(self._locate_watch(), name=f"devolo_mqtt[{self.id}].locate")

    async def _connect(self) -> None:
        backoff = Backoff(_FIRST_RETRY, self._settings.polling.offline_retry_max)
        while True:
            try:
                identity = await self._client.connect()
                break
            except DeviceUnavailableError as err:
                self._set_online(False, err.reason)
                await self._sleep_or_moved(backoff.next())
        known = self.identity_ is not None
        self.identity_ = identity
        self._firmware_seen = identity.firmware
        self._hooks.device_identified(self)  # may rename (or refuse) the device: before anything else
        (self._log.info if known else self._log.debug)(
            "device_reconnected" if known else "device_connected",
            serial=identity.serial,
            product=identity.product,
            firmware=identity.firmware,
        )
        self._set_online(True)

    async def _sleep_or_moved(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._moved.wait()
        if self._moved.is_set():
            raise _DeviceMovedError

    async def _poller(self, source: Source) -> None:
        interval = source.interval(self._settings.polling)
        # A source whose last read failed is tried again at the state cadence, not after its own
        # (possibly six-hour) interval: one timed-out firmware check must not hide updates for hours.
        retry = min(interval, self._settings.polling.state)
        wait = interval if source.key in self._data else retry
        while source.key not in self._unsupported:
            await asyncio.sleep(wait)
            wait = interval if await self._poll(source) else retry
            honour_cancellation()
            self.publish_state()

    async def _poll(self, source: Source, *, force: bool = False, raise_errors: bool = False) -> bool:
        """Read one source; whether it succeeded."""
        if not force and self.online is False and self._clock() < self._retry_at:
            return False  # offline: only the first poller after the back-off probes the device
        try:
            value = await source.read(self._client)
        except DeviceUnavailableError as err:
            self._set_online(False, err.reason)
            if raise_errors:
                raise
            return False
        except UnsupportedError:
            if source.key not in self._unsupported:
                self._unsupported.add(source.key)  # asked no more; not an error of the device
                self._log.info("source_unsupported", source=source.name)
            self._set_online(True)
            return True
        except (DeviceAuthError, DeviceProtocolError, CommandError) as err:
            self._note_error(source.name, str(err))
            self._set_online(True)  # it answered: reachable, just unhappy
            if raise_errors:
                raise
            return False
        last = self._data.get(source.key)
        self._data[source.key] = source.merge(last, value) if source.merge and last is not None else value
        self._clear_error(source.name)
        self._set_online(True)
        self._hooks.source_read(self, source.key, self._data[source.key])
        self.last_seen = utc_now()
        self.stats.last_poll = self.last_seen
        if self._client.last_latency is not None:
            self.stats.latency_ms = round(self._client.last_latency * 1000, 1)
        return True

    async def _locate_watch(self) -> None:
        while True:
            await self._locate_changed.wait()
            self._locate_changed.clear()
            remaining = self.locate_until - self._clock()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._locate_changed.wait()
                self.publish_state()

    async def _command_worker(self) -> None:
        while True:
            command = await self.commands.get()
            structlog.contextvars.bind_contextvars(device=self.id)
            await self._execute(self, command)
            honour_cancellation()

    async def _refresh_worker(self) -> None:
        while True:
            await self._refresh_due.wait()
            self._refresh_due.clear()
            wanted, self._refresh_wanted = self._refresh_wanted, set()
            structlog.contextvars.bind_contextvars(device=self.id)
            try:
                await self.refresh(wanted)
            except DevoloMqttError as err:
                self._log.info("refresh_failed", error=str(err))
            honour_cancellation()

    # --- state and transitions -----------------------------------------------------------------------
    def current_state(self) -> dict[str, Json]:
        """The state object from every supported capability that has a value."""
        if self.identity_ is None:
            return {}
        return capabilities.build_state(self, self.identity_)

    def publish_state(self, *, force: bool = False) -> None:
        """Publish when a value changed, when forced, or at the heartbeat."""
        if self.identity_ is None:
            return
        if self.firmware != self._firmware_seen:
            self._firmware_seen = self.firmware
            # The last update check is stale: until the new check, the installed version is the newest
            # known (the update keys stay in the state instead of vanishing).
            if self._data.get(capabilities.FIRMWARE) is not None:
                self._data[capabilities.FIRMWARE] = FirmwareCheck(available=False, version="")
            self._log.info("firmware_changed", firmware=self.firmware)
            self.request_refresh((capabilities.FIRMWARE,))
        state = self.current_state()
        previous = self._published.last or {}
        if self._published.should_publish(state, force=force):
            if state.get("update_available") is True and previous.get("update_available") is not True:
                self._hooks.event(
                    "firmware_available", {"device": self.id, "version": state.get("next_firmware")}
                )
            self._hooks.device_state(self, {**state, "last_seen": iso(self.last_seen)}, force=force)

    def _set_online(self, online: bool, reason: str = "") -> None:
        if online:
            self._probe_backoff.reset()
        else:
            self._retry_at = self._clock() + self._probe_backoff.next()
            self.stats.last_error = reason
        if self.online is online:
            return
        before, self.online = self.online, online
        if online:
            if before is False:
                self._log.info("device_recovered")
        else:
            expected = self.config is not None and self.config.standby_expected
            (self._log.info if expected else self._log.warning)(
                "device_unavailable", reason=reason, standby_expected=expected
            )
        if self.provisional:
            return  # nothing is published under an id that is not final
        if online:
            self._hooks.event("device_online", {"device": self.id})
        else:
            self._hooks.event("device_offline", {"device": self.id, "reason": reason})
        self._hooks.device_availability(self)

    def _note_error(self, source: str, message: str) -> None:
        self.stats.last_error = message
        if self.stats.errors.get(source) != message:
            self.stats.errors[source] = message
            self._log.warning("device_error", source=source, error=message)

    def _clear_error(self, source: str) -> None:
        if self.stats.errors.pop(source, None) is not None:
            self._log.info("device_error_cleared", source=source)


class _DeviceMovedError(Exception):
    """Internal: the device's address changed; reconnect."""
