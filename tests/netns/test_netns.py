"""The realistic tier: emulator and bridge in two network namespaces joined by a veth pair, with real
multicast between them. Needs root and iproute2; skipped with the reason otherwise. Every address used
here exists only inside the namespaces this test creates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from devolo_mqtt.tools.emulator.builtin import DEMO_HOME

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.213.0"
BRIDGE_IP = f"{SUBNET}.1"


@dataclass
class Namespaces:
    """The two test hosts."""

    emulator: str
    bridge: str
    workdir: Path

    def run(self, ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside a namespace and wait for it."""
        return subprocess.run(
            ["ip", "netns", "exec", ns, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )

    def start(self, ns: str, *args: str) -> subprocess.Popen[str]:
        """Start a command inside a namespace."""
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the network-namespace tier needs root (ip netns)"
    if shutil.which("ip") is None:
        return "the network-namespace tier needs iproute2 (ip)"
    probe = f"dvmprobe{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False).returncode != 0:
        return "this machine does not allow creating network namespaces"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture(scope="module")
def namespaces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespaces]:
    """Two namespaces, a veth pair between them, five device addresses on the emulator side."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    emu, br = f"dvm-e-{tag}", f"dvm-b-{tag}"
    _sh("ip", "netns", "add", emu)
    _sh("ip", "netns", "add", br)
    try:
        _sh("ip", "link", "add", f"ve{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        _sh("ip", "link", "set", f"ve{tag}", "netns", emu)
        _sh("ip", "link", "set", f"vb{tag}", "netns", br)
        for i in range(10, 15):
            _sh("ip", "-n", emu, "addr", "add", f"{SUBNET}.{i}/24", "dev", f"ve{tag}")
        _sh("ip", "-n", br, "addr", "add", f"{BRIDGE_IP}/24", "dev", f"vb{tag}")
        for ns, dev in ((emu, f"ve{tag}"), (br, f"vb{tag}")):
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "link", "set", dev, "up")
        yield Namespaces(emu, br, tmp_path_factory.mktemp("netns"))
    finally:
        subprocess.run(["ip", "netns", "del", emu], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", br], capture_output=True, check=False)


@pytest.fixture(scope="module")
def emulator(namespaces: Namespaces) -> Iterator[list[str]]:
    """The demo home served from the emulator namespace; yields the manageable serials."""
    scenario = {**DEMO_HOME, "address_base": f"{SUBNET}.10", "dynamics": False}
    path = namespaces.workdir / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario), encoding="utf-8")
    process = namespaces.start(
        namespaces.emulator,
        sys.executable,
        "-m",
        "devolo_mqtt",
        "emulate",
        "--scenario",
        str(path),
        "--interface",
        f"{SUBNET}.10",
    )
    assert process.stdout is not None
    for _ in range(len(scenario["devices"])):
        process.stdout.readline()
    yield [d["serial"] for d in scenario["devices"] if d["model"] not in ("dlan1200_lan", "dlan550_lan")]
    process.terminate()
    process.wait(10)


def test_netns_library_discovers_every_emulated_device(namespaces: Namespaces, emulator: list[str]) -> None:
    """devolo_plc_api's own async_discover_network() finds every device over real multicast."""
    result = namespaces.run(namespaces.bridge, sys.executable, "-m", "tests.netns.agent", "discover")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == sorted(emulator)


def test_netns_bridge_discovers_and_publishes_over_multicast(
    namespaces: Namespaces, emulator: list[str]
) -> None:
    """The bridge, browsing on its veth only, finds every device and publishes it online."""
    config = namespaces.workdir / "mosquitto.conf"
    config.write_text("listener 18883 127.0.0.1\nallow_anonymous true\npersistence false\n", encoding="utf-8")
    broker = namespaces.start(
        namespaces.bridge, shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)
    )
    try:
        time.sleep(0.5)
        result = namespaces.run(
            namespaces.bridge,
            sys.executable,
            "-m",
            "tests.netns.agent",
            "bridge",
            "18883",
            "ns",
            "12",
            BRIDGE_IP,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        for serial in emulator:
            assert seen.get(f"ns/{serial}/availability") == "online", serial
            assert "firmware" in json.loads(seen[f"ns/{serial}"])
    finally:
        broker.terminate()
        broker.wait(10)
