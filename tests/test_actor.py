"""The device actor driven without sockets or sleeps: a scripted client and a manual clock reach the
races that end-to-end tests only hit by luck (late mDNS services, commands while connecting or offline,
a hanging device, refresh bursts, probing cadence, locate expiry, the heartbeat, a stop mid-command)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devolo_mqtt.core import capabilities
from devolo_mqtt.core.commands import Command, Executor
from devolo_mqtt.core.store import StoredInts
from devolo_mqtt.devices.actor import SLOW_SOURCES_AFTER, DeviceActor
from devolo_mqtt.settings import DeviceConfig, Settings
from tests.fakes import REPEATER_MT, FakeClient, FakeDevice, ManualClock, Recorder, settle

INF = float("inf")


@dataclass
class Actor:
    runtime: DeviceActor
    device: FakeDevice
    clock: ManualClock
    out: Recorder
    clients: list[FakeClient]

    def command(self, **values: Any) -> None:
        self.runtime.submit(Command(dict(values), single_key=len(values) == 1))

    def answers(self) -> list[dict[str, Any]]:
        return [a[2] for a in self.out.answers]


@asynccontextmanager
async def actor(
    tmp_path: Path,
    device: FakeDevice | None = None,
    *,
    config: DeviceConfig | None = None,
    ip: str = "192.0.2.10",
    stagger: float = 0.0,
    **polling: float,
) -> AsyncIterator[Actor]:
    """One device actor running on a manual clock against a fake client."""
    clock = ManualClock()
    device = device or FakeDevice()
    out = Recorder(clock)
    clients: list[FakeClient] = []
    settings = Settings(polling={"request_timeout": 5, "connect_timeout": 10, **polling}, data_dir=tmp_path)

    def client(address: str, _password: str) -> FakeClient:
        clients.append(FakeClient(address, device, clock))
        return clients[-1]

    runtime = DeviceActor(
        config.topic_id if config and config.topic_id else device.serial,
        ip,
        config,
        settings=settings,
        client_factory=client,
        hooks=out,
        executor=Executor(answer=out.answer, shared_changed=lambda *_: None),
        clock=clock,
        guest_durations=StoredInts(tmp_path / "guest.json", 60),
        stagger=stagger,
    )
    task = asyncio.create_task(runtime.run())
    await settle()
    try:
        yield Actor(runtime, device, clock, out, clients)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Every wait was for something: an actor that finds itself due again at once is a busy loop.
    assert clock.spins < 20, f"the actor spun {clock.spins} times"


async def test_actor_device_api_late_adopted_only_with_its_serial(tmp_path: Path) -> None:
    """The PLC service answers first: nothing is published until the device API gives a real serial."""
    device = FakeDevice(api_at=1000.0 + 30, plc_at=0.0)
    async with actor(tmp_path, device) as a:
        await a.clock.advance(25)
        assert a.out.identified == [] and a.out.states == []
        assert a.runtime.connecting and a.runtime.identity_ is None
        await a.clock.advance(60)  # the back-off's next tries reach the device API
        assert [i.serial for i in a.out.identified] == [device.serial]
        assert a.out.states and a.out.states[0][1]["leds"] == "ON"
        assert not a.runtime.connecting and a.runtime.online is True


async def test_actor_plc_service_late_waits_for_it_within_the_connect_timeout(tmp_path: Path) -> None:
    """The PLC service answers 3 s after the device API: adopted once, with its PLC MAC."""
    device = FakeDevice(plc_at=1000.0 + 3)
    async with actor(tmp_path, device) as a:
        await a.clock.advance(2)
        assert a.out.identified == []
        await a.clock.advance(2)
        assert [i.mac for i in a.out.identified] == [device.mac]
        assert "locate" in a.runtime.current_state()


async def test_actor_plc_service_never_then_late_entities_follow_the_live_view(tmp_path: Path) -> None:
    """A PLC service silent past the connect timeout: adopted without it; when it answers later, the
    identity changes and its capabilities appear (the hook that re-publishes discovery is called)."""
    device = FakeDevice(plc_at=INF)
    async with actor(tmp_path, device) as a:
        await a.clock.advance(11)
        assert [i.mac for i in a.out.identified] == [None]
        assert "locate" not in a.runtime.current_state()
        device.plc_at = a.clock() + 1
        await a.clock.advance(16)  # the next look at the live view (IDENTITY_CHECK)
        assert [i.mac for i in a.out.changed] == [device.mac]
        assert "locate" in a.runtime.current_state()
        assert "locate" in a.out.states[-1][1]


async def test_actor_repeater_without_plc_is_adopted_at_once(tmp_path: Path) -> None:
    """A repeater has no PLC service: nothing to wait for."""
    async with actor(tmp_path, FakeDevice(mt=REPEATER_MT, plc_at=INF)) as a:
        assert len(a.out.identified) == 1 and a.out.identified[0].mac is None


async def test_actor_features_change_live_state_keys_follow(tmp_path: Path) -> None:
    """A firmware that drops WiFi (new Features in mDNS): the guest keys leave the state."""
    device = FakeDevice()
    async with actor(tmp_path, device) as a:
        await a.clock.advance(1)
        assert "guest_wifi" in a.out.states[-1][1]
        device.features = frozenset({"led", "restart", "update"})
        await a.clock.advance(16)
        assert a.out.changed and "guest_wifi" not in a.out.states[-1][1]


async def test_actor_command_while_connecting_waits_then_runs(tmp_path: Path) -> None:
    """A command that arrives before the device answered is executed once it has."""
    device = FakeDevice(api_at=1000.0 + 2, plc_at=1000.0 + 2)
    async with actor(tmp_path, device) as a:
        a.command(leds="OFF")
        await a.clock.advance(1)
        assert a.out.answers == []
        await a.clock.advance(10)  # the connect back-off (5 s) brings the device
        assert [x["status"] for x in a.answers()] == ["ok"]
        assert a.answers()[0]["state"] == {"leds": "OFF"} and device.leds is False


async def test_actor_guest_duration_before_the_first_read_is_kept_for_its_mesh(tmp_path: Path) -> None:
    """A guest duration sent while the device connects runs before its first poll: the guest WiFi is
    read first, so the value is kept for the device's mesh (its guest SSID) and reads back as sent."""
    device = FakeDevice(api_at=1000.0 + 2, plc_at=1000.0 + 2)
    async with actor(tmp_path, device) as a:
        a.command(guest_duration=90)
        await a.clock.advance(11)
        [answer] = a.answers()
        assert answer["status"] == "ok" and answer["state"] == {"guest_duration": 90}, answer
        assert a.runtime.mesh == "guest" and a.runtime.guest_duration == 90


