"""`devolo-mqtt bench --sites N`: many sites on one MQTT backbone, as deployments grow.

N bridges (each its own `mqtt.base_topic` and `mqtt.instance_id`), each with its own emulated
devices (configured by serial + ip, the VLAN recipe), either all on one central mosquitto, or
`--federated`: each site on a mosquitto of its own, joined to the central one by mosquitto's bridge
feature (site topics both ways, discovery configs out, Home Assistant's status in). At the centre a
Home-Assistant-like subscriber (the discovery prefix and every site's states) checks that every device
is discovered once and no id collides; a second bridge started on one site's topics must refuse to run
(exit 3); a command from the centre to a device of every site must be answered.

Reports each bridge's start and RSS, the messages per second the central subscriber sees while nothing
changes, and the central broker's RSS and CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from devolo_mqtt.tools.bench import Emulated, cpu_seconds, free_port, rss_mib, terminate
from devolo_mqtt.tools.broker import Mosquitto
from devolo_mqtt.tools.emulator.builtin import DEMO_PASSWORD

PREFIX = "homeassistant"
EXIT_DUPLICATE = 3  # the CLI's exit status when another bridge runs on the same topics


@dataclass
class SitesReport:
    """What one many-sites run saw."""

    sites: int
    devices_per_site: int
    federated: bool
    start_s: list[float] = field(default_factory=list)  # per bridge: process start → all discovered
    rss_mib: list[float] = field(default_factory=list)  # per bridge
    discovered: int = 0  # device nodes seen in the discovery prefix at the centre
    collisions: list[str] = field(default_factory=list)  # node ids claimed by more than one site
    duplicate_refused: bool = False
    answered: int = 0  # of one command per site, sent at the centre
    messages_per_s: float = 0.0  # at the centre, nothing changing
    central_rss_mib: float = 0.0
    central_cpu_percent: float = 0.0


class Centre:
    """The Home-Assistant-like subscriber on the central broker."""

    def __init__(self, client: aiomqtt.Client, sites: int) -> None:
        self.client = client
        self.count = 0
        self.owners: dict[str, set[str]] = {}  # discovery node id → sites whose topics its configs use
        self.online: dict[str, set[str]] = {f"site{i}": set() for i in range(sites)}
        self.states: dict[str, set[str]] = {f"site{i}": set() for i in range(sites)}
        self.results: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()

    async def run(self) -> None:
        """Record until cancelled."""
        async for message in self.client.messages:
            self.count += 1
            topic = str(message.topic)
            raw = (
                message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
            )
            parts = topic.split("/")
            if parts[0] == PREFIX and len(parts) == 5 and raw:
                with contextlib.suppress(ValueError):
                    self.owners.setdefault(parts[2], set()).update(_sites_of(json.loads(raw)))
            elif parts[0] in self.online and len(parts) == 3 and parts[2] == "availability":
                (self.online[parts[0]].add if raw == b"online" else self.online[parts[0]].discard)(parts[1])
            elif parts[0] in self.states and len(parts) == 2 and raw[:1] == b"{":
                self.states[parts[0]].add(parts[1])
            elif len(parts) == 4 and parts[2:] == ["set", "result"]:
                with contextlib.suppress(ValueError):
                    self.results[str(json.loads(raw).get("transaction"))] = json.loads(raw)
            self.changed.set()

    def site_ready(self, site: int, serials: set[str], began: float, took: dict[str, float]) -> bool:
        """Every device of a site online, with state and discovery; when each was first true goes to
        `took` (seconds after `began`)."""
        name = f"site{site}"
        now = time.perf_counter() - began
        for what, done in (
            ("online", serials <= self.online[name]),
            ("state", serials <= self.states[name]),
            ("discovery", all(f"devolo_{s}" in self.owners for s in serials)),
        ):
            if done:
                took.setdefault(what, now)
        return len(took) == 3

    async def until(self, condition: Callable[[], bool], within: float) -> None:
        """Wait for `condition`, woken by every message."""
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def _sites_of(config: Any) -> set[str]:
    """The sites (first topic levels) whose topics a discovery config uses."""
    if not isinstance(config, dict):
        return set()
    base = str(config.get("~", ""))
    topics = [v for k, v in config.items() if k.endswith("_topic") and isinstance(v, str)]
    topics += [a["topic"] for a in config.get("availability", []) if isinstance(a, dict) and "topic" in a]
    return {(base + t[1:] if t.startswith("~") else t).split("/")[0] for t in topics if t}


def _federation(site: int, central: int) -> str:
    """A site broker's bridge to the centre: its topics both ways, discovery out, HA status in."""
    return (
        f"connection site{site}-to-centre\naddress 127.0.0.1:{central}\n"
        f"remote_clientid site{site}-federation\ncleansession false\n"
        f"topic site{site}/# both 1\ntopic {PREFIX}/+/+/+/config out 1\ntopic {PREFIX}/status in 1\n"
    )


