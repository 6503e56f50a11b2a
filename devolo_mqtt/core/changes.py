"""When a device's state object is worth publishing: on change, when forced, or at the heartbeat."""

from __future__ import annotations

from collections.abc import Callable

from devolo_mqtt.core.model import Json


class ChangeFilter:
    """Remembers the last published state; an unchanged device costs no traffic between heartbeats."""

    def __init__(self, heartbeat: float, clock: Callable[[], float]) -> None:
        self._heartbeat = heartbeat
        self._clock = clock
        self.last: dict[str, Json] | None = None
        self._last_at = 0.0

    @property
    def due_at(self) -> float:
        """When the heartbeat wants the state again (never before a first publish)."""
        return self._last_at + self._heartbeat if self.last is not None else float("inf")

    def should_publish(self, state: dict[str, Json], *, force: bool = False) -> bool:
        """Whether to publish `state` now; if so it becomes the last published one."""
        due = self._clock() - self._last_at >= self._heartbeat
        if not (force or due or state != self.last):
            return False
        self.last, self._last_at = state, self._clock()
        return True
