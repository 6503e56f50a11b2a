"""`devolo-mqtt bench --chaos MINUTES`: the bridge as a demanding operator tries it.

Emulated devices (their own process) with random faults (unreachable, slow, HTTP 500, malformed
replies, vanished, restarts), a mosquitto that is killed (SIGKILL) and frozen (SIGSTOP) now and then,
the bridge (its own process) restarted once in the middle of a command burst, and a commanding client
that sends commands all along — 90 % at QoS 1, a third with an MQTT 5 response topic, each with a
transaction, hostile payloads mixed in.

The report: commands sent and answered once, twice or never, by the circumstance they were sent in;
the bridge's crashes and ERROR lines; whether every device's retained state equals the device at the
end; the bridge's RSS over time. A command the broker itself lost (sent just before it was killed, or
never acknowledged by it) is counted apart: that is the broker's loss, not the bridge's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devolo_mqtt.tools.bench import Emulated, free_port, rss_mib
from devolo_mqtt.tools.broker import Mosquitto
from devolo_mqtt.tools.emulator.builtin import DEMO_PASSWORD

BASE = "chaos"
ANSWERS = "chaos-answers"
FAULTS = ("unreachable", "slow", "http_500", "malformed", "vanished", "restart")
HOSTILE: tuple[bytes, ...] = (
    b"{",
    b"\xff\xfe\x00",
    b"[]",
    b"",
    b'{"leds": ' * 200,
    b"[" * 5000 + b"]" * 5000,
    b'{"leds": "ON", "transaction": ' + b"1" * 70_000 + b"}",
    b'{"no_such_key": 1}',
    b'{"leds": "PURPLE"}',
)
OUTAGES = ("broker killed", "broker frozen", "bridge restart in a burst")
BROKER_LOSS_WINDOW = 2.0  # seconds before a broker kill in which an acknowledged message may be lost


@dataclass
class Sent:
    """One command as sent."""

    key: str  # transaction, or the correlation of a hostile payload
    circumstance: str
    qos: int
    response_topic: bool
    hostile: bool
    at: float
    acknowledged: bool = False  # the broker took it (PUBACK, or written at QoS 0)


@dataclass
class ChaosReport:
    """What one chaos run saw."""

    minutes: float
    devices: int
    sent: dict[str, Counter[str]] = field(default_factory=dict)  # circumstance → outcome → count
    broker_lost: int = 0
    redelivered: int = 0  # answered twice across a broker kill: MQTT's at-least-once, told apart
    not_acknowledged: int = 0
    crashes: int = 0
    error_lines: int = 0
    broker_kills: int = 0
    broker_pauses: int = 0
    bridge_restarts: int = 0
    faults: int = 0
    final_state_equal: bool = False
    final_mismatches: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)  # the first few never answered, for a look
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (minutes, MiB)

    def totals(self) -> Counter[str]:
        """Outcomes over every circumstance."""
        total: Counter[str] = Counter()
        for outcomes in self.sent.values():
            total.update(outcomes)
        return total


class Commander:
    """The commanding client: reconnects by itself, keeps a persistent session, counts answers."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.client: aiomqtt.Client | None = None
        self.answers: Counter[str] = Counter()  # transaction → answers on set/result
        self.responses: Counter[str] = Counter()  # correlation → answers on the response topic
        self.last_answer: dict[str, float] = {}  # key → when its last answer arrived
        self.state: dict[str, str] = {}  # device → retained LED state seen
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Connected as much as the broker allows, until cancelled."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 600
        while True:
            try:
                client = aiomqtt.Client(
                    "127.0.0.1", self._port, identifier="chaos-commander",
                    protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=properties,
                    timeout=5, keepalive=10,
                )  # fmt: skip
                client.pending_calls_threshold = 10_000  # a burst is many publishes at once, on purpose
                async with client:
                    await client.subscribe(f"{BASE}/+/set/result", qos=1)
                    await client.subscribe(f"{ANSWERS}/#", qos=1)
                    await client.subscribe(f"{BASE}/+", qos=1)
                    self.client = client
                    self.connected.set()
                    async for message in client.messages:
                        self._take(message)
            except aiomqtt.MqttError:
                pass
            self.client = None
            self.connected.clear()
            await asyncio.sleep(0.5)

    def _take(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        if topic.startswith(f"{ANSWERS}/"):
            correlation = getattr(message.properties, "CorrelationData", b"") or b""
            key = correlation.decode(errors="replace")
            self.responses[key] += 1
            self.last_answer[key] = time.monotonic()
            return
        with contextlib.suppress(ValueError):
            data = json.loads(raw)
            if topic.endswith("/set/result") and isinstance(data, dict) and data.get("transaction"):
                self.answers[str(data["transaction"])] += 1
                self.last_answer[str(data["transaction"])] = time.monotonic()
            elif topic.count("/") == 1 and isinstance(data, dict) and "leds" in data:
                self.state[topic.split("/")[1]] = str(data["leds"])

    async def send(self, device: str, payload: bytes, sent: Sent) -> None:
        """Publish one command (its fate is the report's business; never raises)."""
        client = self.client
        if client is None:
            return
        properties = None
        if sent.response_topic:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = f"{ANSWERS}/{device}"
            properties.CorrelationData = sent.key.encode()
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(15):
                await client.publish(f"{BASE}/{device}/set", payload, qos=sent.qos, properties=properties)
                sent.acknowledged = True


class Bridge:
    """The bridge as a process: started, stopped (SIGTERM), watched for crashes."""

    def __init__(self, config: Path, log: Path) -> None:
        self._config, self._log = config, log
        self.process: asyncio.subprocess.Process | None = None
        self.stopping = False

    async def start(self) -> None:
        """Start `devolo-mqtt run`."""
        with self._log.open("ab") as sink:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "devolo_mqtt", "run", "--config", str(self._config),
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink,
            )  # fmt: skip
        self.stopping = False

    async def stop(self) -> None:
        """SIGTERM, and wait for its goodbye."""
        self.stopping = True
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    @property
    def crashed(self) -> bool:
        """Whether it ended without being asked to."""
        return self.process is not None and self.process.returncode is not None and not self.stopping


