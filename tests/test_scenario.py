"""Scenario files: validated up front, with errors that name the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devolo_mqtt.core.errors import ConfigError
from devolo_mqtt.tools.emulator.builtin import DEMO_HOME, demo_home, generated
from devolo_mqtt.tools.emulator.scenario import load_scenario, parse_scenario


def _with_device(**changes: Any) -> dict[str, Any]:
    devices = [dict(d) for d in DEMO_HOME["devices"]]
    devices[1].update(changes)
    return {**DEMO_HOME, "devices": devices}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (_with_device(model="magic9"), "devices.1.model", "unknown model"),
        (_with_device(serial=DEMO_HOME["devices"][0]["serial"]), "(top level)", "duplicate"),
        (_with_device(plc_mac="zz"), "devices.1.plc_mac", "not a MAC"),
        (_with_device(colour="red"), "devices.1.colour", "Extra inputs"),
        (_with_device(network=None), "devices.1", "plc_mac and network are required"),
        (
            {**DEMO_HOME, "stations": [{"mac": "00:11:22:33:44:55", "ap": "1000000000000001"}]},
            "(top level)",
            "not a WiFi access point",
        ),
    ],
)
def test_scenario_errors_name_the_field(data: dict[str, Any], field: str, words: str) -> None:
    """Each mistake is a ConfigError naming where it is."""
    with pytest.raises(ConfigError) as caught:
        parse_scenario(data)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_scenario_yaml_file_round_trip_and_bad_file(tmp_path: Path) -> None:
    """A YAML file loads; unreadable YAML is a clear error; the CLI exits 2 on it."""
    import yaml  # noqa: PLC0415

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(DEMO_HOME), encoding="utf-8")
    assert load_scenario(good) == demo_home()
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load_scenario(bad)
    result = subprocess.run(
        [sys.executable, "-m", "devolo_mqtt", "emulate", "--scenario", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and "bad.yaml" in result.stderr


def test_scenario_addresses_are_assigned_and_unique() -> None:
    """Manageable devices without an ip get consecutive free addresses; adapters without API get none."""
    addresses = demo_home().addresses()
    assert len(addresses) == 5 and len(set(addresses.values())) == 5
    assert "1000000000000004" not in addresses  # dLAN 1200+ LAN: no API
    assert len(generated(200).addresses()) == 200
