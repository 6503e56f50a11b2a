"""Authentication against devices: a spurious 401 costs one retry, never the device (issue: a single
401 made devolo_plc_api re-hash the stored password for good)."""

from __future__ import annotations

import httpx
import pytest
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt.core.errors import DeviceAuthError
from devolo_mqtt.core.tasks import FairLimiter
from devolo_mqtt.devices.client import DevoloClient
from devolo_mqtt.tools.emulator.http import Nonces
from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.world import Fault
from tests.conftest import StartEmulator

WIFI_NEXT = "1000000000000002"


def _client(ip: str, password: str, library: tuple[AsyncZeroconf, httpx.AsyncClient]) -> DevoloClient:
    zeroconf, _ = library
    return DevoloClient(
        ip,
        password,
        zeroconf=zeroconf,
        limiter=FairLimiter(4, hold=2.0),
        timeout=5,
        connect_timeout=8,
    )


async def test_device_spurious_401s_never_lock_the_device_out(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    library: tuple[AsyncZeroconf, httpx.AsyncClient],
) -> None:
    """Two stale-nonce 401s in a row: every later authenticated call still succeeds."""
    emulator = await start_emulator(demo_scenario)
    device = emulator.device(WIFI_NEXT)
    assert device.ip is not None
    client = _client(device.ip, device.password, library)
    await client.connect()
    try:
        for on in (False, True, False):
            emulator.set_fault(WIFI_NEXT, Fault.STALE_NONCE)
            await client.set_leds(on)  # the fault answers 401 once, then clears itself
            assert device.fault is Fault.NONE
            assert device.leds is on
        assert await client.uptime() >= 0
        await client.set_leds(True)
        assert device.leds is True
    finally:
        await client.close()


async def test_device_wrong_password_is_still_an_auth_error(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    library: tuple[AsyncZeroconf, httpx.AsyncClient],
) -> None:
    """A password the device really refuses is reported as such (after one fresh try), and recovers."""
    emulator = await start_emulator(demo_scenario)
    device = emulator.device(WIFI_NEXT)
    assert device.ip is not None
    client = _client(device.ip, device.password, library)
    await client.connect()
    try:
        emulator.set_fault(WIFI_NEXT, Fault.WRONG_PASSWORD)
        with pytest.raises(DeviceAuthError):
            await client.set_leds(False)
        assert device.leds is True
        emulator.set_fault(WIFI_NEXT, Fault.NONE)  # the password is right again: no lock-out remains
        await client.set_leds(False)
        assert device.leds is False
    finally:
        await client.close()


def test_emulator_nonces_stay_valid_for_minutes_not_for_the_last_31() -> None:
    """A nonce issued a moment ago is accepted however many were issued after it."""
    nonces = Nonces()
    first = nonces.issue()
    later = [nonces.issue() for _ in range(200)]
    assert first in nonces
    assert all(n in nonces for n in later)
    assert "not-issued" not in nonces