def _config(workdir: Path, port: int, base: str) -> Path:
    config = {
        "mqtt": {"host": "127.0.0.1", "port": port, "base_topic": BASE, "client_id": "devolo-mqtt-chaos"},
        "homeassistant": {"discovery_prefix": f"{BASE}-ha"},
        "discovery": {"interfaces": ["127.0.0.1"], "networks": [f"{base.rsplit('.', 1)[0]}.0/24"]},
        "device_password": DEMO_PASSWORD,
        "polling": {"state": 5, "request_timeout": 3, "connect_timeout": 5},
        "data_dir": str(workdir / "data"),
        "logging": {"level": "INFO", "format": "json"},
    }
    path = workdir / "chaos.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class _Run:
    """One chaos run's moving parts and the ledger of what was sent."""

    def __init__(self, report: ChaosReport, rng: random.Random, serials: list[str]) -> None:
        self.report, self.rng, self.serials = report, rng, serials
        self.sent: list[Sent] = []
        self.faulted: set[str] = set()
        self.circumstance = "steady"
        self.kills: list[float] = []
        self.counter = 0

    def command(self, circumstance: str) -> tuple[str, bytes, Sent]:
        self.counter += 1
        rng, key = self.rng, f"c{self.counter}"
        device = rng.choice(self.serials)
        if device in self.faulted and circumstance == "steady":
            circumstance = "device fault"
        hostile = rng.random() < 0.05
        if hostile:
            payload = rng.choice(HOSTILE)
            return device, payload, Sent(key, "hostile payload", 1, True, True, time.monotonic())
        body: dict[str, Any] = {"leds": rng.choice(("ON", "OFF")), "transaction": key}
        if rng.random() < 0.1:
            body = {"locate": rng.choice(("ON", "OFF")), "transaction": key}
        qos = 1 if rng.random() < 0.9 else 0
        sent = Sent(key, circumstance, qos, rng.random() < 1 / 3, False, time.monotonic())
        return device, json.dumps(body).encode(), sent


