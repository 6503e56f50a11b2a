"""The `devolo-mqtt` command as users run it: exit codes, signals, and what reaches the logs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from devolo_mqtt import __version__
from devolo_mqtt.core.errors import ConfigError
from devolo_mqtt.settings import load_settings
from devolo_mqtt.tools.emulator.scenario import Scenario
from tests.conftest import StartEmulator
from tests.helpers import Broker, Probe, cli_config, retained

WIFI_NEXT = "1000000000000002"
CLI = [sys.executable, "-m", "devolo_mqtt"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command and wait for it."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_cli_version_and_help() -> None:
    """`--version` prints the version; `--help` lists the commands."""
    assert cli("--version").stdout.strip() == f"devolo-mqtt {__version__}"
    help_text = cli("--help").stdout
    for command in ("run", "discover", "check-config", "emulate"):
        assert command in help_text


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (
            {"devices": [{"serial": "111", "ip": "127.0.0.9"}, {"serial": "111", "ip": "127.0.0.8"}]},
            "devices.1.serial",
        ),
        ({"devices": [{"id": "a", "serial": "1"}, {"id": "a", "serial": "2"}]}, "devices.1.id"),
        ({"mqtt": {"hostname": "x"}}, "mqtt.hostname"),
        ({"devices": [{"ip": "300.1.2.3"}]}, "devices.0.ip"),
        ({"devices": [{"mac": "not-a-mac", "manageable": False}]}, "devices.0.mac"),
        ({"polling": {"state": -1}}, "polling.state"),
        ({"mqtt": {"base_topic": "a" * 70_000}}, "mqtt.base_topic"),
        ({"mqtt": {"base_topic": "dev\x00olo"}}, "mqtt.base_topic"),
        ({"homeassistant": {"status_topic": "#"}}, "homeassistant.status_topic"),
        ({"mac_names": {"00:11:22:33:44:55": "n" * 65}}, "mac_names.00:11:22:33:44:55"),
        ({"mqtt": {"session_expiry": -1}}, "mqtt.session_expiry"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_cli_bad_config_exits_2_naming_the_field(
    tmp_path: Path, config: dict[str, object], field: str, command: str
) -> None:
    """A bad configuration stops before any I/O with exit code 2 and the field's name."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = cli(command, "--config", str(path))
    assert result.returncode == 2
    assert field in result.stderr


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as another user"
)
def test_cli_unreadable_config_names_the_user_who_needs_access(tmp_path: Path) -> None:
    """A config file of mode 600 owned by root (a careful user's choice in Docker), read as the image's
    user would: a configuration error that says which uid and gid need read access."""
    path = tmp_path / "config.yaml"
    path.write_text("device_password: secret\n", encoding="utf-8")
    path.chmod(0o600)
    tmp_path.chmod(0o755)
    os.setegid(65534)
    os.seteuid(65534)
    try:
        with pytest.raises(ConfigError) as refused:
            load_settings(path)
    finally:
        os.seteuid(0)
        os.setegid(0)
    assert "Permission denied" in str(refused.value) and "uid 65534, gid 65534" in str(refused.value)
    assert refused.value.field == "--config"


def test_cli_env_overrides_and_secret_files(tmp_path: Path) -> None:
    """Environment variables override the file; `*_FILE` reads a Docker secret; check-config says OK."""
    path = tmp_path / "config.yaml"
    path.write_text("mqtt:\n  host: from-file\n", encoding="utf-8")
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret\n", encoding="utf-8")
    result = cli(
        "check-config",
        "--config",
        str(path),
        env={"DEVOLO_MQTT_MQTT__HOST": "from-env", "DEVOLO_MQTT_MQTT__PASSWORD_FILE": str(secret)},
    )
    assert result.returncode == 0, result.stderr
    assert "broker from-env:1883" in result.stdout
    missing = cli("check-config", env={"DEVOLO_MQTT_MQTT__PASSWORD_FILE": str(tmp_path / "nope")})
    assert missing.returncode == 2 and "password_file" in missing.stderr


