"""The emulator against the unmodified devolo_plc_api: every call, every model, auth, faults, time."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from devolo_plc_api import Device
from devolo_plc_api.device_api import UPDATE_AVAILABLE, UPDATE_NOT_AVAILABLE
from devolo_plc_api.exceptions import (
    DeviceNotFound,
    DevicePasswordProtected,
    DeviceUnavailable,
    FeatureNotSupported,
)
from google.protobuf.message import DecodeError
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt.tools.emulator import control
from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.server import Emulator
from devolo_mqtt.tools.emulator.world import LOCATE_SECONDS, Fault
from tests.conftest import StartEmulator
from tests.helpers import until

Library = tuple[AsyncZeroconf, httpx.AsyncClient]
ROUTER, WIFI_NEXT, WIFI_6, GARAGE, DLAN_WIFI, SHED, REPEATER = (f"100000000000000{i}" for i in range(1, 8))


@asynccontextmanager
async def connected(
    emulator: Emulator, serial: str, library: Library, password: str | None = None
) -> AsyncIterator[Device]:
    """The unmodified library's Device, connected to an emulated device."""
    zeroconf, client = library
    emulated = emulator.device(serial)
    assert emulated.ip is not None
    device = Device(emulated.ip, zeroconf_instance=zeroconf)
    device.password = emulated.password if password is None else password
    await device.async_connect(session_instance=client)
    try:
        yield device
    finally:
        await device.async_disconnect()


