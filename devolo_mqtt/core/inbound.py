"""Everything that arrives over MQTT is hostile until checked: bounded in size and nesting before it is
parsed, so no payload can raise out of the router (a 1 KB `[[[[…` used to end the process through
`RecursionError`)."""

from __future__ import annotations

import json
from typing import Any

MAX_PAYLOAD = 4096  # bytes of a command or request
MAX_DEPTH = 8  # nesting of JSON arrays/objects in a command or request


class BadPayload(ValueError):  # noqa: N818 - reads as what it is at the raise sites
    """A payload refused before or while parsing; `reason` is what the answer says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def as_bytes(payload: object) -> bytes:
    """An aiomqtt payload (bytes, str, number or None) as bytes."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


def decode_text(raw: bytes, *, max_bytes: int = MAX_PAYLOAD) -> str:
    """UTF-8 text of at most `max_bytes`."""
    if len(raw) > max_bytes:
        raise BadPayload(f"payload too large ({len(raw)} bytes, at most {max_bytes})")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise BadPayload("payload is not UTF-8 text") from None


def decode_json(raw: bytes, *, max_bytes: int = MAX_PAYLOAD, max_depth: int = MAX_DEPTH) -> Any:
    """JSON of at most `max_bytes` and `max_depth` levels of nesting."""
    text = decode_text(raw, max_bytes=max_bytes)
    if text.count("[") + text.count("{") > max_depth and _depth(text) > max_depth:
        raise BadPayload(f"payload nested too deeply (at most {max_depth} levels)")
    try:
        return json.loads(text)
    except ValueError:
        raise BadPayload("payload is not valid JSON") from None


def _depth(text: str) -> int:
    """The deepest nesting of brackets outside JSON strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
