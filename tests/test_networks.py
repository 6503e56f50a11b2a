"""PLC networks: one overview per network per interval, rate matrices, adapters without an API."""

from __future__ import annotations

import asyncio
import time

from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.server import Emulator
from devolo_mqtt.tools.emulator.world import Fault
from tests.conftest import StartBridge, StartEmulator, start_home
from tests.helpers import Broker, Probe, publish, until

ROUTER, WIFI_NEXT, WIFI_6, GARAGE, DLAN_WIFI, SHED, REPEATER = (f"100000000000000{i}" for i in range(1, 8))
HOME = (ROUTER, WIFI_NEXT, WIFI_6)
GARAGE_MAC, SHED_MAC = "00005e005304", "00005e005306"
DEVICES = [
    {"serial": ROUTER, "network": "Home Net"},
    {"mac": "00:00:5E:00:53:04", "manageable": False, "name": "Garage adapter", "model": "dLAN 1200+"},
]


async def start(
    demo_scenario: Scenario, start_emulator: StartEmulator, start_bridge: StartBridge, probe: Probe, base: str
) -> Emulator:
    """Demo home + bridge with a named network and a configured adapter; waits for both matrices."""
    emulator = await start_home(
        demo_scenario, start_emulator, start_bridge, probe, base, devices=DEVICES, polling={"network": 1}
    )
    await probe.wait_json(f"{base}/network/home-net/rates", lambda m: len(m["devices"]) == 4)
    await probe.wait_json(f"{base}/network/plc-00005e005305/rates", lambda m: len(m["devices"]) == 2)
    return emulator


def overviews(emulator: Emulator, serials: tuple[str, ...]) -> int:
    """How many GetNetworkOverview requests these devices have answered."""
    return sum(emulator.device(s).requests.get("GetNetworkOverview", 0) for s in serials)


async def test_networks_matrix_per_network_with_names_and_all_pairs(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Both networks publish a retained matrix: configured, device-set and MAC names; every pair."""
    await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    home = await probe.wait_json(f"{base_topic}/network/home-net/rates", lambda m: True)
    assert home["network"] == "home-net" and home["measured_at"].endswith("Z")
    names = {d["mac"]: d["name"] for d in home["devices"]}
    assert names["00:00:5e:00:53:04"] == "Garage adapter"  # configured
    assert names["00:00:5e:00:53:02"] == "Living room"  # set in the device
    ids = {d["mac"]: d["id"] for d in home["devices"]}
    assert ids["00:00:5e:00:53:01"] == ROUTER and ids["00:00:5e:00:53:04"] == GARAGE_MAC
    router = next(d for d in home["devices"] if d["attached_to_router"])
    assert router["mac"] == "00:00:5e:00:53:01" and router["manageable"] is True
    assert len(home["rates"]) == 12
    assert all(r["tx_rate"] > 0 and r["rx_rate"] > 0 for r in home["rates"])
    garden = await probe.wait_json(f"{base_topic}/network/plc-00005e005305/rates", lambda m: True)
    assert {d["name"] for d in garden["devices"]} == {"Garden house", "Shed"}
    assert len(garden["rates"]) == 2


async def test_networks_link_sensors_enabled_toward_router_only(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Rate sensors per directed link; enabled by default only where the router adapter is involved."""
    await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    ha = f"{base_topic}ha/sensor/devolo_{WIFI_NEXT}"
    to_router = await probe.wait_json(f"{ha}/tx_rate_00005e005301/config", lambda c: True)
    assert to_router["device_class"] == "data_rate" and to_router["unit_of_measurement"] == "Mbit/s"
    assert to_router["state_class"] == "measurement"
    assert to_router["value_template"] == "{{ value_json.tx_rate_00005e005301 | default('None') }}"
    assert "enabled_by_default" not in to_router
    sideways = await probe.wait_json(f"{ha}/rx_rate_00005e005303/config", lambda c: True)
    assert sideways["enabled_by_default"] is False
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "tx_rate_00005e005301" in s)
    assert state["connected_to_router"] is False and state["plc_devices"] == 4
    router_state = await probe.wait_json(f"{base_topic}/{ROUTER}", lambda s: "connected_to_router" in s)
    assert router_state["connected_to_router"] is True


