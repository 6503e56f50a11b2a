"""Everything the bridge publishes, by what it means: one method per kind of message, topics from
`topics.py`, compact JSON. The MQTT session queues; nothing here waits."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from devolo_mqtt.core.capabilities import DEVICE_EVENTS
from devolo_mqtt.core.clock import iso, utc_now
from devolo_mqtt.core.model import EventData, Json
from devolo_mqtt.mqtt.session import MqttSession
from devolo_mqtt.mqtt.topics import Topics

DEVICE_EVENT_KINDS = frozenset(kind for kind, _ in DEVICE_EVENTS)


def dumps(payload: Any) -> str:
    """Compact JSON, as published."""
    return json.dumps(payload, separators=(",", ":"))


class Publisher:
    """The bridge's voice on MQTT."""

    def __init__(self, mqtt: MqttSession, topics: Topics) -> None:
        self.mqtt = mqtt
        self.topics = topics
        # The device id of a PLC MAC (`AABBCCDDEEFF`), for the events that name a device by MAC; set by
        # the app once the registry exists.
        self.device_for_mac: Callable[[str], str | None] = lambda _mac: None

    # --- devices -------------------------------------------------------------------------------------
    def state(self, device_id: str, state: dict[str, Json], *, force: bool = False) -> None:
        """A device's state object (retained)."""
        self.mqtt.publish(self.topics.state(device_id), dumps(state), retain=True, force=force)

    def availability(self, device_id: str, *, online: bool) -> None:
        """A device's availability (retained, QoS 1)."""
        self.mqtt.publish(
            self.topics.availability(device_id), "online" if online else "offline", retain=True, qos=1
        )

    def update_availability(self, device_id: str, *, online: bool) -> None:
        """A device's update entity's availability (retained, QoS 1)."""
        self.mqtt.publish(
            self.topics.update_availability(device_id), "online" if online else "offline", retain=True, qos=1
        )

    def forget(self, device_id: str) -> None:
        """Clear every retained topic of a device id that is no longer used."""
        t = self.topics
        for topic in (
            t.availability(device_id),
            t.update_availability(device_id),
            t.state(device_id),
            t.wifi_clients(device_id),
            t.wired_clients(device_id),
            t.wifi_neighbors(device_id),
            t.guest_qr(device_id),
        ):
            self.mqtt.publish(topic, b"", retain=True)

    def set_result(
        self, device_id: str, response_topic: str | None, correlation: bytes | None, payload: dict[str, Any]
    ) -> None:
        """The answer to a command: on `set/result`, and on its MQTT 5 response topic if it had one."""
        text = dumps(payload)
        # QoS 1: an asker with a persistent session gets its answer even if it was reconnecting.
        self.mqtt.publish(self.topics.set_result(device_id), text, qos=1)
        if response_topic:
            self.mqtt.publish(response_topic, text, qos=1, correlation=correlation)
        if payload["status"] == "error":
            self.event(
                "command_failed", {"device": device_id, "key": payload["key"], "error": payload["error"]}
            )

    def clear_retained(self, topic: str) -> None:
        """Empty a retained message (a retained command or request must never be replayed)."""
        self.mqtt.publish(topic, b"", retain=True)

    # --- the bridge ----------------------------------------------------------------------------------
    def event(self, kind: str, data: EventData) -> None:
        """A non-retained event on `bridge/event`, and on the event topic of each device it is about
        (flat, with `event_type`: what Home Assistant's and openHAB's event entities read)."""
        ts = iso(utc_now())
        self.mqtt.publish(self.topics.bridge_event, dumps({"type": kind, "ts": ts, "data": data}))
        for device_id in self._about(kind, data):
            flat = dumps({"event_type": kind, "ts": ts, **data})
            self.mqtt.publish(self.topics.device_event(device_id), flat)

    def _about(self, kind: str, data: EventData) -> list[str]:
        """The devices an event is about: the one it names, the access point of a WiFi client, the
        sending adapter of a PLC link, the adapter that joined or left. Only the kinds a device's event
        entity declares (Home Assistant warns about any other)."""
        if kind not in DEVICE_EVENT_KINDS:
            return []
        if kind.startswith("wifi_"):
            named = data.get("ap")
        elif kind.startswith("plc_link_"):
            named = self._by_mac(data.get("from"))
        elif kind.startswith("plc_device_"):
            named = self._by_mac(data.get("mac"))
        else:
            named = data.get("device")
        return [named] if isinstance(named, str) and named else []

    def _by_mac(self, mac: Json | list[str]) -> str | None:
        return self.device_for_mac(mac.replace(":", "").upper()) if isinstance(mac, str) else None

    def response(self, op: str, response: dict[str, Any]) -> None:
        """The answer to `bridge/request/<op>`."""
        self.mqtt.publish(self.topics.bridge_response(op), dumps(response))

    def bridge_online(self, info: dict[str, Any]) -> None:
        """`bridge/state` online and `bridge/info` (on every connection)."""
        self.mqtt.publish(self.topics.bridge_state, "online", retain=True, qos=1)
        self.mqtt.publish(self.topics.bridge_info, dumps(info), retain=True)

    def instance_hello(self, hello: bytes) -> None:
        """This run's hello on `bridge/instance` (retained)."""
        self.mqtt.publish(self.topics.bridge_instance, hello, qos=1, retain=True)

    def inventory(self, items: list[Any]) -> None:
        """`bridge/devices`."""
        self.mqtt.publish(self.topics.bridge_devices, dumps(items), retain=True)

    def health(self, payload: dict[str, Any]) -> None:
        """`bridge/health`."""
        self.mqtt.publish(self.topics.bridge_health, dumps(payload), retain=True)

    def config(self, topic: str, text: str | bytes, *, force: bool = False) -> None:
        """A Home Assistant discovery config (retained, QoS 1; empty text removes it)."""
        self.mqtt.publish(topic, text, retain=True, qos=1, force=force, bulk=True)

    # --- networks and WiFi ---------------------------------------------------------------------------
    def rates(self, network_id: str, matrix: object) -> None:
        """A PLC network's rate matrix (retained)."""
        self.mqtt.publish(self.topics.network_rates(network_id), dumps(matrix), retain=True)

    def forget_network(self, network_id: str) -> None:
        """Clear a retired network id's retained topics."""
        t = self.topics
        for topic in (t.network_rates(network_id), t.network_map(network_id), t.network_map_png(network_id)):
            self.mqtt.publish(topic, b"", retain=True)

    def network_map(self, network_id: str, svg: str) -> None:
        """A PLC network's picture (retained; an unchanged picture is not sent again)."""
        self.mqtt.publish(self.topics.network_map(network_id), svg, retain=True, bulk=True)

    def network_map_png(self, network_id: str, png: bytes) -> None:
        """The same picture as PNG (retained)."""
        self.mqtt.publish(self.topics.network_map_png(network_id), png, retain=True, bulk=True)

    def guest_qr(self, device_id: str, png: bytes) -> None:
        """The QR code that joins an access point's guest WiFi (retained; empty bytes clear it)."""
        self.mqtt.publish(self.topics.guest_qr(device_id), png, retain=True)

    def neighbors(self, device_id: str, payload: dict[str, Any] | None) -> None:
        """The foreign WiFi networks an access point sees (retained; None clears them)."""
        self.mqtt.publish(
            self.topics.wifi_neighbors(device_id), dumps(payload) if payload else b"", retain=True
        )

    def client_list(self, ap: str, payload: dict[str, Any]) -> None:
        """An access point's WiFi clients (retained)."""
        self.mqtt.publish(self.topics.wifi_clients(ap), dumps(payload), retain=True)

    def wired_list(self, device_id: str, payload: dict[str, Any]) -> None:
        """The LAN devices behind an adapter (retained)."""
        self.mqtt.publish(self.topics.wired_clients(device_id), dumps(payload), retain=True)

    def presence(self, mac: str, payload: dict[str, Any]) -> None:
        """A WiFi client's presence across access points (retained)."""
        self.mqtt.publish(self.topics.wifi_presence(mac), dumps(payload), retain=True)
