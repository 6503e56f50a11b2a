"""The benchmark keeps working: a five-device smoke run through the CLI, as documented, with every
figure present and plausible (the figures themselves are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(180)
@pytest.mark.parametrize("configured", [False, True])
def test_bench_smoke_run_prints_the_table_and_writes_every_figure(tmp_path: Path, configured: bool) -> None:
    """`devolo-mqtt bench` with five devices and a 1 s poll, found by mDNS or configured by serial + ip:
    every device online, nothing published while nothing changes, every /set answered, the dead
    device's neighbours polled on time, about one task per device."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "devolo_mqtt", "bench", "--devices", "5", "--interval", "1",
         "--window", "3", "--commands", "10", "--rounds", "2", "--json", str(out),
         *(["--configured"] if configured else [])],
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "ratio bridge / bare" in result.stdout and "/set → state seen, p50" in result.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["devices"] == 5 and report["configured"] is configured
    bare, bridge, dead = report["bare"], report["bridge"], report["dead"]
    assert bare["cpu_ms_per_round"] > 0 and bridge["cpu_ms_per_round"] > 0
    assert bridge["messages_per_round"] == 0  # nothing changes on the emulated devices
    assert 0 < bridge["set_ms_p50"] <= bridge["set_ms_p99"] < 5000
    assert 0 < bridge["start_s"] < 60 and bridge["rss_mib"] > 10
    # The bare library measured in a process of its own: its start and RSS are comparable.
    assert 0 < bare["connect_s"] < bare["start_s"] < 60 and 10 < bare["rss_mib"] < bridge["rss_mib"]
    assert bare["support_dump_cpu_ms"] >= 0 and 0 < bare["support_dump_ms"] < 30_000
    assert bridge["rss_mib_after_set"] > 10
    # /set by broker settings and client kind, every cell measured.
    brokers = report["brokers"]
    for cell in ("default_ha", "default_hash", "nodelay_ha", "nodelay_hash"):
        assert 0 < brokers[f"{cell}_p50"] <= brokers[f"{cell}_p99"] < 5000, brokers
    assert 1 <= bridge["tasks_per_device"] < 5  # one actor each, and the bridge's few own tasks
    assert dead["dead_devices"] == 1 and dead["state_reads_per_interval_min"] > 0.5
