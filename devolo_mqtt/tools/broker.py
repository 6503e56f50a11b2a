"""A mosquitto of our own, for the demo and the benchmark only (`run` never starts a broker): the real
broker users run, with its default settings, on a port we choose."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
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
    broker = Mosquitto(listen, port, workdir)
    await broker.start()
    stack.push_async_callback(broker.stop)


class Mosquitto:
    """One mosquitto process on a fixed port that can be stopped, killed, paused and started again (the
    chaos run's broker outages)."""

    def __init__(
        self,
        listen: str,
        port: int,
        workdir: Path,
        *,
        persistence: bool = False,
        nodelay: bool = True,
        extra: str = "",
    ) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise ConfigError(
                "this needs mosquitto, which is not installed: `bash .ci/demo` installs it "
                "(or: sudo apt-get install mosquitto), or pass --broker HOST:PORT",
                field="--broker",
            )
        self._binary, self._listen, self._port = binary, listen, port
        self._conf, self._log = workdir / "mosquitto.conf", workdir / "mosquitto.log"
        store = workdir / "mosquitto-data"
        if persistence:
            # Started as root, mosquitto drops to its own user: it must reach and write its directory.
            store.mkdir(exist_ok=True)
            store.chmod(0o777)
            workdir.chmod(workdir.stat().st_mode | 0o111)
        self._conf.write_text(
            f"listener {port} {listen}\nallow_anonymous true\n"
            + (
                f"persistence true\npersistence_location {store}/\nautosave_interval 1\n"
                if persistence
                else "persistence false\n"
            )
            + "log_dest stderr\nlog_type error\nlog_type warning\n"
            # As in the compose file's broker: no Nagle delay between a QoS 1 PUBACK and the state after it.
            + ("set_tcp_nodelay true\n" if nodelay else "")
            + extra,
            encoding="utf-8",
        )
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The running process's id."""
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        with self._log.open("ab") as sink:
            # A session of its own: Ctrl-C in the terminal signals the whole foreground process group, and
            # the broker must outlive the bridge's goodbye (it is stopped after it).
            self._process = process = await asyncio.create_subprocess_exec(
                self._binary,
                "-c",
                str(self._conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )
        probe = "127.0.0.1" if self._listen in ("0.0.0.0", "::") else self._listen  # noqa: S104 - comparing
        for _ in range(100):
            if process.returncode is not None:
                break
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(probe, self._port)
                writer.close()
                return
            await asyncio.sleep(0.05)
        text = self._log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise ConfigError(
            f"mosquitto did not start on {self._listen}:{self._port}: {text[-1] if text else 'no output'}; "
            "try --port",
            field="--port",
        )

    async def stop(self, *, kill: bool = False) -> None:
        """Stop it (SIGTERM: it saves its persistence) or kill it (SIGKILL: whatever it held is lost)."""
        process = self._process
        if process is not None and process.returncode is None:
            self.resume()
            process.kill() if kill else process.terminate()
            await process.wait()

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing is answered (a hung broker)."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen broker go on (SIGCONT)."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGCONT)
