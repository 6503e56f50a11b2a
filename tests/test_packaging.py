"""What a newcomer touches first: the README's commands, the demo, Docker files, the example config,
the Node-RED flow and the health command."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import yaml
from pydantic import BaseModel

from devolo_mqtt.app import Bridge
from devolo_mqtt.cli import _parser
from devolo_mqtt.mqtt.topics import Topics
from devolo_mqtt.settings import Settings, load_settings
from devolo_mqtt.tools.emulator.builtin import DEMO_HOME
from devolo_mqtt.tools.emulator.scenario import Scenario
from tests.conftest import StartEmulator, bridge_settings
from tests.helpers import Broker, Probe, free_port, running

ROOT = Path(__file__).resolve().parents[1]
MANAGEABLE = [d["serial"] for d in DEMO_HOME["devices"] if d["model"] not in ("dlan1200_lan", "dlan550_lan")]


def _readme_command(after: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(after) + r".*?```sh\n(.+?)\n```", text, re.DOTALL)
    assert match, f"no command after {after!r}"
    return match.group(1).strip()


def test_packaging_readme_two_commands_are_what_ci_and_the_demo_test_run() -> None:
    """The README's demo and test commands are the scripts the demo test and CI run."""
    assert _readme_command("Run the demo") == "bash .ci/demo"
    assert _readme_command("Run the tests") == "bash .ci/run"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "-m pytest" in ci and "'.[test]'" in ci
    assert 'exec "$venv/bin/devolo-mqtt" demo' in (ROOT / ".ci" / "demo").read_text(encoding="utf-8")


async def _run_demo(
    args: list[str],
    host: str,
    port: int,
    protocol: aiomqtt.ProtocolVersion,
    then: Callable[[], Awaitable[None]] | None = None,
) -> str:
    """Start `bash .ci/demo` as a newcomer would, wait for every device's state, run `then`, Ctrl-C it."""
    env = {**os.environ, "DEVOLO_MQTT_VENV": sys.prefix}  # the venv CI (or you) already made
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / ".ci" / "demo"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, like a command in a terminal
    )
    try:
        wanted = {f"devolo/{s}" for s in MANAGEABLE}
        seen: set[str] = set()
        async with asyncio.timeout(90):
            while True:
                try:
                    async with aiomqtt.Client(host, port, protocol=protocol) as client:
                        await client.subscribe("devolo/#")
                        async for message in client.messages:
                            if str(message.topic) in wanted and b"firmware" in bytes(message.payload):
                                seen.add(str(message.topic))
                            if seen == wanted:
                                break
                    break
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.5)  # the demo's broker is not up yet
            if then is not None:
                await then()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, output.decode()[-3000:]
    return output.decode()


async def _mosquitto_client(*args: str) -> str:
    """Run mosquitto_pub/mosquitto_sub as a user would; their output."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), 20)
    return output.decode()


async def test_packaging_demo_answers_mosquitto_pub_at_qos_0_and_1() -> None:
    """`bash .ci/demo` runs a real broker: the banner's `mosquitto_pub` commands work at QoS 0 and 1
    (a client that connects, publishes and leaves), and a filtered subscription gets only its topic."""
    port = free_port()
    device = "1000000000000002"
    results: list[str] = []

    async def try_it() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(f"devolo/{device}/set/result")
            for qos, value in (("0", "OFF"), ("1", "ON")):
                await _mosquitto_client(
                    "mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", qos,
                    "-t", f"devolo/{device}/set/leds", "-m", value,
                )  # fmt: skip
                async with asyncio.timeout(15):
                    async for message in client.messages:
                        results.append(bytes(message.payload).decode())
                        break
        filtered = await _mosquitto_client(
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "devolo/bridge/state", "-v", "-W", "2"
        )
        results.append(filtered)

    output = await _run_demo(
        ["--port", str(port), "--listen", "127.0.0.1"], "127.0.0.1", port, aiomqtt.ProtocolVersion.V5, try_it
    )
    assert f"127.0.0.1:{port} (mosquitto, started for the demo)" in output
    assert "mqtt_goodbye_incomplete" not in output  # Ctrl-C stopped the bridge before its broker
    assert "PLC network" in output and "is online" in output  # the live summary
    answers = [json.loads(r) for r in results[:2]]
    assert [(a["status"], a["state"]) for a in answers] == [("ok", {"leds": "OFF"}), ("ok", {"leds": "ON"})]
    lines = [line for line in results[2].splitlines() if line.strip() and line != "Timed out"]
    assert lines == ["devolo/bridge/state online"], results[2]


async def test_packaging_demo_against_a_real_broker(broker: Broker) -> None:
    """`bash .ci/demo --broker HOST:PORT` uses that broker (MQTT 5) and exits 0 on Ctrl-C."""
    output = await _run_demo(
        ["--broker", f"127.0.0.1:{broker.port}"], "127.0.0.1", broker.port, aiomqtt.ProtocolVersion.V5
    )
    assert "started for the demo" not in output


def test_packaging_compose_file_as_documented() -> None:
    """Mosquitto with config and persistence; the bridge on host networking with volumes; restarts."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"mosquitto", "devolo-mqtt"}
    bridge, mosquitto = services["devolo-mqtt"], services["mosquitto"]
    assert bridge["network_mode"] == "host"
    assert bridge["restart"] == mosquitto["restart"] == "unless-stopped"
    assert "./config:/config:ro" in bridge["volumes"] and "devolo-data:/data" in bridge["volumes"]
    assert "mosquitto-data:/mosquitto/data" in mosquitto["volumes"]
    # The broker's configuration is a file of the repository, mounted read-only: every Compose
    # implementation (podman-compose, older Docker Compose) mounts files; not all know inline `configs`.
    assert "configs" not in compose and "configs" not in mosquitto
    mount = next(v for v in mosquitto["volumes"] if v.endswith(":/mosquitto/config/mosquitto.conf:ro"))
    conf = (ROOT / mount.split(":")[0]).read_text(encoding="utf-8")
    assert "persistence true" in conf and "listener 1883" in conf
    assert "set_tcp_nodelay true" in conf  # no Nagle delay between a PUBACK and the new state
    assert set(compose["volumes"]) == {"mosquitto-data", "mosquitto-users", "devolo-data"}
    # Nothing overrides the config file's settings (an environment variable beats `mqtt.host`).
    assert not any(k.startswith("DEVOLO_MQTT_") for k in bridge.get("environment", {}))
    # The anonymous broker is reachable from this machine only, until users are set up.
    assert mosquitto["ports"] == ["127.0.0.1:1883:1883"] and "allow_anonymous true" in conf
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert "mkdir -p config" in text and "mosquitto_passwd" in text and "1000:1000" in text


