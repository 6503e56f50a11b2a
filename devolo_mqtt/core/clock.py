"""Time: wall-clock time as the bridge publishes it (`last_seen`, events, measurements), and the
monotonic clock that schedules polls, probes and deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Protocol

_FOREVER = 10**9  # seconds: no deadline at all


def utc_now() -> datetime:
    """Wall-clock time for `last_seen`, events and measurements."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with second precision (`…Z`)."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


class Clock(Protocol):
    """The bridge's monotonic clock: read it, and wait on it. Tests drive a manual one (no sleeps)."""

    def __call__(self) -> float:
        """Seconds on the monotonic clock."""
        ...

    async def wait(self, wake: asyncio.Event, deadline: float) -> None:
        """Return when `wake` is set or `deadline` has come, whichever is first."""
        ...


class MonotonicClock:
    """The real clock (the event loop's own: `time.monotonic`)."""

    def __call__(self) -> float:
        """Seconds on the monotonic clock."""
        return time.monotonic()

    async def wait(self, wake: asyncio.Event, deadline: float) -> None:
        """Return when `wake` is set or `deadline` has come, whichever is first."""
        delay = deadline - time.monotonic()
        if delay <= 0 or wake.is_set():
            await asyncio.sleep(0)  # a turn for the others: a loop due again at once never starves them
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay if delay < _FOREVER else None):
                await wake.wait()
