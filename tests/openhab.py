"""openHAB's MQTT Home Assistant binding, as rules: what it builds from our discovery configs and which
values its parsers accept. Written from the binding's source (openhab-addons,
`bundles/org.openhab.binding.mqtt.homeassistant/.../internal/component/*.java`, 4.3.x and 5.x), so that
the bridge can be checked against openHAB without running it:

- `ComponentFactory` builds these components; any other (notably `image`, in every version) is
  dropped with a WARN at each Thing start.
- `Camera` reads `topic` into an `ImageValue`: the raw bytes, their type sniffed (PNG yes, SVG no).
- `Event` needs `state_topic` and `event_types`; it renders `{{ value_json.event_type }}` from each
  message and fires only a type listed in `event_types` (others vanish silently).
- `Update` parses the state (after `value_template`) with Gson into `{installed_version,
  latest_version, …}` strings; unknown keys are ignored.
- `OnOffValue`: `OnOffType.valueOf(rendered)` throws for anything but the payloads' ON/OFF;
  `NumberValue`: `new BigDecimal(rendered)` throws for `None` (a WARN each, the old value stays).
- `AbstractComponent` adds every component's availability topics to its Thing's one tracker, and the
  last component's `availability_mode` wins: the components of one device must agree.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The components ComponentFactory builds (5.x; 4.3 lacks some we do not use). No `image`.
COMPONENTS = frozenset(
    {
        "alarm_control_panel",
        "binary_sensor",
        "button",
        "camera",
        "climate",
        "cover",
        "device_automation",
        "device_tracker",
        "event",
        "fan",
        "humidifier",
        "light",
        "lock",
        "number",
        "scene",
        "select",
        "sensor",
        "switch",
        "tag",
        "text",
        "update",
        "vacuum",
        "valve",
        "water_heater",
    }
)
# What each component cannot be built without.
REQUIRED = {
    "binary_sensor": ("state_topic",),
    "button": ("command_topic",),
    "camera": ("topic",),
    "device_tracker": ("state_topic",),
    "event": ("state_topic", "event_types"),
    "number": ("command_topic",),
    "sensor": ("state_topic",),
    "switch": ("command_topic",),
    "update": ("state_topic",),
}
PNG = b"\x89PNG\r\n\x1a\n"
_JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined)

# (topic, config topic) → what the component of that config receives on the topic, oldest first: the
# payload held when the config arrived (retained), then every one after.
Payloads = Callable[[str, str], list[bytes]]


def render(template: str, payload: bytes) -> str:
    """A value template rendered as both openHAB (Jinjava / HA's own engine in 5.x) and HA do."""
    try:
        value_json: Any = json.loads(payload)
    except ValueError:
        value_json = None
    return str(_JINJA.from_string(template).render(value_json=value_json, value=payload.decode()))


def thing_of(config: dict[str, Any]) -> str:
    """The openHAB Thing a component lands in: its device."""
    return str(config.get("device", {}).get("identifiers", ["?"])[0])


def problems(configs: dict[str, dict[str, Any]], payloads: Payloads) -> list[str]:
    """Everything openHAB would reject or drop among these configs (topic → config) and the payloads
    published on their topics."""
    found: list[str] = []
    modes: dict[str, set[str]] = {}
    for topic, config in configs.items():
        component = topic.split("/")[-4]
        modes.setdefault(thing_of(config), set()).add(str(config.get("availability_mode", "latest")))
        if component not in COMPONENTS:
            if component == "image" and not _has_camera_twin(config, configs, payloads):
                found.append(f"{topic}: openHAB has no image component, and no camera twin shows it")
            elif component != "image":
                found.append(f"{topic}: openHAB has no {component} component")
            continue
        found += [f"{topic}: no {field}" for field in REQUIRED.get(component, ()) if not config.get(field)]
        found += _values(topic, component, config, functools.partial(_received, payloads, topic))
    found += [f"{thing}: availability modes {sorted(m)} disagree" for thing, m in modes.items() if len(m) > 1]
    return found


def _received(payloads: Payloads, config_topic: str, topic: str) -> list[bytes]:
    return payloads(topic, config_topic)


def _has_camera_twin(image: dict[str, Any], configs: dict[str, dict[str, Any]], payloads: Payloads) -> bool:
    """A camera on the same device whose topic holds a PNG of the same picture."""
    for topic, config in configs.items():
        if topic.split("/")[-4] == "camera" and thing_of(config) == thing_of(image):
            shown = payloads(config["topic"], topic)
            same = config["topic"] in (image["image_topic"], image["image_topic"] + "/png")
            if same and shown and shown[-1].startswith(PNG):
                return True
    return False


def _values(
    topic: str, component: str, config: dict[str, Any], payloads: Callable[[str], list[bytes]]
) -> list[str]:
    found: list[str] = []
    if component == "camera":
        shown = payloads(config["topic"])
        if shown and not shown[-1].startswith(PNG):
            found.append(f"{topic}: the camera's image is not PNG: {shown[-1][:20]!r}")
    elif component == "event":
        types = config["event_types"]
        for payload in payloads(config["state_topic"]):
            kind = render("{{ value_json.event_type }}", payload)
            if kind not in types:
                found.append(f"{topic}: event {kind!r} is not among {types}: openHAB drops it")
    elif component == "update":
        for payload in payloads(config["state_topic"]):
            rendered = render(config.get("value_template", "{{ value }}"), payload)
            try:
                state = json.loads(rendered)
            except ValueError:
                continue  # a plain installed version: fine too
            versions = [state.get(k) for k in ("installed_version", "latest_version")]
            if not isinstance(state, dict) or not all(isinstance(v, str) and v for v in versions):
                found.append(f"{topic}: Gson gets no versions from {rendered!r}")
    elif component in ("binary_sensor", "switch", "number", "sensor") and "value_template" in config:
        found += _parsed(topic, component, config, payloads)
    return found


def _parsed(
    topic: str, component: str, config: dict[str, Any], payloads: Callable[[str], list[bytes]]
) -> list[str]:
    """Rendered values its parsers accept (a link's rate may stay unknown: it expires anyway)."""
    if "expire_after" in config:
        return []
    found: list[str] = []
    for payload in payloads(config["state_topic"]):
        rendered = render(config["value_template"], payload)
        if component in ("binary_sensor", "switch"):
            if rendered not in (config.get("payload_on", "ON"), config.get("payload_off", "OFF")):
                found.append(f"{topic}: OnOffType.valueOf({rendered!r}) throws")
        elif component == "number" or "unit_of_measurement" in config:
            try:
                Decimal(rendered)
            except InvalidOperation:
                found.append(f"{topic}: new BigDecimal({rendered!r}) throws")
        elif rendered == "None":
            found.append(f"{topic}: shows the word None")
    return found
