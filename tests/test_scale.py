"""One emulator process serves 200 devices; start-up time and memory are printed, not asserted."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import httpx
import pytest
from devolo_plc_api import Device
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt.emulator.builtin import generated

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
    scenario = generated(COUNT)
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devolo_mqtt",
        "emulate",
        "--count",
        str(COUNT),
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
