"""Many sites on one MQTT backbone, small: two bridges with their own devices, on one broker and as
federated site brokers joined to a central one. Every device is discovered once at the centre, no id
is claimed by two sites, a second bridge on a site's topics refuses to run, and a command from the
centre reaches its site and is answered. (`devolo-mqtt bench --sites 5` is the full-size run.)"""

from __future__ import annotations

import pytest

from devolo_mqtt.tools.sites import run_sites


@pytest.mark.timeout(180)
@pytest.mark.parametrize("federated", [False, True])
async def test_sites_two_bridges_one_backbone(federated: bool) -> None:
    lines: list[str] = []
    report = await run_sites(2, 6, federated=federated, state=2, window=3, out=lines.append)
    text = "\n".join(lines)
    assert report.discovered == 12 and report.collisions == [], text
    assert report.duplicate_refused, text
    assert report.answered == 2, text
    assert len(report.start_s) == 2 and all(r > 10 for r in report.rss_mib), text
    assert report.central_rss_mib > 0, text
