"""PLC link health over time: a rolling median per directed link, degradation and recovery, and
members joining or leaving a network — kept in the data directory, so a restart forgets nothing.

A link is *degraded* when its rate stays below `DEGRADED_SHARE` of its median for `DEGRADED_AFTER`
overviews in a row, and *recovered* at the first overview back above it. The median is taken over the
last `WINDOW` rates that were not below that share: a dip does not pull down the baseline it is
measured against, so a link that stays bad stays reported as bad.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devolo_mqtt.core.store import JsonStore

WINDOW = 24  # rates per link in the median (two hours at the default five-minute network interval)
MIN_SAMPLES = 3  # a median of fewer rates says nothing yet
DEGRADED_SHARE = 0.75
DEGRADED_AFTER = 2


@dataclass
class _Link:
    samples: list[float] = field(default_factory=list)
    low: int = 0  # overviews in a row below the share of the median
    degraded: bool = False

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if len(self.samples) >= MIN_SAMPLES else None


@dataclass(frozen=True, slots=True)
class LinkChange:
    """A directed link that became degraded (or recovered) with this overview."""

    src: str
    dst: str
    degraded: bool
    rate: float
    median: float


@dataclass(frozen=True, slots=True)
class LinkChanges:
    """What one overview changed in a network."""

    links: list[LinkChange]
    joined: list[str]
    left: list[str]


class LinkWatch:
    """Every directed link's history and every network's members, persisted as JSON."""

    def __init__(self, path: Path) -> None:
        self._store = JsonStore(path)
        self._links: dict[tuple[str, str], _Link] = {}
        self._members: dict[str, set[str]] = {}
        self._load(self._store.load())

    def _load(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        for key, item in (data.get("links") or {}).items():
            src, _, dst = str(key).partition(">")
            if dst and isinstance(item, dict) and isinstance(item.get("samples"), list):
                samples = [float(s) for s in item["samples"] if isinstance(s, int | float)][-WINDOW:]
                self._links[(src, dst)] = _Link(samples, int(item.get("low", 0)), bool(item.get("degraded")))
        for network, macs in (data.get("members") or {}).items():
            if isinstance(macs, list):
                self._members[str(network)] = {str(m) for m in macs}

    def degraded(self, src: str, dst: str) -> bool:
        """Whether a directed link is degraded now."""
        link = self._links.get((src, dst))
        return link is not None and link.degraded

    def median(self, src: str, dst: str) -> float | None:
        """A directed link's median rate (None before `MIN_SAMPLES` rates)."""
        link = self._links.get((src, dst))
        return link.median if link else None

    def observe(
        self, network: str, members: Iterable[str], rates: Iterable[tuple[str, str, float]]
    ) -> LinkChanges:
        """One overview of `network`: its members' MACs and `(src, dst, tx rate)` per measured link."""
        now = set(members)
        before = self._members.get(network)
        self._members[network] = now
        changes = [c for src, dst, rate in rates if (c := self._sample(src, dst, rate)) is not None]
        self._store.save_soon(self._dump)
        if before is None:  # first sight of this network: its members are not news
            return LinkChanges(changes, [], [])
        return LinkChanges(changes, sorted(now - before), sorted(before - now))

    def forget(self, network: str) -> None:
        """A network id no longer used (its links are kept: they are per MAC pair)."""
        if self._members.pop(network, None) is not None:
            self._store.save_soon(self._dump)

    def _sample(self, src: str, dst: str, rate: float) -> LinkChange | None:
        link = self._links.setdefault((src, dst), _Link())
        median = link.median
        below = median is not None and rate < DEGRADED_SHARE * median
        if not below:
            link.samples = [*link.samples, rate][-WINDOW:]
            link.low = 0
            if link.degraded:
                link.degraded = False
                assert median is not None
                return LinkChange(src, dst, False, rate, median)
            return None
        assert median is not None
        link.low += 1
        if link.low >= DEGRADED_AFTER and not link.degraded:
            link.degraded = True
            return LinkChange(src, dst, True, rate, median)
        return None

    def _dump(self) -> dict[str, Any]:
        return {
            "links": {
                f"{src}>{dst}": {"samples": link.samples, "low": link.low, "degraded": link.degraded}
                for (src, dst), link in sorted(self._links.items())
            },
            "members": {network: sorted(macs) for network, macs in sorted(self._members.items())},
        }
