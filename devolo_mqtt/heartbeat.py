"""A heartbeat file for `devolo-mqtt health` (Docker HEALTHCHECK): written by the running bridge,
read by a separate process. It reflects the bridge's real MQTT connection, not just a live process.
"""

from __future__ import annotations

import time
from pathlib import Path

from devolo_mqtt.core.store import JsonStore

FILE = "health.json"
STALE_AFTER = 150.0  # seconds: the bridge writes at least once a minute


def write(data_dir: Path, *, connected: bool) -> None:
    """Record the MQTT connection state now (best effort: a read-only data directory is not fatal)."""
    JsonStore(data_dir / FILE).save({"mqtt_connected": connected, "updated": time.time()}, quiet=True)


def check(data_dir: Path) -> tuple[bool, str]:
    """(healthy, reason) from the heartbeat file."""
    data = JsonStore(data_dir / FILE).load()
    if not isinstance(data, dict):
        return False, f"unhealthy: no heartbeat in {data_dir} (is the bridge running with this data_dir?)"
    age = time.time() - float(data.get("updated", 0))
    if age > STALE_AFTER:
        return False, f"unhealthy: last heartbeat {age:.0f} s ago"
    if not data.get("mqtt_connected"):
        return False, "unhealthy: not connected to the MQTT broker"
    return True, "healthy: connected to the MQTT broker"
