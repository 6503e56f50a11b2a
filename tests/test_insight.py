"""Pictures and insight against the emulated home, over MQTT: the network map, link degradation alerts
(driven in the emulator, remembered across a restart), the guest WiFi QR code (and its absence)."""

from __future__ import annotations

import asyncio
import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from devolo_mqtt.app import Bridge
from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.server import Emulator
from tests.conftest import StartBridge, StartEmulator, bridge_settings, start_home
from tests.helpers import Broker, Probe, publish, retained, running, until

SVG = "{http://www.w3.org/2000/svg}"
ROUTER, WIFI_NEXT = "1000000000000001", "1000000000000002"
ROUTER_MAC, WIFI_NEXT_MAC = "00:00:5e:00:53:01", "00:00:5e:00:53:02"
HOME = [{"serial": ROUTER, "network": "Home Net"}]


async def test_insight_map_names_every_adapter_with_an_image_entity(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    broker: Broker,
    probe: Probe,
    base_topic: str,
) -> None:
    """Each network's retained map names every adapter of its matrix and marks the router adapter; the
    bridge device has an image entity for it (SVG) and a weakest-link sensor."""
    await start_home(
        demo_scenario, start_emulator, start_bridge, probe, base_topic, devices=HOME, polling={"network": 1}
    )
    # Every member connected (one drawn before an adapter connected shows it without API, dashed).
    matrix = await probe.wait_json(
        f"{base_topic}/network/home-net/rates",
        lambda m: len(m["devices"]) == 4 and sum(d["manageable"] for d in m["devices"]) == 3,
    )
    svg = (
        await probe.wait_for(
            f"{base_topic}/network/home-net/map", lambda m: m.payload.count(b'stroke-dasharray="6 4"') == 1
        )
    ).payload
    assert await retained(broker.port, f"{base_topic}/network/home-net/map") == svg
    root = ET.fromstring(svg)  # noqa: S314 - the bridge's own output
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    assert {d["name"] for d in matrix["devices"]} <= texts
    assert [g.get("data-mac") for g in root.iter(f"{SVG}g") if g.get("data-router")] == [ROUTER_MAC]
    ha = f"{base_topic}ha"
    image = await probe.wait_json(f"{ha}/image/devolo_bridge/plc_map_home_net/config", lambda c: True)
    assert image["image_topic"] == f"{base_topic}/network/home-net/map"
    assert image["content_type"] == "image/svg+xml"
    weakest = await probe.wait_json(f"{ha}/sensor/devolo_bridge/plc_weakest_home_net/config", lambda c: True)
    assert weakest["state_topic"] == f"{base_topic}/network/home-net/rates"
    lowest = min(r["tx_rate"] for r in matrix["rates"])
    assert matrix["weakest"]["rate"] == lowest and matrix["weakest"]["from_name"] in texts
    # The PNG twin (openHAB's Image channel, a camera in Home Assistant, disabled there by default).
    png_topic = f"{base_topic}/network/home-net/map/png"
    png = await probe.wait_for(png_topic, lambda m: m.payload[:4] == b"\x89PNG")
    picture = Image.open(io.BytesIO(png.payload)).convert("RGB")
    assert picture.size == (640, 480)
    colours = {colour for _, colour in picture.getcolors(maxcolors=1 << 16) or []}
    assert (0xE3, 0xF2, 0xFD) in colours  # the router adapter's box
    camera = await probe.wait_json(f"{ha}/camera/devolo_bridge/plc_map_camera_home_net/config", bool)
    assert camera["topic"] == png_topic
    assert camera["enabled_by_default"] is False


def _link_events(probe: Probe, base: str, kind: str, after: float = 0.0) -> list[dict[str, Any]]:
    """The `kind` events about the router adapter → Living room link."""
    events = [m.json() for m in probe.on(f"{base}/bridge/event") if m.at >= after]
    return [
        e["data"]
        for e in events
        if e["type"] == kind and (e["data"]["from"], e["data"]["to"]) == (ROUTER_MAC, WIFI_NEXT_MAC)
    ]


