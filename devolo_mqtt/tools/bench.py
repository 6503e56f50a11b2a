"""`devolo-mqtt bench`: the bridge next to the bare library it wraps, in one run, on one machine.

Emulated devices (`devolo-mqtt emulate`, a process of its own), a mosquitto with its default settings,
and three measurements:

1. a bare devolo-plc-api loop (one shared AsyncZeroconf and httpx client, 16 calls at a time) making
   the calls of the bridge's default state poll: CPU and wall time per round; and its own LED write +
   read-back time;
2. the bridge as a process (`devolo-mqtt run`, state every 5 s, other sources slowed): start until
   every device is online with state and discovery; its CPU per poll round (from /proc), MQTT messages
   per round with nothing changing, RSS; `/set` latency as a user sees it (publish → a subscriber sees
   the new state);
3. the same with a tenth of the devices unreachable: latency for the others and their poll cadence.

It prints a table and writes JSON. Figures depend on the machine: compare bridge and bare loop of the
same run, not runs of different machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import yaml
from devolo_plc_api import Device
from devolo_plc_api.postprocessing import supportinfo
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt.core.errors import ConfigError
from devolo_mqtt.mqtt.pictures import PNG_SETTLE
from devolo_mqtt.tools.broker import Mosquitto, start_mosquitto
from devolo_mqtt.tools.emulator.builtin import DEMO_PASSWORD, generated

STATE_INTERVAL = 5.0  # default; `interval` below (the tests' smoke run uses 1 s)
SLOW = 6 * 3600.0  # every source but the state poll: out of the measurement window
BASE, PREFIX = "bench", "benchha"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Report:
    """Every figure of one run (the JSON written)."""

    machine: dict[str, Any]
    devices: int
    configured: bool = False
    bare: dict[str, float] = field(default_factory=dict)
    bridge: dict[str, float] = field(default_factory=dict)
    dead: dict[str, float] = field(default_factory=dict)
    brokers: dict[str, float] = field(default_factory=dict)  # /set by broker settings and client kind


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}


class Emulated:
    """`devolo-mqtt emulate --count N` as a child process, controlled through its standard input."""

    def __init__(self, count: int, base: str, *, site: int = 0) -> None:
        self.scenario = generated(count, base=base, site=site)
        self._site = site
        self.addresses = self.scenario.addresses()
        self._base = base
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and wait until every device is served."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devolo_mqtt", "emulate", "--count", str(len(self.addresses)),
            "--speed", "0", "--address-base", self._base, "--site", str(self._site),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert self._process.stdout is not None
        for _ in range(len(self.addresses) + 1):  # one line per device, then the password
            await asyncio.wait_for(self._process.stdout.readline(), 60)

    async def control(self, line: str) -> str:
        """One control line; its answer."""
        assert self._process is not None
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(f"{line}\n".encode())
        await self._process.stdin.drain()
        return (await asyncio.wait_for(self._process.stdout.readline(), 10)).decode().strip()

    async def stop(self) -> None:
        """Stop the process."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()


async def bare_library(
    emulated: Emulated, rounds: int, commands: int, seed: int, interval: float
) -> dict[str, float]:
    """The bare library in a process of its own (`python -m devolo_mqtt.tools.bench`), so that its RSS
    and its start are comparable with the bridge's: process start until every device is connected
    (in parallel, one shared AsyncZeroconf and httpx client) and its LEDs read; then the bridge's state
    poll calls, paced like the bridge's; then LED write + read-back."""
    spec = json.dumps(
        {"addresses": list(emulated.addresses.values()), "rounds": rounds, "commands": commands,
         "seed": seed, "interval": interval}
    )  # fmt: skip
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devolo_mqtt.tools.bench", spec,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(600):
            await process.stdout.readline()  # "connected"
            start_s = time.perf_counter() - began
            line = await process.stdout.readline()
            _, errors = await process.communicate()
            if not line.strip():
                raise RuntimeError(
                    f"the bare library's run failed: {errors.decode(errors='replace')[-2000:]}"
                )
            figures: dict[str, float] = json.loads(line)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return {"start_s": start_s, **figures}


