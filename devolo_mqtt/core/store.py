"""What the bridge remembers across restarts in `data_dir` (MAC names, network ids, WiFi clients, the
guest WiFi duration, the health heartbeat): small JSON files, each written atomically (a crash
mid-write never leaves half a file), and read back leniently (a missing or damaged file is an empty
memory, never a crash)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import structlog

log = structlog.get_logger("devolo_mqtt.core.store")


SAVE_DELAY = 2.0  # seconds: a burst of changes (200 devices identified at start) is one write


class JsonStore:
    """One JSON file."""

    _pending: ClassVar[dict[JsonStore, Callable[[], Any]]] = {}

    def __init__(self, path: Path) -> None:
        self.path = path
        self._timer: asyncio.TimerHandle | None = None

    def save_soon(self, value: Callable[[], Any]) -> None:
        """Save what `value()` returns within SAVE_DELAY seconds: many changes in a burst are one write
        (each write is the whole file). `flush_all()` writes whatever is pending, at shutdown."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing to batch with
            self.save(value())
            return
        JsonStore._pending[self] = value
        if self._timer is None:
            self._timer = loop.call_later(SAVE_DELAY, self._flush)

    def _flush(self) -> None:
        self._timer = None
        value = JsonStore._pending.pop(self, None)
        if value is not None:
            self.save(value())

    @classmethod
    def flush_all(cls) -> None:
        """Write every pending `save_soon` now (the bridge stops)."""
        for store in list(cls._pending):
            if store._timer is not None:
                store._timer.cancel()
            store._flush()

    def load(self) -> Any:
        """The stored value, or None when there is none (or it cannot be read)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def save(self, value: Any, *, quiet: bool = False) -> bool:
        """Write atomically (temporary file + rename); whether it worked (a failure is logged)."""
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(value, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as err:
            if not quiet:
                log.warning("data_not_saved", path=str(self.path), error=err.strerror)
            return False
        return True


class StoredInts:
    """Whole numbers by name (e.g. one per WiFi mesh), remembered across restarts, with one default.
    A file that holds a single number (an earlier version's) makes it the default for every name."""

    def __init__(self, path: Path, default: int) -> None:
        self._store = JsonStore(path)
        loaded = self._store.load()
        self._default = loaded if _whole(loaded) else default
        self._values: dict[str, int] = (
            {str(k): v for k, v in loaded.items() if _whole(v)} if isinstance(loaded, dict) else {}
        )

    def get(self, name: str) -> int:
        """The number for `name` (the default when none was set)."""
        return self._values.get(name, self._default)

    def set(self, name: str, value: int) -> None:
        """Set and save (only when it changed)."""
        if self.get(name) != value:
            self._values[name] = value
            self._store.save(self._values)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class StoredInt:
    """One whole number remembered across restarts (a setting changed over MQTT), with a default."""

    def __init__(self, path: Path, default: int) -> None:
        self._store = JsonStore(path)
        loaded = self._store.load()
        self._value = loaded if isinstance(loaded, int) and not isinstance(loaded, bool) else default

    @property
    def value(self) -> int:
        """The current value."""
        return self._value

    @value.setter
    def value(self, value: int) -> None:
        if value != self._value:
            self._value = value
            self._store.save(value)
