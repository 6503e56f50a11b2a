"""Built-in scenarios: the demo home and generated sites of any size (tests, benchmarks)."""

from __future__ import annotations

import ipaddress
from typing import Any

from devolo_mqtt.tools.emulator.scenario import Scenario, parse_scenario

# Serials are 16 digits like real devices; MACs use the documentation OUI range 00:00:5E:00:53.
DEMO_PASSWORD = "demo-secret"  # noqa: S105 - the emulated demo devices' password, printed in the README
DEMO_HOME: dict[str, Any] = {
    "seed": 7,
    "devices": [
        {
            "serial": "1000000000000001",
            "model": "magic2_lan",
            "name": "Router adapter",
            "wired": ["B0:BE:76:12:34:56"],  # the internet router, on its LAN port
            "password": DEMO_PASSWORD,
            "plc_mac": "00:00:5E:00:53:01",
            "network": "home",
            "attached_to_router": True,
        },
        {
            "serial": "1000000000000002",
            "model": "magic2_wifi_next",
            "name": "Living room",
            "password": DEMO_PASSWORD,
            "plc_mac": "00:00:5E:00:53:02",
            "network": "home",
            "update": {
                "version": "7.14.1",
                "date": "2024-06-01",
                "available_after": 30,
                "install_seconds": 20,
            },
        },
        {
            "serial": "1000000000000003",
            "model": "magic2_wifi_6",
            "name": "Office",
            "password": DEMO_PASSWORD,
            "plc_mac": "00:00:5E:00:53:03",
            "network": "home",
        },
        {
            "serial": "1000000000000004",
            "model": "dlan1200_lan",
            "name": "Garage",
            "plc_mac": "00:00:5E:00:53:04",
            "wired": ["00:11:32:AB:CD:EF"],  # a NAS
            "network": "home",
        },
        {
            "serial": "1000000000000005",
            "model": "dlan1200_wifi_ac",
            "name": "Garden house",
            "password": DEMO_PASSWORD,
            "plc_mac": "00:00:5E:00:53:05",
            "network": "garden",
            "attached_to_router": True,
            "mesh": "garden",  # a mesh of its own: its own guest network
            "guest_ssid": "devolo-guest-garden",
        },
        {
            "serial": "1000000000000006",
            "model": "dlan550_lan",
            "name": "Shed",
            "plc_mac": "00:00:5E:00:53:06",
            "network": "garden",
        },
        {
            "serial": "1000000000000007",
            "model": "repeater_ac",
            "name": "Attic repeater",
            "password": DEMO_PASSWORD,
        },
    ],
    "stations": [
        {"mac": "3C:22:FB:11:22:01", "ap": "1000000000000002", "band": "5"},
        {"mac": "DA:A1:19:33:44:02", "ap": "1000000000000002", "band": "5"},
        {"mac": "00:1A:11:55:66:03", "ap": "1000000000000003", "band": "2.4"},
        {"mac": "F0:18:98:77:88:04", "ap": "1000000000000003", "band": "5", "wifi": "guest"},
        {"mac": "B8:27:EB:99:AA:05", "ap": "1000000000000007", "band": "2.4"},
        {"mac": "3C:22:FB:11:22:06", "ap": None},
    ],
}


def demo_home(**overrides: Any) -> Scenario:
    """The demo home: router adapter, two WiFi access points, a repeater, LAN adapters, two networks."""
    return parse_scenario({**DEMO_HOME, **overrides}, "demo home")


def generated(
    count: int, *, base: str = "127.0.20.1", per_network: int = 8, site: int = 0, **overrides: Any
) -> Scenario:
    """`count` manageable devices (a WiFi model and a LAN model alternating) in networks of `per_network`.
    `site` (0-255) makes serials and PLC MACs unique across emulators that stand for different sites."""
    first = int(ipaddress.IPv4Address(base))
    devices = []
    for i in range(count):
        model = ("magic2_wifi_next", "magic2_lan", "dlan1200_wifi_ac")[i % 3]
        devices.append(
            {
                "serial": f"2{site:03d}{i:012d}",
                "model": model,
                "name": f"Adapter {i}",
                "password": DEMO_PASSWORD,
                "ip": str(ipaddress.IPv4Address(first + i)),
                "plc_mac": f"02:{site:02X}:5E:{i >> 16:02X}:{(i >> 8) & 255:02X}:{i & 255:02X}",
                "network": f"net{i // per_network}",
                "attached_to_router": i % per_network == 0,
                "mesh": f"net{i // per_network}",
            }
        )
    return parse_scenario({"devices": devices, "seed": count, **overrides}, f"generated({count})")