async def test_actor_command_while_connecting_answered_at_its_deadline(tmp_path: Path) -> None:
    """A device that never answers: the waiting command is answered after connect + request timeout."""
    async with actor(tmp_path, FakeDevice(reachable=False)) as a:
        start = a.clock()
        a.command(leds="OFF")
        await a.clock.advance(60)
        [(at, _, payload)] = a.out.answers
        assert payload["status"] == "error" and payload["error"] == "device not connected yet"
        assert at - start == pytest.approx(15)  # connect_timeout 10 + request_timeout 5


async def test_actor_command_to_offline_device_answered_at_once(tmp_path: Path) -> None:
    """Known offline: answered immediately, and nothing is sent to the device."""
    device = FakeDevice()
    async with actor(tmp_path, device, state=15) as a:
        device.reachable = False
        await a.clock.advance(16)  # the next poll finds it gone
        assert a.runtime.online is False
        calls = len(device.calls)
        a.command(leds="OFF")
        assert [x["error"] for x in a.answers()] == ["device offline"]
        await settle()
        assert len(device.calls) == calls


async def test_actor_unexpected_error_answers_and_keeps_the_device_online(tmp_path: Path) -> None:
    """A bug in a write costs one error answer, never the device (not 'left mDNS', not offline)."""
    device = FakeDevice(broken={"set_leds"})
    async with actor(tmp_path, device) as a:
        a.command(leds="OFF")
        await settle()
        [answer] = a.answers()
        assert answer["status"] == "error" and answer["error"].startswith("internal error")
        assert a.runtime.online is True
        device.broken.clear()
        a.command(leds="OFF")
        await settle()
        assert a.answers()[-1]["status"] == "ok" and device.leds is False


