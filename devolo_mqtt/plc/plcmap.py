"""A PLC network as a picture, drawn from the published rate matrix: SVG for image cards, PNG for
consumers without an SVG renderer (openHAB's Image channels, Home Assistant's camera).

The layout is a circle in MAC order, the router-attached adapter at the top: the same members always
sit in the same places, so consecutive pictures differ only where a rate or a name did. Labels show
whole Mbit/s, so the picture is byte-identical while the matrix moves within rounding. `draw` lays the
picture out once as a few dozen shapes; `svg` writes them as text (no library: an SVG writer would add
more than it saves) and `png` paints them with Pillow (imported only when a PNG is asked for).
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Any, Literal
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


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    radius: float
    fill: str
    stroke: str | None = None
    stroke_width: float = 0
    dash: str | None = None  # SVG stroke-dasharray


@dataclass(frozen=True, slots=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    colour: str
    width: float
    dash: str | None = None


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    y: float  # the baseline
    text: str
    size: int
    colour: str
    bold: bool = False
    anchor: Literal["start", "middle"] = "start"


@dataclass(frozen=True, slots=True)
class Adapter:
    """One adapter's box and labels (an SVG group that names its MAC, for readers of the SVG)."""

    mac: str
    router: bool
    shapes: tuple[Rect | Text, ...]


Shape = Rect | Line | Text | Adapter


def render(matrix: dict[str, Any]) -> str:
    """The SVG of one network, from its `network/<net>/rates` payload."""
    return svg(draw(matrix))


def draw(matrix: dict[str, Any]) -> list[Shape]:
    """The picture of one network as shapes, from its `network/<net>/rates` payload."""
    devices: list[dict[str, Any]] = sorted(
        matrix["devices"], key=lambda d: (not d["attached_to_router"], d["mac"])
    )
    places = _places(len(devices))
    where = {d["mac"]: places[i] for i, d in enumerate(devices)}
    rates = {(r["from"], r["to"]): r for r in matrix["rates"]}
    shapes: list[Shape] = [
        Rect(0, 0, WIDTH, HEIGHT, 12, "#ffffff"),
        Text(16, 30, f"PLC network {_short(str(matrix['network']), 40)}", 20, "#212121", bold=True),
    ]
    pairs = sorted({tuple(sorted(pair)) for pair in rates if pair[0] in where and pair[1] in where})
    for a, b in pairs:
        shapes += _link(where[a], where[b], rates.get((a, b)), rates.get((b, a)))
    for device in devices:
        shapes.append(_node(device, where[device["mac"]]))
    shapes += _legend()
    return shapes


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
) -> list[Shape]:
    """A line coloured by the slower direction, each direction's rate near its sender."""
    sent = [r["tx_rate"] if r else None for r in (ab, ba)]
    worst = quality(min((s or 0.0) for s in sent))
    dash = "8 6" if worst == "none" else None
    shapes: list[Shape] = [Line(a[0], a[1], b[0], b[1], COLOURS[worst], 5, dash)]
    for (src, dst), rate, entry in (((a, b), sent[0], ab), ((b, a), sent[1], ba)):
        if rate is None:
            continue
        x, y = _along(src, dst, 0.22)
        mark = " ▼" if entry and entry.get("degraded") else ""
        text = f"{round(rate)}{mark}"
        width = 12 + 9 * len(text)
        colour = COLOURS[quality(rate)]
        shapes.append(Rect(round(x - width / 2, 1), round(y - 11, 1), width, 22, 6, "#ffffff", colour, 2))
        shapes.append(Text(x, round(y + 5, 1), text, 15, colour, anchor="middle"))
    return shapes


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


def _node(device: dict[str, Any], at: tuple[float, float]) -> Adapter:
    x, y = at
    router = bool(device["attached_to_router"])
    detail = device.get("product") or device["mac"]
    if router:
        detail = f"⌂ router · {detail}"
    elif not device["manageable"]:
        detail = f"{detail} (no API)"
    box = Rect(
        round(x - _NODE_W / 2, 1),
        round(y - _NODE_H / 2, 1),
        _NODE_W,
        _NODE_H,
        10,
        "#e3f2fd" if router else "#f5f5f5",
        "#1565c0" if router else "#616161",
        3 if router else 2,
        None if device["manageable"] else "6 4",
    )
    name = Text(x, round(y - 4, 1), _short(str(device["name"]), _MAX_LABEL), 16, "#212121", True, "middle")
    line = Text(x, round(y + 16, 1), _short(str(detail), _MAX_DETAIL), 13, "#424242", anchor="middle")
    if not (warning := _health_warning(device)):
        return Adapter(str(device["mac"]), router, (box, name, line))
    note = Text(x, round(y + _NODE_H / 2 + 15, 1), warning, 13, COLOURS["poor"], anchor="middle")
    return Adapter(str(device["mac"]), router, (box, name, line, note))


def _health_warning(device: dict[str, Any]) -> str:
    """What the adapter's PLC chip reports that means a poor connection: relayed to the domain master
    (more than one hop), media access plans lost."""
    hops, lost = device.get("hops"), device.get("lost_maps")
    parts = []
    if isinstance(hops, int) and hops > 1:
        parts.append(f"{hops} hops")
    if isinstance(lost, int) and lost > 0:
        parts.append(f"{lost} lost MAPs")
    return " · ".join(parts)


