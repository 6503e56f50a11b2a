"""A multi-address mDNS responder for the emulated devices.

python-zeroconf as a responder needs one instance per address, and several zeroconf instances on one
host steal each other's unicast replies (replies to port 5353 land on a random socket of the
SO_REUSEPORT group). So the emulator answers with sockets of its own: one bound to each device's
`ip:5353` (the library's unicast QU questions are sent there) and one bound to the group address
`224.0.0.251:5353` (multicast queries; binding the group address keeps it out of the unicast race).
Records are built and encoded by zeroconf itself (`ServiceInfo`, `DNSIncoming`, `DNSOutgoing`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from zeroconf import DNSIncoming, DNSOutgoing, DNSRecord, ServiceInfo

from devolo_mqtt.tools.emulator.world import EmulatedDevice

DEVICEAPI = "_dvl-deviceapi._tcp.local."
PLCNETAPI = "_dvl-plcnetapi._tcp.local."
MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
_TYPE_ANY = 255
_FLAGS_RESPONSE = 0x8400  # QR | AA
_SERVICES = "_services._dns-sd._udp.local."


_COPY_EVERY = 5.0  # seconds between multicast copies of one device's answers to the same question


def api_path(serial: str) -> str:
    """The 16-character path prefix a device announces (stable per serial)."""
    return hashlib.sha256(serial.encode()).hexdigest()[:16]


def service_infos(device: EmulatedDevice, port: int) -> list[ServiceInfo]:
    """The services a device announces, with TXT records as real devices send them."""
    assert device.ip is not None
    product = device.product
    # Names carry the address too: two emulators serving the same scenario (the demo and a test run)
    # must not merge each other's records in a shared mDNS cache.
    where = device.ip.replace(".", "-")
    instance = f"{product.product} {device.serial} {where}"
    server = f"devolo-{device.serial}-{where}.local."
    address = [socket.inet_aton(device.ip)]
    deviceapi = {
        "Path": f"{api_path(device.serial)}/deviceapi",
        "Version": "v0",
        "MinorVersion": "2",
        "Product": product.product,
        "Features": ",".join(product.features),
        "MT": product.mt,
        "SN": device.spec.announce_serial or device.serial,
        "FirmwareVersion": device.firmware,
        "FirmwareDate": device.firmware_date,
        "PS": "0x03",
    }
    infos = [
        ServiceInfo(
            DEVICEAPI,
            f"{instance}.{DEVICEAPI}",
            port=port,
            properties=deviceapi,
            server=server,
            addresses=address,
        )
    ]
    if product.plcnet and device.plc_mac:
        plcnet = {
            "Path": f"{api_path(device.serial)}/plcnetapi",
            "Version": "v0",
            "PlcMacAddress": device.plc_mac,
            "PlcTechnology": product.plc_technology_txt,
        }
        infos.append(
            ServiceInfo(
                PLCNETAPI,
                f"{instance}.{PLCNETAPI}",
                port=port,
                properties=plcnet,
                server=server,
                addresses=address,
            )
        )
    return infos


def _records(info: ServiceInfo) -> tuple[DNSRecord, list[DNSRecord]]:
    """A service's PTR and its unique records (SRV, TXT, A)."""
    return info.dns_pointer(), [info.dns_service(), info.dns_text(), *info.dns_addresses()]


def answers_for(
    infos: Iterable[ServiceInfo], incoming: DNSIncoming
) -> tuple[list[DNSRecord], list[DNSRecord]]:
    """Answers and additional records for the questions of one query."""
    answers: list[DNSRecord] = []
    additional: list[DNSRecord] = []
    for question in incoming.questions:
        qname, qtype = question.name.lower(), question.type
        for info in infos:
            pointer, unique = _records(info)
            if qname == _SERVICES.lower():
                answers.append(ServicePointer(info.type).record())
            elif qname == info.type.lower() and qtype in (pointer.type, _TYPE_ANY):
                answers.append(pointer)
                additional.extend(unique)
            else:
                answers.extend(r for r in unique if r.name.lower() == qname and qtype in (r.type, _TYPE_ANY))
    # Known-answer suppression (RFC 6762 §7.1): a record the querier listed, with at least half its TTL
    # left, is not sent again. Browsers repeat their query a few times at start-up; without this, every
    # repeat of 200 devices is a burst of 200 answers, and a device lost in the first burst would be
    # lost in each of the others too.
    known = {record: record.ttl for record in incoming.answers()}
    unique_answers = [a for a in dict.fromkeys(answers) if known.get(a, -1) < a.ttl / 2]
    if not unique_answers:
        return [], []
    return unique_answers, [r for r in dict.fromkeys(additional) if r not in unique_answers]


@dataclass(frozen=True, slots=True)
class ServicePointer:
    """The DNS-SD meta-query answer naming a service type."""

    service_type: str

    def record(self) -> DNSRecord:
        """`_services._dns-sd._udp.local.` PTR → the service type."""
        from zeroconf import DNSPointer  # noqa: PLC0415 - only meta-queries need it

        return DNSPointer(_SERVICES, 12, 1, 4500, self.service_type)


def encode(
    answers: list[DNSRecord], additional: list[DNSRecord], incoming: DNSIncoming | None, legacy: bool
) -> list[bytes]:
    """Encode a response; a legacy unicast reply (source port ≠ 5353) echoes the id and questions."""
    out = DNSOutgoing(_FLAGS_RESPONSE, multicast=not legacy, id_=incoming.id if legacy and incoming else 0)
    if legacy and incoming is not None:
        for question in incoming.questions:
            out.add_question(question)
    for record in answers:
        out.add_answer_at_time(record, 0)
    for record in additional:
        out.add_additional_answer(record)
    return out.packets()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, handler: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._handler = handler

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._handler(data, addr)


