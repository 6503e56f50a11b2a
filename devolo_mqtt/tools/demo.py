"""`devolo-mqtt demo`: an emulated home, the bridge and a broker, with a live summary of what flows.

The broker is the one given with `--broker`, else a mosquitto started for the demo only on a free
port (`run` never starts a broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from devolo_mqtt.app import Bridge
from devolo_mqtt.core.errors import ConfigError
from devolo_mqtt.settings import load_settings
from devolo_mqtt.tools.broker import start_mosquitto
from devolo_mqtt.tools.emulator.builtin import DEMO_PASSWORD, demo_home
from devolo_mqtt.tools.emulator.scenario import Scenario
from devolo_mqtt.tools.emulator.server import Emulator

# The demo's adapters without an API, as a user would configure them.
DEMO_ADAPTERS = [
    {"mac": "00:00:5E:00:53:04", "manageable": False, "name": "Garage", "model": "devolo dLAN 1200+"},
    {"mac": "00:00:5E:00:53:06", "manageable": False, "name": "Shed", "model": "devolo dLAN 550 duo+"},
]
_QUIET_KEYS = ("last_seen", "last_restart", "tx_rate_", "rx_rate_", "guest_remaining", "neighbor_aps")


def lan_address() -> str | None:
    """This machine's address for other machines on the LAN, when it can be told (no traffic sent)."""
    with contextlib.suppress(OSError):
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            address = str(sockaddr[0])
            if not ipaddress.ip_address(address).is_loopback:
                return address
    return None


async def _start_home(speed: float) -> tuple[Scenario, Emulator]:
    """The demo home on 127.0.10.x, or on the next free loopback block (another demo may run)."""
    for block in range(10, 20):
        home = demo_home(address_base=f"127.0.{block}.1")
        emulator = Emulator(home, speed=speed)
        try:
            await emulator.start()
        except OSError:
            await emulator.close()
            continue
        return home, emulator
    raise ConfigError("no free loopback block for the emulated devices (127.0.10-19.x)", field="demo")


def _block(scenario: Scenario) -> str:
    """The /24 the scenario's devices live in."""
    return str(ipaddress.IPv4Network(f"{scenario.address_base}/24", strict=False))


def _parse_broker(value: str, default_port: int | None) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host:
        return value, default_port or 1883
    if not port.isdigit():
        raise ConfigError(f"--broker: expected HOST or HOST:PORT, got {value!r}", field="--broker")
    return host, int(port)


def _free_port(preferred: int, listen: str = "127.0.0.1") -> int:
    """The preferred port when nothing listens there, else one the system picks."""
    with socket.socket() as sock:
        try:
            sock.bind((listen, preferred))
        except OSError:
            sock.bind((listen, 0))
        port: int = sock.getsockname()[1]
        return port


async def run_demo(
    broker: str | None,
    port: int | None,
    speed: float,
    out: Callable[[str], None] = print,
    *,
    listen: str = "0.0.0.0",  # noqa: S104 - the demo broker is for other machines' Home Assistant too
) -> None:
    """Run the demo until cancelled."""
    async with AsyncExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="devolo-mqtt-demo-")))
        if broker is None:
            host, port = "127.0.0.1", port or _free_port(1883, listen)
            await start_mosquitto(stack, listen, port, data)
        else:
            host, port = _parse_broker(broker, port)
        home, emulator = await _start_home(speed)
        stack.push_async_callback(emulator.close)
        settings = load_settings(
            None,
            mqtt={"host": host, "port": port, "client_id": "devolo-mqtt-demo"},
            # Only the demo's own devices (not a test run's, nor another emulator's on this machine).
            discovery={"interfaces": ["127.0.0.1"], "networks": [_block(home)]},
            device_password=DEMO_PASSWORD,
            devices=DEMO_ADAPTERS,
            polling={"state": 10, "wifi": 5, "network": 30},
            wifi={"consider_home": 60},
            # Emulated devices: their guest key is no secret, so the demo shows the QR code entity.
            guest_wifi={"publish_credentials": True},
            data_dir=str(data / "data"),
            logging={"level": "WARNING"},
        )
        _banner(out, host, port, own_broker=broker is None, listen=listen)
        async with asyncio.TaskGroup() as group:
            group.create_task(Bridge(settings).run(), name="devolo_mqtt.demo.bridge")
            group.create_task(_summary(host, port, out), name="devolo_mqtt.demo.summary")


