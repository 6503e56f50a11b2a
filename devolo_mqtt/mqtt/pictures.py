"""A PLC network's picture on MQTT: the SVG at once, its PNG twin (for openHAB's Image channels and
Home Assistant's camera) once the picture has stayed the same for a few seconds.

Painting a PNG costs ~15 ms of Pillow; at a start every network's picture changes with each member that
connects, and painting each of those (200 devices: 1.3 s of CPU in the first 9 s, py-spy) slowed the
start down. So the PNG is painted only after `PNG_SETTLE` seconds without a change, in a worker thread,
and published only while it is still the newest picture of its network.
"""

from __future__ import annotations

import asyncio

from devolo_mqtt.mqtt.publisher import Publisher
from devolo_mqtt.plc import plcmap

PNG_SETTLE = 5.0  # seconds a picture stays the same before its PNG is painted


class NetworkPictures:
    """What the network monitor draws, on MQTT."""

    def __init__(self, publisher: Publisher) -> None:
        self._out = publisher
        self._shown: dict[str, str] = {}  # per network: the SVG published last
        self._to_paint: dict[str, list[plcmap.Shape]] = {}  # per network: the picture its PNG waits for
        self._due: dict[str, asyncio.TimerHandle] = {}
        self._painting: set[asyncio.Task[None]] = set()

    def show(self, network_id: str, shapes: list[plcmap.Shape]) -> None:
        """A network's (re)drawn picture; nothing is sent or painted when it looks the same."""
        svg = plcmap.svg(shapes)
        if self._shown.get(network_id) == svg:
            return
        self._shown[network_id] = svg
        self._out.network_map(network_id, svg)
        self._to_paint[network_id] = shapes
        if (due := self._due.pop(network_id, None)) is not None:
            due.cancel()
        self._due[network_id] = asyncio.get_running_loop().call_later(
            PNG_SETTLE, self._paint_soon, network_id
        )

    def _paint_soon(self, network_id: str) -> None:
        self._due.pop(network_id, None)
        shapes, svg = self._to_paint.pop(network_id, None), self._shown.get(network_id)
        if shapes is None or svg is None:
            return
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
        self._to_paint.pop(network_id, None)
        if (due := self._due.pop(network_id, None)) is not None:
            due.cancel()
        self._out.forget_network(network_id)
