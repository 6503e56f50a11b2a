"""Bridge behaviour over time: log-once transitions, Home Assistant restarts, stale configs, locate,
firmware updates, bridge requests."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import structlog
from structlog.testing import capture_logs

from devolo_mqtt.tools.emulator.builtin import DEMO_HOME
from devolo_mqtt.tools.emulator.scenario import Scenario, parse_scenario
from devolo_mqtt.tools.emulator.world import Fault
from tests.conftest import StartBridge, StartEmulator
from tests.fakes import ManualClock
from tests.helpers import Broker, Probe, address_block, publish, running

ROUTER, WIFI_NEXT, WIFI_6 = "1000000000000001", "1000000000000002", "1000000000000003"


async def test_lifecycle_unavailable_and_recovered_logged_once(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """A device that stays down for many polls is logged unavailable once, and recovered once."""
    emulator = await start_emulator(demo_scenario)
    with capture_logs() as logs:
        await start_bridge()
        await probe.wait_for(f"{base_topic}/{WIFI_6}/availability", lambda m: m.payload == b"online")
        emulator.set_fault(WIFI_6, Fault.UNREACHABLE)
        await probe.wait_for(
            f"{base_topic}/{WIFI_6}/availability", lambda m: m.payload == b"offline", within=6
        )
        await asyncio.sleep(4)  # several more polls fail
        emulator.set_fault(WIFI_6, Fault.NONE)
        await probe.wait_for(
            f"{base_topic}/{WIFI_6}/availability",
            lambda m: m.payload == b"online",
            after=asyncio.get_running_loop().time() - 1e9,
            within=15,
        )
        await asyncio.sleep(1)
    mine = [e for e in logs if e.get("device") == WIFI_6]
    assert [e["event"] for e in mine].count("device_unavailable") == 1
    assert [e["event"] for e in mine].count("device_recovered") == 1
    structlog.reset_defaults()


async def test_lifecycle_ha_status_online_republishes_states(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """`homeassistant/status` → online makes every state and availability go out again."""
    await start_emulator(demo_scenario)
    await start_bridge(polling={"state": 60, "wifi": 60})
    await probe.wait_json(f"{base_topic}/{ROUTER}", lambda s: "plc_devices" in s)
    await asyncio.sleep(0.5)
    asked = time.monotonic()
    await publish(broker, f"{base_topic}ha/status", "online")
    await probe.wait_for(f"{base_topic}/{ROUTER}", after=asked, within=10)  # after a random 0.5-3 s
    assert probe.on(f"{base_topic}/{WIFI_NEXT}/availability")[-1].payload == b"online"


async def test_lifecycle_stale_configs_of_earlier_runs_are_cleared(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """Configs an earlier run left for a device and an entity that no longer exist are emptied."""
    ha = f"{base_topic}ha"
    ours = json.dumps(
        {"name": "x", "device": {"identifiers": ["devolo_999"], "via_device": "devolo_mqtt_bridge"}}
    )
    foreign = json.dumps({"name": "y", "device": {"identifiers": ["zigbee_1"]}})
    await publish(broker, f"{ha}/sensor/devolo_999/uptime/config", ours, retain=True)
    await publish(broker, f"{ha}/switch/devolo_{WIFI_NEXT}/old_key/config", ours, retain=True)
    await publish(broker, f"{ha}/sensor/zigbee_1/battery/config", foreign, retain=True)
    await start_emulator(demo_scenario)
    bridge = await start_bridge()
    await probe.wait_for(f"{ha}/switch/devolo_{WIFI_NEXT}/old_key/config", lambda m: m.payload == b"")
    await probe.wait_for(f"{ha}/sensor/devolo_999/uptime/config", lambda m: m.payload == b"", within=8)
    await asyncio.sleep(0.5)
    assert all(m.payload for m in probe.on(f"{ha}/sensor/zigbee_1/battery/config"))  # not ours: untouched
    # The leftovers were found among the retained configs of the first connection; the bridge then
    # stopped listening to the prefix, so its own configs do not come back to it one by one.
    ours_now = {m.topic for m in probe.messages if m.topic.startswith(f"{ha}/") and m.payload}
    assert len(ours_now) > 50
    assert bridge.mqtt.counters.received < len(ours_now) / 2


async def test_lifecycle_locate_turns_off_after_two_minutes(
    demo_scenario: Scenario, start_emulator: StartEmulator, broker: Broker, probe: Probe, base_topic: str
) -> None:
    """Locate is ON after the command and OFF once its 120 s are over (time is faked via the clock)."""
    from devolo_mqtt.app import Bridge  # noqa: PLC0415
    from tests.conftest import bridge_settings  # noqa: PLC0415

    clock = ManualClock()
    await start_emulator(demo_scenario)
    async with running(Bridge(bridge_settings(broker, base_topic), clock=clock)):
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("locate") == "OFF")
        await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/locate", "ON")
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("locate") == "ON")
        await clock.advance(121)
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("locate") == "OFF", within=5)


async def test_lifecycle_firmware_update_available_installed_and_announced(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """An update appears (event), installs on command, and the new version arrives via mDNS."""
    emulator = await start_emulator(demo_scenario)
    emulator.advance(31)  # the demo's update is available after 30 s
    await start_bridge()
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("update_available") is True)
    assert state["next_firmware"] == "7.14.1" and state["firmware"] == "7.12.5"
    event = await probe.wait_json(f"{base_topic}/bridge/event", lambda e: e["type"] == "firmware_available")
    assert event["data"] == {"device": WIFI_NEXT, "version": "7.14.1"}
    await publish(broker, f"{base_topic}/{WIFI_NEXT}/set/install_update", "install")
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
    assert result["status"] == "ok"
    # From the install until the new version is seen, the state says so (the update entity shows it).
    await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("update_in_progress") is True)
    installing = await probe.wait_for(
        f"{base_topic}/{WIFI_NEXT}", lambda m: b'"update_in_progress":true' in m.payload
    )
    # The device reboots (offline) …
    await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"offline")
    emulator.advance(25)  # the reboot into the new firmware is over
    updated = await probe.wait_json(
        f"{base_topic}/{WIFI_NEXT}",
        lambda s: s.get("firmware") == "7.14.1" and s.get("update_available") is False,
        within=20,
    )
    assert updated["next_firmware"] == "" and updated["update_in_progress"] is False
    # … while its update entity stayed available all along, showing the install.
    update_availability = f"{base_topic}/{WIFI_NEXT}/update/availability"
    assert probe.last(update_availability) is not None
    assert [m.payload for m in probe.on(update_availability) if m.at >= installing.at] in ([], [b"online"])


async def test_lifecycle_bridge_requests(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """refresh, discovery/republish, discovery/purge and an unknown op each get a response."""
    emulator = await start_emulator(demo_scenario)
    await start_bridge(polling={"state": 60})
    await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "leds" in s)
    emulator.device(WIFI_NEXT).leds = False  # changed behind the bridge's back
    await publish(
        broker, f"{base_topic}/bridge/request/refresh", json.dumps({"device": WIFI_NEXT, "transaction": 1})
    )
    response = await probe.wait_json(f"{base_topic}/bridge/response/refresh", lambda r: True)
    assert response == {"status": "ok", "data": {"devices": [WIFI_NEXT]}, "transaction": 1}
    await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: s.get("leds") == "OFF", within=5)
    await publish(broker, f"{base_topic}/bridge/request/nonsense", "{}")
    bad = await probe.wait_json(f"{base_topic}/bridge/response/nonsense", lambda r: True)
    assert bad["status"] == "error" and "unknown request" in bad["error"]
    await probe.wait_for(f"{base_topic}ha/switch/devolo_{WIFI_NEXT}/leds/config", lambda m: bool(m.payload))
    await publish(broker, f"{base_topic}/bridge/request/discovery/purge", "")
    purged = await probe.wait_json(f"{base_topic}/bridge/response/discovery/purge", lambda r: True)
    assert purged["status"] == "ok" and purged["data"]["cleared"] > 20
    await probe.wait_for(f"{base_topic}ha/switch/devolo_{WIFI_NEXT}/leds/config", lambda m: m.payload == b"")


async def test_lifecycle_configured_addresses_without_discovery(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """With mDNS browsing off (VLANs), configured addresses are reached; ids and names from the config."""
    await start_emulator(demo_scenario)
    addresses = demo_scenario.addresses()
    await start_bridge(
        discovery={"enabled": False},
        devices=[
            {"ip": addresses[WIFI_NEXT], "id": "living", "name": "Living room AP"},
            {"ip": addresses[ROUTER]},
        ],
    )
    state = await probe.wait_json(f"{base_topic}/living", lambda s: "leds" in s)
    assert state["ip"] == addresses[WIFI_NEXT]
    await probe.wait_json(f"{base_topic}/{ROUTER}", lambda s: "leds" in s)  # no id: the serial
    devices = await probe.wait_json(
        # The two configured devices online (the adapters their overviews list are entries too).
        f"{base_topic}/bridge/devices",
        lambda d: len([x for x in d if x["online"] and x["serial"]]) == 2,
    )
    assert {d["id"]: d["name"] for d in devices if d["serial"]}["living"] == "Living room AP"
    await asyncio.sleep(1)
    assert probe.on(f"{base_topic}/{WIFI_6}") == []  # not configured, not browsed


async def test_lifecycle_standby_expected_logs_at_info(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """A device configured as `standby_expected` going away is logged at info, not as a warning."""
    emulator = await start_emulator(demo_scenario)
    with capture_logs() as logs:
        await start_bridge(devices=[{"serial": WIFI_6, "standby_expected": True}])
        await probe.wait_for(f"{base_topic}/{WIFI_6}/availability", lambda m: m.payload == b"online")
        emulator.set_fault(WIFI_6, Fault.UNREACHABLE)
        await probe.wait_for(
            f"{base_topic}/{WIFI_6}/availability", lambda m: m.payload == b"offline", within=6
        )
    (entry,) = [e for e in logs if e["event"] == "device_unavailable" and e.get("device") == WIFI_6]
    assert entry["log_level"] == "info" and entry["standby_expected"] is True
    structlog.reset_defaults()


def test_lifecycle_log_format_json_when_not_a_terminal() -> None:
    """Logs are JSON lines off a terminal (Docker), and a registered secret is redacted in them."""
    import io  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from devolo_mqtt import log  # noqa: PLC0415

    stream = io.StringIO()
    log.configure("INFO", "auto", stream=stream)
    log.REDACTOR.add("hunter2")
    structlog.get_logger("devolo_mqtt.test").info("device_connected", device="x", password="hunter2")
    logging.getLogger("devolo_plc_api.test").warning("library said %s", "hunter2")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "device_connected" and lines[0]["level"] == "info"
    assert lines[0]["timestamp"].endswith("Z")
    assert "hunter2" not in stream.getvalue()
    assert lines[1]["event"] == "library said **redacted**"
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


async def test_lifecycle_failed_slow_source_is_retried_at_the_state_cadence(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """A firmware check that failed at start is retried soon, not after its six-hour interval."""
    emulator = await start_emulator(demo_scenario, faults={WIFI_NEXT: Fault.HTTP_500})
    await start_bridge()  # polling.state is 1 s in tests; polling.firmware stays 6 h
    await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online")
    await asyncio.sleep(1.5)
    emulator.set_fault(WIFI_NEXT, Fault.NONE)
    state = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "update_available" in s, within=10)
    assert state["update_available"] is False  # the demo update appears only after 30 simulated seconds


async def test_lifecycle_restart_never_empties_a_config_it_publishes_again(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """Entities wait for their value before their config goes out — but an entity that already exists
    (a config of the last run on the broker) is never emptied meanwhile: Home Assistant would delete
    it, and the user's name, area and history settings with it."""
    from devolo_mqtt.app import Bridge  # noqa: PLC0415
    from tests.conftest import bridge_settings  # noqa: PLC0415

    ha = f"{base_topic}ha"
    await start_emulator(demo_scenario)
    settings = bridge_settings(broker, base_topic, data_dir=str(tmp_path / "data"))
    async with running(Bridge(settings)):
        await probe.wait_for(f"{ha}/sensor/devolo_{WIFI_NEXT}/wifi_clients/config", lambda m: bool(m.payload))
    restarted = time.monotonic()
    async with running(Bridge(settings)):
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}", lambda s: "wifi_clients" in s, after=restarted)
        await asyncio.sleep(1)
    emptied = [
        m.topic
        for m in probe.messages
        if m.at > restarted
        and m.topic.startswith(f"{ha}/")
        and f"/devolo_{WIFI_NEXT}/" in m.topic
        and not m.payload
    ]
    assert emptied == []