def _config(workdir: Path, site: int, port: int, addresses: dict[str, str], state: float) -> Path:
    slow = 6 * 3600.0
    config = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "base_topic": f"site{site}",
            "instance_id": f"site{site}",
            "client_id": f"devolo-mqtt-site{site}",
        },
        "homeassistant": {"discovery_prefix": PREFIX},
        "discovery": {"enabled": False},
        "devices": [{"serial": serial, "ip": ip} for serial, ip in addresses.items()],
        "device_password": DEMO_PASSWORD,
        "polling": {
            "state": state,
            **dict.fromkeys(("wifi", "network", "neighbors", "firmware", "uptime", "heartbeat"), slow),
        },
        "data_dir": str(workdir / f"data{site}"),
        "logging": {"level": "WARNING"},
    }
    path = workdir / f"site{site}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def _bridge(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devolo_mqtt", "run", "--config", str(config),
            stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink,
        )  # fmt: skip


async def run_sites(  # noqa: PLR0915 - the run's steps read best in one place
    sites: int = 5,
    devices: int = 200,
    *,
    federated: bool = False,
    state: float = 30.0,
    window: float = 30.0,
    out: Callable[[str], None] = print,
) -> SitesReport:
    """One many-sites run; the report (also printed)."""
    report = SitesReport(sites, devices, federated)
    async with AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="devolo-mqtt-sites-")))
        central_port = free_port()
        (workdir / "centre").mkdir()
        central = Mosquitto("127.0.0.1", central_port, workdir / "centre")
        await central.start()
        stack.push_async_callback(central.stop)
        ports = []
        for site in range(sites):
            if federated:
                port = free_port()
                (workdir / f"broker{site}").mkdir()
                broker = Mosquitto(
                    "127.0.0.1", port, workdir / f"broker{site}", extra=_federation(site, central_port)
                )
                await broker.start()
                stack.push_async_callback(broker.stop)
                ports.append(port)
            else:
                ports.append(central_port)
        emulators = []
        for site in range(sites):
            emulated = Emulated(devices, f"127.2.{1 + site}.1", site=site)  # blocks of their own
            await emulated.start()
            stack.push_async_callback(emulated.stop)
            emulators.append(emulated)
        client = await stack.enter_async_context(
            aiomqtt.Client("127.0.0.1", central_port, identifier="sites-centre")
        )
        await client.subscribe(f"{PREFIX}/#")
        for site in range(sites):
            await client.subscribe(f"site{site}/#")
        centre = Centre(client, sites)
        watcher = asyncio.create_task(centre.run())
        stack.callback(watcher.cancel)
        how = "each site on its own broker, federated to a central one" if federated else "one broker"
        out(f"sites: {sites} bridges x {devices} emulated devices, {how}")
        await asyncio.sleep(2 if federated else 0)  # the federation's connections up
        configs = [
            _config(workdir, site, ports[site], emulators[site].addresses, state) for site in range(sites)
        ]
        processes = []
        for site in range(sites):  # one after the other: each start is measured on its own
            began = time.perf_counter()
            process = await _bridge(configs[site], workdir / f"site{site}.log")
            processes.append(process)
            stack.push_async_callback(terminate, process)
            serials, took = set(emulators[site].addresses), dict[str, float]()
            await centre.until(
                lambda s=site, w=serials, b=began, t=took: centre.site_ready(s, w, b, t),  # type: ignore[misc]
                within=120,
            )
            report.start_s.append(time.perf_counter() - began)
            parts = ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
            out(f"  site{site}: {devices} devices ready after {report.start_s[-1]:.1f} s ({parts})")
        nodes = {f"devolo_{s}" for e in emulators for s in e.addresses}
        report.discovered = len(nodes & set(centre.owners))
        report.collisions = sorted(n for n, owners in centre.owners.items() if len(owners) > 1)
        # A second bridge on site 0's topics (another host, say): it must refuse to run.
        other = yaml.safe_load(configs[0].read_text(encoding="utf-8"))
        other["mqtt"]["client_id"] = "devolo-mqtt-site0-elsewhere"
        other["data_dir"] = str(workdir / "duplicate-data")
        (workdir / "duplicate.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
        duplicate = await _bridge(workdir / "duplicate.yaml", workdir / "duplicate.log")
        try:
            async with asyncio.timeout(30):
                report.duplicate_refused = await duplicate.wait() == EXIT_DUPLICATE
        except TimeoutError:
            await terminate(duplicate)
        # A command from the centre to one device of every site.
        for site, emulated in enumerate(emulators):
            serial = next(iter(emulated.addresses))
            body = json.dumps({"leds": "OFF", "transaction": f"site{site}"})
            await client.publish(f"site{site}/{serial}/set", body, qos=1)
        with contextlib.suppress(TimeoutError):
            await centre.until(lambda: len(centre.results) >= sites, within=30)
        report.answered = sum(
            1 for site in range(sites) if centre.results.get(f"site{site}", {}).get("status") == "ok"
        )
        # Nothing changes now: what the centre sees, what the central broker costs.
        await asyncio.sleep(state)
        central_pid = central.pid
        assert central_pid is not None
        messages, cpu, began = centre.count, cpu_seconds(central_pid), time.perf_counter()
        await asyncio.sleep(window)
        elapsed = time.perf_counter() - began
        report.messages_per_s = (centre.count - messages) / elapsed
        report.central_cpu_percent = (cpu_seconds(central_pid) - cpu) / elapsed * 100
        report.central_rss_mib = rss_mib(central_pid)
        report.rss_mib = [rss_mib(p.pid) for p in processes]
    _print(report, out)
    return report


def _print(report: SitesReport, out: Callable[[str], None]) -> None:
    total = report.sites * report.devices_per_site
    how = "federated site brokers" if report.federated else "one broker"
    out(f"\n{report.sites} sites x {report.devices_per_site} devices ({how})")
    out(f"bridge start → all online, state + discovery: {', '.join(f'{s:.1f}' for s in report.start_s)} s")
    out(f"bridge RSS: {', '.join(f'{r:.0f}' for r in report.rss_mib)} MiB")
    out(f"devices discovered at the centre: {report.discovered} of {total}; ids claimed twice: "
        f"{len(report.collisions)}")  # fmt: skip
    out(f"a second bridge on site0's topics refused to run: {'yes' if report.duplicate_refused else 'NO'}")
    out(f"commands from the centre answered: {report.answered} of {report.sites}")
    out(f"messages/s at the centre while nothing changes: {report.messages_per_s:.1f}")
    rss, cpu = report.central_rss_mib, report.central_cpu_percent
    out(f"central broker: RSS {rss:.1f} MiB, CPU {cpu:.1f} % of a core")


def write_json(report: SitesReport, path: Path) -> None:
    """The report as JSON."""
    path.write_text(json.dumps(report.__dict__, indent=1, sort_keys=True), encoding="utf-8")
