"""Names users give to MAC addresses: from the config, and renamed at run time (persisted)."""

from __future__ import annotations

from pathlib import Path

from devolo_mqtt.core.mac import normalise_mac
from devolo_mqtt.core.store import JsonStore


class MacNames:
    """MAC → name. Run-time renames are saved in the data directory and win over the config."""

    def __init__(self, configured: dict[str, str], path: Path) -> None:
        self._configured = {normalise_mac(m): n for m, n in configured.items()}
        self._store = JsonStore(path)
        self._renamed: dict[str, str | None] = {}
        loaded = self._store.load()
        if isinstance(loaded, dict):
            for mac, name in loaded.items():
                try:
                    self._renamed[normalise_mac(str(mac))] = str(name) if name else None
                except ValueError:
                    continue  # a damaged entry: skip it, keep the rest

    def get(self, mac: str) -> str | None:
        """The name of a MAC (`AABBCCDDEEFF`), or None."""
        if mac in self._renamed:
            return self._renamed[mac]
        return self._configured.get(mac)

    def rename(self, mac: str, name: str | None) -> None:
        """Name (or with None/empty, un-name) a MAC, and save it."""
        self._renamed[normalise_mac(mac)] = name or None
        self._store.save(self._renamed)
