"""The only fakes of the suite: time that moves when the test says so, and a device client that answers
as a test scripts it (late mDNS services, a dead or hanging device, a reboot into new firmware). The
project's own modules run unpatched around them: the device actor, its executor, its capabilities."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devolo_mqtt.core.errors import DeviceUnavailableError
from devolo_mqtt.core.model import (
    DeviceIdentity,
    FirmwareCheck,
    GuestWifi,
    MultiAp,
    NeighborAp,
    Overview,
    PlcHealth,
    RepeatedAp,
    Station,
)

REPEATER_MT = "3048"  # devolo_plc_api's DEVICES_WITHOUT_PLCNET: no PLC service to wait for


async def settle(rounds: int = 50) -> None:
    """Let every ready task run until the loop is quiet (no real time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class ManualClock:
    """A `clock.Clock` whose time moves only in `advance`: waits end in deadline order, each followed
    by a settle, so every timer of the actor fires as it would, in milliseconds of real time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, asyncio.Future[Any]]] = []
        self.spins = 0  # waits that ended at once because their deadline had passed (a busy loop shows here)

    def __call__(self) -> float:
        return self.t

    async def wait(self, wake: asyncio.Event, deadline: float) -> None:
        if wake.is_set() or deadline <= self.t:
            self.spins += deadline <= self.t and not wake.is_set()
            await asyncio.sleep(0)  # as the real clock: a turn for the others
            return
        timer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (deadline, timer)
        self._sleepers.append(entry)
        woken: asyncio.Future[Any] = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([timer, woken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            self._sleepers.remove(entry)

    async def advance(self, seconds: float) -> None:
        """Move time forward, firing every deadline on the way in order."""
        target = self.t + seconds
        await settle()
        while True:
            due = min((d for d, f in self._sleepers if not f.done()), default=float("inf"))
            if due > target:
                break
            self.t = max(self.t, due)
            for deadline, timer in list(self._sleepers):
                if deadline <= self.t and not timer.done():
                    timer.set_result(None)
            await settle()
        self.t = target
        await settle()


@dataclass
class FakeDevice:
    """What the fake client serves, and what it was asked. Times are on the manual clock."""

    serial: str = "1234567890123456"
    product: str = "devolo Magic 2 WiFi next"
    mt: str = "8706"
    features: frozenset[str] = frozenset({"led", "restart", "update", "wifi1"})
    mac: str = "00005E005301"
    firmware: str = "7.12.5.124"
    api_at: float = 0.0  # its device API answers mDNS from then on (inf: never)
    plc_at: float = 0.0  # its PLC service likewise
    reachable: bool = True
    hanging: bool = False  # requests never end (the client's own timeout is the bridge's to apply)
    broken: set[str] = field(default_factory=set)  # calls that raise an unexpected error
    leds: bool = True
    guest: bool = False
    update: str = ""  # a newer firmware offered
    calls: list[str] = field(default_factory=list)  # every request that reached the device
    attempts: list[float] = field(default_factory=list)  # when each request was tried (reached or not)


class FakeClient:
    """`runtime.DeviceClient` over a FakeDevice."""

    def __init__(self, ip: str, device: FakeDevice, clock: ManualClock) -> None:
        self.ip = ip
        self.last_latency: float | None = 0.001
        self._device = device
        self._clock = clock
        self.connected = False
        self.closed = False

    @property
    def firmware(self) -> str:
        return self._device.firmware if self.connected else ""

    async def connect(self) -> None:
        d = self._device
        if not d.reachable or min(d.api_at, d.plc_at) > self._clock():
            raise DeviceUnavailableError(self.ip, "no mDNS answer")
        self.connected = True

    def identity(self) -> DeviceIdentity | None:
        d = self._device
        if not self.connected or self._clock() < d.api_at:
            return None
        return DeviceIdentity(
            serial=d.serial,
            ip=self.ip,
            product=d.product,
            mt=d.mt,
            features=d.features,
            mac=d.mac if self._clock() >= d.plc_at and d.mt != REPEATER_MT else None,
            firmware=d.firmware,
            hostname="devolo.local.",
        )

    def plc_pending(self) -> bool:
        d = self._device
        return self.connected and d.mt != REPEATER_MT and self._clock() < d.plc_at

    async def close(self) -> None:
        self.connected, self.closed = False, True

    async def _request(self, name: str) -> None:
        d = self._device
        if not self.connected:
            raise DeviceUnavailableError(self.ip, "not connected")
        d.attempts.append(self._clock())
        if d.hanging:
            await asyncio.Event().wait()
        if not d.reachable:
            raise DeviceUnavailableError(self.ip, f"{name}: ConnectError")
        d.calls.append(name)
        if name in d.broken:
            raise RuntimeError(f"{name} exploded")

    # --- reads ---
    async def leds(self) -> bool:
        await self._request("leds")
        return self._device.leds

    async def last_restart(self) -> datetime:
        await self._request("uptime")
        return datetime(2026, 12, 1, tzinfo=UTC) - timedelta(seconds=0)

    async def guest(self) -> GuestWifi:
        await self._request("guest")
        return GuestWifi(self._device.guest, 30 if self._device.guest else 0, "guest", "secret-key")

    async def firmware_check(self) -> FirmwareCheck:
        await self._request("firmware")
        return FirmwareCheck(bool(self._device.update), self._device.update)

    async def stations(self) -> list[Station]:
        await self._request("stations")
        return []

    async def neighbors(self) -> list[NeighborAp]:
        await self._request("neighbors")
        return []

    async def repeated_aps(self) -> list[RepeatedAp]:
        await self._request("repeated_aps")
        return []

    async def multi_ap(self) -> MultiAp:
        await self._request("multi_ap")
        return MultiAp(False, None, None)

    async def plc_health(self) -> PlcHealth:
        await self._request("plc_health")
        return PlcHealth(41.5, 1, None, 0, 0)

    async def overview(self) -> Overview:
        await self._request("overview")
        return Overview((), ())

    # --- writes ---
    async def set_leds(self, on: bool) -> None:
        await self._request("set_leds")
        self._device.leds = on

    async def locate(self, on: bool) -> None:
        await self._request("locate")

    async def set_guest(self, enable: bool, minutes: int) -> None:
        await self._request("set_guest")
        self._device.guest = enable

    async def restart(self) -> None:
        await self._request("restart")

    async def pair(self) -> None:
        await self._request("pair")

    async def wps(self) -> None:
        await self._request("wps")

    async def install_update(self) -> None:
        await self._request("install_update")

    async def set_name(self, name: str) -> str:
        await self._request("set_name")
        return name


@dataclass
class Recorder:
    """`runtime.RuntimeHooks` and the command answers, as lists a test reads (with the clock's time)."""

    clock: ManualClock
    states: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    availability: list[tuple[float, bool | None]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    identified: list[DeviceIdentity] = field(default_factory=list)
    changed: list[DeviceIdentity] = field(default_factory=list)

    def device_identified(self, runtime: Any) -> None:
        self.identified.append(runtime.identity)

    def identity_changed(self, runtime: Any) -> None:
        self.changed.append(runtime.identity)

    def entities_changed(self, runtime: Any) -> None:
        self.changed.append(runtime.identity)

    def device_state(self, runtime: Any, state: dict[str, Any], *, force: bool) -> None:
        self.states.append((self.clock(), state))

    def device_availability(self, runtime: Any) -> None:
        self.availability.append((self.clock(), runtime.online))

    def event(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def source_read(self, runtime: Any, source: Any, value: Any) -> None:
        pass

    def network_changed(self, runtime: Any) -> None:
        pass

    def answer(self, device_id: str, command: Any, payload: dict[str, Any]) -> None:
        self.answers.append((self.clock(), device_id, payload))