def _two_updates() -> Scenario:
    """The demo home with an update for the router adapter as well as for the Living room."""
    devices = [
        {**d, "update": {"version": "7.14.1", "available_after": 30, "install_seconds": 20}}
        if d["serial"] == ROUTER
        else d
        for d in DEMO_HOME["devices"]
    ]
    return parse_scenario(
        {**DEMO_HOME, "devices": devices, "address_base": address_block(), "dynamics": False}
    )


async def test_lifecycle_firmware_rollout_one_at_a_time_router_last(
    start_emulator: StartEmulator, start_bridge: StartBridge, probe: Probe, broker: Broker, base_topic: str
) -> None:
    """`bridge/request/firmware/update` installs every offered update one device at a time, the
    router-attached adapter last, each waited for until it is back with its new firmware, with events
    on the bridge and on each device's event topic; a second roll-out meanwhile is refused."""
    emulator = await start_emulator(_two_updates())
    emulator.advance(31)
    await start_bridge()
    for serial in (ROUTER, WIFI_NEXT):
        await probe.wait_json(f"{base_topic}/{serial}", lambda s: s.get("update_available") is True)
    await publish(broker, f"{base_topic}/bridge/request/firmware/update", json.dumps({"transaction": 7}))
    response = await probe.wait_json(f"{base_topic}/bridge/response/firmware/update", lambda r: True)
    assert response["status"] == "ok" and response["data"]["order"] == [WIFI_NEXT, ROUTER]
    await publish(broker, f"{base_topic}/bridge/request/firmware/update", "{}")
    again = await probe.wait_json(
        f"{base_topic}/bridge/response/firmware/update", lambda r: r["status"] == "error"
    )
    assert "already running" in again["error"]
    for serial in (WIFI_NEXT, ROUTER):
        await probe.wait_json(
            f"{base_topic}/{serial}/event", lambda e: e["event_type"] == "firmware_update_started"
        )
        assert emulator.device(serial).installing
        # One at a time: the router adapter has not been asked while the Living room installs.
        if serial == WIFI_NEXT:
            assert emulator.device(ROUTER).requests.get("UpdateFirmwareStart", 0) == 0
        emulator.advance(25)  # its reboot into the new firmware is over
        updated = await probe.wait_json(
            f"{base_topic}/{serial}/event", lambda e: e["event_type"] == "firmware_updated", within=20
        )
        assert (updated["from"], updated["to"]) == ("7.12.5", "7.14.1")
    finished = await probe.wait_json(
        f"{base_topic}/bridge/event", lambda e: e["type"] == "firmware_rollout_finished", within=20
    )
    assert finished["data"]["devices"] == [WIFI_NEXT, ROUTER]


