"""Clients: per-access-point WiFi lists and per-adapter wired lists (the LAN devices a PLC adapter
bridges, from its network's overview), presence aggregated over all of them (a roam stays `home`; a
device on a LAN port is home too; `not_home` only after the consider-home grace), connect/leave/roam
events, random MACs, offline vendor names and user-given names. A MAC that an access point lists is
placed by WiFi (an adapter with WiFi also bridges its WiFi clients' traffic).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiooui
import structlog

from devolo_mqtt.core.changes import ChangeFilter
from devolo_mqtt.core.clock import iso, utc_now
from devolo_mqtt.core.mac import colon_mac, display_mac, is_random
from devolo_mqtt.core.model import EventData, Station
from devolo_mqtt.core.names import MacNames
from devolo_mqtt.core.store import JsonStore
from devolo_mqtt.settings import WifiSettings

log = structlog.get_logger("devolo_mqtt.wifi.tracker")
LAST_SEEN_STEP = 60.0  # seconds: how stale a present client's published `last_seen` may get


@dataclass
class Presence:
    """One client across all access points."""

    mac: str
    state: str = "not_home"
    ap: str | None = None
    band: str | None = None
    wifi: str | None = None
    last_seen: str | None = None
    medium: str = "wifi"  # "wifi", or "lan": behind an adapter's LAN port
    absent_since: float | None = field(default=None, repr=False)  # monotonic; None while listed


@dataclass(frozen=True, slots=True)
class WifiOutput:
    """Where the tracker publishes (injected by the bridge)."""

    client_list: Callable[[str, dict[str, Any]], None]
    wired_list: Callable[[str, dict[str, Any]], None]
    presence: Callable[[str, dict[str, Any]], None]
    event: Callable[[str, EventData], None]
    tracker_config: Callable[[str], None]


class WifiTracker:
    """Keeps every AP's list and every tracked client's presence."""

    def __init__(
        self,
        settings: WifiSettings,
        names: MacNames,
        out: WifiOutput,
        *,
        state_file: Path,
        clock: Callable[[], float],
        heartbeat: float,
    ) -> None:
        self._heartbeat = heartbeat
        self._settings = settings
        self._names = names
        self._out = out
        self._store = JsonStore(state_file)
        self._clock = clock
        self._lists: dict[str, dict[str, Station]] = {}  # ap id → mac → station
        self._since: dict[tuple[str, str], datetime] = {}  # (ap, mac) → connected since
        self._listed_at: dict[tuple[str, str], float] = {}  # (ap, mac) → when this AP started listing it
        self._wired: dict[str, dict[str, datetime]] = {}  # adapter id → mac → behind it since
        self._wired_at: dict[tuple[str, str], float] = {}  # (adapter, mac) → when it started listing it
        self.presence: dict[str, Presence] = {}
        self._vendors_loaded = False
        self._filters: dict[str, ChangeFilter] = {}  # per presence topic and per AP list
        self._seen_published: dict[str, float] = {}  # per MAC: when its `last_seen` was last published

    # --- start-up ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the OUI registry shipped with aiooui (no network) and re-publish known clients."""
        with contextlib.suppress(Exception):
            await aiooui.async_load()
            self._vendors_loaded = True
        stored = self._store.load()
        with contextlib.suppress(TypeError, AttributeError):
            for item in stored if isinstance(stored, list) else []:
                known = Presence(**item)
                # Not seen yet in this run: the grace period starts now.
                known.absent_since = self._clock() if known.state == "home" else None
                self.presence[known.mac] = known
        for presence in self.presence.values():
            self._publish_presence(presence, force=True)
            self._out.tracker_config(presence.mac)

    async def run(self) -> None:
        """Expire absent clients after the grace period."""
        interval = max(0.2, min(5.0, self._settings.consider_home / 4))
        while True:
            await asyncio.sleep(interval)
            self.expire()

    # --- facts ---------------------------------------------------------------------------------------
    def vendor(self, mac: str) -> str | None:
        """Vendor from the IEEE registry shipped in aiooui; never for random MACs; unknown → None."""
        if is_random(mac) or not self._vendors_loaded:
            return None
        return aiooui.get_vendor(colon_mac(mac)) or None

    def tracked(self, mac: str) -> bool:
        """Random MACs are tracked only when named or when the setting says so."""
        return not is_random(mac) or self._settings.track_random or self._names.get(mac) is not None

    def describe(self, mac: str) -> dict[str, Any]:
        """Name, vendor and random flag of a MAC."""
        return {"name": self._names.get(mac), "vendor": self.vendor(mac), "random": is_random(mac)}

    # --- updates -------------------------------------------------------------------------------------
    def update_ap(self, ap: str, stations: list[Station]) -> None:
        """An access point's fresh list of connected stations."""
        now, wall = self._clock(), utc_now()
        current = {s.mac: s for s in stations[: self._settings.max_clients_per_ap]}
        previous = self._lists.get(ap, {})
        self._lists[ap] = current
        for mac in set(previous) - set(current):
            self._since.pop((ap, mac), None)
            self._listed_at.pop((ap, mac), None)
        for mac in current:
            self._since.setdefault((ap, mac), wall)
            self._listed_at.setdefault((ap, mac), now)
            if self.tracked(mac):
                self._place(mac, wall)
        for mac in set(previous) - set(current):
            self._maybe_absent(mac, now)
        self.publish_list(ap)

    def update_wired(self, device: str, macs: list[str]) -> None:
        """An adapter's fresh list of the LAN devices behind it (from its network's overview)."""
        now, wall = self._clock(), utc_now()
        previous = self._wired.get(device, {})
        current = {mac: previous.get(mac, wall) for mac in macs[: self._settings.max_clients_per_ap]}
        self._wired[device] = current
        for mac in set(previous) - set(current):
            self._wired_at.pop((device, mac), None)
        for mac in current:
            self._wired_at.setdefault((device, mac), now)
            if self.tracked(mac):
                self._place(mac, wall)
        for mac in set(previous) - set(current):
            self._maybe_absent(mac, now)
        self.publish_wired(device)

    def ap_lost(self, ap: str) -> None:
        """An access point went offline: its clients count as not listed (the grace period starts).
        A device that never listed clients (no WiFi) has no list to empty."""
        if ap in self._lists:
            self.update_ap(ap, [])

    def _where(self, mac: str) -> tuple[str, str, Station | None] | None:
        """Where a MAC is now: ("wifi", access point, station) — the access point that listed it last —
        else ("lan", adapter, None); None when nothing lists it."""
        aps = [a for a in self._lists if mac in self._lists[a]]
        if aps:
            newest = max(aps, key=lambda a: self._listed_at[(a, mac)])
            return "wifi", newest, self._lists[newest][mac]
        adapters = [d for d in self._wired if mac in self._wired[d]]
        if adapters:
            return "lan", max(adapters, key=lambda d: self._wired_at[(d, mac)]), None
        return None

    def _place(self, mac: str, wall: datetime) -> None:
        where = self._where(mac)
        if where is None:
            return
        medium, device, station = where
        presence = self.presence.setdefault(mac, Presence(mac))
        was_home, old = presence.state == "home", (presence.medium, presence.ap)
        presence.state, presence.ap, presence.medium = "home", device, medium
        presence.band, presence.wifi = (station.band, station.wifi) if station else (None, None)
        presence.last_seen, presence.absent_since = iso(wall), None
        details = self._details(presence)
        if not was_home:
            kind = "wifi_connected" if medium == "wifi" else "wired_connected"
            log.debug(kind, mac=details["mac"], device=device)
            self._out.event(kind, details)
            self._out.tracker_config(mac)
        elif old[0] == medium == "wifi" and old[1] != device:
            log.debug("wifi_roamed", mac=details["mac"], from_ap=old[1], to_ap=device)
            self._out.event("wifi_roamed", {**details, "from": old[1], "to": device})
        self._publish_presence(presence)

    def _details(self, presence: Presence) -> dict[str, Any]:
        """An event's data: a WiFi client's access point, band and network; a wired one's adapter."""
        described = {"mac": display_mac(presence.mac), **self.describe(presence.mac)}
        if presence.medium == "lan":
            return {**described, "device": presence.ap}
        return {**described, "ap": presence.ap, "band": presence.band, "wifi": presence.wifi}

    def _maybe_absent(self, mac: str, now: float) -> None:
        presence = self.presence.get(mac)
        if presence is None or presence.state != "home":
            return
        if self._where(mac) is not None:  # still listed elsewhere: a roam, not a departure
            self._place(mac, utc_now())
        elif presence.absent_since is None:
            presence.absent_since = now

    def expire(self) -> None:
        """Turn clients absent for longer than the grace period `not_home`."""
        now = self._clock()
        for presence in self.presence.values():
            away = presence.absent_since
            if presence.state == "home" and away is not None and now - away >= self._settings.consider_home:
                presence.state = "not_home"
                details = self._details(presence)
                kind = "wifi_disconnected" if presence.medium == "wifi" else "wired_left"
                log.debug(kind, mac=details["mac"], device=presence.ap)
                self._out.event(kind, details)
                self._publish_presence(presence)

    # --- publishing ----------------------------------------------------------------------------------
    def presence_payload(self, presence: Presence) -> dict[str, Any]:
        """The `devolo/wifi/<mac>` payload."""
        return {
            "state": presence.state,
            "ap": presence.ap,
            "band": presence.band,
            "wifi": presence.wifi,
            "medium": presence.medium,
            **self.describe(presence.mac),
            "last_seen": presence.last_seen,
        }

    def _changed(self, key: str, payload: dict[str, Any], *, force: bool) -> bool:
        """Publish on change or heartbeat only; `last_seen` alone is not a change."""
        change = self._filters.setdefault(key, ChangeFilter(self._heartbeat, self._clock))
        return change.should_publish({k: v for k, v in payload.items() if k != "last_seen"}, force=force)

    def _publish_presence(self, presence: Presence, *, force: bool = False) -> None:
        payload = self.presence_payload(presence)
        # While home, `last_seen` alone is published again once it is a minute old (not every poll).
        refreshed = self._clock() - self._seen_published.get(presence.mac, -LAST_SEEN_STEP) >= LAST_SEEN_STEP
        key = f"presence/{presence.mac}"
        before = self._filters[key].last if key in self._filters else None
        if self._changed(key, payload, force=force or refreshed):
            self._seen_published[presence.mac] = self._clock()
            self._out.presence(presence.mac, payload)
            if self._filters[key].last != before:
                self._save()  # not for a `last_seen` refresh: no file write per client every minute

    def publish_list(self, ap: str, *, force: bool = False) -> None:
        """The `devolo/<ap>/wifi/clients` payload (on change or heartbeat)."""
        clients = [
            {
                "mac": display_mac(mac),
                **self.describe(mac),
                "band": s.band,
                "wifi": s.wifi,
                "rx_rate": s.rx_rate,
                "tx_rate": s.tx_rate,
                "connected_since": iso(self._since.get((ap, mac))),
            }
            for mac, s in sorted(self._lists.get(ap, {}).items())
        ]
        payload = {"last_seen": iso(utc_now()), "clients": clients}
        if self._changed(f"list/{ap}", payload, force=force):
            self._out.client_list(ap, payload)

    def publish_wired(self, device: str, *, force: bool = False) -> None:
        """The `devolo/<id>/wired/clients` payload (on change or heartbeat)."""
        clients = [
            {"mac": display_mac(mac), **self.describe(mac), "connected_since": iso(since)}
            for mac, since in sorted(self._wired.get(device, {}).items())
        ]
        payload = {"last_seen": iso(utc_now()), "clients": clients}
        if self._changed(f"wired/{device}", payload, force=force):
            self._out.wired_list(device, payload)

    def renamed(self, mac: str) -> None:
        """A MAC got a new name: re-publish everything that shows it."""
        for ap, listed in self._lists.items():
            if mac in listed:
                self.publish_list(ap, force=True)
        for device, wired in self._wired.items():
            if mac in wired:
                self.publish_wired(device, force=True)
        if mac in self.presence:
            self._publish_presence(self.presence[mac], force=True)
            self._out.tracker_config(mac)
        elif self.tracked(mac):
            self._out.tracker_config(mac)

    def _save(self) -> None:
        self._store.save(
            [{k: v for k, v in asdict(p).items() if k != "absent_since"} for p in self.presence.values()]
        )