def _overviews(emulator: Emulator) -> int:
    return sum(d.requests.get("GetNetworkOverview", 0) for d in emulator.world.devices.values())


async def test_insight_link_degradation_once_recovery_once_median_kept_across_restart(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """A link driven to a fraction of its rate in the emulator: exactly one `plc_link_degraded`, then
    one `plc_link_recovered` when it is back; after a restart, a link that is low from the first
    overview on is reported too (its median was remembered — a fresh one would take the low rate as
    normal)."""
    emulator = await start_emulator(demo_scenario)
    settings = bridge_settings(
        broker, base_topic, devices=HOME, polling={"network": 0.5}, data_dir=str(tmp_path / "data")
    )
    async with running(Bridge(settings)):
        await probe.wait_json(f"{base_topic}/network/home-net/rates", lambda m: len(m["devices"]) == 4)
        start = _overviews(emulator)
        await until(lambda: _overviews(emulator) >= start + 4, within=20, what="four overviews (a median)")
        emulator.world.set_link_rate(ROUTER, WIFI_NEXT, 40.0)
        await probe.wait_for(f"{base_topic}/bridge/event", lambda m: b"plc_link_degraded" in m.payload)
        low = _overviews(emulator)
        await until(lambda: _overviews(emulator) >= low + 4, within=20, what="more low overviews")
        [degraded] = _link_events(probe, base_topic, "plc_link_degraded")
        assert degraded["rate"] == 40.0 and degraded["median"] > 100 and degraded["to_name"] == "Living room"
        newest = probe.last(f"{base_topic}/network/home-net/rates")
        assert newest is not None
        matrix = newest.json()
        assert any(
            r["degraded"] for r in matrix["rates"] if r["from"] == ROUTER_MAC and r["to"] == WIFI_NEXT_MAC
        )
        emulator.world.set_link_rate(ROUTER, WIFI_NEXT, None)
        await probe.wait_for(f"{base_topic}/bridge/event", lambda m: b"plc_link_recovered" in m.payload)
        back = _overviews(emulator)
        await until(lambda: _overviews(emulator) >= back + 3, within=20, what="more overviews")
        assert len(_link_events(probe, base_topic, "plc_link_recovered")) == 1
        assert len(_link_events(probe, base_topic, "plc_link_degraded")) == 1
    emulator.world.set_link_rate(ROUTER, WIFI_NEXT, 40.0)
    restarted = probe.messages[-1].at
    async with running(Bridge(settings)):
        await probe.wait_for(
            f"{base_topic}/bridge/event",
            lambda m: b"plc_link_degraded" in m.payload,
            after=restarted,
            within=20,
        )
        assert len(_link_events(probe, base_topic, "plc_link_degraded", after=restarted)) == 1


def _payloads_on(probe: Probe, suffix: str) -> list[bytes]:
    return [m.payload for m in probe.messages if m.topic.endswith(suffix) and m.payload]


async def test_insight_guest_qr_opt_in_decodes_to_the_devices_ssid_and_key(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    broker: Broker,
    probe: Probe,
    base_topic: str,
) -> None:
    """With `publish_credentials`, each access point's retained QR code reads as the emulator's guest
    SSID and key, with an image entity; a device without WiFi has none."""
    emulator = await start_home(
        demo_scenario,
        start_emulator,
        start_bridge,
        probe,
        base_topic,
        guest_wifi={"publish_credentials": True},
    )
    message = await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/guest_wifi/qr", lambda m: bool(m.payload))
    assert await retained(broker.port, f"{base_topic}/{WIFI_NEXT}/guest_wifi/qr") == message.payload
    [code] = zxingcpp.read_barcodes(Image.open(io.BytesIO(message.payload)))
    spec = emulator.device(WIFI_NEXT).spec
    assert code.text == f"WIFI:T:WPA;S:{spec.guest_ssid};P:{spec.guest_key};;"
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "guest_ssid" in s)
    assert state["guest_ssid"] == spec.guest_ssid
    image = await probe.wait_json(
        f"{base_topic}ha/image/devolo_{WIFI_NEXT}/guest_wifi_qr/config", lambda c: True
    )
    assert image["image_topic"] == f"{base_topic}/{WIFI_NEXT}/guest_wifi/qr"
    assert image["content_type"] == "image/png"
    camera = await probe.wait_json(
        f"{base_topic}ha/camera/devolo_{WIFI_NEXT}/guest_wifi_qr_camera/config", lambda c: True
    )
    assert camera["topic"] == image["image_topic"] and camera["enabled_by_default"] is False
    assert not _payloads_on(probe, f"/{ROUTER}/guest_wifi/qr")  # LAN only