async def test_lifecycle_firmware_rollout_stops_at_a_device_that_does_not_come_back(
    start_emulator: StartEmulator, start_bridge: StartBridge, probe: Probe, broker: Broker, base_topic: str
) -> None:
    """A device not back with a new firmware in time stops the roll-out: the router adapter after it
    is never asked to install, and the failure names both."""
    emulator = await start_emulator(_two_updates())
    emulator.advance(31)
    await start_bridge()
    for serial in (ROUTER, WIFI_NEXT):
        await probe.wait_json(f"{base_topic}/{serial}", lambda s: s.get("update_available") is True)
    await publish(broker, f"{base_topic}/bridge/request/firmware/update", json.dumps({"timeout": 3}))
    failed = await probe.wait_json(
        f"{base_topic}/bridge/event", lambda e: e["type"] == "firmware_rollout_failed", within=20
    )
    assert failed["data"]["device"] == WIFI_NEXT and failed["data"]["left"] == [ROUTER]
    assert "within 3 s" in failed["data"]["reason"]
    assert emulator.device(ROUTER).requests.get("UpdateFirmwareStart", 0) == 0
    device_event = await probe.wait_json(
        f"{base_topic}/{WIFI_NEXT}/event", lambda e: "rollout" in e["event_type"]
    )
    assert device_event["event_type"] == "firmware_rollout_failed"
