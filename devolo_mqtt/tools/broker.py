"""A mosquitto of our own, for the demo and the benchmark only (`run` never starts a broker): the real
broker users run, with its default settings, on a port we choose."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from contextlib import AsyncExitStack
from pathlib import Path

from devolo_mqtt.core.errors import ConfigError


def mosquitto_binary() -> str | None:
    """Where mosquitto is installed (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None
    )


async def start_mosquitto(stack: AsyncExitStack, listen: str, port: int, workdir: Path) -> None:
    """Mosquitto with its default settings and anonymous access on `listen:port`, stopped when `stack`
    closes."""
    binary = mosquitto_binary()
    if binary is None:
        raise ConfigError(
            "this needs mosquitto, which is not installed: `bash .ci/demo` installs it "
            "(or: sudo apt-get install mosquitto), or pass --broker HOST:PORT",
            field="--broker",
        )
    conf, log = workdir / "mosquitto.conf", workdir / "mosquitto.log"
    conf.write_text(
        f"listener {port} {listen}\nallow_anonymous true\npersistence false\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n"
        # As in the compose file's broker: no Nagle delay between a QoS 1 PUBACK and the state after it.
        "set_tcp_nodelay true\n",
        encoding="utf-8",
    )
    with log.open("wb") as sink:
        # A session of its own: Ctrl-C in the terminal signals the whole foreground process group, and
        # the broker must outlive the bridge's goodbye (it is stopped after it, below).
        process = await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )

    async def stop() -> None:
        if process.returncode is None:
            process.terminate()
            await process.wait()

    stack.push_async_callback(stop)
    probe = "127.0.0.1" if listen in ("0.0.0.0", "::") else listen  # noqa: S104 - comparing, not binding
    for _ in range(100):
        if process.returncode is not None:
            break
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(probe, port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    raise ConfigError(
        f"mosquitto did not start on {listen}:{port}: {text[-1] if text else 'no output'}; try --port",
        field="--port",
    )
