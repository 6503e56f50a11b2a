"""Runs inside the bridge-side network namespace (`ip netns exec … python -m tests.netns.agent`).

`discover`: the unmodified `async_discover_network()` over real multicast; prints the serials as JSON.
`bridge PORT BASE SECONDS`: runs the bridge with mDNS discovery on the namespace's veth against the
namespace's own Mosquitto and prints, as JSON, each device's availability and state keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import aiomqtt
from devolo_plc_api.network import async_discover_network

from devolo_mqtt.app import Bridge
from devolo_mqtt.settings import load_settings


async def discover() -> None:
    """Print the serials the library finds."""
    devices = await async_discover_network(timeout=4)
    print(json.dumps(sorted(devices)))


async def bridge(port: int, base: str, seconds: float, interface: str) -> None:
    """Run the bridge for a while and report what it published."""
    settings = load_settings(
        None,
        mqtt={"host": "127.0.0.1", "port": port, "base_topic": base},
        discovery={"interfaces": [interface]},
        polling={"state": 1, "request_timeout": 3},
        device_password="demo-secret",
        homeassistant={"enabled": False},
    )
    seen: dict[str, Any] = {}
    task = asyncio.create_task(Bridge(settings).run())
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(f"{base}/#")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for message in client.messages:
                    # Pictures are binary (the map's PNG): shown as text with the odd bytes replaced.
                    seen[str(message.topic)] = bytes(message.payload).decode(errors="replace")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    print(json.dumps(seen))


if __name__ == "__main__":
    if sys.argv[1] == "discover":
        asyncio.run(discover())
    else:
        asyncio.run(bridge(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]))
