"""PLC networks: one `GetNetworkOverview` per logical network per interval, asked of any reachable
manageable member (another one when it fails), turned into a retained rate matrix per network and a
PLC view for every member — manageable devices and configured adapters without an API alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from devolo_mqtt.core.capabilities import PLC_HEALTH, PLC_VIEW, round_rate
from devolo_mqtt.core.changes import ChangeFilter
from devolo_mqtt.core.errors import DevoloMqttError
from devolo_mqtt.core.mac import display_mac
from devolo_mqtt.core.model import PLCNET, EventData, Overview, PlcDevice, PlcView
from devolo_mqtt.core.store import JsonStore
from devolo_mqtt.core.tasks import honour_cancellation
from devolo_mqtt.devices.actor import DeviceActor
from devolo_mqtt.devices.adapter import AdapterRuntime
from devolo_mqtt.plc import plcmap, ratematrix
from devolo_mqtt.plc.linkwatch import LinkChanges, LinkWatch
from devolo_mqtt.plc.watchdog import Decision, PlcWatchdog, Target

log = structlog.get_logger("devolo_mqtt.plc.monitor")


def slug(name: str) -> str:
    """A configured network name as a topic level."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-") or "plc"


class NetworkIds:
    """Stable network ids across polls and restarts: remembered per MAC in the data directory."""

    def __init__(self, path: Path) -> None:
        self._store = JsonStore(path)
        loaded = self._store.load()
        self._ids: dict[str, str] = (
            {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        )

    def resolve(self, macs: list[str], configured: str | None) -> str:
        """The network's id: configured name, else one remembered for a member, else a new derived one."""
        remembered = next((self._ids[m] for m in macs if m in self._ids), None)
        network_id = slug(configured) if configured else remembered or f"plc-{min(macs).lower()}"
        changed = {m: network_id for m in macs if self._ids.get(m) != network_id}
        if changed:
            self._ids.update(changed)
            self._store.save(self._ids)
        return network_id


@dataclass
class _Network:
    macs: set[str] = field(default_factory=set)
    links: dict[str, set[str]] = field(default_factory=dict)  # every destination ever measured, per source


@dataclass(frozen=True, slots=True)
class NetworkOutput:
    """Where the monitor's findings go."""

    rates: Callable[[str, dict[str, Any]], None]  # (network id, matrix)
    map: Callable[[str, list[plcmap.Shape]], None]  # (network id, its picture)
    event: Callable[[str, EventData], None]
    wired: Callable[[str, list[str]], None]  # (device id, the LAN devices behind it)
    networks_changed: Callable[[], None]  # a network was seen for the first time, or is gone
    forget: Callable[[str], None]  # a network id no longer used: clear its retained topics
    restart: Callable[[str, str], None] = lambda _device, _reason: None  # the watchdog restarts one


@dataclass(frozen=True, slots=True)
class Unmanaged:
    """A device seen in an overview that is neither manageable here nor configured."""

    device: PlcDevice
    network: str


class NetworkMonitor:
    """Polls every PLC network once per interval and feeds every member."""

    def __init__(
        self,
        *,
        interval: float,
        ids: NetworkIds,
        members: Callable[[], list[DeviceActor]],
        adapters: dict[str, AdapterRuntime],
        names: Callable[[str], str | None],
        configured_network: Callable[[str], str | None],
        out: NetworkOutput,
        watch: LinkWatch,
        measured: Callable[[list[str]], None],
        heartbeat: float,
        clock: Callable[[], float],
        watchdog: PlcWatchdog | None = None,
    ) -> None:
        self._interval = interval
        self._ids = ids
        self._members = members
        self._adapters = adapters
        self._names = names
        self._configured_network = configured_network
        self._out = out
        self._watch = watch
        self._measured = measured
        self._heartbeat, self._clock = heartbeat, clock
        self.watchdog = watchdog
        self._changes: dict[str, ChangeFilter] = {}  # per network: its matrix, measurement time aside
        self.networks: dict[str, _Network] = {}
        self.unmanaged: dict[str, Unmanaged] = {}
        self._last: dict[str, tuple[PlcDevice, PlcView]] = {}  # per MAC, from the newest overview
        self._wake = asyncio.Event()
        self._full_wanted = False  # a full round asked for before its time (a device renamed)

    def look_again(self) -> None:
        """Read every network now (something its overview shows changed, e.g. a name)."""
        self._full_wanted = True
        self._wake.set()

    def device_joined(self, runtime: DeviceActor) -> None:
        """A manageable PLC device connected: it gets its network's last view now (not at the next
        round); networks nobody has measured yet are looked at soon."""
        if runtime.identity_ is not None and (last := self._last.get(runtime.identity_.mac or "")):
            runtime.overview_name = last[0].name
            runtime.feed(PLC_VIEW, last[1])
        self._wake.set()

    async def run(self) -> None:
        """Full rounds every interval; quick partial rounds for devices of unknown networks."""
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while True:
            now = loop.time()
            # Cleared before the round, not after: a device that joins while it runs wakes the next one
            # (cleared after, its wake was lost, and its network waited for the next full round).
            self._wake.clear()
            full, self._full_wanted = now >= next_full or self._full_wanted, False
            await self.poll(full=full)
            honour_cancellation()
            if now >= next_full:
                next_full = now + self._interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_full - loop.time())):
                    await self._wake.wait()
            await asyncio.sleep(0.2)  # let devices that connect together join one partial round

    def _candidates(self) -> list[DeviceActor]:
        members = [r for r in self._members() if r.identity_ is not None and r.identity_.supports(PLCNET)]
        return sorted(members, key=lambda r: (r.online is False, r.id))  # reachable ones first

    async def poll(self, *, full: bool = True) -> None:
        """One round: each known network once (when `full`), then every member of an unknown one."""
        covered: set[str] = set()
        candidates = self._candidates()
        if full:
            for network in list(self.networks.values()):
                askers = [r for r in candidates if r.identity.mac in network.macs]
                covered |= await self._ask_one_of(askers) or network.macs
        for runtime in candidates:
            if runtime.identity.mac not in covered and not self._known(runtime.identity.mac):
                covered |= await self._ask_one_of([runtime]) or set()
        if full and self.networks:  # before any network was measured, absence means nothing yet
            present = {mac for n in self.networks.values() for mac in n.macs}
            for mac, adapter in self._adapters.items():
                if mac not in present:
                    adapter.seen(None, None)

    def _known(self, mac: str | None) -> bool:
        return any(mac in n.macs for n in self.networks.values())

    async def _ask_one_of(self, askers: list[DeviceActor]) -> set[str] | None:
        for runtime in askers:
            try:
                overview = await runtime.client.overview()
            except DevoloMqttError as err:
                log.info("overview_failed", device=runtime.id, error=str(err))
                continue
            return self.take(overview)
        return None

    def take(self, overview: Overview) -> set[str]:
        """Feed one overview to its network's members and publish its matrix; the MACs it covered."""
        macs = [d.mac for d in overview.devices]
        if not macs:
            return set()
        configured = next((n for m in macs if (n := self._configured_network(m))), None)
        network_id = self._ids.resolve(macs, configured)
        new = network_id not in self.networks
        if new:
            self.networks[network_id] = _Network()
            self._retire_others(network_id, set(macs))
        network = self.networks[network_id]
        gone = network.macs - set(macs)
        network.macs = set(macs)
        measured = {(r.src, r.dst): (r.tx, r.rx) for r in overview.rates}
        for src, dst in measured:
            network.links.setdefault(src, set()).add(dst)
        routers = frozenset(d.mac for d in overview.devices if d.attached_to_router)
        runtimes = {r.identity.mac: r for r in self._members() if r.identity_ is not None}
        for device in overview.devices:
            links = {dst: measured.get((device.mac, dst)) for dst in network.links.get(device.mac, set())}
            bridged = tuple(m for m in device.bridged if m not in network.macs)
            view = PlcView(network_id, device.attached_to_router, len(macs), links, routers, bridged)
            self._last[device.mac] = (device, view)
            if (runtime := runtimes.get(device.mac)) is not None:
                runtime.overview_name = device.name
                runtime.feed(PLC_VIEW, view)
                self._out.wired(runtime.id, list(bridged))
            elif (adapter := self._adapters.get(device.mac)) is not None:
                adapter.seen(device, view)
                self._out.wired(adapter.id, list(bridged))
            else:
                self.unmanaged[device.mac] = Unmanaged(device, network_id)
        if new:
            self._out.networks_changed()  # after its members' names are known: the name people read
        for mac in gone:
            self.unmanaged.pop(mac, None)
            self._last.pop(mac, None)
            if (adapter := self._adapters.get(mac)) is not None:
                adapter.seen(None, None)
            if (member := runtimes.get(mac) or self._adapters.get(mac)) is not None:
                self._out.wired(member.id, [])  # out of its network: nothing is seen behind it
        self._tell(
            network_id, self._watch.observe(network_id, macs, ((r.src, r.dst, r.tx) for r in overview.rates))
        )
        self._watch_over(network_id, macs, overview, routers, runtimes)
        matrix = ratematrix.build(
            network_id,
            overview,
            node_id=lambda mac: node.id if (node := runtimes.get(mac) or self._adapters.get(mac)) else None,
            manageable=runtimes.keys(),
            name_for=self.name_for,
            degraded=self._watch.degraded,
            health=lambda mac: runtime.data(PLC_HEALTH) if (runtime := runtimes.get(mac)) else None,
        )
        changes = self._changes.setdefault(network_id, ChangeFilter(self._heartbeat, self._clock))
        if changes.should_publish({k: v for k, v in matrix.items() if k != "measured_at"}):
            self._out.rates(network_id, matrix)
            # Drawn when the matrix changed (or at its heartbeat): the same picture is not sent again.
            self._out.map(network_id, plcmap.draw(matrix))
        self._measured(macs)
        return set(macs)

    def _retire_others(self, network_id: str, macs: set[str]) -> None:
        """A network seen under a new id: the same network known under another id (its configured name
        became known when that device connected) is retired, not polled twice; members that moved
        here leave their old network."""
        for other_id, other in list(self.networks.items()):
            if other_id == network_id or not other.macs & macs:
                continue
            if other.macs <= macs:
                log.info("network_renamed", old=other_id, new=network_id)
                del self.networks[other_id]
                self._changes.pop(other_id, None)
                self._watch.forget(other_id)
                self._out.forget(other_id)
            else:
                other.macs -= macs

    def _tell(self, network_id: str, changes: LinkChanges) -> None:
        """Events for links that degraded or recovered and for members that joined or left."""
        for link in changes.links:
            self._out.event(
                "plc_link_degraded" if link.degraded else "plc_link_recovered",
                {
                    "network": network_id,
                    "from": display_mac(link.src),
                    "to": display_mac(link.dst),
                    "from_name": self.name_for(link.src),
                    "to_name": self.name_for(link.dst),
                    "rate": round_rate(link.rate),
                    "median": round_rate(link.median),
                },
            )
        for kind, macs in (("plc_device_joined", changes.joined), ("plc_device_left", changes.left)):
            for mac in macs:
                self._out.event(
                    kind, {"network": network_id, "mac": display_mac(mac), "name": self.name_for(mac)}
                )

    def _watch_over(
        self,
        network_id: str,
        macs: list[str],
        overview: Overview,
        routers: frozenset[str],
        runtimes: dict[str | None, DeviceActor],
    ) -> None:
        """The watchdog's look at this overview (when it is on), and what it decides carried out."""
        if self.watchdog is None or not self.watchdog.settings.enabled:
            return

        def target(mac: str) -> Target:
            """A manageable, reachable device can be restarted; an adapter without API cannot."""
            if (runtime := runtimes.get(mac)) is not None:
                return Target(runtime.id, runtime.online is True)
            adapter = self._adapters.get(mac)
            return Target(adapter.id if adapter else None, restartable=False)

        degraded = [(r.src, r.dst) for r in overview.rates if self._watch.degraded(r.src, r.dst)]
        for decision in self.watchdog.observe(network_id, macs, degraded, routers, target):
            self._carry_out(decision)

    def _carry_out(self, decision: Decision) -> None:
        """A watchdog decision: an event, and (unless a dry run) the restart."""
        assert self.watchdog is not None
        dry = self.watchdog.settings.dry_run
        data: EventData = {
            "device": decision.device,
            "mac": display_mac(decision.mac),
            "name": self.name_for(decision.mac),
            "network": decision.network,
            "reason": decision.reason,
        }
        if decision.kind == "restart":
            log.warning("plc_watchdog_restart", device=decision.device, reason=decision.reason, dry_run=dry)
            self._out.event("plc_watchdog_restart", {**data, "dry_run": dry})
            if not dry and decision.device is not None:
                self._out.restart(decision.device, decision.reason)
        else:
            log.warning("plc_watchdog_gave_up", device=decision.device, reason=decision.reason)
            self._out.event("plc_watchdog_gave_up", data)

    def display_names(self) -> dict[str, str]:
        """Every network's name as people read it: the name configured for it (`devices[].network`),
        else "Network of" its router-attached adapter (else of its first member)."""
        return {network_id: self.display_name(network_id) for network_id in self.networks}

    def display_name(self, network_id: str) -> str:
        """One network's name as people read it (see `display_names`)."""
        network = self.networks.get(network_id)
        macs = sorted(network.macs) if network else []
        if configured := next((n for m in macs if (n := self._configured_network(m))), None):
            return configured
        routers = [m for m in macs if (last := self._last.get(m)) is not None and last[0].attached_to_router]
        return f"Network of {self.name_for((routers or macs)[0])}" if macs else network_id

    def name_for(self, mac: str, overview_name: str = "") -> str:
        """Configured name, else the name set in the device (from its network's last overview), else
        its product and MAC, else the MAC."""
        if named := self._names(mac) or overview_name:
            return named
        last = self._last.get(mac)
        if last is not None and last[0].name:
            return last[0].name
        if last is not None and last[0].product:
            return f"{last[0].product} {display_mac(mac)}"
        return display_mac(mac)
