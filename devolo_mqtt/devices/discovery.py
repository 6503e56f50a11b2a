"""Finding devices: continuous mDNS browsing for the device API, plus configured addresses (for VLANs
and Docker setups where multicast cannot reach).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from zeroconf import DNSOutgoing, DNSQuestion, ServiceStateChange, Zeroconf, current_time_millis
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
from zeroconf.const import _CLASS_IN, _FLAGS_QR_QUERY, _TYPE_PTR

from devolo_mqtt.core.backoff import Backoff
from devolo_mqtt.core.tasks import honour_cancellation

log = structlog.get_logger("devolo_mqtt.devices.discovery")
DEVICEAPI = "_dvl-deviceapi._tcp.local."
HOME_CONTROL_MT = frozenset({"2600", "2601"})  # devolo Home Control central units: not ours
_INFO_TIMEOUT_MS = 3000
# python-zeroconf's browser asks four times at start-up, then only when a known record nears expiry
# (an hour): a device whose answers were all lost in the start-up bursts would stay unknown that long.
# We ask again ourselves — often at first, then every few minutes — listing what we know, so only the
# devices we do not know yet answer.
_REQUERY_FIRST = (1.0, 2.0, 4.0, 8.0)  # seconds before the first extra queries (start-up bursts lose most)
_REQUERY_EARLY = 10.0  # then between extra queries during the first two minutes
_REQUERY_LATE = 300.0
_QUIET_ATTEMPTS = 3  # failed resolutions before one INFO line (a busy network drops mDNS answers)


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
        self._resolving: dict[str, asyncio.Task[None]] = {}  # service name → its resolution

    async def run(self) -> None:
        """Browse until cancelled."""
        browser = AsyncServiceBrowser(self._zeroconf.zeroconf, [DEVICEAPI], handlers=[self._changed])
        log.info("discovery_started")
        try:
            started = asyncio.get_running_loop().time()
            for delay in _REQUERY_FIRST:
                await asyncio.sleep(delay)
                self._ask_again()
            while True:
                early = asyncio.get_running_loop().time() - started < 120
                await asyncio.sleep(_REQUERY_EARLY if early else _REQUERY_LATE)
                self._ask_again()
        finally:
            await browser.async_cancel()
            for task in self._resolving.values():
                task.cancel()

    def _ask_again(self) -> None:
        """One PTR query for the device API, with known-answer suppression (RFC 6762 §7.1)."""
        zc = self._zeroconf.zeroconf
        out = DNSOutgoing(_FLAGS_QR_QUERY)
        out.add_question(DNSQuestion(DEVICEAPI, _TYPE_PTR, _CLASS_IN))
        now = current_time_millis()
        for record in zc.cache.async_all_by_details(DEVICEAPI, _TYPE_PTR, _CLASS_IN):
            out.add_answer_at_time(record, now)
        zc.async_send(out)

    def _changed(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            if (pending := self._resolving.pop(name, None)) is not None:
                pending.cancel()
            serial = self._names.pop(name, None)
            if serial is not None:
                self._on_gone(serial)
            return
        if name in self._resolving:
            return  # already being resolved (an update while it is): one resolution per name
        # Resolving needs I/O; these tasks are owned here and cancelled with the browser.
        task = asyncio.get_running_loop().create_task(self._resolve(name))
        self._resolving[name] = task
        task.add_done_callback(lambda _: self._resolving.pop(name, None))

    async def _resolve(self, name: str) -> None:
        """Ask until the device answers (or leaves): one lost answer must never lose a device for good."""
        info = AsyncServiceInfo(DEVICEAPI, name)
        backoff = Backoff(2.0, 60.0, jitter=0.2)
        attempt = 0
        while not await info.async_request(self._zeroconf.zeroconf, _INFO_TIMEOUT_MS):
            attempt += 1
            honour_cancellation()
            (log.info if attempt == _QUIET_ATTEMPTS else log.debug)(
                "discovery_unresolved", service=name, attempt=attempt
            )
            await asyncio.sleep(backoff.next())
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
