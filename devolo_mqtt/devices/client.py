"""The only module that touches devolo_plc_api: connect, read, write, and translate its errors.

Every call to one device goes through one lock (requests never overlap), a global limiter (200
devices do not open 200 sockets at once) and a timeout (the library retries a dead device for ~45 s;
we bound that so one dead device never holds anything for long).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
from devolo_plc_api import Device
from devolo_plc_api.device_api import UPDATE_AVAILABLE, WIFI_BAND_2G, WIFI_BAND_5G, WIFI_VAP_GUEST_AP
from devolo_plc_api.device_api.deviceapi import DeviceApi
from devolo_plc_api.exceptions import (
    DeviceNotFound,
    DevicePasswordProtected,
    DeviceUnavailable,
    FeatureNotSupported,
)
from devolo_plc_api.plcnet_api import DEVICES_WITHOUT_PLCNET, LOCAL
from devolo_plc_api.plcnet_api.plcnetapi import PlcNetApi
from devolo_plc_api.postprocessing import supportinfo
from google.protobuf.message import DecodeError
from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from devolo_mqtt.core.clock import utc_now
from devolo_mqtt.core.errors import (
    CommandError,
    DeviceAuthError,
    DeviceProtocolError,
    DeviceUnavailableError,
    UnsupportedError,
)
from devolo_mqtt.core.mac import normalise_mac
from devolo_mqtt.core.model import (
    DeviceIdentity,
    FirmwareCheck,
    GuestWifi,
    MultiAp,
    NeighborAp,
    Overview,
    PlcDevice,
    PlcHealth,
    PlcRate,
    RepeatedAp,
    Station,
)
from devolo_mqtt.core.tasks import FairLimiter
from devolo_mqtt.log import REDACTOR

_T = TypeVar("_T")
_BANDS = {WIFI_BAND_2G: "2.4", WIFI_BAND_5G: "5"}
SUPPORT_SECONDS = 30.0  # what devolo-plc-api allows the support dump (LONG_RUNNING)


class _Device(Device):
    """The library's device, without its quadratic start on a shared mDNS cache.

    Every device keeps a browser for both devolo service types; on the one shared zeroconf instance each
    browser hears of every device's services, and the library starts a task per service to resolve it
    and then drop it when the address is not its device's. At 200 devices that is 80,000 tasks at start
    (a third of the start's CPU). A service whose complete record in the cache names another address is
    skipped here, before the task; anything else goes to the library as before.
    """

    def _state_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            cached = AsyncServiceInfo(service_type, name)
            if cached.load_from_cache(zeroconf) and self.ip not in cached.parsed_addresses():
                return  # another device's service, already known
        super()._state_change(zeroconf, service_type, name, state_change)


class DevoloClient:
    """Talks to one manageable device at one address."""

    def __init__(
        self,
        ip: str,
        password: str,
        *,
        zeroconf: AsyncZeroconf,
        limiter: FairLimiter,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self.ip = ip
        self._password = password
        # The form of the password the device last accepted: devolo_plc_api replaces its stored password
        # by its sha256 on every 401 (for firmware that expects that form) and never goes back, so
        # one spurious 401 would lock the device out for good. Each call starts from this form instead.
        self._accepted = password
        self._zeroconf = zeroconf
        # An HTTP client of its own: one shared pool makes every request scan every device's connections
        # (httpcore's pool bookkeeping was the bridge's largest CPU cost at 50 devices). Plain HTTP only.
        self._http = httpx.AsyncClient(
            verify=False,  # noqa: S501 - devices speak plain HTTP: no TLS context to build per device
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        )
        self._limiter = limiter
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._lock = asyncio.Lock()
        self._device: Device | None = None
        self.last_latency: float | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Resolve the device over mDNS (unicast to its address first, as the library does). Returns when
        either of its services answered: whether its identity is whole is `identity()`'s to say."""
        if self._device is not None:
            return
        device = _Device(self.ip, zeroconf_instance=self._zeroconf)
        device.password = self._password
        try:
            async with self._limiter.slot(), self._lock, asyncio.timeout(self._connect_timeout):
                await device.async_connect(session_instance=self._http)
        except (DeviceNotFound, TimeoutError) as err:
            await _cancel_browser(device)
            raise DeviceUnavailableError(self.ip, "no mDNS answer") from err
        except BaseException:
            await _cancel_browser(device)
            raise
        self._device = device

    async def close(self) -> None:
        """Stop the library's mDNS browser for this device and close its HTTP connections (the shared
        mDNS resources stay open)."""
        device, self._device = self._device, None
        if device is not None:
            await device.async_disconnect()
        await self._http.aclose()

    @property
    def firmware(self) -> str:
        """Installed firmware as announced over mDNS right now (updated live by the library)."""
        return self._device.firmware_version if self._device else ""

    def identity(self) -> DeviceIdentity | None:
        """What the library's live mDNS view says now; None until the device API has answered (the
        library's defaults — serial "0", no product — are never an identity). Its browser stays open
        after the connect, so a service that answers late, new features or a new firmware show here."""
        device = self._device
        if device is None or device.device is None or device.serial_number in ("", "0"):
            return None
        return DeviceIdentity(
            serial=device.serial_number,
            ip=device.ip,
            product=device.product,
            mt=device.mt_number,
            features=frozenset(device.device.features),
            mac=normalise_mac(device.mac) if device.plcnet and device.mac else None,
            firmware=device.firmware_version,
            hostname=device.hostname,
        )

    def plc_pending(self) -> bool:
        """Whether a PLC service is still to answer: every device has one except the repeaters."""
        device = self._device
        return device is not None and device.plcnet is None and device.mt_number not in DEVICES_WITHOUT_PLCNET

    # --- the one call path ---------------------------------------------------------------------------
    async def _call(
        self, what: str, fn: Callable[[], Awaitable[_T]], *, shared: bool = True, slow: float = 0.0
    ) -> _T:
        """One library call, bounded by the request timeout; `shared=False` for callers that bound
        themselves (the network monitor asks one device at a time) and must not queue behind polls.
        `slow`: a call the device takes seconds for (the support dump) may take this long, and running
        out of time says nothing about whether the device is reachable."""
        device = self._device
        if device is None:
            raise DeviceUnavailableError(self.ip, "not connected")
        # The shared slot first, then this device's lock: whoever holds the lock is talking to the
        # device, not queueing for a slot (the network monitor's overview waits milliseconds, not the
        # whole queue).
        async with self._limiter.slot() if shared else contextlib.nullcontext(), self._lock:
            started = time.monotonic()
            try:
                async with asyncio.timeout(max(self._timeout, slow)):
                    result = await self._authenticated(device, fn)
            except TimeoutError as err:
                if slow:
                    raise DeviceProtocolError(
                        self.ip, f"{what}: no answer within {max(self._timeout, slow):g} s"
                    ) from err
                raise DeviceUnavailableError(self.ip, f"{what}: {type(err).__name__}") from err
            except (DeviceUnavailable, httpx.TransportError) as err:
                raise DeviceUnavailableError(self.ip, f"{what}: {type(err).__name__}") from err
            except DevicePasswordProtected as err:
                raise DeviceAuthError(self.ip) from err
            except httpx.HTTPStatusError as err:
                if err.response.status_code == httpx.codes.NOT_FOUND:
                    raise UnsupportedError(what) from err
                raise DeviceProtocolError(self.ip, f"{what}: HTTP {err.response.status_code}") from err
            except DecodeError as err:
                raise DeviceProtocolError(self.ip, f"{what}: malformed response") from err
            except FeatureNotSupported as err:
                raise UnsupportedError(what) from err
            self.last_latency = time.monotonic() - started
            return result

    async def _authenticated(self, device: Device, fn: Callable[[], Awaitable[_T]]) -> _T:
        """Call with the password form last accepted; after a 401, once more from the configured one.

        The password counts as wrong only when a fresh try with the configured password fails too.
        """
        device.password = self._accepted
        try:
            result = await fn()
        except DevicePasswordProtected:
            device.password = self._password
            result = await fn()
        self._accepted = device.password  # the library may have switched to the sha256 form (redacted too)
        return result

    def _api(self) -> DeviceApi:
        if self._device is None or self._device.device is None:
            raise CommandError("device_api", "this device has no device API")
        return self._device.device

    def _plcnet(self) -> PlcNetApi:
        if self._device is None or self._device.plcnet is None:
            raise CommandError("plcnet", "this device has no PLC network API")
        return self._device.plcnet

    # --- reads ---------------------------------------------------------------------------------------
    async def leds(self) -> bool:
        """Whether the LEDs are on."""
        return await self._call("leds", self._api().async_get_led_setting)

    async def uptime(self) -> int:
        """Seconds since boot (needs the password)."""
        return await self._call("uptime", self._api().async_uptime)

    async def last_restart(self) -> datetime:
        """When the device last booted, to the second (from its uptime)."""
        seconds = await self.uptime()
        return (utc_now() - timedelta(seconds=seconds)).replace(microsecond=0)

    async def guest(self) -> GuestWifi:
        """Guest WiFi state; its key is registered for redaction on sight."""
        raw = await self._call("guest_wifi", self._api().async_get_wifi_guest_access)
        REDACTOR.add(raw.key)
        return GuestWifi(enabled=raw.enabled, remaining=raw.remaining_duration, ssid=raw.ssid, key=raw.key)

    async def firmware_check(self) -> FirmwareCheck:
        """Ask the device whether devolo offers newer firmware."""
        raw = await self._call("firmware", self._api().async_check_firmware_available)
        # UPDATE_AVAILABLE is enum 0: an empty body would read as "available"; require a version too.
        available = raw.result == UPDATE_AVAILABLE and bool(raw.new_firmware_version)
        return FirmwareCheck(available, raw.new_firmware_version.split("_")[0] if available else "")

    async def stations(self) -> list[Station]:
        """Connected WiFi clients."""
        raw = await self._call("wifi_clients", self._api().async_get_wifi_connected_station)
        return [
            Station(
                mac=normalise_mac(s.mac_address),
                band=_BANDS.get(s.band, "unknown"),
                wifi="guest" if s.vap_type == WIFI_VAP_GUEST_AP else "main",
                rx_rate=s.rx_rate,
                tx_rate=s.tx_rate,
            )
            for s in raw
        ]

    async def neighbors(self) -> list[NeighborAp]:
        """The foreign WiFi networks the device sees, strongest first."""
        raw = await self._call("neighbor_aps", self._api().async_get_wifi_neighbor_access_points)
        found = [NeighborAp(n.ssid, _BANDS.get(n.band, "unknown"), n.channel, n.signal) for n in raw]
        return sorted(found, key=lambda n: (-n.signal, n.ssid, n.channel))

    async def repeated_aps(self) -> list[RepeatedAp]:
        """The access points a repeater repeats, with how it hears them."""
        raw = await self._call("repeated_ap", self._api().async_get_wifi_repeated_access_points)
        found = []
        for ap in raw:
            with contextlib.suppress(ValueError):
                mac = normalise_mac(ap.mac_address)
                band = _BANDS.get(ap.band, "unknown")
                found.append(RepeatedAp(mac, ap.ssid, band, ap.channel, ap.signal, ap.rate / 1000))
        return found

    async def multi_ap(self) -> MultiAp:
        """A repeater's mesh (multi-AP) state and its controller."""
        raw = await self._call("multi_ap", self._api().async_get_wifi_multi_ap)
        mac = None
        with contextlib.suppress(ValueError):
            mac = normalise_mac(raw.controller_id)
        return MultiAp(raw.enabled, mac, raw.controller_ip or None)

    async def plc_health(self) -> PlcHealth:
        """What the PLC chip says of itself, from the device's support dump (seconds on real adapters:
        the library allows it 30 s)."""
        dump = await self._call("plc_health", self._api().async_get_support_info, slow=SUPPORT_SECONDS)
        return PlcHealth(
            temperature=supportinfo.temperature(dump),
            hops=supportinfo.hops(dump),
            wire_length=supportinfo.wire_length(dump),
            lost_maps=supportinfo.lost_maps(dump),
            neighbor_networks=supportinfo.neighboring_plc_networks(dump),
        )

    async def overview(self) -> Overview:
        """The device's whole PLC network with every directed data rate."""
        # Not behind the shared slots: the names it brings are what discovery waits for at start-up.
        raw = await self._call("plc_network", self._plcnet().async_get_network_overview, shared=False)
        devices = tuple(
            PlcDevice(
                mac=normalise_mac(d.mac_address),
                name=d.user_device_name,
                product=d.product_name,
                product_id=d.product_id,
                attached_to_router=d.attached_to_router,
                local=d.topology == LOCAL,
                ip=d.ipv4_address,
                firmware=d.friendly_version,
                bridged=_macs(d.bridged_devices),
            )
            for d in raw.devices
        )
        rates = tuple(
            PlcRate(normalise_mac(r.mac_address_from), normalise_mac(r.mac_address_to), r.tx_rate, r.rx_rate)
            for r in raw.data_rates
        )
        return Overview(devices, rates)

    # --- writes (each raises CommandError when the device says no) -----------------------------------
    async def set_leds(self, on: bool) -> None:
        """Switch the LEDs."""
        _confirm("leds", await self._call("leds", lambda: self._api().async_set_led_setting(on)))

    async def locate(self, on: bool) -> None:
        """Start (2 minutes) or stop the PLC LED blinking."""
        api = self._plcnet()
        call = api.async_identify_device_start if on else api.async_identify_device_stop
        _confirm("locate", await self._call("locate", call))

    async def set_guest(self, enable: bool, minutes: int) -> None:
        """Switch the guest WiFi (the device switches its whole mesh)."""
        ok = await self._call("guest_wifi", lambda: self._api().async_set_wifi_guest_access(enable, minutes))
        _confirm("guest_wifi", ok)

    async def restart(self) -> None:
        """Reboot the device."""
        _confirm("restart", await self._call("restart", self._api().async_restart))

    async def set_name(self, name: str) -> str:
        """Set the name stored in the device; the name its PLC network's overview shows afterwards."""
        _confirm("name", await self._call("name", lambda: self._plcnet().async_set_user_device_name(name)))
        overview = await self.overview()
        local = next((d for d in overview.devices if d.local), None)
        if local is None or local.name != name:
            raise DeviceProtocolError(self.ip, f"name: the device shows {local.name if local else None!r}")
        return local.name

    async def pair(self) -> None:
        """Start PLC pairing mode."""
        _confirm("pair", await self._call("pair", self._plcnet().async_pair_device))

    async def wps(self) -> None:
        """Start WPS push-button pairing."""
        _confirm("wps", await self._call("wps", self._api().async_start_wps))

    async def install_update(self) -> None:
        """Start a firmware update (the new version shows up later in mDNS)."""
        _confirm(
            "install_update", await self._call("install_update", self._api().async_start_firmware_update)
        )


def _confirm(key: str, ok: bool) -> None:
    if not ok:
        raise CommandError(key, "the device refused")


async def _cancel_browser(device: Device) -> None:
    # devolo_plc_api leaves its per-device mDNS browser running when async_connect fails, and offers
    # no public way to stop it; without this, every failed connect leaks a browser on the shared
    # zeroconf instance that keeps querying forever.
    browser = getattr(device, "_browser", None)
    if browser is not None:
        await browser.async_cancel()


def _macs(values: Iterable[str]) -> tuple[str, ...]:
    """The MACs among what a device lists (anything else it sends is left out), sorted, once each."""
    found = set()
    for value in values:
        with contextlib.suppress(ValueError):
            found.add(normalise_mac(value))
    return tuple(sorted(found))