async def test_cli_run_sigterm_publishes_offline_and_exits_0(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    broker: Broker,
    probe: Probe,
    base_topic: str,
    tmp_path: Path,
) -> None:
    """SIGTERM: retained `offline` for the bridge and every device, then exit code 0.

    Debug logging is on (devolo_plc_api and httpx included), a guest WiFi switch happens and
    `devolo-mqtt diagnostics` asks the running bridge for its snapshot: no device password, its sha256
    form, the MQTT password or the guest WiFi key appears in the output, the snapshot or on MQTT.
    """
    emulator = await start_emulator(demo_scenario)
    mqtt_password = "mqtt-pa55-word"
    path = cli_config(
        broker,
        base_topic,
        tmp_path,
        mqtt={"username": "bridge", "password": mqtt_password},
        logging={"level": "DEBUG", "format": "json"},
    )
    process = await asyncio.create_subprocess_exec(
        *CLI, "run", "--config", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        await probe.wait_for(
            f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online", within=20
        )
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(f"{base_topic}/{WIFI_NEXT}/set/guest_wifi", "ON")
        await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: r["status"] == "ok")
        await probe.wait_json(f"{base_topic}/bridge/info", lambda i: True)
        asked = await asyncio.create_subprocess_exec(
            *CLI, "diagnostics", "--config", str(path), stdout=asyncio.subprocess.PIPE
        )
        snapshot_text, _ = await asyncio.wait_for(asked.communicate(), 30)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, output.decode()[-2000:]
    await probe.wait_for(f"{base_topic}/bridge/state", lambda m: m.payload == b"offline")
    await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"offline")
    # A clean stop leaves no hello behind: the next run has no running bridge to wait for.
    assert probe.on(f"{base_topic}/bridge/instance")[0].payload
    assert await retained(broker.port, f"{base_topic}/bridge/instance", within=1.0) is None
    assert asked.returncode == 0
    snapshot = json.loads(snapshot_text)
    diagnosed = {d["serial"]: d for d in snapshot["devices"]}
    assert diagnosed[WIFI_NEXT]["firmware"] and "wifi1" in diagnosed[WIFI_NEXT]["features"]
    assert snapshot["mqtt"]["connected"] is True and snapshot["mqtt"]["published"] > 0
    assert snapshot["config"]["mqtt"]["password"] == "**********"
    text = output.decode() + snapshot_text.decode()
    assert "device_connected" in text and "LedSettingsGet" in text  # debug output really was captured
    guest_key = emulator.device(WIFI_NEXT).spec.guest_key
    for secret in ("demo-secret", hashlib.sha256(b"demo-secret").hexdigest(), mqtt_password, guest_key):
        assert secret not in text, f"secret leaked into the log: {secret[:3]}…"
    published = b"".join(m.payload for m in probe.messages)
    for raw in (b"demo-secret", mqtt_password.encode(), guest_key.encode()):
        assert raw not in published


async def test_cli_discover_prints_table_and_config_snippet(
    demo_scenario: Scenario, start_emulator: StartEmulator
) -> None:
    """`devolo-mqtt discover` lists every manageable device and a ready-to-paste config snippet."""
    await start_emulator(demo_scenario)
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "discover",
        "--interface",
        "127.0.0.1",
        "--seconds",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    text = stdout.decode()
    addresses = demo_scenario.addresses()
    for serial, ip in addresses.items():
        assert f'- serial: "{serial}"\n    ip: {ip}' in text
    assert "1000000000000004" not in text  # an adapter without API answers no mDNS
    snippet = yaml.safe_load(text.split("# paste into your config file:\n", 1)[1])
    ours = [d for d in snippet["devices"] if d["ip"] in addresses.values()]  # (a demo may run too)
    assert len(ours) == len(addresses)


async def test_cli_emulate_is_controlled_at_run_time(
    demo_scenario: Scenario, tmp_path: Path, library: Any
) -> None:
    """`devolo-mqtt emulate` takes fault commands on stdin; the library sees them immediately."""
    from devolo_plc_api import Device  # noqa: PLC0415
    from devolo_plc_api.exceptions import DeviceUnavailable  # noqa: PLC0415

    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(demo_scenario.model_dump(mode="json")), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "emulate",
        "--scenario",
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None

    async def control(line: str) -> str:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(f"{line}\n".encode())
        await process.stdin.drain()
        return (await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip()

    try:
        for _ in demo_scenario.devices:
            await asyncio.wait_for(process.stdout.readline(), 20)
        banner = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert banner == "device password: demo-secret"  # what the bridge needs to reach them
        zeroconf, client = library
        device = Device(demo_scenario.addresses()[WIFI_NEXT], zeroconf_instance=zeroconf)
        await device.async_connect(session_instance=client)
        assert device.device is not None
        assert await device.device.async_get_led_setting() is True
        assert await control(f"fault {WIFI_NEXT} unreachable") == "ok"
        with pytest.raises(DeviceUnavailable):
            await device.device.async_get_led_setting()
        assert await control(f"fault {WIFI_NEXT} none") == "ok"
        assert await device.device.async_get_led_setting() is True
        assert (await control("fault 123 unreachable")).startswith("error: unknown device")
        assert (await control("explode")).startswith("error: unknown command")
        await device.async_disconnect()
    finally:
        process.terminate()
        await process.wait()


def test_cli_diagnostics_without_a_bridge_says_why_and_exits_1(broker: Broker, tmp_path: Path) -> None:
    """No bridge on the base topic: exit 1 and a sentence naming the topic and broker, no traceback."""
    path = cli_config(broker, "nobody-here", tmp_path)
    done = subprocess.run(
        [*CLI, "diagnostics", "--config", str(path), "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "no bridge answered on nobody-here/bridge/response/diagnostics" in done.stderr
    assert f"127.0.0.1:{broker.port}" in done.stderr and "Traceback" not in done.stderr
