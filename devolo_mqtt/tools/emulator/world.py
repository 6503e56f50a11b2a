"""The simulated site: device state and how it changes over (simulated) time.

Everything here is plain state plus `advance(seconds)`; no I/O. The HTTP and mDNS front ends read and
change it, and tests drive time by calling `advance` (the only thing tests ever fake is time).
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field

from devolo_mqtt.core.mac import colon_mac
from devolo_mqtt.tools.emulator.catalog import PRODUCTS, Product
from devolo_mqtt.tools.emulator.scenario import DeviceSpec, Scenario

LOCATE_SECONDS = 120.0


class Fault(enum.StrEnum):
    """Ways an emulated device can misbehave, switchable at run time."""

    NONE = "none"
    UNREACHABLE = "unreachable"  # mDNS answers, HTTP drops every request unanswered
    SLOW = "slow"  # HTTP answers after `slow_seconds`
    VANISHED = "vanished"  # neither mDNS nor HTTP
    HTTP_500 = "http_500"
    MALFORMED = "malformed"  # bodies that are not valid protobuf
    STALE_NONCE = "stale_nonce"  # the next authenticated request is refused once with 401 (stale nonce)
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a fault name, not a password; the device's password was changed behind the bridge's back


@dataclass
class GuestWifi:
    """Guest WiFi of one mesh: switching it on one access point switches all of them."""

    ssid: str
    key: str
    enabled: bool = False
    ends_at: float | None = None  # simulated time; None = no limit

    def remaining_minutes(self, now: float) -> int:
        """Remaining duration as the device reports it (whole minutes, 0 = no limit)."""
        if not self.enabled or self.ends_at is None:
            return 0
        return max(1, math.ceil((self.ends_at - now) / 60))


@dataclass
class Station:
    """A WiFi client; `ap` is the serial of the access point it is connected to, or None."""

    mac: str
    ap: str | None
    band: str
    wifi: str
    rate: int


@dataclass
class Silence:
    """One service of a device keeps quiet over mDNS: for its next `queries` queries, then until
    `until` (monotonic seconds); a query that finds both spent removes the silence."""

    queries: int = 0
    until: float = 0.0

    def swallows(self, now: float) -> bool:
        """Whether this query goes unanswered (counting it)."""
        if self.queries > 0:
            self.queries -= 1
            return True
        return now < self.until


@dataclass
class EmulatedDevice:
    """One device's live state."""

    spec: DeviceSpec
    product: Product
    ip: str | None
    guest: GuestWifi | None
    password: str
    firmware: str
    firmware_date: str
    booted_at: float = 0.0
    leds: bool = True
    name: str = ""
    locate_until: float = 0.0
    pairing_until: float = 0.0
    down_until: float = 0.0
    installing: bool = False
    plugged: bool = True
    fault: Fault = Fault.NONE
    slow_seconds: float = 15.0
    wired: set[str] = field(default_factory=set)  # LAN devices behind it (`AABBCCDDEEFF`)
    # The PLC chip's own view (its support dump); tests and the control input move them.
    health: dict[str, float] = field(
        default_factory=lambda: {
            "temperature": 41.5,
            "hops": 1,
            "wire_length": 14,
            "lost_maps": 0,
            "domains": 0,
        }
    )
    requests: dict[str, int] = field(default_factory=dict)  # authorised requests per endpoint name
    # Services whose mDNS answers are withheld ("deviceapi", "plcnet"): lost answers, a late service.
    silenced: dict[str, Silence] = field(default_factory=dict)

    @property
    def serial(self) -> str:
        """Serial number (mDNS `SN`)."""
        return self.spec.serial

    @property
    def plc_mac(self) -> str | None:
        """PLC MAC in the overview's form, or None for devices without PLC."""
        return self.spec.plc_mac

    def reachable(self, now: float) -> bool:
        """Whether the device is powered, booted and on the network at all."""
        return self.plugged and now >= self.down_until

    def announces(self, now: float) -> bool:
        """Whether the device answers mDNS now."""
        return self.reachable(now) and self.fault is not Fault.VANISHED

    def locating(self, now: float) -> bool:
        """Whether the PLC LED is blinking."""
        return now < self.locate_until