async def _bare_run(spec: dict[str, Any]) -> dict[str, float]:
    rng = random.Random(spec["seed"])
    interval: float = spec["interval"]
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    limiter = asyncio.Semaphore(16)
    devices = [Device(ip, zeroconf_instance=zeroconf) for ip in spec["addresses"]]
    try:
        async with httpx.AsyncClient() as http:
            began = time.perf_counter()
            await asyncio.gather(*(d.async_connect(session_instance=http) for d in devices))
            connect_s = time.perf_counter() - began
            for device in devices:
                device.password = DEMO_PASSWORD

            async def poll(device: Device) -> None:
                async with limiter:
                    api = device.device
                    assert api is not None
                    await api.async_get_led_setting()
                    if "wifi1" in api.features:
                        await api.async_get_wifi_guest_access()

            await asyncio.gather(*(poll(d) for d in devices))  # every device's state: "started"
            sys.stdout.write("connected\n")
            sys.stdout.flush()
            # Rounds paced like the bridge's (every `interval`), so both pay the same for connections
            # that expired in between, and the CPU between rounds (mDNS browsers) counts for both.
            await asyncio.sleep(interval)
            walls, cpu = [], time.process_time()
            for _ in range(spec["rounds"]):
                started = time.perf_counter()
                await asyncio.gather(*(poll(d) for d in devices))
                walls.append(time.perf_counter() - started)
                await asyncio.sleep(max(0.0, interval - walls[-1]))
            cpu_per_round = (time.process_time() - cpu) / spec["rounds"]
            latencies = []
            for _ in range(spec["commands"]):
                api = rng.choice(devices).device
                assert api is not None
                wanted = not await api.async_get_led_setting()
                started = time.perf_counter()
                await api.async_set_led_setting(wanted)
                await api.async_get_led_setting()
                latencies.append(time.perf_counter() - started)
            rss = rss_mib(os.getpid())
            dump_ms, dump_cpu_ms = await _support_dumps(devices)
    finally:
        for device in devices:
            await device.async_disconnect()
        await zeroconf.async_close()
    return {
        "connect_s": connect_s,
        "rss_mib": rss,
        "cpu_ms_per_round": cpu_per_round * 1000,
        "wall_ms_per_round": statistics.median(walls) * 1000,
        "set_ms_p50": _percentile(latencies, 50) * 1000,
        "set_ms_p99": _percentile(latencies, 99) * 1000,
        "support_dump_ms": dump_ms,
        "support_dump_cpu_ms": dump_cpu_ms,
    }


async def _support_dumps(devices: list[Device]) -> tuple[float, float]:
    """The PLC health source's cost: one support dump per device that offers it, one device at a time
    (the bridge reads it every six hours), fetched and parsed as the library does; the median wall and
    the mean CPU per device, in ms. A failed dump is left out (and told on stderr)."""
    walls, cpu = [], time.process_time()
    supporting = [d for d in devices if d.device is not None and "support" in d.device.features]
    for device in supporting:
        api = device.device
        assert api is not None
        started = time.perf_counter()
        try:
            dump = await api.async_get_support_info()
        except Exception as err:
            sys.stderr.write(f"support dump of {device.ip}: {type(err).__name__}: {err}\n")
            continue
        supportinfo.hops(dump), supportinfo.temperature(dump), supportinfo.lost_maps(dump)
        walls.append(time.perf_counter() - started)
    cpu_ms = (time.process_time() - cpu) / max(1, len(supporting)) * 1000
    return (statistics.median(walls) * 1000 if walls else float("nan")), cpu_ms