async def test_emulator_connect_reports_identity_per_model(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """async_connect finds each model with its product, MT, serial, PLC MAC and features."""
    emulator = await start_emulator(demo_scenario)
    expected = {
        ROUTER: ("devolo Magic 2 LAN 1-1", "3064", "00005E005301", False),
        WIFI_NEXT: ("devolo Magic 2 WiFi next", "3056", "00005E005302", True),
        DLAN_WIFI: ("dLAN pro 1200+ WiFi ac", "2730", "00005E005305", True),
        REPEATER: ("devolo WiFi Repeater ac+", "3046", "", True),
    }
    for serial, (product, mt, mac, wifi) in expected.items():
        async with connected(emulator, serial, library) as device:
            assert (device.product, device.mt_number, device.serial_number, device.mac) == (
                product,
                mt,
                serial,
                mac,
            )
            assert device.device is not None
            assert ("wifi1" in device.device.features) is wifi
            assert (device.plcnet is not None) is bool(mac)
            assert device.firmware_version == emulator.device(serial).firmware


async def test_emulator_serves_every_device_api_call(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """Every device API endpoint the library calls (but factory reset) answers on a WiFi device."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library) as device:
        api = device.device
        assert api is not None
        assert await api.async_get_led_setting() is True
        assert await api.async_set_led_setting(False) is True
        assert await api.async_get_led_setting() is False
        assert emulator.device(WIFI_NEXT).leds is False
        assert await api.async_uptime() == 0
        emulator.advance(42)
        assert await api.async_uptime() == 42
        stations = await api.async_get_wifi_connected_station()
        assert sorted(s.mac_address for s in stations) == ["3C:22:FB:11:22:01", "DA:A1:19:33:44:02"]
        guest = await api.async_get_wifi_guest_access()
        assert (guest.enabled, guest.ssid, guest.key) == (False, "devolo-guest-930", "HMANPGBA")
        assert await api.async_set_wifi_guest_access(True, 30) is True
        assert (await api.async_get_wifi_guest_access()).remaining_duration == 30
        assert len(await api.async_get_wifi_neighbor_access_points()) >= 1
        assert await api.async_start_wps() is True
        firmware = await api.async_check_firmware_available()
        assert firmware.result == UPDATE_AVAILABLE and firmware.new_firmware_version == "7.14.1_2024-06-01"
        support = await api.async_get_support_info()
        assert support.items[0].label == "configlayer"
        assert await api.async_restart() is True
        assert emulator.device(WIFI_NEXT).reachable(emulator.world.now) is False
        with pytest.raises(FeatureNotSupported):
            await api.async_get_wifi_multi_ap()
        with pytest.raises(FeatureNotSupported):
            await api.async_get_wifi_repeated_access_points()


async def test_emulator_serves_every_plcnet_call(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """Network overview (with non-manageable adapters), locate, pairing and naming work on plcnet."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, ROUTER, library) as device:
        plcnet = device.plcnet
        assert plcnet is not None
        overview = await plcnet.async_get_network_overview()
        macs = {d.mac_address: d for d in overview.devices}
        assert set(macs) == {"00005E005301", "00005E005302", "00005E005303", "00005E005304"}
        assert macs["00005E005304"].product_name == "devolo dLAN 1200+"  # no API: only visible here
        assert macs["00005E005301"].attached_to_router is True
        assert len(overview.data_rates) == 4 * 3
        assert await plcnet.async_identify_device_start() is True
        assert emulator.device(ROUTER).locating(emulator.world.now)
        assert await plcnet.async_identify_device_stop() is True
        assert not emulator.device(ROUTER).locating(emulator.world.now)
        assert await plcnet.async_pair_device() is True
        assert await plcnet.async_set_user_device_name("Cellar") is True
        assert emulator.device(ROUTER).name == "Cellar"


async def test_emulator_repeater_has_repeater_calls_and_no_plcnet(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """A repeater answers multi-AP and repeater calls, has no plcnet API and no support dump."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, REPEATER, library) as device:
        api = device.device
        assert api is not None and device.plcnet is None
        assert (await api.async_get_wifi_multi_ap()).enabled is True
        assert len(await api.async_get_wifi_repeated_access_points()) == 1
        assert await api.async_start_wps_clone() is True
        with pytest.raises(FeatureNotSupported):
            await api.async_get_support_info()


async def test_emulator_lan_device_has_no_wifi(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """A Magic 2 LAN gates every WiFi call."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, ROUTER, library) as device:
        assert device.device is not None
        for call in (
            device.device.async_get_wifi_guest_access,
            device.device.async_get_wifi_connected_station,
            device.device.async_start_wps,
        ):
            with pytest.raises(FeatureNotSupported):
                await call()


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("demo-secret", True),
        (hashlib.sha256(b"demo-secret").hexdigest(), True),
        ("wrong", False),
    ],
)
async def test_emulator_auth_plain_sha256_and_wrong(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library, password: str, ok: bool
) -> None:
    """Writes accept the plain and the sha256 password; a wrong one raises DevicePasswordProtected."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library, password=password) as device:
        assert device.device is not None
        assert await device.device.async_get_led_setting() is True  # reads need no password
        if ok:
            assert await device.device.async_set_led_setting(False) is True
            assert emulator.device(WIFI_NEXT).leds is False
        else:
            with pytest.raises(DevicePasswordProtected):
                await device.device.async_set_led_setting(False)
            with pytest.raises(DevicePasswordProtected):
                await device.device.async_uptime()
            assert emulator.device(WIFI_NEXT).leds is True


async def test_emulator_fault_unreachable_is_device_unavailable(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """An unreachable device costs the library its retries, then DeviceUnavailable; it recovers."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library) as device:
        assert device.device is not None
        emulator.set_fault(WIFI_NEXT, Fault.UNREACHABLE)
        with pytest.raises(DeviceUnavailable):
            await device.device.async_get_led_setting()
        emulator.set_fault(WIFI_NEXT, Fault.NONE)
        assert await device.device.async_get_led_setting() is True


async def test_emulator_silenced_device_api_reaches_the_library_as_serial_0_until_it_speaks(
    demo_scenario: Scenario, start_emulator: StartEmulator
) -> None:
    """With its device API silenced, the unmodified library connects through the PLC service alone —
    serial `"0"`, no device API (what the bridge must never adopt); once it speaks, the library's live
    browser fills the identity in."""
    emulator = await start_emulator(demo_scenario)
    assert control.apply(emulator, f"silence {WIFI_NEXT} deviceapi on") == "ok"
    # A zeroconf of its own, started now: it did not hear the emulator's start-up announcements.
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        async with (
            httpx.AsyncClient() as client,
            connected(emulator, WIFI_NEXT, (zeroconf, client)) as device,
        ):
            assert device.serial_number == "0" and device.device is None and device.plcnet is not None
            assert control.apply(emulator, f"speak {WIFI_NEXT} deviceapi") == "ok"
            await until(lambda: device.device is not None, what="the device API over mDNS")
            assert device.serial_number == WIFI_NEXT
    finally:
        await zeroconf.async_close()
    assert control.apply(emulator, f"silence {WIFI_NEXT} mdns on").startswith("error:")


async def test_emulator_fault_vanished_is_device_not_found(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """A vanished device answers no mDNS: async_connect raises DeviceNotFound."""
    emulator = await start_emulator(demo_scenario, faults={WIFI_6: Fault.VANISHED})
    with pytest.raises(DeviceNotFound):
        async with connected(emulator, WIFI_6, library):
            pass


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.HTTP_500, httpx.HTTPStatusError),
        (Fault.MALFORMED, DecodeError),
        (Fault.WRONG_PASSWORD, DevicePasswordProtected),
    ],
)
async def test_emulator_faults_surface_as_library_errors(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    library: Library,
    fault: Fault,
    error: type[Exception],
) -> None:
    """HTTP 500, malformed protobuf and a changed password surface as the library's real outcomes."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library) as device:
        assert device.device is not None
        emulator.set_fault(WIFI_NEXT, fault)
        with pytest.raises(error):
            await device.device.async_set_led_setting(False)


async def test_emulator_fault_slow_delays_answers(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """A slow device answers, late."""
    import time  # noqa: PLC0415

    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library) as device:
        assert device.device is not None
        emulator.set_fault(WIFI_NEXT, Fault.SLOW, slow_seconds=0.6)
        began = time.monotonic()
        assert await device.device.async_get_led_setting() is True
        assert time.monotonic() - began >= 0.6


async def test_emulator_guest_wifi_counts_down_and_is_shared_by_the_mesh(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """Guest WiFi switched on one AP is on at the other AP of the mesh and turns off when time is up."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library) as one, connected(emulator, WIFI_6, library) as other:
        assert one.device is not None and other.device is not None
        assert await one.device.async_set_wifi_guest_access(True, 10) is True
        mirrored = await other.device.async_get_wifi_guest_access()
        assert (mirrored.enabled, mirrored.remaining_duration) == (True, 10)
        emulator.advance(4 * 60 + 1)
        assert (await other.device.async_get_wifi_guest_access()).remaining_duration == 6
        emulator.advance(6 * 60)
        assert (await one.device.async_get_wifi_guest_access()).enabled is False
    async with connected(emulator, DLAN_WIFI, library) as elsewhere:  # another mesh: untouched
        assert elsewhere.device is not None
        assert (await elsewhere.device.async_get_wifi_guest_access()).enabled is False


