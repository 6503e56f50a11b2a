"""Run-time control of a running `devolo-mqtt emulate` through its standard input, one command a line:

    fault <serial> <none|unreachable|slow|vanished|http_500|malformed|stale_nonce|wrong_password>
    unplug <serial> | plug <serial>
    move <station mac> <ap serial | away>
    wire <lan device mac> <adapter serial | away>   (plug a LAN device into an adapter's port, or unplug it)
    advance <seconds>
    rate <from serial> <to serial> <Mbit/s | base>   (hold a PLC link's rate; `base` lets it go)
    hang <from serial> <to serial> <Mbit/s>   (hold it until either end restarts: a hung PLC chip)
    silence <serial> <deviceapi|plcnet> <N | Ts | on>   (its next N mDNS queries, T seconds, or until
                                                         `speak`, unanswered)
    speak <serial> <deviceapi|plcnet>   (the service answers again, and the device announces itself)
    requests <endpoint>   (answered with one JSON line: authorised requests per serial, e.g. LedSettingsGet)
    leds   (answered with one JSON line: each device's LED setting, "ON" or "OFF", by serial)
    health <serial> <temperature|hops|wire_length|lost_maps|domains> <value>   (its PLC chip's support
                                                                          dump says so from now on)

Each line is answered on standard output with `ok` (or the JSON asked for) or `error: <reason>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import Callable

from devolo_mqtt.core.mac import colon_mac, normalise_mac
from devolo_mqtt.tools.emulator.server import Emulator
from devolo_mqtt.tools.emulator.world import Fault


def apply(emulator: Emulator, line: str) -> str:
    """Execute one control line; the answer (`ok`, what was asked for, or `error: …`)."""
    words = line.split()
    if not words:
        return "ok"
    verb, args = words[0].lower(), words[1:]
    commands: dict[str, tuple[int, Callable[[list[str]], str | None]]] = {
        "fault": (2, lambda a: emulator.set_fault(a[0], Fault(a[1].lower()))),
        "unplug": (1, lambda a: emulator.unplug(a[0])),
        "plug": (1, lambda a: emulator.unplug(a[0], plugged=True)),
        "move": (
            2,
            lambda a: emulator.world.move_station(
                colon_mac(normalise_mac(a[0])), None if a[1] == "away" else a[1]
            ),
        ),
        "wire": (2, lambda a: emulator.world.wire(normalise_mac(a[0]), None if a[1] == "away" else a[1])),
        "advance": (1, lambda a: emulator.advance(float(a[0]))),
        "rate": (
            3,
            lambda a: emulator.world.set_link_rate(a[0], a[1], None if a[2] == "base" else float(a[2])),
        ),
        "hang": (3, lambda a: emulator.world.set_link_rate(a[0], a[1], float(a[2]), heals=True)),
        "silence": (3, lambda a: _silence(emulator, *a)),
        "health": (3, lambda a: _health(emulator, *a)),
        "speak": (2, lambda a: emulator.speak(a[0], a[1])),
        "requests": (
            1,
            lambda a: json.dumps(
                {d.serial: d.requests.get(a[0], 0) for d in emulator.world.devices.values()}
            ),
        ),
        "leds": (
            0,
            lambda _: json.dumps(
                {d.serial: "ON" if d.leds else "OFF" for d in emulator.world.devices.values()}
            ),
        ),
    }
    if verb not in commands:
        return f"error: unknown command {verb!r}; known: {', '.join(commands)}"
    count, run = commands[verb]
    if len(args) != count:
        return f"error: {verb} takes {count} argument(s)"
    try:
        return run(args) or "ok"
    except KeyError as err:
        return f"error: unknown device or station {err}"
    except ValueError as err:
        return f"error: {err}"


def _health(emulator: Emulator, serial: str, what: str, value: str) -> None:
    health = emulator.device(serial).health
    if what not in health:
        raise ValueError(f"health is one of {', '.join(health)}")
    health[what] = float(value)


def _silence(emulator: Emulator, serial: str, service: str, amount: str) -> None:
    if amount == "on":
        emulator.silence(serial, service)
    elif amount.endswith("s"):
        emulator.silence(serial, service, seconds=float(amount[:-1]))
    else:
        emulator.silence(serial, service, queries=int(amount))


async def serve_stdin(emulator: Emulator) -> None:
    """Read control lines from standard input until it closes."""
    if not _readable_stream(sys.stdin.fileno()):
        return  # /dev/null or a regular file: nothing to wait for (the event loop cannot watch them)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        return  # no usable standard input (a terminal is fine, /dev/null just ends)
    while line := await reader.readline():
        sys.stdout.write(apply(emulator, line.decode(errors="replace")) + "\n")
        sys.stdout.flush()


def _readable_stream(fd: int) -> bool:
    """Whether the event loop can watch `fd`: a pipe, a socket or a terminal."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)