async def test_insight_guest_key_never_published_by_default(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Without the opt-in: no QR code, no image entity, and the key in no payload at all — while the
    SSID (broadcast by the access point anyway) is a state key."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("guest_ssid"))
    key = emulator.device(WIFI_NEXT).spec.guest_key.encode()
    assert not _payloads_on(probe, "/guest_wifi/qr")
    assert not any("/image/" in m.topic and "guest" in m.topic and m.payload for m in probe.messages)
    assert all(key not in m.payload for m in probe.messages)


async def test_insight_plc_health_from_the_support_dump(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    broker: Broker,
    probe: Probe,
    base_topic: str,
) -> None:
    """The PLC chip's temperature, hops, wire length and lost MAPs reach the state (read once at the
    start, then rarely), a refresh reads them again, and a relayed adapter's hops and lost MAPs show in
    its network's matrix and on its map; the sensors exist, the less common ones disabled."""
    emulator = await start_home(
        demo_scenario, start_emulator, start_bridge, probe, base_topic, devices=HOME, polling={"network": 1}
    )
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "plc_hops" in s)
    assert (state["plc_temperature"], state["plc_hops"], state["plc_wire_length"]) == (41.5, 1, 14)
    router = await probe.wait_json(f"{base_topic}/{ROUTER}", lambda s: "plc_hops" in s)
    assert router["plc_hops"] == 0 and "plc_wire_length" not in router  # the master has no uplink
    await asyncio.sleep(2)  # state polls every second; the support dump every six hours
    dumps = emulator.device(WIFI_NEXT).requests.get("SupportInfoDump", 0)
    assert dumps == 1
    emulator.device(WIFI_NEXT).health.update(hops=3, lost_maps=7, temperature=55.25)
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/refresh", "")
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("plc_hops") == 3)
    assert state["plc_lost_maps"] == 7 and state["plc_temperature"] == 55.25
    matrix = await probe.wait_json(
        f"{base_topic}/network/home-net/rates",
        lambda m: any(d["mac"] == WIFI_NEXT_MAC and d["hops"] == 3 for d in m["devices"]),
    )
    assert next(d for d in matrix["devices"] if d["mac"] == ROUTER_MAC)["hops"] == 0
    drawn = await probe.wait_for(f"{base_topic}/network/home-net/map", lambda m: b"3 hops" in m.payload)
    assert "3 hops · 7 lost MAPs" in _texts_of(drawn.payload)
    ha = f"{base_topic}ha/sensor/devolo_{WIFI_NEXT}"
    hops = await probe.wait_json(f"{ha}/plc_hops/config", bool)
    assert "enabled_by_default" not in hops and hops["entity_category"] == "diagnostic"
    lost = await probe.wait_json(f"{ha}/plc_lost_maps/config", bool)
    assert lost["enabled_by_default"] is False and lost["state_class"] == "total_increasing"


def _texts_of(svg: bytes) -> set[str]:
    return {"".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")}  # noqa: S314
