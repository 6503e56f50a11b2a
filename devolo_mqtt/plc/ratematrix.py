"""A PLC network's rate matrix as published on `network/<net>/rates`: its members, every measured
directed link (rounded, with its degradation flag) and its weakest link. Pure: the monitor supplies
names, ids and flags."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from devolo_mqtt.core.capabilities import round_rate
from devolo_mqtt.core.clock import iso, utc_now
from devolo_mqtt.core.mac import display_mac
from devolo_mqtt.core.model import Overview, PlcHealth


def build(
    network_id: str,
    overview: Overview,
    *,
    node_id: Callable[[str], str | None],
    manageable: Collection[str | None],
    name_for: Callable[[str, str], str],
    degraded: Callable[[str, str], bool],
    health: Callable[[str], PlcHealth | None] = lambda _mac: None,
) -> dict[str, Any]:
    """The matrix of one overview (`name_for(mac, name set in the device)`; `health`: what a member's
    PLC chip last said of itself, for its hops to the domain master and its lost MAPs)."""
    devices = [
        {
            "mac": display_mac(d.mac),
            "id": node_id(d.mac),
            "name": name_for(d.mac, d.name),
            "manageable": d.mac in manageable,
            "attached_to_router": d.attached_to_router,
            "product": d.product or None,
            "hops": h.hops if (h := health(d.mac)) else None,
            "lost_maps": h.lost_maps if h else None,
        }
        for d in overview.devices
    ]
    rates = [
        {
            "from": display_mac(r.src),
            "to": display_mac(r.dst),
            "tx_rate": round_rate(r.tx),
            "rx_rate": round_rate(r.rx),
            "degraded": degraded(r.src, r.dst),
        }
        for r in overview.rates
    ]
    weakest = min((r for r in overview.rates if r.tx > 0), key=lambda r: (r.tx, r.src, r.dst), default=None)
    return {
        "network": network_id,
        "measured_at": iso(utc_now()),
        "devices": devices,
        "rates": rates,
        "weakest": None
        if weakest is None
        else {
            "rate": round_rate(weakest.tx),
            "from": display_mac(weakest.src),
            "to": display_mac(weakest.dst),
            "from_name": name_for(weakest.src, ""),
            "to_name": name_for(weakest.dst, ""),
        },
    }
