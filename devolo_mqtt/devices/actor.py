"""One manageable device as one actor: a single task that connects (until the device's identity is
whole), then serves one inbox — commands, refreshes, moves, vanishings — between the due times of its
sources, its offline probe, its locate expiry and its heartbeat. Every command is answered by it,
within its deadline; nothing else ever talks to the device on the device's behalf but the network
monitor's overview.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from devolo_mqtt.core import capabilities
from devolo_mqtt.core.backoff import Backoff
from devolo_mqtt.core.capabilities import Source, SourceKey, T
from devolo_mqtt.core.changes import ChangeFilter
from devolo_mqtt.core.clock import Clock, iso, utc_now
from devolo_mqtt.core.commands import Command, Executor
from devolo_mqtt.core.errors import (
    CommandError,
    DeviceAuthError,
    DeviceProtocolError,
    DeviceUnavailableError,
    DevoloMqttError,
    UnsupportedError,
    reason_of,
)
from devolo_mqtt.core.model import DeviceIdentity, EventData, FirmwareCheck, Json, Overview
from devolo_mqtt.core.store import StoredInts
from devolo_mqtt.core.tasks import honour_cancellation
from devolo_mqtt.settings import DeviceConfig, Settings

log = structlog.get_logger("devolo_mqtt.devices.actor")
_FIRST_RETRY = 5.0
MAX_QUEUED_COMMANDS = 100
# Seconds between looks at the library's live mDNS view of an idle device (it is also looked at after
# every poll round): a service that answers late shows within this long.
IDENTITY_CHECK = 15.0
SLOW_SOURCES_AFTER = 1.0  # seconds after a connect before the slower sources are first read
STAGGER = 0.05  # seconds more per device already known, at a device's first connection (200: 10 s)
_WHOLE_POLL = 0.25  # seconds between looks while an identity is being completed at connect


class DeviceClient(capabilities.DeviceClient, Protocol):
    """One device as the bridge talks to it (implemented by `device.DevoloClient`; tests use a fake)."""

    ip: str
    last_latency: float | None

    @property
    def firmware(self) -> str:
        """Installed firmware as announced over mDNS right now."""
        ...

    async def connect(self) -> None:
        """Reach the device over mDNS (either of its services); DeviceUnavailableError if none answers."""
        ...

    def identity(self) -> DeviceIdentity | None:
        """What mDNS says now (None until the device API answered): live, never frozen."""
        ...

    def plc_pending(self) -> bool:
        """Whether the device should have a PLC service that has not answered (yet)."""
        ...

    async def overview(self) -> Overview:
        """The device's PLC network."""
        ...

    async def close(self) -> None:
        """Stop browsing for the device and close its connections."""
        ...


ClientFactory = Callable[[str, str], DeviceClient]  # (ip, password) → the device's client


class DeviceOutput(Protocol):
    """Everything a device reports (implemented once, on the MQTT side: `mqtt/device_output.py`)."""

    def device_identified(self, runtime: DeviceActor) -> None: ...

    def identity_changed(self, runtime: DeviceActor) -> None: ...

    def entities_changed(self, runtime: DeviceActor) -> None: ...

    def device_state(self, runtime: DeviceActor, state: dict[str, Json], *, force: bool) -> None: ...

    def device_availability(self, runtime: DeviceActor) -> None: ...

    def event(self, kind: str, data: EventData) -> None: ...

    def source_read(self, runtime: DeviceActor, source: SourceKey[Any], value: Any) -> None: ...

    def network_changed(self, runtime: DeviceActor) -> None: ...


@dataclass
class PollStats:
    """Per-device figures for `bridge/health`."""

    last_poll: datetime | None = None
    last_error: str | None = None
    latency_ms: float | None = None
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Pending:
    command: Command
    deadline: float  # answered by then, whatever happens


class _ReconnectError(Exception):
    """Internal: connect again (the device moved, or it has no source to probe it with)."""


