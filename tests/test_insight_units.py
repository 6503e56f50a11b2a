"""Pictures and insight, piece by piece: the map's SVG, the link watch's medians and events, the guest
WiFi QR code and the Home Assistant entities for them."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from devolo_mqtt.core import capabilities
from devolo_mqtt.core.model import EventData, Overview, PlcDevice, PlcRate
from devolo_mqtt.mqtt.ha.configs import (
    HaContext,
    HaDevice,
    HaLink,
    bridge_configs,
    device_configs,
    tracker_config,
)
from devolo_mqtt.mqtt.topics import Topics
from devolo_mqtt.plc import plcmap
from devolo_mqtt.plc.linkwatch import DEGRADED_SHARE, LinkWatch
from devolo_mqtt.plc.monitor import NetworkIds, NetworkMonitor, NetworkOutput
from devolo_mqtt.wifi import guestqr

SVG = "{http://www.w3.org/2000/svg}"
A, B, C = "00005E005301", "00005E005302", "00005E005303"


def _matrix(rates: dict[tuple[str, str], float], names: dict[str, str]) -> dict[str, Any]:
    return {
        "network": "home-net",
        "devices": [
            {
                "mac": mac,
                "name": name,
                "manageable": mac != C,
                "attached_to_router": mac == B,
                "product": "Magic 2 LAN",
            }
            for mac, name in names.items()
        ],
        "rates": [{"from": s, "to": d, "tx_rate": r, "rx_rate": r} for (s, d), r in rates.items()],
    }


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_plcmap_names_every_adapter_marks_the_router_and_is_stable() -> None:
    """Valid SVG naming each adapter (with an XML-hostile name), the router adapter marked, identical
    when a rate moved within rounding, different when it moved visibly, same places for same members."""
    names = {A: "Office <&> 'x'", B: "Living room", C: "Garage"}
    rates = {(A, B): 512.3, (B, A): 498.0, (B, C): 80.0, (C, B): 95.5}
    svg = plcmap.render(_matrix(rates, names))
    texts = _texts(svg)
    assert {"Office <&> 'x'", "Living room", "Garage"} <= set(texts)
    root = ET.fromstring(svg)  # noqa: S314
    routers = [g.get("data-mac") for g in root.iter(f"{SVG}g") if g.get("data-router") == "true"]
    assert routers == [B]
    assert any("router" in t for t in texts) and any("no API" in t for t in texts)
    assert {"512", "498", "80", "96"} <= set(texts)  # each direction's rate, whole Mbit/s
    assert plcmap.render(_matrix({**rates, (A, B): 512.4}, names)) == svg
    assert plcmap.render(_matrix({**rates, (A, B): 430.0}, names)) != svg
    colours = {line.get("stroke") for line in root.iter(f"{SVG}line")}
    assert colours == {plcmap.COLOURS["good"], plcmap.COLOURS["poor"]}  # A-B good, B-C poor (80)
    # A name change moves nobody: positions depend on MACs and the router only.
    renamed = ET.fromstring(plcmap.render(_matrix(rates, {**names, A: "Study"})))  # noqa: S314
    boxes = [(r.get("x"), r.get("y")) for r in root.iter(f"{SVG}rect")]
    assert [(r.get("x"), r.get("y")) for r in renamed.iter(f"{SVG}rect")] == boxes


def test_linkwatch_degraded_once_recovered_once_and_remembered(tmp_path: Path) -> None:
    """Below 75 % of the median for two overviews: one degraded change; back: one recovered; a dip of
    one overview is nothing; the history survives a new LinkWatch on the same file."""
    path = tmp_path / "plc_links.json"
    watch = LinkWatch(path)
    for rate in (500.0, 510.0, 490.0, 505.0):
        assert watch.observe("net", [A, B], [(A, B, rate)]).links == []
    assert watch.median(A, B) == 502.5
    assert watch.observe("net", [A, B], [(A, B, 300.0)]).links == []  # one dip
    assert watch.observe("net", [A, B], [(A, B, 500.0)]).links == []
    restarted = LinkWatch(path)
    baseline = restarted.median(A, B)
    assert baseline == watch.median(A, B) == 500.0
    low = 500.0 * DEGRADED_SHARE - 10
    assert restarted.observe("net", [A, B], [(A, B, low)]).links == []
    [change] = restarted.observe("net", [A, B], [(A, B, low)]).links
    assert change.degraded and (change.src, change.dst, change.rate) == (A, B, low)
    assert restarted.degraded(A, B) and LinkWatch(path).degraded(A, B)
    assert restarted.observe("net", [A, B], [(A, B, low)]).links == []  # still degraded: said once
    assert restarted.median(A, B) == baseline  # the dips did not pull the baseline down
    [back] = restarted.observe("net", [A, B], [(A, B, 495.0)]).links
    assert not back.degraded and not restarted.degraded(A, B)


def test_linkwatch_members_joining_and_leaving(tmp_path: Path) -> None:
    """The first overview of a network is not news; later ones say who joined and who left, across
    restarts."""
    path = tmp_path / "plc_links.json"
    first = LinkWatch(path).observe("net", [A, B], [])
    assert (first.joined, first.left) == ([], [])
    later = LinkWatch(path).observe("net", [A, C], [])
    assert (later.joined, later.left) == ([C], [B])


def test_network_monitor_events_matrix_flags_and_weakest(tmp_path: Path) -> None:
    """Through the monitor: degraded/recovered and joined/left events with names, `degraded` per rate,
    the weakest link with its adapters' names, and a map per overview."""
    events: list[tuple[str, EventData]] = []
    published: list[dict[str, Any]] = []
    maps: list[str] = []
    monitor = NetworkMonitor(
        interval=60,
        ids=NetworkIds(tmp_path / "networks.json"),
        members=list,
        adapters={},
        names={A: "Office", B: "Living room", C: "Garage"}.get,
        configured_network=lambda mac: "Home",
        out=NetworkOutput(
            rates=lambda network, matrix: published.append(matrix),
            map=lambda network, shapes: maps.append(plcmap.svg(shapes)),
            event=lambda kind, data: events.append((kind, data)),
            wired=lambda device, macs: None,
            networks_changed=lambda: None,
            forget=lambda network: None,
        ),
        watch=LinkWatch(tmp_path / "plc_links.json"),
        measured=lambda macs: None,
        heartbeat=300,
        clock=lambda: 0.0,
    )

    def overview(ab: float, members: tuple[str, ...] = (A, B)) -> None:
        devices = tuple(PlcDevice(m, "", "Magic 2 LAN", "MT3001", m == A, False, "") for m in members)
        monitor.take(Overview(devices, (PlcRate(A, B, ab, ab), PlcRate(B, A, 400.0, 400.0))))

    for rate in (600.0, 610.0, 590.0, 200.0, 210.0, 205.0):
        overview(rate)
    assert [k for k, _ in events] == ["plc_link_degraded"]
    assert events[0][1] == {
        "network": "home",
        "from": "00:00:5e:00:53:01",
        "to": "00:00:5e:00:53:02",
        "from_name": "Office",
        "to_name": "Living room",
        "rate": 210.0,
        "median": 600.0,
    }
    flags = {(r["from"], r["to"]): r["degraded"] for r in published[-1]["rates"]}
    assert flags == {
        ("00:00:5e:00:53:01", "00:00:5e:00:53:02"): True,
        ("00:00:5e:00:53:02", "00:00:5e:00:53:01"): False,
    }
    assert published[-1]["weakest"]["rate"] == 205.0 and published[-1]["weakest"]["from_name"] == "Office"
    assert "▼" in "".join(_texts(maps[-1]))
    overview(600.0, (A, B, C))
    assert [k for k, _ in events[1:]] == ["plc_link_recovered", "plc_device_joined"]
    assert events[2][1] == {"network": "home", "mac": "00:00:5e:00:53:03", "name": "Garage"}
    overview(600.0)
    assert events[-1][0] == "plc_device_left"