def _banner(out: Callable[[str], None], host: str, port: int, *, own_broker: bool, listen: str) -> None:
    where = f"{host}:{port}" + (" (mosquitto, started for the demo)" if own_broker else "")
    lan = lan_address() if own_broker and listen in ("0.0.0.0", "::") else None  # noqa: S104
    remote = (
        f"\n  from another machine (e.g. your Home Assistant): broker {lan}, port {port} (no password; "
        "only emulated devices)"
        if lan
        else ""
    )
    out(f"""devolo-mqtt demo: 7 emulated devolo devices in 2 PLC networks, WiFi clients coming and going.
  broker:          {where}{remote}
  watch it:        mosquitto_sub -h {host} -p {port} -t 'devolo/#' -v
  MQTT Explorer:   connect to {host}:{port}
  Home Assistant:  add the MQTT integration with that broker; devices appear by discovery
  try a command:   mosquitto_pub -h {host} -p {port} -t devolo/1000000000000002/set/leds -m OFF
  a PLC map:       mosquitto_sub -h {host} -p {port} -t 'devolo/network/+/map' -C 1 > map.svg
  diagnostics:     mosquitto_rr -h {host} -p {port} -m '{{}}' -t devolo/bridge/request/diagnostics \\
                     -e devolo/bridge/response/diagnostics
  device password: {DEMO_PASSWORD} (the emulated devices' `device_password`, for your own bridge)
Ctrl-C stops the demo.
""")


async def _summary(host: str, port: int, out: Callable[[str], None]) -> None:
    """Print what flows, readably: availability, state changes, events, matrices."""
    names: dict[str, str] = {}
    last: dict[str, dict[str, Any]] = {}
    while True:
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client(host, port, identifier="devolo-mqtt-demo-summary") as client:
                await client.subscribe("devolo/#")
                async for message in client.messages:
                    raw = message.payload
                    payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw or "").encode()
                    line = _describe(str(message.topic), payload, names, last)
                    if line:
                        out(f"{datetime.now().strftime('%H:%M:%S')}  {line}")  # noqa: DTZ005 - local time for people
        await asyncio.sleep(1)


def _describe(  # noqa: PLR0911 - one return per kind of topic reads best here
    topic: str, payload: bytes, names: dict[str, str], last: dict[str, dict[str, Any]]
) -> str | None:
    parts = topic.split("/")
    try:
        data = json.loads(payload) if payload[:1] in (b"{", b"[") else payload.decode()
    except ValueError:
        return None
    if topic == "devolo/bridge/devices" and isinstance(data, list):
        names.update({d["id"]: d["name"] for d in data if d.get("id")})
        return None
    if topic == "devolo/bridge/state":
        return f"bridge {data}"
    if topic == "devolo/bridge/event" and isinstance(data, dict):
        details = data.get("data", {})
        if "from_name" in details:  # a PLC link
            return (
                f"event {data.get('type')}: {details['from_name']} → {details['to_name']} "
                f"{details.get('rate')} Mbit/s (median {details.get('median')})"
            )
        who = (
            details.get("name")
            or details.get("mac")
            or names.get(details.get("device", ""), details.get("device"))
        )
        where = details.get("to") or details.get("ap")
        return f"event {data.get('type')}: {who}" + (f" @ {names.get(where, where)}" if where else "")
    if len(parts) == 4 and parts[1] == "network" and isinstance(data, dict):
        rates = [r["tx_rate"] for r in data.get("rates", [])]
        average = sum(rates) / len(rates) if rates else 0
        return (
            f"PLC network {parts[2]}: {len(data.get('devices', []))} devices, {len(rates)} links, "
            f"average {average:.0f} Mbit/s"
        )
    if len(parts) == 3 and parts[2] == "availability":
        return f"{names.get(parts[1], parts[1])} is {data}"
    if len(parts) == 2 and parts[1] != "bridge" and isinstance(data, dict):
        shown = {k: v for k, v in data.items() if not k.startswith(_QUIET_KEYS)}
        before, last[parts[1]] = last.get(parts[1]), shown
        changed = {k: v for k, v in shown.items() if before is None or before.get(k) != v}
        if changed:
            return f"{names.get(parts[1], parts[1])}: " + ", ".join(
                f"{k}={v}" for k, v in sorted(changed.items())
            )
    return None