class Watcher:
    """A subscriber as a user's would be: every state, availability and discovery config it sees."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.count = 0
        self.leds: dict[str, str] = {}
        self.online: set[str] = set()
        self.discovered: set[str] = set()
        self.changed = asyncio.Event()
        self.topics: dict[str, int] = {}
        self.diagnostics: dict[str, Any] | None = None

    async def run(self) -> None:
        """Record until cancelled."""
        async for message in self.client.messages:
            topic, payload = str(message.topic), message.payload
            raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
            self.count += 1
            self.topics[topic] = self.topics.get(topic, 0) + 1
            parts = topic.split("/")
            if topic == f"{BASE}/bridge/response/diagnostics":
                self.diagnostics = json.loads(raw)
            if topic.startswith(f"{PREFIX}/") and raw and len(parts) > 2:
                self.discovered.add(parts[2].removeprefix("devolo_"))
            elif len(parts) == 2 and raw[:1] == b"{":
                state = json.loads(raw)
                if "leds" in state:
                    self.leds[parts[1]] = state["leds"]
            elif len(parts) == 3 and parts[2] == "availability":
                (self.online.add if raw == b"online" else self.online.discard)(parts[1])
            self.changed.set()

    async def quiet(self, seconds: float, within: float) -> None:
        """Wait until no message came for `seconds` (the bridge's start-up reads are over), or `within`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            seen = self.count
            await asyncio.sleep(seconds)
            if self.count == seen:
                return

    async def until(self, condition: Callable[[], bool], within: float) -> None:
        """Wait for `condition`, woken by every message."""
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def _tasks(client: aiomqtt.Client, watcher: Watcher) -> float:
    """The bridge's asyncio tasks, as its diagnostics tell."""
    await client.publish(f"{BASE}/bridge/request/diagnostics", b"{}", qos=1)
    await watcher.until(lambda: watcher.diagnostics is not None, 30)
    assert watcher.diagnostics is not None
    return float(watcher.diagnostics["data"]["tasks"])


async def set_latencies(
    user: Watcher, everything: Watcher, serials: list[str], commands: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    """`/set/leds` → the new state seen, one command at a time, by the commanding client (subscribed
    to state topics, as Home Assistant is) and by a client subscribed to everything (`#`)."""
    mine, all_topics = [], []
    for _ in range(commands):
        serial = rng.choice(serials)
        wanted = "OFF" if user.leds.get(serial) == "ON" else "ON"
        began = time.perf_counter()
        # QoS 1, as Home Assistant sends it (the discovery configs ask for it).
        await user.client.publish(f"{BASE}/{serial}/set/leds", wanted, qos=1)
        await user.until(lambda s=serial, w=wanted: user.leds.get(s) == w, 30)  # type: ignore[misc]
        mine.append(time.perf_counter() - began)
        await everything.until(lambda s=serial, w=wanted: everything.leds.get(s) == w, 30)  # type: ignore[misc]
        all_topics.append(time.perf_counter() - began)
    return mine, all_topics


async def _timed_sets(
    commander: Watcher, serials: list[str], commands: int, rng: random.Random, qos: int
) -> list[float]:
    """`/set/leds` → the new state seen by the same client, one command at a time."""
    latencies = []
    for _ in range(commands):
        serial = rng.choice(serials)
        wanted = "OFF" if commander.leds.get(serial) == "ON" else "ON"
        began = time.perf_counter()
        await commander.client.publish(f"{BASE}/{serial}/set/leds", wanted, qos=qos)
        await commander.until(lambda s=serial, w=wanted: commander.leds.get(s) == w, 30)  # type: ignore[misc]
        latencies.append(time.perf_counter() - began)
    return latencies


async def brokers_and_clients(
    emulated: Emulated, workdir: Path, base: str, commands: int, rng: random.Random
) -> dict[str, float]:
    """`/set` → state seen, on a mosquitto with its default settings and with `set_tcp_nodelay true`
    (the compose file's and the demo's), by two kinds of client: Home-Assistant-like (MQTT 5, state
    topics only, commands at QoS 1 as our discovery asks) and a watcher of everything that also
    commands (MQTT 3.1.1 on `<base>/#`, QoS 0, like MQTT Explorer or a Node-RED flow)."""
    figures: dict[str, float] = {}
    for broker_kind, nodelay in (("default", False), ("nodelay", True)):
        where = workdir / f"broker-{broker_kind}"
        where.mkdir()
        for kind, (p50, p99) in (
            await _one_broker(emulated, where, base, nodelay=nodelay, commands=commands, rng=rng)
        ).items():
            figures[f"{broker_kind}_{kind}_p50"], figures[f"{broker_kind}_{kind}_p99"] = p50, p99
    return figures


async def _one_broker(
    emulated: Emulated, where: Path, base: str, *, nodelay: bool, commands: int, rng: random.Random
) -> dict[str, tuple[float, float]]:
    serials = list(emulated.addresses)
    async with AsyncExitStack() as stack:
        port = free_port()
        broker = Mosquitto("127.0.0.1", port, where, nodelay=nodelay)
        await broker.start()
        stack.push_async_callback(broker.stop)
        ha_client = await stack.enter_async_context(
            aiomqtt.Client("127.0.0.1", port, identifier="bench-ha", protocol=aiomqtt.ProtocolVersion.V5)
        )
        await ha_client.subscribe(f"{BASE}/+", qos=1)
        all_client = await stack.enter_async_context(
            aiomqtt.Client("127.0.0.1", port, identifier="bench-hash")
        )
        await all_client.subscribe(f"{BASE}/#")
        ha, everything = Watcher(ha_client), Watcher(all_client)
        for task in (asyncio.create_task(ha.run()), asyncio.create_task(everything.run())):
            stack.callback(task.cancel)
        config = str(_bridge_config(where, port, base, STATE_INTERVAL, emulated.addresses))
        bridge = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devolo_mqtt", "run", "--config", config,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        stack.push_async_callback(terminate, bridge)
        everyone = set(serials)
        await everything.until(
            lambda: everyone <= everything.online and everyone <= set(everything.leds), 120
        )
        await ha.until(lambda: everyone <= set(ha.leds), 30)
        # Steady state, as users command: not while the bridge's slower first reads (firmware check,
        # neighbours, the support dumps …) still run right after its start.
        await everything.quiet(1.0, 30)
        out = {}
        for kind, commander, qos in (("ha", ha, 1), ("hash", everything, 0)):
            latencies = await _timed_sets(commander, serials, commands, rng, qos)
            out[kind] = (_percentile(latencies, 50) * 1000, _percentile(latencies, 99) * 1000)
        return out


async def terminate(process: asyncio.subprocess.Process) -> None:
    """Stop a child process (SIGTERM) and wait for it; nothing if it has ended."""
    if process.returncode is None:
        process.terminate()
        await process.wait()


def _bridge_config(
    workdir: Path, port: int, base: str, interval: float, configured: dict[str, str] | None
) -> Path:
    config: dict[str, Any] = {
        "mqtt": {"host": "127.0.0.1", "port": port, "base_topic": BASE, "client_id": "devolo-mqtt-bench"},
        "homeassistant": {"discovery_prefix": PREFIX},
        "discovery": {"interfaces": ["127.0.0.1"], "networks": [f"{base.rsplit('.', 1)[0]}.0/24"]},
        "device_password": DEMO_PASSWORD,
        "polling": {
            "state": interval,
            **dict.fromkeys(
                ("wifi", "network", "neighbors", "firmware", "uptime", "heartbeat", "plc_health"), SLOW
            ),
        },
        "data_dir": str(workdir / "data"),
        "logging": {"level": "WARNING"},
    }
    if configured is not None:  # the VLAN recipe: every device by serial and address, no browsing
        config["devices"] = [{"serial": serial, "ip": ip} for serial, ip in configured.items()]
        config["discovery"] = {"enabled": False}
    path = workdir / "bench.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def run_bench(  # noqa: PLR0915 - one measurement after the other reads best in one place
    count: int = 50,
    *,
    rounds: int = 6,
    window: float = 60.0,
    commands: int = 200,
    dead_fraction: float = 0.1,
    seed: int = 1,
    interval: float = STATE_INTERVAL,
    configured: bool = False,
    out: Callable[[str], None] = print,
) -> Report:
    """One benchmark run; the figures."""
    if count > 250:
        raise ConfigError("at most 250 devices (one loopback /24)", field="--devices")
    rng = random.Random(seed)
    report = Report(_machine(), count, configured)
    base = f"127.0.{rng.randint(100, 250)}.1"
    async with AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="devolo-mqtt-bench-")))
        port = free_port()
        await start_mosquitto(stack, "127.0.0.1", port, workdir)
        emulated = Emulated(count, base)
        await emulated.start()
        stack.push_async_callback(emulated.stop)
        await asyncio.sleep(3)  # devices up for a while, past their start-up announcements
        serials = list(emulated.addresses)
        out(f"bench: {count} emulated devices, mosquitto on 127.0.0.1:{port}")

        client = await stack.enter_async_context(aiomqtt.Client("127.0.0.1", port, identifier="bench-all"))
        await client.subscribe(f"{BASE}/#")
        await client.subscribe(f"{PREFIX}/#")
        watcher = Watcher(client)
        # The commanding client subscribes to state topics only, as Home Assistant does.
        user_client = await stack.enter_async_context(
            aiomqtt.Client("127.0.0.1", port, identifier="bench-user")
        )
        await user_client.subscribe(f"{BASE}/+")
        user = Watcher(user_client)
        for task in (asyncio.create_task(watcher.run()), asyncio.create_task(user.run())):
            stack.callback(task.cancel)
        started = time.perf_counter()
        config = str(
            _bridge_config(workdir, port, base, interval, emulated.addresses if configured else None)
        )
        quiet = asyncio.subprocess.DEVNULL
        bridge = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devolo_mqtt",
            "run",
            "--config",
            config,
            stdin=quiet,
            stdout=quiet,
            stderr=quiet,
        )

        stack.push_async_callback(terminate, bridge)
        everyone = set(serials)
        await watcher.until(
            lambda: (
                everyone <= watcher.online
                and everyone <= set(watcher.leds)
                and everyone <= watcher.discovered
            ),
            within=120,
        )
        report.bridge["start_s"] = time.perf_counter() - started
        out(f"  bridge: every device online with state and discovery after {report.bridge['start_s']:.1f} s")
        await asyncio.sleep(2 * interval)  # settle: first reads, late discovery
        # …and the start's last one-off work: staggered slow first reads (10 s at 200 devices), the
        # maps' PNGs (painted once a picture has settled): the window measures the steady state.
        await watcher.quiet(PNG_SETTLE + 1, 60)
        cpu, messages, began = cpu_seconds(bridge.pid), watcher.count, time.perf_counter()
        await asyncio.sleep(window)
        elapsed = time.perf_counter() - began
        poll_rounds = elapsed / interval
        report.bridge["cpu_ms_per_round"] = (cpu_seconds(bridge.pid) - cpu) / poll_rounds * 1000
        report.bridge["messages_per_round"] = (watcher.count - messages) / poll_rounds
        report.bridge["rss_mib"] = rss_mib(bridge.pid)
        report.bridge["tasks_per_device"] = await _tasks(client, watcher) / count
        out(
            f"  bridge: {report.bridge['cpu_ms_per_round']:.0f} ms CPU per round, "
            f"{report.bridge['messages_per_round']:.1f} messages per round, "
            f"RSS {report.bridge['rss_mib']:.0f} MiB"
        )
        latencies, seen_by_all = await set_latencies(user, watcher, serials, commands, rng)
        report.bridge["set_ms_p50"] = _percentile(latencies, 50) * 1000
        report.bridge["set_ms_p99"] = _percentile(latencies, 99) * 1000
        report.bridge["set_ms_p50_hash_subscriber"] = _percentile(seen_by_all, 50) * 1000
        report.bridge["set_ms_p99_hash_subscriber"] = _percentile(seen_by_all, 99) * 1000
        report.bridge["rss_mib_after_set"] = rss_mib(bridge.pid)

        dead = serials[: max(1, round(count * dead_fraction))]
        alive = [s for s in serials if s not in dead]
        for serial in dead:
            await emulated.control(f"fault {serial} unreachable")
        # Cadence first, without commands (their read-backs would count as polls).
        await asyncio.sleep(interval)  # the first failures towards the dead ones
        before = json.loads(await emulated.control("requests LedSettingsGet"))
        began = time.perf_counter()
        await asyncio.sleep(4 * interval)
        after = json.loads(await emulated.control("requests LedSettingsGet"))
        intervals = (time.perf_counter() - began) / interval
        reads = sorted((after[s] - before[s]) / intervals for s in alive)
        latencies, _ = await set_latencies(user, watcher, alive, max(1, commands // 2), rng)
        report.dead = {
            "dead_devices": len(dead),
            "set_ms_p50": _percentile(latencies, 50) * 1000,
            "set_ms_p99": _percentile(latencies, 99) * 1000,
            # State reads per healthy device per state interval: 1.0 is on schedule.
            "state_reads_per_interval_min": reads[0],
            "state_reads_per_interval_median": statistics.median(reads),
        }
        with contextlib.suppress(ProcessLookupError):
            report.dead["rss_mib"] = rss_mib(bridge.pid)

        # The bare library last, alone: the bridge stopped, every device back (another mDNS stack
        # asking the same devices just before would change what the bridge's start measures).
        await terminate(bridge)
        for serial in dead:
            await emulated.control(f"fault {serial} none")
        report.bare = await bare_library(emulated, rounds, commands, seed, interval)
        report.brokers = await brokers_and_clients(emulated, workdir, base, max(1, commands // 2), rng)
        report.bridge["cpu_ratio"] = report.bridge["cpu_ms_per_round"] / report.bare["cpu_ms_per_round"]
        out(f"  bare library: {report.bare['cpu_ms_per_round']:.0f} ms CPU per state round")
    _table(report, out)
    return report


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _table(report: Report, out: Callable[[str], None]) -> None:
    b, r, d, k = report.bare, report.bridge, report.dead, report.brokers
    rows = [
        ("state poll round, CPU", f"{b['cpu_ms_per_round']:.0f} ms", f"{r['cpu_ms_per_round']:.0f} ms"),
        ("  ratio bridge / bare", "", f"{r['cpu_ratio']:.2f}"),
        ("state poll round, wall", f"{b['wall_ms_per_round']:.0f} ms", ""),
        ("MQTT messages per round (nothing changed)", "", f"{r['messages_per_round']:.1f}"),
        ("start → all online, state + discovery (bare: connected, LEDs read)",
         f"{b['start_s']:.2f} s", f"{r['start_s']:.2f} s"),
        ("  of which the bare library's parallel connect", f"{b['connect_s']:.2f} s", ""),
        ("/set → state seen, p50", f"{b['set_ms_p50']:.1f} ms", f"{r['set_ms_p50']:.1f} ms"),
        ("/set → state seen, p99", f"{b['set_ms_p99']:.1f} ms", f"{r['set_ms_p99']:.1f} ms"),
        ("  seen by a '#' subscriber, p50 / p99", "",
         f"{r['set_ms_p50_hash_subscriber']:.1f} / {r['set_ms_p99_hash_subscriber']:.1f} ms"),
        ("RSS", f"{b['rss_mib']:.0f} MiB", f"{r['rss_mib']:.0f} MiB"),
        ("  after the /set phase", "", f"{r['rss_mib_after_set']:.0f} MiB"),
        ("  target: bare + 20 MiB + 0.1 MiB per device", "",
         f"{b['rss_mib'] + 20 + 0.1 * report.devices:.0f} MiB"),
        ("asyncio tasks per device", "", f"{r['tasks_per_device']:.2f}"),
        ("support dump (PLC health) per device: wall p50 / CPU",
         f"{b['support_dump_ms']:.1f} / {b['support_dump_cpu_ms']:.1f} ms", ""),
        ("/set → state seen, p50 / p99, broker defaults: Home-Assistant-like client", "",
         f"{k['default_ha_p50']:.1f} / {k['default_ha_p99']:.1f} ms"),
        ("  a '#' watcher that commands (MQTT 3.1.1, QoS 0)", "",
         f"{k['default_hash_p50']:.1f} / {k['default_hash_p99']:.1f} ms"),
        ("  with set_tcp_nodelay: Home-Assistant-like client", "",
         f"{k['nodelay_ha_p50']:.1f} / {k['nodelay_ha_p99']:.1f} ms"),
        ("  with set_tcp_nodelay: a '#' watcher that commands", "",
         f"{k['nodelay_hash_p50']:.1f} / {k['nodelay_hash_p99']:.1f} ms"),
        (f"{d['dead_devices']:.0f} devices dead: /set p50 / p99", "",
         f"{d['set_ms_p50']:.1f} / {d['set_ms_p99']:.1f} ms"),
        ("  healthy devices' state reads per interval (min / median)", "",
         f"{d['state_reads_per_interval_min']:.2f} / {d['state_reads_per_interval_median']:.2f}"),
    ]  # fmt: skip
    how = "configured by serial + ip" if report.configured else "found by mDNS"
    machine = f"{report.machine['cpus']} CPUs, Python {report.machine['python']}"
    out(f"\n{report.devices} devices ({how}), {machine}")
    out(f"{'measure':<68} {'bare library':>14} {'bridge':>16}")
    for name, bare, bridge in rows:
        out(f"{name:<68} {bare:>14} {bridge:>16}")


def write_json(report: Report, path: Path) -> None:
    """The figures as JSON."""
    path.write_text(json.dumps(report.__dict__, indent=1, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":  # the bare library's process (see `bare_library`)
    sys.stdout.write(json.dumps(asyncio.run(_bare_run(json.loads(sys.argv[1])))) + "\n")