def test_guestqr_decodes_to_the_standard_wifi_payload() -> None:
    """A phone reads `WIFI:T:WPA;S:…;P:…;;` from the PNG, special characters escaped."""
    image = Image.open(io.BytesIO(guestqr.png("Guest;Net", 'p:a"ss\\word')))
    [code] = zxingcpp.read_barcodes(image)
    assert code.text == 'WIFI:T:WPA;S:Guest\\;Net;P:p\\:a\\"ss\\\\word;;'


def test_ha_bridge_has_a_map_image_and_weakest_link_per_network() -> None:
    """Per network: an image entity on the map topic (SVG) and a weakest-link sensor reading the matrix."""
    ctx = HaContext(Topics("devolo"))
    configs = bridge_configs(ctx, {"home-net": "Network of Router"})
    image = configs["homeassistant/image/devolo_bridge/plc_map_home_net/config"]
    assert image["name"] == "Network of Router map"  # the name people read, not the id
    assert image["image_topic"] == "devolo/network/home-net/map"
    assert image["content_type"] == "image/svg+xml"
    sensor = configs["homeassistant/sensor/devolo_bridge/plc_weakest_home_net/config"]
    assert sensor["state_topic"] == sensor["json_attributes_topic"] == "devolo/network/home-net/rates"
    assert json.dumps(sensor).count("weakest") >= 3
    assert len(bridge_configs(ctx)) == 1  # no network yet: the connection entity only


