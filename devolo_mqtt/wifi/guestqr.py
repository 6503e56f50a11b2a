"""The QR code that joins a guest WiFi: the standard `WIFI:T:WPA;S:…;P:…;;` payload (escaped by segno,
which also draws it), as a PNG any image card shows. Published only when the user opted in: it holds
the WiFi key."""

from __future__ import annotations

import io
from functools import lru_cache

import segno
from segno import helpers


def payload(ssid: str, key: str) -> str:
    """What a phone's camera reads from the code."""
    return str(helpers.make_wifi_data(ssid=ssid, password=key or None, security="WPA" if key else "nopass"))


@lru_cache(maxsize=4)  # the same network on every access point of a mesh, read every state interval
def png(ssid: str, key: str) -> bytes:
    """The code as a PNG (8 pixels a module, the standard quiet zone)."""
    out = io.BytesIO()
    segno.make_qr(payload(ssid, key), error="m").save(out, kind="png", scale=8, border=4)
    return out.getvalue()