def test_packaging_dockerfile_slim_nonroot_healthcheck_and_real_entrypoint() -> None:
    """Slim base, a non-root user, a health check on `devolo-mqtt health`, commands that exist."""
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 2 and all("-slim" in ln for ln in froms)
    final = lines[lines.index(froms[1]) :]
    assert any(ln.startswith("USER ") and "root" not in ln for ln in final)
    assert not any("gcc" in ln or "build-essential" in ln for ln in final)
    # No dead layer: the final stage copies the built virtualenv, never wheels it deletes later.
    assert not any("/wheels" in ln for ln in final)
    assert any(ln.startswith("COPY --from=build /opt/devolo-mqtt") for ln in final)
    # Fixed, documented ids (a system user would get whatever gid is free).
    assert any("groupadd --gid" in ln for ln in final) and any("useradd --uid" in ln for ln in final)
    # The build context leaves out the configuration (the device password), data and .git.
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored[ignored.index("*")] == "*" and "!config" not in "".join(ignored)
    health = next(ln for ln in lines if ln.startswith('CMD ["devolo-mqtt", "health"]'))
    assert health
    entry = json.loads(next(ln for ln in lines if ln.startswith("ENTRYPOINT ")).removeprefix("ENTRYPOINT "))
    cmd = json.loads(next(ln for ln in lines if ln.startswith('CMD ["run"')).removeprefix("CMD "))
    assert entry == ["devolo-mqtt"]
    scripts = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'devolo-mqtt = "devolo_mqtt.cli:main"' in scripts
    _parser().parse_args(cmd)  # `run --config …` is a real command line
    _parser().parse_args(["health"])


