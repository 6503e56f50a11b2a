"""Finding devices: continuous mDNS browsing for the device API, plus configured addresses (for VLANs
and Docker setups where multicast cannot reach).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = structlog.get_logger("devolo_mqtt.mdns")
DEVICEAPI = "_dvl-deviceapi._tcp.local."
HOME_CONTROL_MT = frozenset({"2600", "2601"})  # devolo Home Control central units: not ours
_INFO_TIMEOUT_MS = 3000
_RESOLVE_ATTEMPTS = 3  # a busy network drops mDNS answers; one lost answer must not lose a device


@dataclass(frozen=True, slots=True)
class Found:
    """A device API announced over mDNS."""

    serial: str
    ip: str
    product: str
    mt: str
    firmware: str
    name: str


def _found(info: AsyncServiceInfo) -> Found | None:
    props = {k.decode(): (v or b"").decode(errors="replace") for k, v in info.properties.items()}
    addresses = [a for a in info.parsed_addresses() if ipaddress.ip_address(a).version == 4]
    serial = props.get("SN")
    if not serial or not addresses or props.get("MT") in HOME_CONTROL_MT:
        return None
    return Found(
        serial=serial,
        ip=addresses[0],
        product=props.get("Product", ""),
        mt=props.get("MT", ""),
        firmware=props.get("FirmwareVersion", ""),
        name=info.name.removesuffix(f".{DEVICEAPI}"),
    )


class Discovery:
    """Browses continuously; calls `on_found` for new or moved devices and `on_gone` when one leaves."""

    def __init__(
        self,
        zeroconf: AsyncZeroconf,
        on_found: Callable[[Found], None],
        on_gone: Callable[[str], None],
        *,
        accept: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self._zeroconf = zeroconf
        self._on_found = on_found
        self._on_gone = on_gone
        self._accept = accept  # by address: devices elsewhere are neither found nor gone
        self._names: dict[str, str] = {}  # service name → serial
        self._pending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Browse until cancelled."""
        browser = AsyncServiceBrowser(self._zeroconf.zeroconf, [DEVICEAPI], handlers=[self._changed])
        log.info("discovery_started")
        try:
            await asyncio.Event().wait()
        finally:
            await browser.async_cancel()
            for task in self._pending:
                task.cancel()

    def _changed(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            serial = self._names.pop(name, None)
            if serial is not None:
                self._on_gone(serial)
            return
        # Resolving needs I/O; these tasks are owned here and cancelled with the browser.
        task = asyncio.get_running_loop().create_task(self._resolve(name))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _resolve(self, name: str) -> None:
        info = AsyncServiceInfo(DEVICEAPI, name)
        for attempt in range(_RESOLVE_ATTEMPTS):
            if await info.async_request(self._zeroconf.zeroconf, _INFO_TIMEOUT_MS):
                break
            log.debug("discovery_resolve_retry", service=name, attempt=attempt + 1)
        else:
            log.info("discovery_unresolved", service=name)  # the browser reports it again on its next update
            return
        found = _found(info)
        if found is not None and self._accept(found.ip):
            self._names[name] = found.serial
            self._on_found(found)


async def scan(zeroconf: AsyncZeroconf, seconds: float) -> list[Found]:
    """One-shot scan (the `discover` command): every device that answers within `seconds`."""
    results: dict[tuple[str, str], Found] = {}
    discovery = Discovery(zeroconf, lambda f: results.__setitem__((f.serial, f.ip), f), lambda _: None)
    task = asyncio.create_task(discovery.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return sorted(results.values(), key=lambda f: f.ip)
