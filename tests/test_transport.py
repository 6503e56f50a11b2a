"""The broker connection itself: TLS with a private CA and client certificate, and MQTT 3.1.1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devolo_mqtt.tools.emulator.scenario import Scenario
from tests.conftest import StartBridge, StartEmulator
from tests.helpers import Broker, Probe, free_port

WIFI_NEXT = "1000000000000002"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path: Path) -> tuple[Broker, int]:
    """Mosquitto with a plain listener (for the probe) and a TLS one that requires a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    subj = "/CN=devolo-mqtt test"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        f"{subj} CA",
        cwd=tmp_path,
    )
    for name, cn in (("server", "localhost"), ("client", "bridge")):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            cwd=tmp_path,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            "-copy_extensions",
            "copy",
            cwd=tmp_path,
        )
    broker = Broker(tmp_path)
    tls_port = free_port()
    broker.config.write_text(
        broker.config.read_text(encoding="utf-8")
        # A mosquitto started as root stays root: the test's key files are private to this user.
        + f"user root\nlistener {tls_port} 127.0.0.1\ncafile {tmp_path / 'ca.crt'}\n"
        f"certfile {tmp_path / 'server.crt'}\nkeyfile {tmp_path / 'server.key'}\nrequire_certificate true\n",
        encoding="utf-8",
    )
    broker.start()
    return broker, tls_port


async def test_transport_tls_with_client_certificate(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    tls_broker: tuple[Broker, int],
    tmp_path: Path,
    base_topic: str,
) -> None:
    """The bridge connects over TLS (private CA, client certificate) and publishes."""
    import aiomqtt  # noqa: PLC0415

    from devolo_mqtt.app import Bridge  # noqa: PLC0415
    from tests.conftest import bridge_settings  # noqa: PLC0415
    from tests.helpers import running  # noqa: PLC0415

    await start_emulator(demo_scenario)
    broker, tls_port = tls_broker
    settings = bridge_settings(
        broker,
        base_topic,
        mqtt={
            "port": tls_port,
            "ca_file": str(tmp_path / "ca.crt"),
            "cert_file": str(tmp_path / "client.crt"),
            "key_file": str(tmp_path / "client.key"),
        },
    )
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as plain, running(Bridge(settings)):
            await plain.subscribe(f"{base_topic}/{WIFI_NEXT}/availability")
            async for message in plain.messages:
                if message.payload == b"online":
                    break
    finally:
        broker.stop()


async def test_transport_mqtt_311_commands_round_trip(
    demo_scenario: Scenario,
    start_emulator: StartEmulator,
    start_bridge: StartBridge,
    probe: Probe,
    broker: Broker,
    base_topic: str,
) -> None:
    """With MQTT 3.1.1 the bridge publishes state and executes and answers commands."""
    import aiomqtt  # noqa: PLC0415

    emulator = await start_emulator(demo_scenario)
    await start_bridge(mqtt={"protocol": "3.1.1"})
    await probe.wait_for(f"{base_topic}/{WIFI_NEXT}/availability", lambda m: m.payload == b"online")
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V311) as client:
        await client.publish(f"{base_topic}/{WIFI_NEXT}/set/leds", "OFF", qos=1)
    result = await probe.wait_json(f"{base_topic}/{WIFI_NEXT}/set/result", lambda r: True)
    assert result["status"] == "ok" and result["state"] == {"leds": "OFF"}
    assert emulator.device(WIFI_NEXT).leds is False