def _fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(prefix + name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _fields(annotation, f"{prefix}{name}.")
    return names


def _keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        keys.add(prefix + key)
        if isinstance(value, dict) and key != "mac_names":
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def test_packaging_example_config_validates_and_shows_every_setting() -> None:
    """config.example.yaml is valid and mentions every setting (device keys in its comments)."""
    path = ROOT / "config.example.yaml"
    settings = load_settings(path)
    assert settings == load_settings(None)  # the example shows the defaults
    shown = _keys(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert _fields(Settings) == shown
    text = path.read_text(encoding="utf-8")
    from devolo_mqtt.settings import DeviceConfig  # noqa: PLC0415

    for name in DeviceConfig.model_fields:
        assert re.search(rf"#.*\b{name}\b", text), name


def _contract_patterns() -> list[str]:
    t = Topics()
    topics = [
        t.bridge_state,
        t.bridge_info,
        t.bridge_devices,
        t.bridge_health,
        t.bridge_event,
        t.state("+"),
        t.availability("+"),
        t.set("+"),
        t.set("+", "+"),
        t.set_result("+"),
        t.wifi_clients("+"),
        t.network_rates("+"),
        t.network_map("+"),
        t.guest_qr("+"),
        t.wifi_neighbors("+"),
        t.wifi_presence("+"),
        t.bridge_requests,
        t.bridge_response("+"),
    ]
    return [re.escape(p).replace(r"\+", "[^/]+").replace(r"\#", ".*") for p in topics]


def test_packaging_node_red_flow_is_valid_and_uses_contract_topics() -> None:
    """The Node-RED flow parses and each MQTT node's topic is one the contract defines."""
    flow = json.loads((ROOT / "docs" / "node-red-flow.json").read_text(encoding="utf-8"))
    nodes = [n for n in flow if n.get("type") in ("mqtt in", "mqtt out")]
    assert {n["type"] for n in nodes} == {"mqtt in", "mqtt out"}
    patterns = _contract_patterns()
    for node in nodes:
        assert any(re.fullmatch(p, node["topic"]) for p in patterns), node["topic"]
        assert node["broker"] in {n["id"] for n in flow if n["type"] == "mqtt-broker"}
    contract = (ROOT / "docs" / "mqtt-contract.md").read_text(encoding="utf-8")
    assert "devolo/network/<net>/rates" in contract and "devolo/<id>/set/result" in contract


async def test_packaging_health_follows_the_real_mqtt_connection(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """`devolo-mqtt health`: unhealthy before start, healthy while connected, unhealthy after stop."""
    data = tmp_path / "health-data"
    env = {**os.environ, "DEVOLO_MQTT_DATA_DIR": str(data)}

    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devolo_mqtt", "health"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    assert (await asyncio.to_thread(health)).returncode == 1
    await start_emulator(demo_scenario)
    async with running(Bridge(bridge_settings(broker, base_topic, data_dir=str(data)))):
        await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"online")
        result = await asyncio.to_thread(health)
        assert result.returncode == 0 and "healthy" in result.stdout
    stopped = await asyncio.to_thread(health)
    assert stopped.returncode == 1 and "not connected" in stopped.stdout


def test_packaging_dependencies_bounded_and_tools_pinned() -> None:
    """Every runtime dependency has an upper bound on its major version; the linter, the type checker
    and its stubs are exact (a new release must not break CI); the licence is SPDX with its file."""
    import tomllib  # noqa: PLC0415

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = project["project"]["dependencies"]
    assert runtime and all("<" in d for d in runtime), [d for d in runtime if "<" not in d]
    test = project["project"]["optional-dependencies"]["test"]
    pinned = {d.split("==")[0] for d in test if "==" in d}
    assert {"mypy", "ruff", "types-PyYAML", "types-protobuf"} <= pinned
    assert project["project"]["license"] == "MIT" and (ROOT / "LICENSE").is_file()
    assert "wheel" not in project["build-system"]["requires"]


def _run_function_node(func: str, msg: dict[str, Any]) -> Any:
    """Run a Node-RED function node's code with node.js, as Node-RED does (msg in, what it returns out)."""
    script = f"const msg = {json.dumps(msg)};\nconst out = (function (msg) {{\n{func}\n}})(msg);\n"
    script += "process.stdout.write(JSON.stringify(out === undefined ? null : out));\n"
    result = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


def test_packaging_node_red_flow_survives_emptied_topics() -> None:
    """Topics the contract empties (a renamed network's rates and map): the rates table shows nothing
    and the map's file is deleted, not parsed as JSON or written as 0 bytes; real payloads still work."""
    flow = {
        n["id"]: n for n in json.loads((ROOT / "docs" / "node-red-flow.json").read_text(encoding="utf-8"))
    }
    assert flow["rates_in"]["datatype"] == "utf8"  # the node itself would log a JSON parse failure
    rates = flow["rates_table"]["func"]
    assert _run_function_node(rates, {"topic": "devolo/network/home/rates", "payload": ""}) is None
    matrix = {
        "network": "home",
        "devices": [{"mac": "aa", "name": "Office"}, {"mac": "bb", "name": "Attic"}],
        "rates": [{"from": "aa", "to": "bb", "tx_rate": 300.5, "rx_rate": 280.0}],
    }
    table = _run_function_node(rates, {"topic": "devolo/network/home/rates", "payload": json.dumps(matrix)})
    assert table["payload"] == [
        {"network": "home", "from": "Office", "to": "Attic", "tx": 300.5, "rx": 280.0}
    ]
    maps = flow["map_file_name"]["func"]
    written, deleted = _run_function_node(maps, {"topic": "devolo/network/home/map", "payload": "<svg/>"})
    assert written["filename"] == "/tmp/devolo-map-home.svg" and deleted is None
    written, deleted = _run_function_node(maps, {"topic": "devolo/network/old/map", "payload": ""})
    assert written is None and deleted["filename"] == "/tmp/devolo-map-old.svg"
    assert flow["map_file_name"]["wires"] == [["map_file"], ["map_delete"]]
    assert flow["map_delete"]["overwriteFile"] == "delete" and flow["map_file"]["overwriteFile"] == "true"