def _udp_socket(bind: str, interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Multicast leaves through the interface that holds `interface`, never the default route.
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    sock.bind((bind, MDNS_PORT))
    sock.setblocking(False)
    return sock


SERVICES = {DEVICEAPI: "deviceapi", PLCNETAPI: "plcnet"}  # as `silence` names them


def answering(device: EmulatedDevice, port: int, *, now: float, count: bool = True) -> list[ServiceInfo]:
    """The services that answer this query (or announcement): all but the silenced ones."""
    infos = []
    for info in service_infos(device, port):
        silence = device.silenced.get(SERVICES[info.type])
        if silence is None:
            infos.append(info)
        elif not (silence.swallows(now) if count else (silence.queries > 0 or now < silence.until)):
            del device.silenced[SERVICES[info.type]]
            infos.append(info)
    return infos


class MdnsResponder:
    """Answers mDNS for every announcing device of the emulator."""

    def __init__(
        self,
        devices: Callable[[], Iterable[EmulatedDevice]],
        is_live: Callable[[EmulatedDevice], bool],
        port: int,
        interface: str | None = None,
    ) -> None:
        self._devices = devices
        self._is_live = is_live
        self._port = port
        self._interface = interface
        self._transports: dict[str, asyncio.DatagramTransport] = {}
        self._group: asyncio.DatagramTransport | None = None
        self._queriers: dict[str, set[tuple[str, int]]] = {}
        self._copied: dict[tuple[str, ...], float] = {}  # (serial, questions) → last multicast copy

    async def start(self) -> None:
        """Open one socket per device address and one for the multicast group."""
        loop = asyncio.get_running_loop()
        for device in self._devices():
            assert device.ip is not None
            sock = _udp_socket(device.ip, self._interface or device.ip)
            handler = functools.partial(self._on_unicast, device)
            protocol = functools.partial(_Protocol, handler)
            transport, _ = await loop.create_datagram_endpoint(protocol, sock=sock)
            self._transports[device.ip] = transport
        interface = self._interface or next(iter(self._transports), "127.0.0.1")
        group = _udp_socket(MDNS_GROUP, interface)
        group.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(MDNS_GROUP) + socket.inet_aton(interface),
        )
        self._group, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._on_multicast), sock=group
        )

    def close(self) -> None:
        """Close every socket."""
        for transport in [*self._transports.values(), *([self._group] if self._group else [])]:
            transport.close()
        self._transports.clear()
        self._group = None

    def _on_unicast(self, device: EmulatedDevice, data: bytes, addr: tuple[str, int]) -> None:
        incoming = DNSIncoming(data)
        if not incoming.valid or not incoming.is_query() or not self._is_live(device):
            return
        answers, additional = answers_for(answering(device, self._port, now=time.monotonic()), incoming)
        if not answers:
            return
        legacy = addr[1] != MDNS_PORT
        packets = encode(answers, additional, incoming, legacy)
        self._send(device, packets, addr)
        if not legacy:
            self._queriers.setdefault(device.serial, set()).add(addr)
            # Several mDNS stacks on one host share port 5353 (SO_REUSEPORT), and the kernel hands a
            # unicast reply to just one of them — not necessarily the querier's. A multicast copy
            # (RFC 6762 §5.4: multicast a QU answer not multicast recently) reaches every stack, the
            # querier's included; at most one per device and question every few seconds, so 200
            # devices connecting at once do not double the mDNS traffic.
            now, asked = (
                time.monotonic(),
                (device.serial, *sorted(q.name.lower() for q in incoming.questions)),
            )
            if now - self._copied.get(asked, -_COPY_EVERY) >= _COPY_EVERY:
                self._copied[asked] = now
                self._send(device, packets, (MDNS_GROUP, MDNS_PORT))

    def _on_multicast(self, data: bytes, addr: tuple[str, int]) -> None:
        incoming = DNSIncoming(data)
        if not incoming.valid or not incoming.is_query():
            return
        legacy = addr[1] != MDNS_PORT
        for device in self._devices():
            if not self._is_live(device):
                continue
            answers, additional = answers_for(answering(device, self._port, now=time.monotonic()), incoming)
            if answers:
                target = addr if legacy or incoming.has_qu_question() else (MDNS_GROUP, MDNS_PORT)
                packets = encode(answers, additional, incoming, legacy)
                # RFC 6762 §6: answers to a multicast query go out after a random 20-120 ms, so that a
                # network of devices does not answer in one burst (which drops packets at the querier).
                delay = random.uniform(0.02, 0.12)
                asyncio.get_running_loop().call_later(delay, self._send, device, packets, target)

    def announce(self, device: EmulatedDevice) -> None:
        """Send a device's records unsolicited (start-up, changed TXT such as a new firmware).

        Sent to the multicast group like a real device, and also to every host that asked this
        device by unicast, so a querier on a link without multicast still learns the change.
        """
        if not self._is_live(device):
            return
        answers: list[DNSRecord] = []
        for info in answering(device, self._port, now=time.monotonic(), count=False):
            pointer, unique = _records(info)
            answers.extend([pointer, *unique])
        packets = encode(answers, [], None, legacy=False)
        for target in {(MDNS_GROUP, MDNS_PORT), *self._queriers.get(device.serial, set())}:
            self._send(device, packets, target)

    def _send(self, device: EmulatedDevice, packets: list[bytes], target: tuple[str, int]) -> None:
        transport = self._transports.get(device.ip or "")
        if transport is None or transport.is_closing():
            return
        for packet in packets:
            transport.sendto(packet, target)
