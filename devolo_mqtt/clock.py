"""Wall-clock time as the bridge publishes it (`last_seen`, events, measurements)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Wall-clock time for `last_seen`, events and measurements."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with second precision (`…Z`)."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None