async def test_actor_hanging_device_answered_within_the_request_timeout(tmp_path: Path) -> None:
    """A device that hangs mid-command: answered when the command's own budget runs out (real time,
    a 0.2 s budget), then it is offline and the next command is answered at once."""
    device = FakeDevice()
    async with actor(tmp_path, device, request_timeout=0.2) as a:
        device.hanging = True
        a.command(leds="OFF")
        for _ in range(100):
            if a.out.answers:
                break
            await asyncio.sleep(0.01)
        [answer] = a.answers()
        assert answer["status"] == "error" and answer["error"] == "device unavailable"
        assert a.runtime.online is False
        a.command(leds="ON")
        assert a.answers()[-1]["error"] == "device offline"


async def test_actor_offline_probes_once_per_backoff_step(tmp_path: Path) -> None:
    """Offline, the device is asked once per back-off step (5, 10, then the state interval), not once
    per source and interval; back, every source is read at once."""
    device = FakeDevice()
    async with actor(tmp_path, device, state=15, wifi=15) as a:
        device.reachable = False
        device.attempts.clear()
        await a.clock.advance(80)
        assert a.runtime.online is False
        # The read that found it gone, then one probe per step: 5, 10, then 15 s (the state interval).
        gaps = [round(b - t) for t, b in itertools.pairwise(device.attempts)]
        assert gaps[:5] == [5, 10, 15, 15, 15]
        device.reachable = True
        device.calls.clear()
        await a.clock.advance(15)
        assert a.runtime.online is True
        assert {"leds", "guest", "stations"} <= set(device.calls)


async def test_actor_slower_sources_wait_for_the_stagger_at_the_first_connection_only(
    tmp_path: Path,
) -> None:
    """A fleet's start: the state first, the slower sources (uptime, firmware check, WiFi clients,
    neighbours) after SLOW_SOURCES_AFTER plus the registry's stagger; after a reconnect without it."""
    slow = {"uptime", "firmware", "stations", "neighbors"}
    device = FakeDevice()
    async with actor(tmp_path, device, stagger=6.0, state=60, wifi=600, offline_retry_max=5) as a:
        await a.clock.advance(SLOW_SOURCES_AFTER + 5)
        assert {"leds", "guest"} <= set(device.calls) and not slow & set(device.calls)
        await a.clock.advance(2)
        assert slow <= set(device.calls)
        device.reachable = False
        await a.clock.advance(60)  # the next state read finds it gone
        assert a.runtime.online is False
        device.reachable = True
        device.calls.clear()
        await a.clock.advance(5)  # the next probe: back
        assert a.runtime.online is True
        await a.clock.advance(SLOW_SOURCES_AFTER + 0.5)
        assert slow <= set(device.calls)


async def test_actor_refresh_requests_coalesce(tmp_path: Path) -> None:
    """Ten refresh requests before the actor runs again are one read of each source."""
    device = FakeDevice()
    async with actor(tmp_path, device) as a:
        await a.clock.advance(1)
        device.calls.clear()
        for _ in range(10):
            a.runtime.request_refresh((capabilities.LEDS,))
        await settle()
        assert device.calls == ["leds"]


async def test_actor_locate_turns_off_after_two_minutes(tmp_path: Path) -> None:
    """Locate is emulated: ON when started, OFF 120 s later without any poll in between."""
    async with actor(tmp_path, FakeDevice(), state=3600, wifi=3600) as a:
        a.command(locate="ON")
        await settle()
        assert a.out.states[-1][1]["locate"] == "ON"
        await a.clock.advance(119)
        assert a.out.states[-1][1]["locate"] == "ON"
        await a.clock.advance(2)
        assert a.out.states[-1][1]["locate"] == "OFF"


@pytest.mark.parametrize(
    ("network", "heartbeat", "state"), [(10, 300, 60), (300, 300, 15), (60, 30, 3600), (5, 1000, 600)]
)
async def test_actor_link_sensors_never_expire_between_heartbeats(
    tmp_path: Path, network: float, heartbeat: float, state: float
) -> None:
    """Whatever the intervals, an unchanged device's state comes again before `expire_after` runs out."""
    async with actor(tmp_path, FakeDevice(), network=network, heartbeat=heartbeat, state=state) as a:
        expire_after = a.runtime._settings.polling.link_expire_after
        for _ in range(40):
            await a.clock.advance(heartbeat / 4)
        times = [t for t, _ in a.out.states]
        gaps = [b - t for t, b in itertools.pairwise(times)]
        assert len(times) >= 8
        assert max(gaps) < expire_after


