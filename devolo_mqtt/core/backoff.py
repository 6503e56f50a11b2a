"""One back-off for every retry loop (device connects, offline probes, crashed device tasks, the MQTT
reconnect): exponential from `first` to `maximum`, optionally jittered so that many clients that
failed together do not retry together."""

from __future__ import annotations

import random


class Backoff:
    """The next delay doubles up to `maximum`; `reset()` after a success."""

    def __init__(self, first: float, maximum: float, *, jitter: float = 0.0) -> None:
        self._first = first
        self._maximum = maximum
        self._jitter = jitter
        self._current = first

    def next(self) -> float:
        """The delay to wait now (the following one doubles)."""
        delay = min(self._current, self._maximum)
        self._current = min(self._current * 2, self._maximum)
        return delay * random.uniform(1 - self._jitter, 1 + self._jitter) if self._jitter else delay

    def reset(self) -> None:
        """Back to the first delay."""
        self._current = self._first
