"""Firmware roll-outs: install the offered updates on many devices one at a time, the router-attached
adapter last (while it reboots the whole PLC network is cut off from the router), each one waited for
until it is back with a new firmware before the next starts. A device that fails (its install refused,
or not back in time) stops the roll-out: the devices after it keep their working firmware.

One roll-out runs at a time. Its progress goes out as events; each device's own install shows in its
state (`update_in_progress`) and so in its update entity, as an install started by hand does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from devolo_mqtt.core.capabilities import INSTALL_SECONDS, PLC_VIEW
from devolo_mqtt.core.clock import Clock
from devolo_mqtt.core.commands import Command
from devolo_mqtt.core.errors import CommandError
from devolo_mqtt.core.model import EventData
from devolo_mqtt.devices.actor import DeviceActor

log = structlog.get_logger("devolo_mqtt.rollout")
CHECK_EVERY = 1.0  # seconds between looks at a device that is installing


class Rollout:
    """The bridge's firmware roll-out (at most one at a time)."""

    def __init__(
        self,
        runtimes: Callable[[], dict[str, DeviceActor]],
        *,
        event: Callable[[str, EventData], None],
        clock: Clock,
    ) -> None:
        self._runtimes = runtimes
        self._event = event
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # never set: the waits are timed looks
        self.status: dict[str, Any] = {"running": False}  # for diagnostics

    @property
    def running(self) -> bool:
        """Whether a roll-out is under way."""
        return self._task is not None and not self._task.done()

    def plan(self, wanted: list[str] | None) -> list[DeviceActor]:
        """The devices to update, in order (the router-attached one last); CommandError when a wanted
        device is unknown or has no update offered, or when nothing is to be done."""
        runtimes = self._runtimes()
        if wanted is None:
            chosen = [r for r in runtimes.values() if _offered(r)]
            if not chosen:
                raise CommandError("firmware/update", "no device has an update offered")
        else:
            unknown = [d for d in wanted if d not in runtimes]
            if unknown:
                raise CommandError("firmware/update", f"unknown device {unknown[0][:80]!r}")
            chosen = [runtimes[d] for d in dict.fromkeys(wanted)]
            if without := [r.id for r in chosen if not _offered(r)]:
                raise CommandError("firmware/update", f"no update offered for {', '.join(without)}")
        return sorted(chosen, key=lambda r: (_router_attached(r), r.id))

    def start(self, wanted: list[str] | None, *, timeout: float = INSTALL_SECONDS) -> list[DeviceActor]:
        """Plan and start a roll-out in the background; the planned order."""
        if self.running:
            raise CommandError("firmware/update", "a roll-out is already running")
        order = self.plan(wanted)
        self._task = asyncio.get_running_loop().create_task(self._run(order, timeout), name="rollout")
        return order

    def cancel(self) -> None:
        """The bridge stops: a running roll-out ends here (an install in progress finishes by itself)."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self, order: list[DeviceActor], within: float) -> None:
        ids = [r.id for r in order]
        done: list[str] = []
        self.status = {"running": True, "order": ids, "done": done, "current": None}
        self._event("firmware_rollout_started", {"devices": list(ids)})
        log.info("rollout_started", devices=ids)
        try:
            for runtime in order:
                self.status["current"] = runtime.id
                problem = await self._one(runtime, within)
                if problem is not None:
                    left = ids[len(done) + 1 :]
                    data: EventData = {"device": runtime.id, "reason": problem, "done": list(done)}
                    self._event("firmware_rollout_failed", {**data, "left": left})
                    log.warning("rollout_failed", device=runtime.id, reason=problem, left=left)
                    self.status.update(running=False, failed=runtime.id, reason=problem)
                    return
                done.append(runtime.id)
            self._event("firmware_rollout_finished", {"devices": list(done)})
            log.info("rollout_finished", devices=done)
            self.status.update(running=False, current=None)
        except asyncio.CancelledError:
            self.status.update(running=False, cancelled=True)
            raise

    async def _one(self, runtime: DeviceActor, within: float) -> str | None:
        """Install on one device and wait until it is back with another firmware; why not, if not."""
        before, target = runtime.firmware, str(runtime.current_state().get("next_firmware") or "")
        self._event("firmware_update_started", {"device": runtime.id, "from": before, "to": target})
        answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def told(payload: dict[str, Any]) -> None:
            if not answered.done():
                answered.set_result(payload)

        runtime.submit(Command({"install_update": "install"}, single_key=True, on_answer=told))
        result = await answered  # every command is answered within the request timeout
        if result.get("status") != "ok":
            return f"the install was refused: {result.get('error')}"
        deadline = self._clock() + within
        while not (runtime.online and runtime.firmware and runtime.firmware != before):
            if self._clock() >= deadline:
                return f"not back with a new firmware within {within:g} s"
            await self._clock.wait(self._wake, min(deadline, self._clock() + CHECK_EVERY))
        self._event("firmware_updated", {"device": runtime.id, "from": before, "to": runtime.firmware})
        return None


def _offered(runtime: DeviceActor) -> bool:
    return runtime.current_state().get("update_available") is True


def _router_attached(runtime: DeviceActor) -> bool:
    view = runtime.data(PLC_VIEW)
    return view is not None and view.attached_to_router