@dataclass
class Link:
    """A directed PLC link's nominal and current rates (Mbit/s)."""

    base: float
    tx: float
    rx: float
    held: bool = False  # set by hand (`World.set_link_rate`): the drift leaves it alone
    heals: bool = False  # a restart of either end lets it go back to its nominal rate


class World:
    """All devices, PLC networks and stations of a scenario, advanced in simulated seconds."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.now = 0.0
        self._rng = random.Random(scenario.seed)
        self.devices: dict[str, EmulatedDevice] = {}
        self.meshes: dict[str, GuestWifi] = {}
        addresses = scenario.addresses()
        for spec in scenario.devices:
            product = PRODUCTS[spec.model]
            guest = None
            if product.has_wifi:
                guest = self.meshes.setdefault(spec.mesh, GuestWifi(spec.guest_ssid, spec.guest_key))
            self.devices[spec.serial] = EmulatedDevice(
                spec=spec,
                product=product,
                ip=addresses.get(spec.serial),
                guest=guest,
                password=spec.password,
                firmware=spec.firmware or product.firmware,
                firmware_date=product.firmware_date,
                name=spec.name,
                wired=set(spec.wired),
            )
        self.links: dict[tuple[str, str], Link] = {}
        for network in {d.network for d in scenario.devices if d.network}:
            macs = [d.plc_mac for d in scenario.devices if d.network == network and d.plc_mac]
            for src in macs:
                for dst in macs:
                    if src != dst:
                        base = self._rng.uniform(150.0, 900.0)
                        self.links[(src, dst)] = Link(base, base, base * self._rng.uniform(0.85, 1.0))
        self.stations = {s.mac: Station(s.mac, s.ap, s.band, s.wifi, s.rate) for s in scenario.stations}
        self.firmware_changed: list[str] = []  # serials whose TXT records must be re-announced

    # --- queries -------------------------------------------------------------------------------------
    def by_ip(self, ip: str) -> EmulatedDevice | None:
        """The manageable device at an address."""
        return next((d for d in self.devices.values() if d.ip == ip), None)

    def by_mac(self, mac: str) -> EmulatedDevice | None:
        """The device with a PLC MAC (overview form)."""
        return next((d for d in self.devices.values() if d.plc_mac == mac), None)

    def network_members(self, device: EmulatedDevice) -> list[EmulatedDevice]:
        """The plugged-in devices of `device`'s PLC network, `device` first."""
        others = [
            d
            for d in self.devices.values()
            if d is not device and d.spec.network == device.spec.network and d.reachable(self.now)
        ]
        return [device, *others]

    def stations_of(self, serial: str) -> list[Station]:
        """Stations connected to an access point now."""
        return [s for s in self.stations.values() if s.ap == serial]

    def update_available(self, device: EmulatedDevice) -> bool:
        """Whether the firmware check reports an update now."""
        update = device.spec.update
        return update is not None and device.firmware != update.version and self.now >= update.available_after

    def uptime(self, device: EmulatedDevice) -> int:
        """Seconds since the device last booted."""
        return int(self.now - device.booted_at)

    # --- actions -------------------------------------------------------------------------------------
    def set_guest(self, device: EmulatedDevice, enable: bool, minutes: int) -> None:
        """Switch the guest WiFi of the device's whole mesh."""
        assert device.guest is not None
        device.guest.enabled = enable
        device.guest.ends_at = self.now + minutes * 60 if enable and minutes > 0 else None

    def locate(self, device: EmulatedDevice, start: bool) -> None:
        """Start (for two minutes) or stop the PLC LED blinking."""
        device.locate_until = self.now + LOCATE_SECONDS if start else 0.0

    def restart(self, device: EmulatedDevice, seconds: float | None = None) -> None:
        """Reboot: unreachable for a while, then uptime starts again."""
        down = device.spec.restart_seconds if seconds is None else seconds
        device.down_until = self.now + down
        device.booted_at = device.down_until
        device.locate_until = 0.0
        mac = device.plc_mac
        for (src, dst), link in self.links.items():
            if link.heals and mac in (src, dst):  # a hung PLC chip's link, healed by the reboot
                link.held = link.heals = False
                link.tx, link.rx = link.base, link.base * 0.95

    def start_update(self, device: EmulatedDevice) -> bool:
        """Install the available update: the device reboots into the new firmware."""
        if not self.update_available(device) or device.spec.update is None:
            return False
        device.installing = True
        self.restart(device, device.spec.update.install_seconds)
        return True

    def set_link_rate(self, src: str, dst: str, rate: float | None, *, heals: bool = False) -> None:
        """Hold the PLC link from one device to another (serials) at `rate` Mbit/s; None lets it go back
        to its nominal rate (and drift again). `heals`: a restart of either end ends the hold (a hung
        chip); otherwise the link stays bad whatever restarts (bad wiring)."""
        macs = (self.devices[src].plc_mac, self.devices[dst].plc_mac)
        if macs not in self.links:
            raise ValueError(f"no PLC link from {src} to {dst}")
        link = self.links[macs]
        if rate is not None and not 0 <= rate <= 10_000:
            raise ValueError("rate must be 0 to 10000 Mbit/s")
        link.held = rate is not None
        link.heals = heals and rate is not None
        link.tx = link.base if rate is None else rate
        link.rx = link.tx * 0.95

    def wire(self, mac: str, serial: str | None) -> None:
        """Plug a LAN device (`AABBCCDDEEFF`) into an adapter's port (`serial`), or unplug it (None)."""
        if serial is not None and serial not in self.devices:
            raise KeyError(serial)
        for device in self.devices.values():
            device.wired.discard(mac)
        if serial is not None:
            self.devices[serial].wired.add(mac)

    def move_station(self, mac: str, ap: str | None) -> None:
        """Connect a station to an access point (roam), or disconnect it (`ap=None`)."""
        self.stations[mac].ap = ap

    # --- time ----------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move simulated time forward and apply everything that happens meanwhile."""
        self.now += seconds
        for device in self.devices.values():
            update = device.spec.update
            if device.installing and update is not None and device.reachable(self.now):
                device.installing = False
                device.firmware = update.version
                device.firmware_date = update.date
                self.firmware_changed.append(device.serial)
        for guest in self.meshes.values():
            if guest.enabled and guest.ends_at is not None and self.now >= guest.ends_at:
                guest.enabled, guest.ends_at = False, None
        if self.scenario.dynamics:
            self._drift(seconds)

    def _drift(self, seconds: float) -> None:
        for link in (k for k in self.links.values() if not k.held):
            link.tx = _wander(self._rng, link.tx, link.base)
            link.rx = _wander(self._rng, link.rx, link.base)
        aps = [d.serial for d in self.devices.values() if d.product.has_wifi]
        # Each station changes something about once every ten simulated minutes.
        chance = min(1.0, seconds / 600.0)
        for station in self.stations.values():
            if aps and self._rng.random() < chance:
                choice = self._rng.choice([*aps, None])
                station.ap = choice

    def overview_macs(self, device: EmulatedDevice) -> list[str]:
        """MACs of the devices in `device`'s overview, in wire form."""
        return [d.plc_mac for d in self.network_members(device) if d.plc_mac]


def _wander(rng: random.Random, value: float, base: float) -> float:
    """A bounded random walk around `base` (±12 %: a drop of a quarter is what `plc_link_degraded`
    reports), rounded as devices report (1/16 Mbit/s)."""
    stepped = round((value + rng.uniform(-0.03, 0.03) * base) * 16) / 16
    return min(base * 1.12, max(base * 0.88, stepped))


__all__ = ["Fault", "World", "colon_mac"]