async def test_actor_stop_answers_every_command_in_hand_once(tmp_path: Path) -> None:
    """At a stop, the running and the waiting commands are answered `bridge stopping`, once each."""
    device = FakeDevice()
    async with actor(tmp_path, device) as a:
        device.hanging = True
        for value in ("OFF", "ON", "OFF"):
            a.command(leds=value)
        await settle()
        a.runtime.abandon()
        a.runtime.abandon()
        assert [x["error"] for x in a.answers()] == ["bridge stopping"] * 3
        # A command the MQTT client had received but not handed over yet comes after the stop began
        # (the session hands over what it holds before it leaves): answered at once, never held.
        a.command(leds="ON")
        assert [x["error"] for x in a.answers()] == ["bridge stopping"] * 4


async def test_actor_cancelled_mid_command_answers_it_and_the_waiting_ones(tmp_path: Path) -> None:
    """The bridge stops (the actor's task is cancelled) while a command runs and two wait: three
    answers, `bridge stopping` each — the running one is not forgotten on the way out."""
    device = FakeDevice()
    async with actor(tmp_path, device) as a:
        device.hanging = True
        for value in ("OFF", "ON", "OFF"):
            a.command(leds=value)
        await settle()
        assert a.runtime.commands_in_hand == 3
    assert [x["error"] for x in a.answers()] == ["bridge stopping"] * 3


async def test_actor_firmware_reboot_refreshes_the_update_check(tmp_path: Path) -> None:
    """An install: the new version seen in mDNS makes the update check run again, and the update keys
    stay in the state meanwhile."""
    device = FakeDevice(update="7.14.0")
    async with actor(tmp_path, device) as a:
        await a.clock.advance(1)
        assert a.out.states[-1][1]["update_available"] is True
        device.calls.clear()
        device.firmware, device.update = "7.14.0", ""
        await a.clock.advance(16)
        assert "firmware" in device.calls
        last = a.out.states[-1][1]
        assert last["firmware"] == "7.14.0" and last["update_available"] is False
        assert [e for e in a.out.events if e[0] == "firmware_available"] == [
            ("firmware_available", {"device": device.serial, "version": "7.14.0"})
        ]


async def test_actor_configured_by_serial_connects_where_mdns_finds_it(tmp_path: Path) -> None:
    """Configured by serial only: connecting (no address) until a move tells where; commands wait."""
    device = FakeDevice()
    config = DeviceConfig(serial=device.serial)
    async with actor(tmp_path, device, config=config, ip="") as a:
        a.command(leds="OFF")
        await a.clock.advance(3)
        assert a.out.identified == [] and a.out.answers == []
        a.runtime.move("192.0.2.20")
        await settle()
        assert a.runtime.ip == "192.0.2.20" and a.clients[-1].ip == "192.0.2.20"
        assert [x["status"] for x in a.answers()] == ["ok"]


async def test_actor_per_device_polling_paces_its_sources_and_switches_some_off(tmp_path: Path) -> None:
    """`devices[].polling`: this device's state every 120 s instead of the bridge's 10 s, its neighbour
    scans never (and their entity not offered), the rest at the bridge's pace."""
    config = DeviceConfig(
        serial="1234567890123456", polling={"state": 120, "neighbors": False, "firmware": "off"}
    )
    async with actor(tmp_path, config=config, state=10, wifi=30) as a:
        await a.clock.advance(SLOW_SOURCES_AFTER + 1)
        first = list(a.device.calls)
        await a.clock.advance(240)
        calls = a.device.calls[len(first) :]
        assert calls.count("leds") == 2  # at 120 s and 240 s, not every 10 s
        assert calls.count("stations") == 8  # the bridge's `wifi` pace (30 s)
        assert "neighbors" not in a.device.calls and "firmware" not in a.device.calls
        offered = {c.key for c in capabilities.supported(a.runtime.identity, a.runtime.unsupported)}
        assert "neighbor_aps" not in offered and "update_available" not in offered
        assert "wifi_clients" in offered and "neighbor_aps" not in a.runtime.current_state()