def _legend() -> list[Shape]:
    y = HEIGHT - 14
    shapes: list[Shape] = [Text(16, y, "Mbit/s, sent by the nearer adapter", 14, "#424242")]
    x = 268
    for label, key in ((f"≥ {GOOD_RATE:.0f}", "good"), (f"≥ {FAIR_RATE:.0f}", "fair"), ("less", "poor")):
        shapes.append(Rect(x, y - 11, 18, 12, 2, COLOURS[key]))
        shapes.append(Text(x + 23, y, label, 14, "#424242"))
        x += 82
    shapes.append(Text(x, y, "▼ degraded", 14, "#424242"))
    return shapes


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- SVG ------------------------------------------------------------------------------------------
def svg(shapes: list[Shape]) -> str:
    """The picture as SVG text."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif">'
    ]
    for shape in shapes:
        if isinstance(shape, Adapter):
            router = " data-router=" + quoteattr("true") if shape.router else ""
            parts.append(f'<g class="adapter" data-mac={quoteattr(shape.mac)}{router}>')
            parts += [_svg(s) for s in shape.shapes]
            parts.append("</g>")
        else:
            parts.append(_svg(shape))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _svg(shape: Rect | Line | Text) -> str:
    if isinstance(shape, Rect):
        where = "" if shape.x == 0 and shape.y == 0 else f'x="{shape.x}" y="{shape.y}" '
        stroke = f' stroke="{shape.stroke}" stroke-width="{shape.stroke_width}"' if shape.stroke else ""
        dash = f' stroke-dasharray="{shape.dash}"' if shape.dash else ""
        return (
            f'<rect {where}width="{shape.width}" height="{shape.height}" rx="{shape.radius}" '
            f'fill="{shape.fill}"{stroke}{dash}/>'
        )
    if isinstance(shape, Line):
        dash = f' stroke-dasharray="{shape.dash}"' if shape.dash else ""
        return (
            f'<line x1="{shape.x1}" y1="{shape.y1}" x2="{shape.x2}" y2="{shape.y2}" stroke="{shape.colour}" '
            f'stroke-width="{shape.width}"{dash}/>'
        )
    bold = ' font-weight="bold"' if shape.bold else ""
    anchor = ' text-anchor="middle"' if shape.anchor == "middle" else ""
    return (
        f'<text x="{shape.x}" y="{shape.y}" font-size="{shape.size}"{bold}{anchor} fill="{shape.colour}">'
        f"{escape(shape.text)}</text>"
    )


# --- PNG ------------------------------------------------------------------------------------------
# Glyphs the font Pillow carries (Aileron) lacks: written out, or drawn (the degraded mark).
_PNG_TEXT = str.maketrans({"≥": ">=", "⌂": ""})


def png(shapes: list[Shape]) -> bytes:
    """The picture as PNG (Pillow with its built-in font: no font files on the system needed)."""
    from PIL import Image, ImageDraw  # noqa: PLC0415 - only the PNG twin needs Pillow

    image = Image.new("RGB", (WIDTH, HEIGHT), "#ffffff")
    pen = ImageDraw.Draw(image)
    for shape in shapes:
        for part in shape.shapes if isinstance(shape, Adapter) else (shape,):
            _paint(pen, part)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=6)
    return out.getvalue()


def _paint(pen: Any, shape: Rect | Line | Text) -> None:
    if isinstance(shape, Rect):
        box = (shape.x, shape.y, shape.x + shape.width, shape.y + shape.height)
        width = round(shape.stroke_width) if shape.stroke else 0
        pen.rounded_rectangle(box, shape.radius, fill=shape.fill, outline=shape.stroke, width=width)
    elif isinstance(shape, Line):
        if shape.dash:
            _dashed(pen, shape)
        else:
            pen.line((shape.x1, shape.y1, shape.x2, shape.y2), fill=shape.colour, width=round(shape.width))
    else:
        text = shape.text.translate(_PNG_TEXT).strip()
        marked = text.endswith("▼")
        text = text.removesuffix("▼").rstrip() if marked else text.removeprefix("▼").lstrip()
        marked = marked or shape.text.startswith("▼")
        font = _font(shape.size)
        width = pen.textlength(text, font=font) + (shape.size if marked else 0)
        x = shape.x - width / 2 if shape.anchor == "middle" else shape.x
        if marked and shape.text.startswith("▼"):  # the legend: the mark first
            _triangle(pen, x, shape.y, shape.size, shape.colour)
            x += shape.size
        stroke = 1 if shape.bold else 0  # the built-in font has no bold face: a stroke thickens it
        pen.text(
            (x, shape.y),
            text,
            fill=shape.colour,
            font=font,
            anchor="ls",
            stroke_width=stroke,
            stroke_fill=shape.colour,
        )
        if marked and not shape.text.startswith("▼"):
            _triangle(pen, x + width - shape.size * 0.8, shape.y, shape.size, shape.colour)


def _triangle(pen: Any, x: float, baseline: float, size: int, colour: str) -> None:
    """▼, drawn: the degraded mark."""
    top = baseline - size * 0.7
    pen.polygon([(x, top), (x + size * 0.6, top), (x + size * 0.3, baseline)], fill=colour)


def _dashed(pen: Any, line: Line) -> None:
    on, off = (float(n) for n in (line.dash or "1 0").split())
    length = math.hypot(line.x2 - line.x1, line.y2 - line.y1) or 1.0
    ux, uy = (line.x2 - line.x1) / length, (line.y2 - line.y1) / length
    at = 0.0
    while at < length:
        end = min(at + on, length)
        pen.line(
            (line.x1 + ux * at, line.y1 + uy * at, line.x1 + ux * end, line.y1 + uy * end),
            fill=line.colour,
            width=round(line.width),
        )
        at = end + off


@functools.lru_cache(maxsize=8)  # a handful of sizes; loading decodes the font each time (~1 ms)
def _font(size: int) -> Any:
    from PIL import ImageFont  # noqa: PLC0415

    return ImageFont.load_default(size=size)