async def run_chaos(  # noqa: PLR0915 - the run's timeline reads best in one place
    minutes: float,
    *,
    devices: int = 30,
    seed: int = 1,
    settle: float = 45.0,
    keep: Path | None = None,
    out: Callable[[str], None] = print,
) -> ChaosReport:
    """One chaos run of `minutes`; the report (also printed). `keep`: a directory for the logs and
    data of the run (a temporary one otherwise)."""
    rng = random.Random(seed)
    report = ChaosReport(minutes, devices)
    _quiet_lost_publishes(asyncio.get_running_loop())
    duration = minutes * 60
    async with AsyncExitStack() as stack:
        if keep is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="devolo-mqtt-chaos-")))
        else:
            workdir = keep
            workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        broker = Mosquitto("127.0.0.1", port, workdir, persistence=True)
        await broker.start()
        stack.push_async_callback(broker.stop)
        base = f"127.1.{rng.randint(1, 250)}.1"  # not the benchmark's block: both may run at once
        emulated = Emulated(devices, base)
        await emulated.start()
        stack.push_async_callback(emulated.stop)
        serials = list(emulated.addresses)
        bridge = Bridge(_config(workdir, port, base), workdir / "bridge.log")
        await bridge.start()
        stack.push_async_callback(bridge.stop)
        commander = Commander(port)
        commander_task = asyncio.create_task(commander.run())
        stack.callback(commander_task.cancel)
        run = _Run(report, rng, serials)
        out(f"chaos: {devices} emulated devices, {minutes:g} minutes, mosquitto on 127.0.0.1:{port}")
        async with asyncio.timeout(60):
            await commander.connected.wait()
            while len(commander.state) < devices:  # noqa: ASYNC110 - every device's first state
                await asyncio.sleep(0.2)
        began = time.monotonic()

        def elapsed() -> float:
            return time.monotonic() - began

        in_flight: set[asyncio.Task[None]] = set()

        def send(circumstance: str) -> None:
            device, payload, sent = run.command(circumstance)
            run.sent.append(sent)
            task = asyncio.create_task(commander.send(device, payload, sent))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

        async def commands() -> None:
            while True:
                send(run.circumstance)
                await asyncio.sleep(rng.uniform(0.05, 0.35))

        async def fault(serial: str, kind: str) -> None:
            run.faulted.add(serial)
            report.faults += 1
            await emulated.control(f"unplug {serial}" if kind == "restart" else f"fault {serial} {kind}")
            await asyncio.sleep(rng.uniform(3, 15))
            await emulated.control(f"plug {serial}" if kind == "restart" else f"fault {serial} none")
            run.faulted.discard(serial)

        async def faults() -> None:
            held: set[asyncio.Task[None]] = set()
            try:
                while True:  # a new fault every few seconds, several at once
                    await asyncio.sleep(rng.uniform(2, 6))
                    serial = rng.choice(serials)
                    if serial not in run.faulted:
                        task = asyncio.create_task(fault(serial, rng.choice(FAULTS)))
                        held.add(task)
                        task.add_done_callback(held.discard)
            finally:
                for task in held:
                    task.cancel()

        async def rss() -> None:
            while True:
                if bridge.process is not None and bridge.process.returncode is None:
                    with contextlib.suppress(OSError):
                        report.rss_mib.append((elapsed() / 60, rss_mib(bridge.process.pid)))
                await asyncio.sleep(max(1.0, duration / 60))

        async def watch_bridge() -> None:
            while True:
                await asyncio.sleep(0.5)
                if bridge.crashed:
                    report.crashes += 1
                    code = bridge.process.returncode if bridge.process else None
                    out(f"  {elapsed():6.1f} s  the bridge ended by itself (exit {code})")
                    await bridge.start()

        async def outages() -> None:
            # Broker kills spread over the run, one freeze, one bridge restart in a burst.
            kills = max(1, round(minutes * 6 / 20))
            plan = sorted(
                [("kill", duration * (i + 0.5) / (kills + 1)) for i in range(kills)]
                + [("pause", duration * 0.35), ("restart", duration * 0.6)],
                key=lambda p: p[1],
            )
            for what, at in plan:
                await asyncio.sleep(max(0.0, at - elapsed()))
                if what == "kill":
                    run.circumstance = "broker killed"
                    run.kills.append(time.monotonic())
                    await broker.stop(kill=True)
                    report.broker_kills += 1
                    await asyncio.sleep(rng.uniform(2, 5))
                    await broker.start()
                    await asyncio.sleep(3)  # clients coming back
                elif what == "pause":
                    run.circumstance = "broker frozen"
                    broker.pause()
                    report.broker_pauses += 1
                    await asyncio.sleep(min(20.0, duration / 6))
                    broker.resume()
                    await asyncio.sleep(3)
                else:
                    run.circumstance = "bridge restart in a burst"
                    for _ in range(60):
                        send(run.circumstance)
                    await asyncio.sleep(0.3)
                    await bridge.stop()
                    report.bridge_restarts += 1
                    for _ in range(40):  # held by the broker for the bridge's session
                        send(run.circumstance)
                        await asyncio.sleep(0.02)
                    await bridge.start()
                    await asyncio.sleep(5)
                run.circumstance = "steady"

        workers = [asyncio.create_task(w()) for w in (commands, faults, rss, watch_bridge, outages)]
        try:
            await asyncio.sleep(duration)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        # The end: every device back, time for the last answers, then the ledger.
        for serial in serials:
            await emulated.control(f"fault {serial} none")
            await emulated.control(f"plug {serial}")
        if bridge.process is None or bridge.process.returncode is not None:
            await bridge.start()
        await asyncio.gather(*in_flight, return_exceptions=True)
        await _final_state(report, emulated, commander, serials, settle)
        # The last commands' answers (one to a slow device takes the request timeout): at most 15 s.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_unanswered(s, commander) for s in run.sent):  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        _tally(report, run, commander)
        await bridge.stop()
        report.error_lines = _errors(workdir / "bridge.log")
    _print(report, out)
    return report


