"""The emulator: one asyncio process serving every device of a scenario over mDNS and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Self

import structlog

from devolo_mqtt.tools.emulator.http import DeviceHttpServer
from devolo_mqtt.tools.emulator.mdns import SERVICES, MdnsResponder
from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.world import EmulatedDevice, Fault, Silence, World

log = structlog.get_logger("devolo_mqtt.tools.emulator")


class Emulator:
    """Serves a scenario's devices until closed; time runs by itself unless `run_clock=False`.

    Use as `async with Emulator(scenario) as emu:`; tests drive time with `emu.advance(seconds)` and
    inject faults with `emu.set_fault(serial, Fault.X)`.
    """

    def __init__(
        self, scenario: Scenario, *, interface: str | None = None, run_clock: bool = True, speed: float = 1.0
    ) -> None:
        self.world = World(scenario)
        self._scenario = scenario
        self._run_clock = run_clock
        self._speed = speed
        self._mdns = MdnsResponder(self._manageable, self._announces, scenario.http_port, interface)
        self._http = [DeviceHttpServer(self.world, d, scenario.http_port) for d in self._manageable()]
        self._clock: asyncio.Task[None] | None = None
        self.started_in = 0.0

    def _manageable(self) -> list[EmulatedDevice]:
        return [d for d in self.world.devices.values() if d.ip is not None]

    def _announces(self, device: EmulatedDevice) -> bool:
        return device.announces(self.world.now)

    async def start(self) -> None:
        """Open every socket, announce every device and start the clock."""
        began = time.perf_counter()
        await self._mdns.start()
        await asyncio.gather(*(server.start() for server in self._http))
        for device in self._manageable():
            self._mdns.announce(device)
        if self._run_clock:
            self._clock = asyncio.create_task(self._tick(), name="devolo_mqtt.emulator.clock")
        self.started_in = time.perf_counter() - began
        log.info(
            "emulator_started",
            devices=len(self.world.devices),
            manageable=len(self._http),
            seconds=round(self.started_in, 3),
        )

    async def close(self) -> None:
        """Stop the clock and close every socket."""
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
        self._mdns.close()
        await asyncio.gather(*(server.close() for server in self._http))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _tick(self) -> None:
        interval = self._scenario.tick_seconds
        while True:
            await asyncio.sleep(interval)
            self.advance(interval * self._speed)

    # --- control ------------------------------------------------------------------------------------
    def device(self, serial: str) -> EmulatedDevice:
        """An emulated device by serial (KeyError if unknown)."""
        return self.world.devices[serial]

    def advance(self, seconds: float) -> None:
        """Move simulated time and announce what changed (e.g. a new firmware version)."""
        self.world.advance(seconds)
        while self.world.firmware_changed:
            self._mdns.announce(self.device(self.world.firmware_changed.pop()))

    def set_fault(self, serial: str, fault: Fault, *, slow_seconds: float | None = None) -> None:
        """Switch a device's fault mode; clearing a fault re-announces the device."""
        device = self.device(serial)
        device.fault = fault
        if slow_seconds is not None:
            device.slow_seconds = slow_seconds
        if fault is Fault.NONE:
            self._mdns.announce(device)
        log.info("emulator_fault", serial=serial, fault=str(fault))

    def silence(self, serial: str, service: str, *, queries: int = 0, seconds: float = 0.0) -> None:
        """Withhold a service's mDNS answers ("deviceapi" or "plcnet"): for the next `queries` queries,
        or for `seconds` (with neither: until `speak`); when a timed silence ends the device announces
        itself (as one that booted late)."""
        if service not in SERVICES.values():
            raise ValueError(f"service must be one of {', '.join(SERVICES.values())}")
        device = self.device(serial)
        until = time.monotonic() + (seconds if seconds else float("inf") if not queries else 0.0)
        device.silenced[service] = Silence(queries, until)
        if seconds:
            asyncio.get_running_loop().call_later(seconds + 0.01, self._mdns.announce, device)

    def speak(self, serial: str, service: str) -> None:
        """End a service's silence now, and announce the device (as one whose service just came up)."""
        device = self.device(serial)
        device.silenced.pop(service, None)
        self._mdns.announce(device)

    def unplug(self, serial: str, plugged: bool = False) -> None:
        """Pull a device out of the socket (it leaves every overview), or plug it back."""
        device = self.device(serial)
        device.plugged = plugged
        if plugged and device.ip:
            self._mdns.announce(device)
