"""Per-device HTTP servers speaking the devolo device/plcnet API, with digest auth and faults.

Built on h11 (already a dependency of httpx) over asyncio streams: one listening socket per device
address, requests answered from the world, faults applied per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time

import h11

from devolo_mqtt.tools.emulator.endpoints import DEVICE_API, PLCNET, PLCNET_API, Endpoint
from devolo_mqtt.tools.emulator.mdns import api_path
from devolo_mqtt.tools.emulator.world import EmulatedDevice, Fault, World

REALM = "devolo"
USER = "devolo"
_MAX_BODY = 64 * 1024
NONCE_LIFETIME = 300.0  # seconds a nonce stays valid, as real web servers keep theirs for minutes
_MAX_NONCES = 4096  # the oldest go first beyond this


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _digest_params(header: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in header.removeprefix("Digest ").split(","):
        key, _, value = part.strip().partition("=")
        params[key.lower()] = value.strip('"')
    return params


class Nonces:
    """Nonces this device issued: each valid for NONCE_LIFETIME, evicted oldest first (never at random)."""

    def __init__(self) -> None:
        self._issued: dict[str, float] = {}  # insertion order is issue order

    def issue(self) -> str:
        """A fresh nonce."""
        now = time.monotonic()
        while self._issued and (
            len(self._issued) >= _MAX_NONCES or now - next(iter(self._issued.values())) > NONCE_LIFETIME
        ):
            del self._issued[next(iter(self._issued))]
        nonce = secrets.token_hex(16)
        self._issued[nonce] = now
        return nonce

    def __contains__(self, nonce: object) -> bool:
        issued = self._issued.get(nonce) if isinstance(nonce, str) else None
        return issued is not None and time.monotonic() - issued <= NONCE_LIFETIME


def digest_ok(header: str | None, method: str, password: str, nonces: Nonces) -> bool:
    """Check an `Authorization: Digest` header against the plain password or its sha256 form."""
    if not header or not header.startswith("Digest "):
        return False
    p = _digest_params(header)
    if p.get("username") != USER or p.get("nonce") not in nonces:
        return False
    ha2 = _md5(f"{method}:{p.get('uri', '')}")
    for candidate in (password, hashlib.sha256(password.encode()).hexdigest()):
        ha1 = _md5(f"{USER}:{REALM}:{candidate}")
        if p.get("qop"):
            expected = _md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p['qop']}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        if secrets.compare_digest(expected, p.get("response", "")):
            return True
    return False


class DeviceHttpServer:
    """The HTTP front end of one device."""

    def __init__(self, world: World, device: EmulatedDevice, port: int) -> None:
        self._world = world
        self._device = device
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._nonces = Nonces()
        self._prefix = f"/{api_path(device.serial)}/"

    async def start(self) -> None:
        """Listen on the device's address."""
        assert self._device.ip is not None
        self._server = await asyncio.start_server(
            self._serve, self._device.ip, self._port, reuse_address=True
        )

    async def close(self) -> None:
        """Stop listening and wait for open connections to end."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):  # keep-alive connections end with the device
                writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        self._connections.add(writer)
        try:
            while True:
                request, body = await self._read_request(conn, reader)
                if request is None:
                    break
                if not self._device.reachable(self._world.now) or self._device.fault in (
                    Fault.UNREACHABLE,
                    Fault.VANISHED,
                ):
                    break  # close without an answer, as a device in standby or rebooting does
                if self._device.fault is Fault.SLOW:
                    await asyncio.sleep(self._device.slow_seconds)
                status, headers, payload = self._respond(request, body)
                writer.write(
                    conn.send(
                        h11.Response(
                            status_code=status, headers=[*headers, ("Content-Length", str(len(payload)))]
                        )
                    )
                    or b""
                )
                writer.write(conn.send(h11.Data(data=payload)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and request is None:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    return None, b""
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    def _respond(self, request: h11.Request, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        device = self._device
        path = request.target.decode()
        endpoint, name = self._route(path)
        if endpoint is None or name in device.spec.unsupported:
            return 404, [], b""
        if endpoint.auth and not self._authorised(request):
            return self._challenge()
        if endpoint.auth and device.fault is Fault.STALE_NONCE:
            device.fault = Fault.NONE  # once: a correct answer refused as if its nonce had expired
            return self._challenge(stale=True)
        device.requests[name] = device.requests.get(name, 0) + 1  # requests that got past the door
        if device.fault is Fault.HTTP_500:
            return 500, [], b"internal error"
        if device.fault is Fault.MALFORMED:
            return 200, [], b"\xff\xff\xff\xff\x0f garbage"
        message = endpoint.handler(self._world, device, body)
        return 200, [], message.SerializeToString()

    def _challenge(self, *, stale: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
        challenge = f'Digest realm="{REALM}", nonce="{self._nonces.issue()}", qop="auth", algorithm=MD5'
        return 401, [("WWW-Authenticate", challenge + (", stale=TRUE" if stale else ""))], b""

    def _route(self, path: str) -> tuple[Endpoint | None, str]:
        if not path.startswith(self._prefix):
            return None, ""
        api, _, rest = path.removeprefix(self._prefix).partition("/")
        version, _, name = rest.partition("/")
        table = {"deviceapi": DEVICE_API, "plcnetapi": PLCNET_API}.get(api)
        if table is None or version != "v0" or name not in table:
            return None, name
        endpoint = table[name]
        product = self._device.product
        allowed = product.plcnet if endpoint.feature == PLCNET else endpoint.feature in product.features
        return (endpoint if allowed else None), name

    def _authorised(self, request: h11.Request) -> bool:
        if self._device.fault is Fault.WRONG_PASSWORD:
            return False
        header = dict(request.headers).get(b"authorization")
        return digest_ok(
            header.decode() if header else None, request.method.decode(), self._device.password, self._nonces
        )