async def test_networks_adapter_unplugged_and_back(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """An adapter without API: online from the overview, its pairs vanish when unplugged, and return."""
    emulator = await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    garage = f"{base_topic}/{GARAGE_MAC}"
    await probe.wait_for(f"{garage}/availability", lambda m: m.payload == b"online")
    state = await probe.wait_json(garage, lambda s: s.get("tx_rate_00005e005301") is not None)
    assert state["connected_to_router"] is False
    assert (
        await probe.wait_json(
            f"{base_topic}ha/sensor/devolo_{GARAGE_MAC}/tx_rate_00005e005301/config", lambda c: True
        )
    )["device"]["name"] == "Garage adapter"
    emulator.unplug(GARAGE)
    await probe.wait_for(f"{garage}/availability", lambda m: m.payload == b"offline", within=5)
    matrix = await probe.wait_json(f"{base_topic}/network/home-net/rates", lambda m: len(m["devices"]) == 3)
    assert all("00:00:5e:00:53:04" not in (r["from"], r["to"]) for r in matrix["rates"])
    stale = await probe.wait_json(
        f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("tx_rate_00005e005304", 1) is None
    )
    assert stale["rx_rate_00005e005304"] is None  # no value, never the old number
    emulator.unplug(GARAGE, plugged=True)
    await probe.wait_for(f"{garage}/availability", lambda m: m.payload == b"online", within=5)
    await probe.wait_json(f"{base_topic}/network/home-net/rates", lambda m: len(m["devices"]) == 4)


async def test_networks_unconfigured_adapter_is_listed(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """An adapter nobody configured shows up in bridge/devices by MAC, with no Home Assistant device."""
    await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    devices = await probe.wait_json(
        f"{base_topic}/bridge/devices", lambda d: any(x["mac"] == SHED_MAC.upper() for x in d)
    )
    shed = next(x for x in devices if x["mac"] == SHED_MAC.upper())
    assert shed["manageable"] is False and shed["name"] == "Shed" and shed["id"] is None
    assert not any(f"/devolo_{SHED_MAC}/" in m.topic for m in probe.messages)


async def test_networks_one_overview_per_network_per_interval(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Exactly one GetNetworkOverview per network per interval, counted at the emulator."""
    emulator = await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    await asyncio.sleep(1.5)  # past the start-up's partial rounds
    before = overviews(emulator, HOME), overviews(emulator, (DLAN_WIFI,))
    began = time.monotonic()
    await until(lambda: overviews(emulator, HOME) - before[0] >= 4, within=15, what="four home rounds")
    elapsed = time.monotonic() - began
    home, garden = overviews(emulator, HOME) - before[0], overviews(emulator, (DLAN_WIFI,)) - before[1]
    # The 1 s interval: never more than one round per second (plus one at the window's edge), and
    # every round asks each network once.
    assert home <= elapsed + 1 and abs(home - garden) <= 1, (home, garden, elapsed)


async def test_networks_failed_member_is_replaced(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """When the member asked goes down, the next overview comes from another member."""
    emulator = await start(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    asked = max(HOME, key=lambda s: emulator.device(s).requests.get("GetNetworkOverview", 0))
    emulator.set_fault(asked, Fault.UNREACHABLE)
    others = tuple(s for s in HOME if s != asked)
    before = overviews(emulator, others)
    await probe.wait_for(f"{base_topic}/{asked}/availability", lambda m: m.payload == b"offline", within=6)
    await until(lambda: overviews(emulator, others) > before, within=6, what="another member asked")
    matrix = await probe.wait_json(f"{base_topic}/network/home-net/rates", lambda m: True)
    assert len(matrix["devices"]) == 4  # the dead member's management is down, its PLC chip is not


async def test_networks_rename_in_the_device_and_everything_follows(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    broker: Broker,
    probe: Probe,
    base_topic: str,
) -> None:
    """`<id>/set/name` stores the name in the device (read back from its overview), and its network's
    matrix, its Home Assistant device and its peers' link sensors follow at once (not at the next
    network round, 5 minutes away); a bad name is refused and nothing changes."""
    emulator = await start_home(demo_scenario, start_emulator, start_bridge, probe, base_topic)
    await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("name") == "Living room")
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/name", "   ")
    refused = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: r["key"] == "name")
    assert refused["status"] == "error" and "printable characters" in refused["error"]
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/name", "Lounge")
    result = await probe.wait_json(
        f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: r["key"] == "name" and r["status"] == "ok"
    )
    assert result["state"] == {"name": "Lounge"}
    assert emulator.device(WIFI_NEXT).name == "Lounge"
    ha = f"{base_topic}ha"
    matrix = next(m.topic for m in probe.messages if m.topic.endswith("/rates"))
    await probe.wait_json(matrix, lambda m: any(d["name"] == "Lounge" for d in m["devices"]), within=5)
    leds = await probe.wait_json(
        f"{ha}/switch/devolo_{WIFI_NEXT}/leds/config", lambda c: c["device"]["name"] == "Lounge", within=5
    )
    assert leds["device"]["identifiers"] == [f"devolo_{WIFI_NEXT}"]
    await until(
        lambda: any(
            m.topic.startswith(f"{ha}/sensor/devolo_{ROUTER}/tx_rate_") and b"to Lounge" in m.payload
            for m in probe.messages
        ),
        within=5,
        what="the router's link sensor named after Lounge",
    )
