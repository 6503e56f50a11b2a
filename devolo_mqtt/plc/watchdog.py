"""The PLC watchdog (opt-in): restart an adapter whose PLC links stay degraded, or that stays missing from
its network, the way owners do by hand — with a circuit breaker.

After each overview of a network the watchdog looks at its degraded links (`LinkWatch`) and its missing
members. The adapter at the degraded end of a link (the one that is not attached to the router; between
two others, the one with more degraded links) counts one bad overview; a member absent from the overview
counts one too. After `after` bad overviews in a row it is restarted — unless:
- it is the router-attached adapter and `allow_router` is off (restarting it cuts the whole network
  off the router),
- it has no API the bridge can reach (an adapter without API, or a device that is offline),
- it was restarted `max_restarts` times within `window` (the breaker: a link that a restart does not heal
  is bad wiring, not a hung chip),
- another adapter of its network was restarted and is not back in an overview yet (never two at once).
The first three end in one `plc_watchdog_gave_up` per episode (until the adapter is well again). With
`dry_run` nothing is restarted: the same decisions are reported (and counted by the breaker).

Pure decisions here; the monitor feeds overviews and carries out restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from devolo_mqtt.core.mac import display_mac
from devolo_mqtt.settings import PlcWatchdogSettings

COOL_DOWN = 30 * 60.0  # seconds a network waits at most for a restarted adapter to show up again


@dataclass(frozen=True, slots=True)
class Target:
    """What the watchdog may do with an adapter."""

    device: str | None  # its id, if the bridge knows it
    restartable: bool  # manageable and reachable now


@dataclass(frozen=True, slots=True)
class Decision:
    """`restart` the adapter (`mac`), or say why the watchdog `gave_up` on it."""

    kind: str  # "restart" | "gave_up"
    mac: str
    device: str | None
    network: str
    reason: str


@dataclass
class _Network:
    members: set[str] = field(default_factory=set)  # every MAC seen in it
    busy: tuple[str, float] | None = None  # (restarted MAC, until when at most) while it comes back


class PlcWatchdog:
    """Counts bad overviews per adapter and decides restarts, within the breaker's limits."""

    def __init__(self, settings: PlcWatchdogSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._bad: dict[str, int] = {}  # MAC → bad overviews in a row
        self._why: dict[str, str] = {}  # MAC → what was bad last
        self._restarts: dict[str, list[float]] = {}  # MAC → when it was restarted (or would have been)
        self._gave_up: set[str] = set()  # MACs given up on in their current episode
        self._networks: dict[str, _Network] = {}

    def observe(
        self,
        network: str,
        present: Collection[str],
        degraded: Collection[tuple[str, str]],
        routers: Collection[str],
        target: Callable[[str], Target],
    ) -> list[Decision]:
        """One overview of `network`: its members present, its degraded directed links and its
        router-attached adapters; the decisions it brings."""
        now = self._clock()
        state = self._networks.setdefault(network, _Network())
        state.members |= set(present)
        if state.busy is not None:
            mac, until = state.busy
            if mac in present or now >= until:
                state.busy = None
        bad = self._bad_ends(degraded, routers)
        for mac in state.members - set(present):
            bad[mac] = "missing from its network"
        for mac in state.members:
            if mac in bad:
                self._bad[mac] = self._bad.get(mac, 0) + 1
                self._why[mac] = bad[mac]
            else:
                self._bad.pop(mac, None)
                self._gave_up.discard(mac)
        decisions: list[Decision] = []
        for mac in sorted(bad, key=lambda m: (-self._bad.get(m, 0), m)):
            if self._bad.get(mac, 0) < self.settings.after:
                continue
            decision = self._decide(network, mac, routers, target(mac), now)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _bad_ends(self, degraded: Collection[tuple[str, str]], routers: Collection[str]) -> dict[str, str]:
        """The adapter to blame for each degraded link, and why."""
        touching: dict[str, int] = {}
        for link in degraded:
            for mac in link:
                touching[mac] = touching.get(mac, 0) + 1
        blamed: dict[str, str] = {}
        for src, dst in degraded:
            ends = [m for m in (src, dst) if m not in routers] or [src, dst]
            mac = max(ends, key=lambda m: (touching[m], m == dst))
            blamed[mac] = f"PLC link {display_mac(src)} → {display_mac(dst)} degraded"
        return blamed

    def _decide(
        self, network: str, mac: str, routers: Collection[str], target: Target, now: float
    ) -> Decision | None:
        why = f"{self._why[mac]} for {self._bad[mac]} overviews"

        def gave_up(reason: str) -> Decision | None:
            if mac in self._gave_up:
                return None
            self._gave_up.add(mac)
            return Decision("gave_up", mac, target.device, network, f"{why}; {reason}")

        if mac in routers and not self.settings.allow_router:
            return gave_up("it is attached to the router (plc_watchdog.allow_router is off)")
        if not target.restartable:
            return gave_up("no API the bridge can reach to restart it")
        recent = [t for t in self._restarts.get(mac, []) if now - t < self.settings.window]
        self._restarts[mac] = recent
        if len(recent) >= self.settings.max_restarts:
            hours = self.settings.window / 3600
            return gave_up(f"restarted {len(recent)} times in {hours:g} h already (circuit breaker)")
        state = self._networks[network]
        if state.busy is not None:
            return None  # another adapter of this network is coming back: later
        recent.append(now)
        state.busy = (mac, now + COOL_DOWN)
        self._bad.pop(mac, None)
        return Decision("restart", mac, target.device, network, why)

    def status(self) -> dict[str, Any]:
        """For diagnostics."""
        return {
            "enabled": self.settings.enabled,
            "dry_run": self.settings.dry_run,
            "bad_overviews": {display_mac(m): n for m, n in sorted(self._bad.items())},
            "restarts": {display_mac(m): len(t) for m, t in sorted(self._restarts.items()) if t},
            "gave_up": sorted(display_mac(m) for m in self._gave_up),
            "busy": {n: display_mac(s.busy[0]) for n, s in sorted(self._networks.items()) if s.busy},
        }