def test_network_monitor_a_network_renamed_is_polled_once_and_its_old_topics_cleared(tmp_path: Path) -> None:
    """A network first measured under its derived id, then under its configured name (the device that
    carries the name connected later): one network remains, the old id's topics are cleared and the
    bridge's entities are rebuilt."""
    configured: dict[str, str] = {}
    forgotten: list[str] = []
    changed: list[int] = []
    monitor = NetworkMonitor(
        interval=60,
        ids=NetworkIds(tmp_path / "networks.json"),
        members=list,
        adapters={},
        names=lambda mac: None,
        configured_network=configured.get,
        out=NetworkOutput(
            rates=lambda network, matrix: None,
            map=lambda network, svg: None,
            event=lambda kind, data: None,
            wired=lambda device, macs: None,
            networks_changed=lambda: changed.append(len(monitor.networks)),
            forget=forgotten.append,
        ),
        watch=LinkWatch(tmp_path / "plc_links.json"),
        measured=lambda macs: None,
        heartbeat=300,
        clock=lambda: 0.0,
    )

    def overview(*members: str) -> None:
        devices = tuple(PlcDevice(m, "", "Magic 2 LAN", "MT3001", m == A, False, "") for m in members)
        monitor.take(Overview(devices, (PlcRate(members[0], members[1], 500.0, 500.0),)))

    overview(A, B)
    assert set(monitor.networks) == {"plc-00005e005301"}
    configured[A] = "Home"
    overview(A, B)
    assert set(monitor.networks) == {"home"} and forgotten == ["plc-00005e005301"]
    assert changed == [1, 1]  # Home Assistant's bridge entities rebuilt with one network each time


def test_ha_entity_ids_suggested_by_the_bridge_unless_home_assistant_chooses() -> None:
    """`entity_ids: bridge` suggests every entity id; `homeassistant` leaves ids (and object ids) to
    Home Assistant's own format, in every kind of config."""
    topics = Topics("devolo", "homeassistant", "homeassistant/status")
    for choice, expected in (("bridge", True), ("homeassistant", False)):
        ctx = HaContext(topics, entity_ids=choice)  # type: ignore[arg-type]
        device = HaDevice(
            id="1234",
            serial="1234",
            name="Office",
            model="devolo Magic 2 WiFi next",
            mt="8706",
            firmware="7.12",
            mac="00005E005301",
            ip="192.0.2.1",
            capabilities=capabilities.CAPABILITIES,
            links=(HaLink("00005E005302", "Kitchen", enabled=True),),
        )
        configs = [*bridge_configs(ctx, ["home-net"]).values(), *device_configs(ctx, device).values()]
        configs.append(tracker_config(ctx, "001122334455", "Phone", None)[1])
        assert len(configs) > 20
        assert all(("default_entity_id" in c) is expected and ("object_id" in c) is expected for c in configs)
