"""The PLC watchdog: its decisions on a manual clock (pure), and against the emulated home — a hung
link healed by a restart, a bad one that a restart does not heal given up on by the breaker."""

from __future__ import annotations

from devolo_mqtt.plc.watchdog import PlcWatchdog, Target
from devolo_mqtt.settings import PlcWatchdogSettings
from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.server import Emulator
from tests.conftest import StartBridge, StartEmulator, start_home
from tests.fakes import ManualClock
from tests.helpers import Probe, until

R, A, B = "00005E005301", "00005E005302", "00005E005303"  # R is attached to the router
NET = "home"
ROUTER, LIVING = "1000000000000001", "1000000000000002"  # the demo home's router adapter, Living room


def _watchdog(clock: ManualClock, **settings: object) -> PlcWatchdog:
    return PlcWatchdog(PlcWatchdogSettings(enabled=True, **settings), clock)


def _reachable(mac: str) -> Target:
    return Target({R: "router", A: "a", B: "b"}[mac], restartable=True)


def _overview(
    w: PlcWatchdog, degraded: list[tuple[str, str]], present: tuple[str, ...] = (R, A, B)
) -> list[str]:
    return [f"{d.kind} {d.device}" for d in w.observe(NET, present, degraded, {R}, _reachable)]


def test_watchdog_restarts_the_far_end_after_n_bad_overviews_then_waits_for_it() -> None:
    """A link to the router adapter degraded for 3 overviews restarts the other end (never the router
    adapter); a second bad adapter of the network waits until the first is back; a healthy overview
    starts counting again."""
    clock = ManualClock()
    w = _watchdog(clock)
    assert _overview(w, [(A, R)]) == [] and _overview(w, [(R, A)]) == []
    assert _overview(w, [(A, R), (B, A)]) == ["restart a"]
    # A is rebooting (absent from the overview): B is bad too, but one restart per network at a time.
    assert _overview(w, [(B, R)], present=(R, B)) == []
    assert _overview(w, [(B, R)], present=(R, B)) == []
    assert _overview(w, [(B, R)], present=(R, A, B)) == ["restart b"]  # A is back: B's turn
    assert _overview(w, []) == [] and w.status()["bad_overviews"] == {}


def test_watchdog_breaker_gives_up_once_per_episode_and_spares_the_router() -> None:
    """At most `max_restarts` in the window, then one `gave_up` until the adapter is well; after the
    window it may restart again. The router adapter alone to blame (a missing peer's link) is given up
    on unless allowed; an adapter without API too."""
    clock = ManualClock()
    w = _watchdog(clock, after=2, max_restarts=2, window=3600)
    decisions = []
    for _ in range(12):
        decisions += w.observe(NET, (R, A, B), [(A, R)], {R}, _reachable)
        clock.t += 60
    assert [f"{d.kind} {d.device}" for d in decisions] == ["restart a", "restart a", "gave_up a"]
    assert "circuit breaker" in decisions[-1].reason and "for 2 overviews" in decisions[0].reason
    assert w.status()["gave_up"] == ["00:00:5e:00:53:02"]
    _overview(w, [])  # well again: a new episode may give up again
    assert w.status()["gave_up"] == []
    clock.t += 3600
    assert _overview(w, [(A, R)]) + _overview(w, [(A, R)]) == ["restart a"]  # the window has passed
    # A link to the router adapter blames the other end, whichever way it degraded.
    either_way = _watchdog(ManualClock(), after=2)
    assert _overview(either_way, [(R, A)]) + _overview(either_way, [(R, A)]) == ["restart a"]
    # The router adapter itself to blame (missing from its network): given up on, unless allowed.
    spared, allowed = _watchdog(ManualClock(), after=2), _watchdog(ManualClock(), after=2, allow_router=True)
    for watchdog in (spared, allowed):
        assert _overview(watchdog, []) == []  # every member seen once
    missing = [d for _ in range(2) for d in spared.observe(NET, (A, B), [], {R}, _reachable)]
    assert [f"{d.kind} {d.device}" for d in missing] == ["gave_up router"]
    assert "attached to the router" in missing[0].reason
    assert _overview(allowed, [], present=(A, B)) + _overview(allowed, [], present=(A, B)) == [
        "restart router"
    ]
    degraded_both_ways = [(R, A), (A, R), (R, B), (B, R)]
    both = _watchdog(ManualClock(), after=2)
    _overview(both, degraded_both_ways)
    assert sorted(_overview(both, degraded_both_ways)) == ["restart a"]  # one per network at a time
    no_api = PlcWatchdog(PlcWatchdogSettings(enabled=True, after=2), ManualClock())
    unreachable = [d.kind for d in no_api.observe(NET, (R, A), [(A, R)], {R}, lambda m: Target(None, False))]
    unreachable += [d.kind for d in no_api.observe(NET, (R, A), [(A, R)], {R}, lambda m: Target(None, False))]
    assert unreachable == ["gave_up"]


