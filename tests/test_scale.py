"""One emulator process serves 200 devices; start-up time and memory are printed, not asserted."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import sys
import time
from pathlib import Path

import httpx
import pytest
from devolo_plc_api import Device
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt.app import Bridge
from devolo_mqtt.tools.emulator.builtin import generated
from tests.conftest import bridge_settings
from tests.helpers import Broker, Probe, address_block

COUNT = 200


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def test_scale_one_emulator_serves_200_devices(
    library: tuple[AsyncZeroconf, httpx.AsyncClient], capsys: pytest.CaptureFixture[str]
) -> None:
    """200 devices in one process answer the unmodified library; figures go to the test output."""
    scenario = generated(COUNT, base=address_block())
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devolo_mqtt",
        "emulate",
        "--count",
        str(COUNT),
        "--address-base",
        str(scenario.addresses()[min(scenario.addresses())]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        for _ in range(COUNT):
            await asyncio.wait_for(process.stdout.readline(), 30)
        started = time.monotonic() - began
        rss = _rss_mib(process.pid)
        zeroconf, client = library
        sample = random.Random(1).sample(sorted(scenario.addresses().items()), 10)
        connect_began = time.monotonic()
        for serial, ip in sample:
            device = Device(ip, zeroconf_instance=zeroconf)
            await device.async_connect(session_instance=client)
            assert device.serial_number == serial
            assert device.device is not None and await device.device.async_get_led_setting() is True
            await device.async_disconnect()
        per_device = (time.monotonic() - connect_began) / len(sample)
        with capsys.disabled():
            print(
                f"\n[scale] emulator: {COUNT} devices ready in {started:.2f} s (process start included), "
                f"RSS {rss:.1f} MiB, library connect+read {per_device * 1000:.0f} ms/device"
            )
    finally:
        process.terminate()
        await process.wait()
    assert process.returncode == 0


@pytest.mark.timeout(300)
async def test_scale_bridge_serves_200_devices(
    broker: Broker, base_topic: str, probe: Probe, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bridge brings 200 emulated devices online and polls them; CPU and memory are printed."""
    base = address_block()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devolo_mqtt",
        "emulate",
        "--count",
        str(COUNT),
        "--speed",
        "0",
        "--address-base",
        base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    bridge = Bridge(bridge_settings(broker, base_topic, polling={"state": 10, "wifi": 10, "network": 30}))
    try:
        assert process.stdout is not None
        for _ in range(COUNT):
            await asyncio.wait_for(process.stdout.readline(), 30)
        began = time.monotonic()
        task = asyncio.create_task(bridge.run())
        serials = set(generated(COUNT, base=base).addresses())
        for serial in sorted(serials):
            await probe.wait_for(
                f"{base_topic}/{serial}/availability", lambda m: m.payload == b"online", within=120
            )
        online_after = time.monotonic() - began
        cpu_before, wall_before = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        await asyncio.sleep(10)  # one state and WiFi poll round
        cpu_after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall_before
        cpu = (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime) / wall
        rss = _rss_mib(os.getpid())
        published = bridge.mqtt.counters.published
        with capsys.disabled():
            print(
                f"\n[scale] bridge: {COUNT} devices online in {online_after:.1f} s; steady polling "
                f"(state/WiFi every 10 s, one round) uses {cpu * 100:.0f} % of one core (test process, probe "
                f"included), RSS {rss:.0f} MiB, {published} MQTT messages published"
            )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        process.terminate()
        await process.wait()
    assert all(bridge.runtimes[s].online for s in serials)