class DeviceActor:
    """Everything the bridge knows and does about one manageable device."""

    def __init__(
        self,
        device_id: str,
        ip: str,
        config: DeviceConfig | None,
        *,
        settings: Settings,
        client_factory: ClientFactory,
        hooks: DeviceOutput,
        executor: Executor,
        clock: Clock,
        guest_durations: StoredInts,
        stagger: float = 0.0,
    ) -> None:
        self.id = device_id
        # Configured by address only: the id (its serial) is not known before the first connection, and
        # nothing is published under a provisional id.
        self.provisional = config is not None and config.topic_id is None and device_id.startswith("ip-")
        self.ip = ip
        self.config = config
        self._settings = settings
        own = config.polling if config is not None else None
        # Its own pace where `devices[].polling` says so; the sources switched off are never read.
        self._polling = own.applied_to(settings.polling) if own else settings.polling
        self._off = frozenset(s.key for s in capabilities.SOURCES if own and s.setting in own.off)
        self._client_factory = client_factory
        self._hooks = hooks
        self._execute = executor
        self._clock = clock
        self._client_or_none: DeviceClient | None = None  # made when the task starts (shared resources)
        self.identity_: DeviceIdentity | None = None
        self.serial_hint: str | None = None  # the serial expected here (configured, or remembered)
        self.online: bool | None = None
        self.connecting = True  # until the identity is whole (again, after a move)
        self.overview_name = ""
        self.stats = PollStats()
        self.last_seen: datetime | None = None
        self._locate_until = 0.0
        self.installing: tuple[str, float] | None = None  # capabilities.Readings: an install that runs
        self._guest_durations = guest_durations
        # Added to SLOW_SOURCES_AFTER at the first connection only: the registry staggers a fleet's
        # slower first reads, so that a start's state and discovery are not queued behind them.
        self._stagger = stagger
        self._data: dict[SourceKey[Any], Any] = {}
        self._unsupported: set[SourceKey[Any]] = set()  # sources the device said it cannot serve
        self._due: dict[SourceKey[Any], float] = {}  # when each source is read next (while online)
        self._probe_at = 0.0  # offline: when the device is tried again (one probe, not every source)
        self._probe_backoff = Backoff(_FIRST_RETRY, min(self._polling.state, self._polling.offline_retry_max))
        self._identity_at = 0.0
        self._published = ChangeFilter(self._polling.heartbeat, clock)
        self._firmware_seen = ""
        # The inbox: commands in arrival order, and the other messages as flags (they coalesce).
        self._commands: deque[_Pending] = deque()
        self._running: _Pending | None = None
        self._refresh_wanted: set[SourceKey[Any]] = set()
        self._moved_to: str | None = None
        self._vanished = False
        self._stopping = False  # the bridge stops: commands are answered `bridge stopping` at once
        self._wake = asyncio.Event()
        self._log = log.bind(device=device_id, ip=ip)

    # --- what capabilities read (capabilities.Target) ------------------------------------------------
    @property
    def identity(self) -> DeviceIdentity:
        """The device's identity (only read once connected)."""
        assert self.identity_ is not None
        return self.identity_

    @property
    def serial(self) -> str | None:
        """The device's serial: as it identified itself, else as expected."""
        return self.identity_.serial if self.identity_ else self.serial_hint

    @property
    def _client(self) -> DeviceClient:
        assert self._client_or_none is not None, "the device's task makes its client"
        return self._client_or_none

    @property
    def client(self) -> DeviceClient:
        """The device's client."""
        return self._client

    @property
    def firmware(self) -> str:
        """Firmware as announced over mDNS now."""
        live = self._client_or_none.firmware if self._client_or_none else ""
        return live or (self.identity_.firmware if self.identity_ else "")

    @property
    def now(self) -> float:
        """The bridge's monotonic clock."""
        return self._clock()

    def network_changed(self) -> None:
        """A write changed what its PLC network's overview shows (its name): the network is read again."""
        self._hooks.network_changed(self)

    @property
    def locate_until(self) -> float:
        """When the emulated locate state turns OFF (the device never reports it)."""
        return self._locate_until

    @locate_until.setter
    def locate_until(self, value: float) -> None:
        self._locate_until = value
        self._wake.set()

    @property
    def unsupported(self) -> frozenset[SourceKey[Any]]:
        """The sources not read: those the device said it cannot serve and those its configuration
        switched off (their entities are not offered)."""
        return frozenset(self._unsupported) | self._off

    @property
    def unsupported_sources(self) -> list[str]:
        """The sources this device said it cannot serve (no longer asked)."""
        return sorted(key.name for key in self._unsupported)

    @property
    def guest_duration(self) -> int:
        """Minutes guest WiFi stays on when switched on: one value per mesh, kept in data_dir."""
        return self._guest_durations.get(self.mesh or "")

    @guest_duration.setter
    def guest_duration(self, minutes: int) -> None:
        self._guest_durations.set(self.mesh or "", minutes)

    @property
    def mesh(self) -> str | None:
        """The WiFi mesh this access point belongs to: the access points that share its guest network
        (told by its SSID); None before the guest WiFi was read."""
        guest = self.data(capabilities.GUEST)
        return guest.ssid if guest is not None else None

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

    def renamed(self, device_id: str) -> None:
        """The id became final (a device configured by address only): log under it from now on."""
        self.id, self.provisional = device_id, False
        self._log = log.bind(device=device_id, ip=self.ip)
        structlog.contextvars.bind_contextvars(device=device_id)

    # --- the inbox (what others ask; every call returns at once) -------------------------------------
    def submit(self, command: Command) -> None:
        """A command from MQTT: answered by this device's task within its deadline, or at once when
        the device is known to be offline or too many commands wait."""
        if self._stopping:
            self._execute.refuse(self.id, command, "bridge stopping")
        elif self.online is False and not self.connecting:
            self._execute.refuse(self.id, command, "device offline", self._subset(command))
        elif len(self._commands) >= MAX_QUEUED_COMMANDS:
            self._execute.refuse(self.id, command, "busy: too many queued commands for this device")
        else:
            # Still connecting: wait for the connection too (its timeout), then for the request itself.
            wait = self._polling.connect_timeout if self.connecting else 0.0
            self._commands.append(_Pending(command, self._clock() + wait + self._polling.request_timeout))
            self._wake.set()

    @property
    def commands_in_hand(self) -> int:
        """Commands waiting or running (each will be answered)."""
        return len(self._commands) + (self._running is not None)

    def request_refresh(self, sources: Collection[SourceKey[Any]] | None = None) -> None:
        """Read these sources (all when None) soon; requests coalesce until the read starts. Ignored
        while the device is offline (its probe reads everything when it is back)."""
        if self.online:
            self._refresh_wanted.update(sources or (s.key for s in capabilities.SOURCES))
            self._wake.set()

    def move(self, ip: str) -> None:
        """The device showed up at another address (DHCP): reconnect there."""
        if ip != self.ip:
            self._moved_to = ip
            self._wake.set()

    def vanished(self) -> None:
        """mDNS says the device left: offline until it answers again (never silently forgotten)."""
        self._vanished = True
        self._wake.set()

    def abandon(self) -> None:
        """The bridge stops: every command in hand is answered now, none is left to a dead task."""
        self._stopping = True  # and every command still to come, at once
        pending = [*([self._running] if self._running else []), *self._commands]
        self._commands.clear()
        self._running = None
        for item in pending:
            self._execute.refuse(self.id, item.command, "bridge stopping")

    # --- life ----------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, serve, reconnect after a move, until cancelled."""
        structlog.contextvars.bind_contextvars(device=self.id)
        try:
            while True:
                self._client_or_none = self._new_client()
                try:
                    await self._connect()
                    await self._serve()
                except _ReconnectError:
                    pass
                finally:
                    await self._client.close()
        except asyncio.CancelledError:
            self.abandon()
            raise

    async def _connect(self) -> None:
        """Until the device answers with a whole identity: a real serial, its device API, its PLC
        service when it has one. Commands meanwhile wait (up to their deadline)."""
        self.connecting = True
        if not self.ip:  # configured by serial, not found yet: mDNS will say where (a move)
            await self._idle_until(float("inf"))
        backoff = Backoff(_FIRST_RETRY, self._polling.offline_retry_max)
        while True:
            try:
                await self._client.connect()
                identity = await self._whole_identity()
            except DeviceUnavailableError as err:
                reason = err.reason
            else:
                if identity is not None:
                    break
                reason = "mDNS answered without the device API"
            self._set_online(False, reason)
            await self._client.close()  # a new browse: the library asks a few times only
            await self._idle_until(self._clock() + backoff.next())
            self._client_or_none = self._new_client()
        self._adopt(identity)

    def _new_client(self) -> DeviceClient:
        return self._client_factory(self.ip, self._settings.password_for(self.config))

    async def _whole_identity(self) -> DeviceIdentity | None:
        """The identity once whole; a PLC service that stays silent longer than the connect timeout is
        left to the live view (its entities appear when it answers). None: no device API."""
        give_up = self._clock() + self._polling.connect_timeout
        while True:
            identity = self._client.identity()
            if identity is not None and (not self._client.plc_pending() or self._clock() >= give_up):
                return identity
            if self._clock() >= give_up:
                return None
            await self._idle_until(min(give_up, self._clock() + _WHOLE_POLL))

    def _adopt(self, identity: DeviceIdentity) -> None:
        known = self.identity_ is not None
        self.identity_ = identity
        self._firmware_seen = identity.firmware
        self._identity_at = self._clock() + IDENTITY_CHECK
        self._hooks.device_identified(self)  # may rename (or refuse) the device: before anything else
        self.connecting = False
        (self._log.info if known else self._log.debug)(
            "device_reconnected" if known else "device_connected",
            serial=identity.serial,
            product=identity.product,
            firmware=identity.firmware,
        )
        self._set_online(True)

    async def _idle_until(self, deadline: float) -> None:
        """Wait while connecting: moves interrupt, commands past their deadline are answered."""
        while self._clock() < deadline:
            self._wake.clear()
            self._take_moves()
            self._vanished = False  # not connected: nothing to take offline
            self._refresh_wanted.clear()
            self._expire_commands("device not connected yet")
            await self._clock.wait(self._wake, min(deadline, self._next_command_deadline()))
        self._take_moves()

    async def _serve(self) -> None:
        """The connected loop: one thing at a time, commands first."""
        self._schedule_all(self._clock())
        first = True
        while True:
            self._wake.clear()
            self._take_moves()
            if self._vanished:
                self._vanished = False
                self._set_online(False, "left mDNS")
            self._check_identity()
            if self._commands:
                await self._run_command(self._commands.popleft())
            elif self._refresh_wanted and self.online:
                wanted, self._refresh_wanted = self._refresh_wanted, set()
                try:
                    await self.refresh(wanted)
                except DevoloMqttError as err:
                    self._log.info("refresh_failed", error=str(err))
            elif (due := self._due_sources()) or (self.online is False and self._clock() >= self._probe_at):
                if not due and not (due := self._probe_sources()):
                    raise _ReconnectError  # offline and nothing to probe with: only a connect tells
                await self._poll_round(due, first=first)
                first = False
                self._identity_at = min(self._identity_at, self._clock())  # looked at with the round
            else:
                self._on_time()
                await self._clock.wait(self._wake, self._next_wake())
            honour_cancellation()

    def _on_time(self) -> None:
        """What an idle wake-up may be for besides the inbox: the locate expiry, the heartbeat."""
        now = self._clock()
        if 0 < self._locate_until <= now:
            self._locate_until = 0.0
            self.publish_state()
        elif now >= self._published.due_at:
            self.publish_state()

    def _take_moves(self) -> None:
        if self._moved_to is not None:
            ip, self._moved_to = self._moved_to, None
            self._log.info("device_moved", new_ip=ip)
            self.ip = ip
            raise _ReconnectError

    # --- commands ------------------------------------------------------------------------------------
    async def _run_command(self, pending: _Pending) -> None:
        budget = pending.deadline - self._clock()
        if budget <= 0:
            self._execute.refuse(self.id, pending.command, "timed out waiting for the device")
            return
        if self.online is False:
            self._execute.refuse(self.id, pending.command, "device offline", self._subset(pending.command))
            return
        structlog.contextvars.bind_contextvars(device=self.id)
        self._running = pending
        try:
            unavailable = await self._execute(self, pending.command, budget=budget)
        except asyncio.CancelledError:
            self.abandon()  # the bridge stops mid-command: answered now, with the ones waiting
            raise
        finally:
            self._running = None
        if unavailable is not None:
            self._set_online(False, unavailable.reason)

    def _expire_commands(self, reason: str) -> None:
        now = self._clock()
        for pending in [p for p in self._commands if p.deadline <= now]:
            self._commands.remove(pending)
            self._execute.refuse(self.id, pending.command, reason)

    def _next_command_deadline(self) -> float:
        return min((p.deadline for p in self._commands), default=float("inf"))

    def _subset(self, command: Command) -> dict[str, Json]:
        state = self.current_state()
        return {k: state[k] for k in command.values if k in state}

    # --- sources -------------------------------------------------------------------------------------
    def _sources(self) -> list[Source]:
        if self.identity_ is None:
            return []
        skipped = self._unsupported
        return [
            s
            for s in capabilities.sources_for(self.identity_)
            if s.key not in skipped and s.key not in self._off
        ]

    def _schedule_all(self, at: float) -> None:
        """Everything is read now — the state's sources, that is; the slower ones (firmware check, WiFi
        clients, neighbours, last restart) a moment later, so that when many devices connect at once
        (a start) every device's LEDs and guest WiFi are in before anyone's firmware check."""
        state = self._polling.state
        slow_at, self._stagger = at + SLOW_SOURCES_AFTER + self._stagger, 0.0
        self._due = {s.key: at if s.interval(self._polling) <= state else slow_at for s in self._sources()}

    def _due_sources(self) -> list[Source]:
        if not self.online:
            return []
        now = self._clock()
        due = [s for s in self._sources() if self._due.setdefault(s.key, now) <= now]
        # The state's sources first (users see LEDs and guest WiFi first), then the slower ones.
        return sorted(due, key=lambda s: s.interval(self._polling))

    def _probe_sources(self) -> list[Source]:
        """Offline: one source tells whether the device is back (the fastest one)."""
        sources = sorted(self._sources(), key=lambda s: s.interval(self._polling))
        return sources[:1]

    def _next_wake(self) -> float:
        now = self._clock()
        times = [self._identity_at, self._next_command_deadline()]
        if self.online:
            times += (self._due.get(s.key, now) for s in self._sources())
            times.append(self._published.due_at)
        elif self.online is False:
            times.append(self._probe_at)
        if self._locate_until > 0:
            times.append(self._locate_until)
        return min(times)

    async def _poll_round(self, sources: list[Source], *, first: bool) -> None:
        """Read the given sources one by one (a command that arrives meanwhile goes first), then
        publish the state once."""
        state_cadence = self._polling.state
        intervals = [s.interval(self._polling) for s in sources]
        for index, source in enumerate(sources):
            if self._commands or (self.online is False and index > 0):
                break  # commands first; an offline device is not asked again in this round
            was_offline = self.online is False
            await self._poll(source)
            if was_offline and self.online:
                self._schedule_all(self._clock())  # back: everything is read again now
                return
            later = intervals[index + 1] if index + 1 < len(intervals) else None
            if first and later is not None and intervals[index] <= state_cadence < later:
                self.publish_state(force=True)  # the state's sources are in: publish before the slow ones
        self.publish_state(force=first)

    async def _poll(self, source: Source) -> bool:
        """Read one source now and schedule its next read; whether it succeeded."""
        interval = source.interval(self._polling)
        # A failed read is tried again at the state cadence, not after its own (possibly six-hour)
        # interval: one timed-out firmware check must not hide updates for hours.
        retry = min(interval, self._polling.state)
        planned = self._due.get(source.key, self._clock())
        ok = await self._read(source)
        now = self._clock()
        # On a fixed cadence from the planned time, not from when the read ended: a read that waited
        # for a shared slot (behind dead devices) does not push every later one back. A cadence that
        # fell behind skips what it missed rather than reading back to back.
        cadence = planned + interval if planned + interval > now else now + interval
        self._due[source.key] = cadence if ok else now + retry
        return ok

    async def _read(self, source: Source, *, raise_errors: bool = False) -> bool:
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
                self._due.pop(source.key, None)
                self._log.info("source_unsupported", source=source.name)
                self._hooks.entities_changed(self)  # its entities go (they would stay unknown)
            self._set_online(True)
            return True
        except (DeviceAuthError, DeviceProtocolError, CommandError) as err:
            self._note_error(source.name, str(err))
            self._set_online(True)  # it answered: reachable, just unhappy
            if raise_errors:
                raise
            return False
        except Exception as err:  # a bug in a read costs this read, never the device
            self._log.exception("source_failed", source=source.name)
            self._note_error(source.name, f"internal error: {type(err).__name__}")
            if raise_errors:
                raise DeviceProtocolError(self.id, f"{source.name}: internal error") from err
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

    async def refresh(self, sources: Collection[SourceKey[Any]] | None = None) -> dict[str, str]:
        """Read sources now (all of them when None) and publish the result; the sources that failed,
        with why. Raises when the device is unreachable, or when every source asked for failed."""
        if self.identity_ is None or self.online is False:
            raise DeviceUnavailableError(self.id, "offline")
        wanted = [s for s in self._sources() if sources is None or s.key in sources]
        failed: dict[str, str] = {}
        last: DevoloMqttError | None = None
        for source in wanted:
            try:
                await self._read(source, raise_errors=True)
            except DeviceUnavailableError:
                raise
            except DevoloMqttError as err:
                failed[source.name], last = reason_of(err), err
            self._due[source.key] = self._clock() + source.interval(self._polling)
        self.publish_state(force=True)
        if last is not None and len(failed) == len(wanted):
            raise last
        return failed

    # --- identity ------------------------------------------------------------------------------------
    def _check_identity(self) -> None:
        """Follow the library's live mDNS view: a late service, new features, product or firmware."""
        if self._clock() < self._identity_at or self.identity_ is None:
            return
        self._identity_at = self._clock() + IDENTITY_CHECK
        live = self._client.identity()
        if live is None or live == self.identity_:
            return
        before, self.identity_ = self.identity_, live
        if live.serial != before.serial:
            self._log.warning("device_serial_changed", serial=live.serial, before=before.serial)
        changed = sorted(
            f for f in ("features", "mac", "product", "mt", "ip") if getattr(live, f) != getattr(before, f)
        )
        if not changed:
            self.publish_state()  # the firmware alone: `publish_state` handles it (a fresh update check)
            return
        self._log.info("device_identity_changed", changed=changed)
        sources = self._sources()
        self._due = {s.key: self._due.get(s.key, self._clock()) for s in sources}  # new ones: now
        self._hooks.identity_changed(self)
        self.publish_state(force=True)

    # --- state and transitions -----------------------------------------------------------------------
    def current_state(self) -> dict[str, Json]:
        """The state object from every supported capability that has a value."""
        if self.identity_ is None:
            return {}
        return capabilities.build_state(self, self.identity_)

    def publish_state(self, *, force: bool = False) -> None:
        """Publish when a value changed, when forced, or at the heartbeat."""
        if self.identity_ is None or self.connecting:
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
            for kind, version in capabilities.announcements(previous, state):
                self._hooks.event(kind, {"device": self.id, "version": version})
            self._hooks.device_state(self, {**state, "last_seen": iso(self.last_seen)}, force=force)

    def _set_online(self, online: bool, reason: str = "") -> None:
        if online:
            self._probe_backoff.reset()
        else:
            self._probe_at = self._clock() + self._probe_backoff.next()
            self.stats.last_error = reason
            self._refresh_wanted.clear()
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
            for pending in list(self._commands):  # known offline: waiting commands are answered now
                if not self.connecting:
                    self._commands.remove(pending)
                    self._execute.refuse(self.id, pending.command, "device offline")
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
