"""Logging: structlog for our events, stdlib logging (devolo_plc_api, httpx, aiomqtt) routed through
the same processors, and a redaction processor that every line passes — secrets never reach output.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

_REDACTED = "**redacted**"


class Redactor:
    """Replaces every registered secret (and its sha256 hex form) wherever it appears in a log line."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        """Register a secret; its sha256 form (what devolo_plc_api retries with) is registered too."""
        if secret:
            self._secrets.add(secret)
            self._secrets.add(hashlib.sha256(secret.encode()).hexdigest())

    def add_all(self, secrets: Iterable[str | None]) -> None:
        """Register several secrets."""
        for secret in secrets:
            self.add(secret)

    def scrub(self, value: Any) -> Any:
        """Return `value` with secrets replaced (strings, and strings inside lists, tuples and dicts)."""
        if isinstance(value, str):
            # Longest first, so a secret that contains another is replaced whole.
            for secret in sorted(self._secrets, key=len, reverse=True):
                if secret in value:
                    value = value.replace(secret, _REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        if isinstance(value, BaseException):
            return self.scrub(repr(value))
        return value

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """structlog processor."""
        if not self._secrets:
            return event_dict
        return {k: self.scrub(v) for k, v in event_dict.items()}


REDACTOR = Redactor()


def configure(
    level: str = "INFO", fmt: Literal["auto", "console", "json"] = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog and stdlib logging once for the process."""
    out = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if as_json else structlog.processors.ExceptionPrettyPrinter(),
        REDACTOR,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # stdlib records format their `%s` arguments late: scrub again afterwards.
            REDACTOR,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO: that is debug detail for us.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    zeroconf = logging.getLogger("zeroconf")
    if not any(isinstance(f, QuietNetworkErrors) for f in zeroconf.filters):
        zeroconf.addFilter(QuietNetworkErrors())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


# An interface that went away (a container network removed, Wi-Fi down, a VPN closed): mDNS sends on
# it fail until zeroconf notices. That is an event to mention, not a traceback.
_GONE_INTERFACE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENETDOWN}


class QuietNetworkErrors(logging.Filter):
    """zeroconf's records about a vanished interface become one INFO line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite matching records in place; every record passes."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, OSError) and error.errno in _GONE_INTERFACE:
            record.msg = f"{record.getMessage()} (an interface went away: {error.strerror})"
            record.args = None
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True
