"""A PLC network as a picture: one SVG drawn from the published rate matrix, for an image card.

The layout is a circle in MAC order, the router-attached adapter at the top: the same members always
sit in the same places, so consecutive pictures differ only where a rate or a name did. Labels show
whole Mbit/s, so the picture is byte-identical while the matrix moves within rounding. No drawing
library: the picture is a few dozen elements, and an SVG writer would add more than it saves.
"""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape, quoteattr

# Link quality by rate (Mbit/s, the slower direction of a pair); documented in docs/mqtt-contract.md.
GOOD_RATE = 300.0
FAIR_RATE = 100.0
COLOURS = {"good": "#2e7d32", "fair": "#ef8f00", "poor": "#c62828", "none": "#9e9e9e"}

# Small on purpose: an image card shows it 400-500 px wide, so text drawn at 16-18 units stays 11-14 px.
WIDTH, HEIGHT = 640, 480
_CENTRE = (WIDTH / 2, HEIGHT / 2 + 8)
_RADIUS = (210.0, 160.0)  # horizontal, vertical: an ellipse leaves room for the labels
_NODE_W, _NODE_H = 200, 56
_MAX_LABEL = 19  # characters of a name that fit a box (bold, 16 units)
_MAX_DETAIL = 26


def quality(rate: float | None) -> str:
    """`good`, `fair`, `poor` or `none` (not measured, or 0)."""
    if not rate:
        return "none"
    return "good" if rate >= GOOD_RATE else "fair" if rate >= FAIR_RATE else "poor"


def render(matrix: dict[str, Any]) -> str:
    """The SVG of one network, from its `network/<net>/rates` payload."""
    devices: list[dict[str, Any]] = sorted(
        matrix["devices"], key=lambda d: (not d["attached_to_router"], d["mac"])
    )
    places = _places(len(devices))
    where = {d["mac"]: places[i] for i, d in enumerate(devices)}
    rates = {(r["from"], r["to"]): r for r in matrix["rates"]}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" rx="12" fill="#ffffff"/>',
        f'<text x="16" y="30" font-size="20" font-weight="bold" fill="#212121">'
        f"PLC network {escape(_short(str(matrix['network']), 40))}</text>",
    ]
    pairs = sorted({tuple(sorted(pair)) for pair in rates if pair[0] in where and pair[1] in where})
    for a, b in pairs:
        parts += _link(where[a], where[b], rates.get((a, b)), rates.get((b, a)))
    for device in devices:
        parts += _node(device, where[device["mac"]])
    parts += _legend()
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _places(count: int) -> list[tuple[float, float]]:
    """Points on a circle, the first at the top, clockwise."""
    if count == 1:
        return [_CENTRE]
    cx, cy = _CENTRE
    return [
        (
            round(cx + _RADIUS[0] * math.sin(2 * math.pi * i / count), 1),
            round(cy - _RADIUS[1] * math.cos(2 * math.pi * i / count), 1),
        )
        for i in range(count)
    ]


def _link(
    a: tuple[float, float], b: tuple[float, float], ab: dict[str, Any] | None, ba: dict[str, Any] | None
) -> list[str]:
    """A line coloured by the slower direction, each direction's rate near its sender."""
    sent = [r["tx_rate"] if r else None for r in (ab, ba)]
    worst = quality(min((s or 0.0) for s in sent))
    dashed = ' stroke-dasharray="8 6"' if worst == "none" else ""
    parts = [
        f'<line x1="{a[0]}" y1="{a[1]}" x2="{b[0]}" y2="{b[1]}" stroke="{COLOURS[worst]}" '
        f'stroke-width="5"{dashed}/>'
    ]
    for (src, dst), rate, entry in (((a, b), sent[0], ab), ((b, a), sent[1], ba)):
        if rate is None:
            continue
        x, y = _along(src, dst, 0.22)
        mark = " ▼" if entry and entry.get("degraded") else ""
        text = f"{round(rate)}{mark}"
        width = 12 + 9 * len(text)
        parts.append(
            f'<rect x="{round(x - width / 2, 1)}" y="{round(y - 11, 1)}" width="{width}" height="22" rx="6" '
            f'fill="#ffffff" stroke="{COLOURS[quality(rate)]}" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{x}" y="{round(y + 5, 1)}" font-size="15" text-anchor="middle" '
            f'fill="{COLOURS[quality(rate)]}">{escape(text)}</text>'
        )
    return parts


def _along(src: tuple[float, float], dst: tuple[float, float], share: float) -> tuple[float, float]:
    """The point `share` of the way along the visible part of a line between two boxes (centre to
    centre, minus what the boxes cover), so that no label hides under an adapter."""
    dx, dy = dst[0] - src[0], dst[1] - src[1]
    inside = min(
        (_NODE_W / 2 + 4) / abs(dx) if dx else math.inf,
        (_NODE_H / 2 + 4) / abs(dy) if dy else math.inf,
    )
    t = inside + share * max(0.0, 1 - 2 * inside)
    return round(src[0] + dx * t, 1), round(src[1] + dy * t, 1)


def _node(device: dict[str, Any], at: tuple[float, float]) -> list[str]:
    x, y = at
    router = bool(device["attached_to_router"])
    outline = ' stroke-dasharray="6 4"' if not device["manageable"] else ""
    detail = device.get("product") or device["mac"]
    if router:
        detail = f"⌂ router · {detail}"
    elif not device["manageable"]:
        detail = f"{detail} (no API)"
    left, top = round(x - _NODE_W / 2, 1), round(y - _NODE_H / 2, 1)
    return [
        f'<g class="adapter" data-mac={quoteattr(str(device["mac"]))}'
        f"{' data-router=' + quoteattr('true') if router else ''}>",
        f'<rect x="{left}" y="{top}" width="{_NODE_W}" height="{_NODE_H}" rx="10" '
        f'fill="{"#e3f2fd" if router else "#f5f5f5"}" stroke="{"#1565c0" if router else "#616161"}" '
        f'stroke-width="{3 if router else 2}"{outline}/>',
        f'<text x="{x}" y="{round(y - 4, 1)}" font-size="16" font-weight="bold" text-anchor="middle" '
        f'fill="#212121">{escape(_short(str(device["name"]), _MAX_LABEL))}</text>',
        f'<text x="{x}" y="{round(y + 16, 1)}" font-size="13" text-anchor="middle" fill="#424242">'
        f"{escape(_short(str(detail), _MAX_DETAIL))}</text>",
        "</g>",
    ]


def _legend() -> list[str]:
    y = HEIGHT - 14
    parts = [f'<text x="16" y="{y}" font-size="14" fill="#424242">Mbit/s, sent by the nearer adapter</text>']
    x = 268
    for label, key in ((f"≥ {GOOD_RATE:.0f}", "good"), (f"≥ {FAIR_RATE:.0f}", "fair"), ("less", "poor")):
        parts.append(f'<rect x="{x}" y="{y - 11}" width="18" height="12" rx="2" fill="{COLOURS[key]}"/>')
        parts.append(f'<text x="{x + 23}" y="{y}" font-size="14" fill="#424242">{escape(label)}</text>')
        x += 82
    parts.append(f'<text x="{x}" y="{y}" font-size="14" fill="#424242">▼ degraded</text>')
    return parts


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
