"""MAC addresses: one normal form everywhere.

The PLC overview says `AABBCCDDEEFF`, WiFi station lists say `AA:BB:CC:DD:EE:FF`, users write
`aa:bb:cc:dd:ee:ff`. Internally a MAC is 12 upper-case hex digits; topics use lower case.
"""

from __future__ import annotations

import re

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")


def normalise_mac(value: str) -> str:
    """Any common spelling → `AABBCCDDEEFF`; ValueError if it is not a MAC."""
    if not _MAC.match(value):
        raise ValueError(f"not a MAC address: {value!r}")
    return re.sub(r"[:-]", "", value).upper()


def colon_mac(mac: str) -> str:
    """`AABBCCDDEEFF` → `AA:BB:CC:DD:EE:FF`."""
    return ":".join(mac[i : i + 2] for i in range(0, 12, 2))


def display_mac(mac: str) -> str:
    """`AABBCCDDEEFF` → `aa:bb:cc:dd:ee:ff`, as payloads show MACs."""
    return colon_mac(mac).lower()


def is_random(mac: str) -> bool:
    """Whether the locally-administered bit is set (how phones' private addresses look)."""
    return bool(int(normalise_mac(mac)[:2], 16) & 0x02)
