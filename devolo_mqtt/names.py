"""Names users give to MAC addresses: from the config, and renamed at run time (persisted)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import structlog

from devolo_mqtt.mac import normalise_mac

log = structlog.get_logger("devolo_mqtt.names")


class MacNames:
    """MAC → name. Run-time renames are saved in the data directory and win over the config."""

    def __init__(self, configured: dict[str, str], path: Path) -> None:
        self._configured = {normalise_mac(m): n for m, n in configured.items()}
        self._path = path
        self._renamed: dict[str, str | None] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._renamed = {normalise_mac(k): (str(v) if v else None) for k, v in loaded.items()}

    def get(self, mac: str) -> str | None:
        """The name of a MAC (`AABBCCDDEEFF`), or None."""
        if mac in self._renamed:
            return self._renamed[mac]
        return self._configured.get(mac)

    def rename(self, mac: str, name: str | None) -> None:
        """Name (or with None/empty, un-name) a MAC, and save it."""
        self._renamed[normalise_mac(mac)] = name or None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.write_text(json.dumps(self._renamed, indent=1, sort_keys=True), encoding="utf-8")
        except OSError as err:
            log.warning("mac_names_not_saved", path=str(self._path), error=err.strerror)
