"""Every MQTT topic the bridge uses: the only module that formats one."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Top-level names under the base topic that belong to the bridge, never to a device.
RESERVED_IDS = frozenset({"bridge", "network", "wifi"})
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_RESPONSE_TOPIC = 1024


def device_id_problem(device_id: str) -> str | None:
    """Why an id (from the config, or a serial reported by a device) cannot be a topic level; None if OK."""
    if not _DEVICE_ID.match(device_id):
        return "an id may hold 1-64 letters, digits, '_' and '-' only (it becomes an MQTT topic level)"
    if device_id.lower() in RESERVED_IDS:
        return f"{device_id!r} is reserved for the bridge's own topics"
    return None


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under one base topic and discovery prefix."""

    base: str = "devolo"
    discovery_prefix: str = "homeassistant"
    ha_status: str = "homeassistant/status"

    # --- bridge --------------------------------------------------------------------------------------
    @property
    def bridge_state(self) -> str:
        """`online`/`offline`, retained, also the Will."""
        return f"{self.base}/bridge/state"

    @property
    def bridge_info(self) -> str:
        """Version, schema and effective configuration (no secrets)."""
        return f"{self.base}/bridge/info"

    @property
    def bridge_devices(self) -> str:
        """Inventory of every device."""
        return f"{self.base}/bridge/devices"

    @property
    def bridge_health(self) -> str:
        """Per-device poll health and MQTT counters."""
        return f"{self.base}/bridge/health"

    @property
    def bridge_event(self) -> str:
        """Non-retained events."""
        return f"{self.base}/bridge/event"

    @property
    def bridge_instance(self) -> str:
        """Live hellos between bridge runs (one bridge per base topic)."""
        return f"{self.base}/bridge/instance"

    @property
    def bridge_requests(self) -> str:
        """Subscription for bridge requests."""
        return f"{self.base}/bridge/request/#"

    def bridge_request(self, op: str) -> str:
        """Where a request `<op>` is sent (by `devolo-mqtt diagnostics`, or anyone)."""
        return f"{self.base}/bridge/request/{op}"

    def bridge_response(self, op: str) -> str:
        """Where the answer to `bridge/request/<op>` goes."""
        return f"{self.base}/bridge/response/{op}"

    def request_op(self, topic: str) -> str | None:
        """The `<op>` of a bridge request topic, or None."""
        prefix = f"{self.base}/bridge/request/"
        return topic.removeprefix(prefix) if topic.startswith(prefix) else None

    def response_topic_problem(self, topic: str) -> str | None:
        """Why an MQTT 5 response topic is refused (None if acceptable).

        Answers never go into the bridge's own namespace (a response topic of a `/set`, a request or a
        device's state would make the bridge command itself) nor into the discovery prefix.
        """
        if not topic or len(topic) > _MAX_RESPONSE_TOPIC or "\x00" in topic or "+" in topic or "#" in topic:
            return "response topic must be a plain topic name"
        for owned in (self.base, self.discovery_prefix, self.ha_status):
            if topic == owned or topic.startswith(f"{owned}/"):
                return f"response topic must be outside {owned!r}"
        return None

    # --- devices -------------------------------------------------------------------------------------
    def state(self, device_id: str) -> str:
        """One JSON state object per device."""
        return f"{self.base}/{device_id}"

    def availability(self, device_id: str) -> str:
        """`online`/`offline` per device."""
        return f"{self.base}/{device_id}/availability"

    def update_availability(self, device_id: str) -> str:
        """`online`/`offline` of a device's firmware update entity: online through an install's reboot."""
        return f"{self.base}/{device_id}/update/availability"

    def set(self, device_id: str, key: str | None = None) -> str:
        """The command topic (JSON), or the per-key one (plain value)."""
        return f"{self.base}/{device_id}/set" + (f"/{key}" if key else "")

    def set_result(self, device_id: str) -> str:
        """Where every command is answered."""
        return f"{self.base}/{device_id}/set/result"

    @property
    def set_subscriptions(self) -> list[str]:
        """Subscriptions that catch every command topic."""
        return [f"{self.base}/+/set", f"{self.base}/+/set/+"]

    def parse_set(self, topic: str) -> tuple[str, str | None] | None:
        """`(device_id, key or None)` for a command topic; None for anything else (including results)."""
        parts = topic.removeprefix(f"{self.base}/").split("/")
        if not topic.startswith(f"{self.base}/") or len(parts) not in (2, 3) or parts[1] != "set":
            return None
        if parts[0] == "bridge" or (len(parts) == 3 and parts[2] == "result"):
            return None
        return parts[0], (parts[2] if len(parts) == 3 else None)

    def device_event(self, device_id: str) -> str:
        """Non-retained events about one device (`{"event_type", …}`: Home Assistant's event entity)."""
        return f"{self.base}/{device_id}/event"

    def wifi_clients(self, device_id: str) -> str:
        """Retained client list of one access point."""
        return f"{self.base}/{device_id}/wifi/clients"

    def wired_clients(self, device_id: str) -> str:
        """Retained list of the LAN devices behind one PLC adapter."""
        return f"{self.base}/{device_id}/wired/clients"

    def wifi_neighbors(self, device_id: str) -> str:
        """Retained list of the foreign WiFi networks one access point sees."""
        return f"{self.base}/{device_id}/wifi/neighbors"

    # --- networks and presence -----------------------------------------------------------------------
    def network_rates(self, network_id: str) -> str:
        """Retained data-rate matrix of one PLC network."""
        return f"{self.base}/network/{network_id}/rates"

    def network_map(self, network_id: str) -> str:
        """Retained SVG picture of one PLC network."""
        return f"{self.base}/network/{network_id}/map"

    def network_map_png(self, network_id: str) -> str:
        """The same picture as PNG (openHAB's Image channels, Home Assistant's camera)."""
        return f"{self.base}/network/{network_id}/map/png"

    def guest_qr(self, device_id: str) -> str:
        """Retained QR code (PNG) that joins an access point's guest WiFi (opt-in: it holds the key)."""
        return f"{self.base}/{device_id}/guest_wifi/qr"

    def wifi_presence(self, mac: str) -> str:
        """Presence of one WiFi client across all access points (`mac` lower case, no separators)."""
        return f"{self.base}/wifi/{mac.lower()}"

    # --- Home Assistant ------------------------------------------------------------------------------
    def discovery(self, component: str, node_id: str, object_id: str) -> str:
        """`<prefix>/<component>/<node_id>/<object_id>/config`."""
        return f"{self.discovery_prefix}/{component}/{node_id}/{object_id}/config"

    @staticmethod
    def discovery_node(topic: str) -> str:
        """The `<node_id>` of `<prefix>/<component>/<node_id>/<object_id>/config`."""
        parts = topic.split("/")
        return parts[-3] if len(parts) >= 4 else ""

    @property
    def discovery_subscription(self) -> str:
        """Matches every discovery config (to find our stale ones at start-up)."""
        return f"{self.discovery_prefix}/+/+/+/config"