async def test_emulator_locate_blinks_for_two_minutes(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """Locate stops by itself after 120 s."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library) as device:
        assert device.plcnet is not None
        await device.plcnet.async_identify_device_start()
        emulator.advance(LOCATE_SECONDS - 1)
        assert emulator.device(WIFI_NEXT).locating(emulator.world.now)
        emulator.advance(2)
        assert not emulator.device(WIFI_NEXT).locating(emulator.world.now)


async def test_emulator_firmware_update_installs_and_is_announced(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """An update appears after its delay, installs with a reboot, and mDNS announces the new version."""
    import asyncio  # noqa: PLC0415

    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library) as device:
        api = device.device
        assert api is not None
        emulator.advance(31)  # the demo's update appears after 30 s
        assert device.firmware_version == "7.12.5"
        assert (await api.async_check_firmware_available()).result == UPDATE_AVAILABLE
        assert await api.async_start_firmware_update() is True
        with pytest.raises(DeviceUnavailable):  # rebooting into the new firmware
            await api.async_get_led_setting()
        emulator.advance(25)
        assert (await api.async_check_firmware_available()).result == UPDATE_NOT_AVAILABLE
        for _ in range(50):
            if device.firmware_version == "7.14.1":
                break
            await asyncio.sleep(0.1)
        assert device.firmware_version == "7.14.1"
        assert await api.async_uptime() == 5  # installing took 20 s of the 25


async def test_emulator_update_becomes_available_later(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """Before `available_after` the check says no update."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, WIFI_NEXT, library) as device:
        assert device.device is not None
        emulator.world.now = 10
        assert (await device.device.async_check_firmware_available()).result == UPDATE_NOT_AVAILABLE


async def test_emulator_restart_makes_device_unreachable_for_a_while(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """After Restart the device drops requests until it has booted; uptime starts again."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, ROUTER, library) as device:
        assert device.device is not None
        emulator.advance(500)
        assert await device.device.async_restart() is True
        with pytest.raises(DeviceUnavailable):
            await device.device.async_get_led_setting()
        emulator.advance(21)
        assert await device.device.async_uptime() == 1


async def test_emulator_stations_roam_and_leave(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """A station moved to another AP shows up there and no longer on the first."""
    emulator = await start_emulator(demo_scenario)
    phone = "3C:22:FB:11:22:01"
    async with connected(emulator, WIFI_NEXT, library) as one, connected(emulator, WIFI_6, library) as two:
        assert one.device is not None and two.device is not None
        emulator.world.move_station(phone, WIFI_6)
        assert phone not in {s.mac_address for s in await one.device.async_get_wifi_connected_station()}
        assert phone in {s.mac_address for s in await two.device.async_get_wifi_connected_station()}
        emulator.world.move_station(phone, None)
        assert phone not in {s.mac_address for s in await two.device.async_get_wifi_connected_station()}


async def test_emulator_unplugged_adapter_leaves_the_overview(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library
) -> None:
    """Unplugging a non-manageable adapter removes it and its pairs from the overview."""
    emulator = await start_emulator(demo_scenario)
    async with connected(emulator, ROUTER, library) as device:
        assert device.plcnet is not None
        emulator.unplug(GARAGE)
        overview = await device.plcnet.async_get_network_overview()
        assert "00005E005304" not in {d.mac_address for d in overview.devices}
        assert all("00005E005304" not in (r.mac_address_from, r.mac_address_to) for r in overview.data_rates)
        emulator.unplug(GARAGE, plugged=True)
        overview = await device.plcnet.async_get_network_overview()
        assert "00005E005304" in {d.mac_address for d in overview.devices}


def test_emulator_rates_drift_within_bounds(demo_scenario: Scenario) -> None:
    """With dynamics on, data rates wander but stay within ±25 % of their nominal value."""
    from devolo_mqtt.tools.emulator.world import World  # noqa: PLC0415

    world = World(demo_scenario.model_copy(update={"dynamics": True}))
    before = {k: link.tx for k, link in world.links.items()}
    for _ in range(50):
        world.advance(60)
    after = {k: link.tx for k, link in world.links.items()}
    assert before != after
    assert all(0.88 * link.base <= link.tx <= 1.12 * link.base for link in world.links.values())


DEVICE_CALLS: list[tuple[str, str, tuple[object, ...]]] = [
    ("async_get_led_setting", "led", ()),
    ("async_set_led_setting", "led", (False,)),
    ("async_get_wifi_multi_ap", "multiap", ()),
    ("async_get_wifi_repeated_access_points", "repeater0", ()),
    ("async_start_wps_clone", "repeater0", ()),
    ("async_uptime", "restart", ()),
    ("async_get_support_info", "support", ()),
    ("async_check_firmware_available", "update", ()),
    ("async_start_firmware_update", "update", ()),
    ("async_get_wifi_connected_station", "wifi1", ()),
    ("async_get_wifi_guest_access", "wifi1", ()),
    ("async_set_wifi_guest_access", "wifi1", (True, 5)),
    ("async_get_wifi_neighbor_access_points", "wifi1", ()),
    ("async_start_wps", "wifi1", ()),
    ("async_restart", "restart", ()),  # last: the device reboots
]
PLCNET_CALLS = [
    "async_get_network_overview",
    "async_identify_device_start",
    "async_identify_device_stop",
    "async_pair_device",
    "async_set_user_device_name",
]


@pytest.mark.parametrize("serial", [ROUTER, WIFI_NEXT, WIFI_6, DLAN_WIFI, REPEATER])
async def test_emulator_every_call_per_model_succeeds_or_is_gated(
    demo_scenario: Scenario, start_emulator: StartEmulator, library: Library, serial: str
) -> None:
    """Each model answers every library call its Features allow, and the library gates the rest."""
    emulator = await start_emulator(demo_scenario)
    emulator.advance(31)  # the demo update is available, so UpdateFirmwareStart really starts
    async with connected(emulator, serial, library) as device:
        api = device.device
        assert api is not None
        announced = set(emulator.device(serial).product.features)
        assert set(api.features) == announced
        if emulator.device(serial).product.plcnet:
            assert device.plcnet is not None
            for method in PLCNET_CALLS:
                plc_args = ("Renamed",) if method == "async_set_user_device_name" else ()
                assert await getattr(device.plcnet, method)(*plc_args) not in (False, None)
        else:
            assert device.plcnet is None
        for method, feature, args in DEVICE_CALLS:
            call = getattr(api, method)
            if feature in announced:
                await call(*args)  # raises on any wire or protocol problem
                emulator.advance(60)  # an update or restart that was started is over
            else:
                with pytest.raises(FeatureNotSupported):
                    await call(*args)
