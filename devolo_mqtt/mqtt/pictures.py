"""A PLC network's picture on MQTT: the SVG at once, its PNG twin (for openHAB's Image channels and
Home Assistant's camera) painted in a worker thread — ~15 ms of Pillow that would otherwise stall
every device's commands — and published only while it is still the newest picture of its network."""

from __future__ import annotations

import asyncio

from devolo_mqtt.mqtt.publisher import Publisher
from devolo_mqtt.plc import plcmap


class NetworkPictures:
    """What the network monitor draws, on MQTT."""

    def __init__(self, publisher: Publisher) -> None:
        self._out = publisher
        self._shown: dict[str, str] = {}  # per network: the SVG published last
        self._painting: set[asyncio.Task[None]] = set()

    def show(self, network_id: str, shapes: list[plcmap.Shape]) -> None:
        """A network's (re)drawn picture; nothing is sent or painted when it looks the same."""
        svg = plcmap.svg(shapes)
        if self._shown.get(network_id) == svg:
            return
        self._shown[network_id] = svg
        self._out.network_map(network_id, svg)
        task = asyncio.get_running_loop().create_task(self._paint(network_id, svg, shapes))
        self._painting.add(task)
        task.add_done_callback(self._painting.discard)

    async def _paint(self, network_id: str, svg: str, shapes: list[plcmap.Shape]) -> None:
        png = await asyncio.to_thread(plcmap.png, shapes)
        if self._shown.get(network_id) == svg:  # not redrawn (or retired) meanwhile
            self._out.network_map_png(network_id, png)

    def forget(self, network_id: str) -> None:
        """A network id no longer used: its retained topics are emptied."""
        self._shown.pop(network_id, None)
        self._out.forget_network(network_id)