def _quiet_lost_publishes(loop: asyncio.AbstractEventLoop) -> None:
    """The commander's publishes that a killed broker never acknowledged end as futures nobody
    awaits any more (aiomqtt's): expected here, and not worth an asyncio error line each."""
    default = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), aiomqtt.MqttError):
            return
        if default is not None:
            default(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def _final_state(
    report: ChaosReport, emulated: Emulated, commander: Commander, serials: list[str], settle: float
) -> None:
    """Wait until every retained LED state equals the device's (or `settle` seconds pass)."""
    deadline = time.monotonic() + settle
    while True:
        leds: dict[str, str] = json.loads(await emulated.control("leds"))
        mismatches = [s for s in serials if commander.state.get(s) != leds.get(s)]
        if not mismatches or time.monotonic() >= deadline:
            break
        await asyncio.sleep(1)
    report.final_state_equal = not mismatches
    report.final_mismatches = mismatches


def _answers(sent: Sent, commander: Commander) -> list[int]:
    """How often each channel the asker listens on answered it: `set/result` (by its transaction)
    unless it was unparseable, and its response topic if it had one."""
    answers = []
    if not sent.hostile:
        answers.append(commander.answers.get(sent.key, 0))
    if sent.response_topic:
        answers.append(commander.responses.get(sent.key, 0))
    return answers


def _unanswered(sent: Sent, commander: Commander) -> bool:
    return sent.acknowledged and min(_answers(sent, commander)) == 0


def _tally(report: ChaosReport, run: _Run, commander: Commander) -> None:
    for sent in run.sent:
        if not sent.acknowledged:
            report.not_acknowledged += 1
            continue
        answers = _answers(sent, commander)
        if max(answers) > 1 and any(
            sent.at <= k <= commander.last_answer.get(sent.key, 0) for k in run.kills
        ):
            report.redelivered += 1  # a QoS 1 answer the broker died acknowledging: sent again
            continue
        if max(answers) > 1:
            outcome = "twice"
        elif min(answers) == 1:
            outcome = "once"
        elif any(0 <= k - sent.at <= BROKER_LOSS_WINDOW for k in run.kills) or (
            sent.qos == 0 and sent.circumstance in OUTAGES
        ):
            report.broker_lost += 1  # the broker died holding it, or QoS 0 in an outage: MQTT's rules
            continue
        else:
            outcome = "never"
            if len(report.unanswered) < 10:
                after = [round(sent.at - k, 1) for k in run.kills]
                report.unanswered.append(
                    f"{sent.key} ({sent.circumstance}, QoS {sent.qos}, answers {answers}, "
                    f"seconds after each broker kill {after})"
                )
        report.sent.setdefault(sent.circumstance, Counter())[outcome] += 1


def _errors(log: Path) -> int:
    count = 0
    with contextlib.suppress(OSError), log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if '"level": "error"' in line or '"level": "critical"' in line or line.startswith("Traceback"):
                count += 1
    return count


def _print(report: ChaosReport, out: Callable[[str], None]) -> None:
    out(
        f"\n{report.devices} devices, {report.minutes:g} minutes: {report.faults} device faults, "
        f"{report.broker_kills} broker kills, {report.broker_pauses} broker freezes, "
        f"{report.bridge_restarts} bridge restarts"
    )
    out(f"{'commands sent while…':<32} {'answered once':>14} {'twice':>7} {'never':>7}")
    for circumstance, outcomes in sorted(report.sent.items()):
        out(f"{circumstance:<32} {outcomes['once']:>14} {outcomes['twice']:>7} {outcomes['never']:>7}")
    totals = report.totals()
    out(f"{'all':<32} {totals['once']:>14} {totals['twice']:>7} {totals['never']:>7}")
    out(
        f"answered twice across a broker kill (QoS 1 is at least once): {report.redelivered}; "
        f"lost by the broker (killed holding them, or QoS 0 in an outage): {report.broker_lost}; "
        f"never acknowledged by the broker: {report.not_acknowledged}"
    )
    for line in report.unanswered:
        out(f"  never answered: {line}")
    out(f"bridge crashes: {report.crashes}; ERROR lines in its log: {report.error_lines}")
    state = "yes" if report.final_state_equal else f"no: {', '.join(report.final_mismatches)}"
    out(f"every retained state equal to its device at the end: {state}")
    if report.rss_mib:
        half = report.rss_mib[len(report.rss_mib) // 2 :]
        out(
            f"bridge RSS: {report.rss_mib[0][1]:.1f} MiB at the start, "
            f"{half[0][1]:.1f} → {half[-1][1]:.1f} MiB over the second half, "
            f"{max(r for _, r in report.rss_mib):.1f} MiB at most"
        )


def write_json(report: ChaosReport, path: Path) -> None:
    """The report as JSON."""
    data = {**report.__dict__, "sent": {k: dict(v) for k, v in report.sent.items()}}
    path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