def test_watchdog_restarts_a_member_that_stays_missing() -> None:
    """A member missing from its network's overview for `after` overviews is restarted through its API
    (a hung PLC chip on a device still reachable over WiFi or Ethernet)."""
    w = _watchdog(ManualClock(), after=2)
    assert _overview(w, []) == []
    assert _overview(w, [], present=(R, A)) == []
    assert _overview(w, [], present=(R, A)) == ["restart b"]


async def test_watchdog_heals_a_hung_link_by_restarting_its_adapter(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """Against the emulated home: the Living room's link to the router adapter hangs (20 Mbit/s until
    either end restarts); after three degraded overviews the watchdog restarts the Living room (an
    event on it and on the bridge), the link recovers, and the router adapter was never restarted."""
    emulator = await _measured_home(
        demo_scenario, start_emulator, start_bridge, probe, base_topic, {"enabled": True}
    )
    emulator.world.set_link_rate(LIVING, ROUTER, 20.0, heals=True)
    restart = await probe.wait_json(
        f"{base_topic}/{LIVING}/event", lambda e: e["event_type"] == "plc_watchdog_restart", within=20
    )
    assert restart["dry_run"] is False and "degraded" in restart["reason"]
    await until(lambda: emulator.device(LIVING).requests.get("Restart", 0) == 1, what="the restart")
    emulator.advance(25)  # the reboot is over
    recovered = await probe.wait_json(
        f"{base_topic}/bridge/event", lambda e: e["type"] == "plc_link_recovered", within=20
    )
    assert recovered["data"]["from_name"] == "Living room"
    assert emulator.device(ROUTER).requests.get("Restart", 0) == 0


async def test_watchdog_dry_run_reports_and_the_breaker_gives_up_on_bad_wiring(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
) -> None:
    """A link that stays bad whatever restarts (bad wiring): in a dry run the watchdog reports the
    restart it would do (and does not), then its breaker (one restart allowed) gives up — once."""
    watchdog: dict[str, object] = {"enabled": True, "dry_run": True, "max_restarts": 1}
    emulator = await _measured_home(demo_scenario, start_emulator, start_bridge, probe, base_topic, watchdog)
    emulator.world.set_link_rate(LIVING, ROUTER, 20.0)
    would = await probe.wait_json(
        f"{base_topic}/bridge/event", lambda e: e["type"] == "plc_watchdog_restart", within=20
    )
    assert would["data"]["dry_run"] is True and would["data"]["device"] == LIVING
    gave_up = await probe.wait_json(
        f"{base_topic}/{LIVING}/event", lambda e: e["event_type"] == "plc_watchdog_gave_up", within=20
    )
    assert "circuit breaker" in gave_up["reason"]
    asked = _overviews(emulator)
    await until(lambda: _overviews(emulator) >= asked + 4, what="more bad overviews")
    events = [m.json()["type"] for m in probe.on(f"{base_topic}/bridge/event")]
    assert events.count("plc_watchdog_gave_up") == 1 and events.count("plc_watchdog_restart") == 1
    assert emulator.device(LIVING).requests.get("Restart", 0) == 0


async def _measured_home(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    base_topic: str,
    watchdog: dict[str, object],
) -> Emulator:
    """The demo home with a watchdog and fast network rounds, after enough healthy overviews for the
    Living room's link to the router adapter to have its median."""
    emulator = await start_home(
        demo_scenario,
        start_emulator,
        start_bridge,
        probe,
        base_topic,
        polling={"network": 0.5},
        plc_watchdog=watchdog,
    )
    await probe.wait_json(f"{base_topic}/{LIVING}", lambda s: s.get("tx_rate_00005e005301") is not None)
    asked = _overviews(emulator)
    await until(lambda: _overviews(emulator) >= asked + 4, what="the link's median: healthy overviews")
    return emulator


def _overviews(emulator: Emulator) -> int:
    return sum(d.requests.get("GetNetworkOverview", 0) for d in emulator.world.devices.values())
