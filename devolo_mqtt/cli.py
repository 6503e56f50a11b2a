"""The `devolo-mqtt` command: run, discover, check-config, emulate, demo, bench, health, diagnostics."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncZeroconf

from devolo_mqtt import __version__, log
from devolo_mqtt.core.errors import ConfigError, DuplicateInstanceError
from devolo_mqtt.settings import Settings, load_settings

EXIT_CONFIG = 2
EXIT_DUPLICATE = 3  # another bridge already runs on the same topics


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devolo-mqtt", description="devolo powerline and WiFi adapters ⇄ MQTT"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c", "--config", type=Path, help="YAML configuration file (env DEVOLO_MQTT_* overrides)"
        )

    with_config(sub.add_parser("run", help="run the bridge"))
    with_config(sub.add_parser("check-config", help="validate the configuration and exit"))
    discover = sub.add_parser("discover", help="scan the network once and print a config snippet")
    discover.add_argument("--seconds", type=float, default=5.0, help="how long to listen (default 5)")
    discover.add_argument("--interface", action="append", help="IPv4 address of an interface to scan on")
    emulate = sub.add_parser("emulate", help="serve emulated devolo devices (no hardware needed)")
    emulate.add_argument("--scenario", type=Path, help="scenario YAML (default: the demo home)")
    emulate.add_argument("--count", type=int, help="serve N generated devices instead")
    emulate.add_argument(
        "--address-base",
        help="first loopback address of the devices (default 127.0.10.1; --count: 127.0.20.1)",
    )
    emulate.add_argument(
        "--interface", help="address of the interface for multicast (default: each device's)"
    )
    emulate.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    emulate.add_argument(
        "--site", type=int, default=0, help="with --count: serials and MACs unique to this site (0-255)"
    )
    demo = sub.add_parser("demo", help="emulated home + bridge + broker, with a live summary")
    demo.add_argument("--broker", help="HOST[:PORT] of your broker (default: a mosquitto for the demo only)")
    demo.add_argument("--port", type=int, help="port of the demo's mosquitto (default 1883, else a free one)")
    demo.add_argument(
        "--listen",
        default="0.0.0.0",  # noqa: S104 - so that a Home Assistant on another machine can try it
        help="address the demo's mosquitto listens on (default: all, for other machines too)",
    )
    demo.add_argument("--speed", type=float, default=10.0, help="simulated seconds per real second")
    bench = sub.add_parser("bench", help="benchmark the bridge next to the bare library (emulated devices)")
    bench.add_argument(
        "--devices", type=int, help="emulated devices (default 50, with --chaos 30; at most 250)"
    )
    bench.add_argument("--window", type=float, default=60.0, help="seconds of steady polling measured")
    bench.add_argument("--commands", type=int, default=200, help="/set commands timed")
    bench.add_argument("--rounds", type=int, default=6, help="rounds of the bare library loop (5 s apart)")
    bench.add_argument("--interval", type=float, default=5.0, help="the bridge's state poll interval")
    bench.add_argument("--json", type=Path, help="also write the figures to this file")
    bench.add_argument(
        "--configured", action="store_true", help="devices configured by serial + ip, mDNS browsing off"
    )
    bench.add_argument(
        "--sites",
        type=int,
        metavar="N",
        help="instead: N bridges with --devices each (default 200) on one broker, as many sites",
    )
    bench.add_argument(
        "--federated",
        action="store_true",
        help="with --sites: each site on its own mosquitto, bridged to a central one",
    )
    bench.add_argument(
        "--chaos",
        type=float,
        metavar="MINUTES",
        help="instead: a chaos run of MINUTES (device faults, broker kills and freezes, a bridge restart, "
        "command bursts with hostile payloads); reports every command's fate",
    )
    diagnostics = sub.add_parser(
        "diagnostics", help="print a running bridge's diagnostics (redacted, for bug reports)"
    )
    with_config(diagnostics)
    diagnostics.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    health = sub.add_parser(
        "health", help="exit 0 if a running bridge is connected to MQTT (Docker HEALTHCHECK)"
    )
    with_config(health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _cmd_run,
        "check-config": _cmd_check,
        "discover": _cmd_discover,
        "emulate": _cmd_emulate,
        "demo": _cmd_demo,
        "bench": _cmd_bench,
        "health": _cmd_health,
        "diagnostics": _cmd_diagnostics,
    }
    if args.command is None:
        _parser().print_help()
        return 0
    try:
        return commands[args.command](args)
    except ConfigError as err:
        print(f"devolo-mqtt: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except DuplicateInstanceError as err:
        print(f"devolo-mqtt: {err}", file=sys.stderr)
        return EXIT_DUPLICATE


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    log.configure(settings.logging.level, settings.logging.format)
    return settings


def run_until_signal(factory: Callable[[], Awaitable[None]]) -> int:
    """Run a coroutine until SIGTERM/SIGINT, then let it unwind cleanly; exit code 0."""

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await factory()
        except asyncio.CancelledError:
            structlog.get_logger("devolo_mqtt").info("stopped")
        return 0

    return asyncio.run(main())


def _cmd_run(args: argparse.Namespace) -> int:
    from devolo_mqtt.app import Bridge  # noqa: PLC0415 - keeps `--help` and `check-config` light

    settings = _settings(args)
    return run_until_signal(Bridge(settings).run)


def _cmd_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    manageable = sum(1 for d in settings.devices if d.manageable)
    print(
        f"configuration OK: broker {settings.mqtt.host}:{settings.mqtt.port}, "
        f"{manageable} manageable and {len(settings.devices) - manageable} non-manageable devices, "
        f"mDNS discovery {'on' if settings.discovery.enabled else 'off'}"
    )
    return 0


def _cmd_discover(args: argparse.Namespace) -> int:
    from devolo_mqtt.devices.discovery import scan  # noqa: PLC0415

    log.configure("WARNING")

    async def go() -> None:
        interfaces = args.interface or InterfaceChoice.All
        zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        try:
            found = await scan(zeroconf, args.seconds)
        finally:
            await zeroconf.async_close()
        if not found:
            print(
                "no devolo devices answered (mDNS needs the same network segment; in Docker: host networking)"
            )
            return
        print(f"{'serial':<18} {'ip':<16} {'MT':<6} {'firmware':<10} product")
        for f in found:
            print(f"{f.serial:<18} {f.ip:<16} {f.mt:<6} {f.firmware:<10} {f.product}")
        print("\n# paste into your config file:\ndevices:")
        for f in found:
            print(f'  - serial: "{f.serial}"\n    ip: {f.ip}\n    name: "{f.name}"')

    asyncio.run(go())
    return 0


def _cmd_emulate(args: argparse.Namespace) -> int:
    from devolo_mqtt.tools.emulator.builtin import demo_home, generated  # noqa: PLC0415
    from devolo_mqtt.tools.emulator.control import serve_stdin  # noqa: PLC0415
    from devolo_mqtt.tools.emulator.scenario import load_scenario  # noqa: PLC0415
    from devolo_mqtt.tools.emulator.server import Emulator  # noqa: PLC0415

    log.configure("INFO")
    base = {"address_base": args.address_base} if args.address_base else {}
    if args.scenario:
        scenario = load_scenario(args.scenario)
    elif args.count:
        scenario = generated(
            args.count, site=args.site, **({"base": args.address_base} if args.address_base else {})
        )
    else:
        scenario = demo_home(**base)

    async def serve() -> None:
        async with Emulator(scenario, interface=args.interface, speed=args.speed) as emulator:
            for device in emulator.world.devices.values():
                where = device.ip or f"(in the PLC network of {device.spec.network})"
                print(f"{device.serial}  {device.product.product:<28} {where}", flush=True)
            passwords = sorted({d.password for d in emulator.world.devices.values() if d.password})
            # Emulated devices, so no secret: the bridge (or you) needs it to talk to them.
            print(f"device password: {', '.join(passwords) or '(none)'}", flush=True)
            await serve_stdin(emulator)  # run-time control (faults, unplugging, stations, time)
            await asyncio.Event().wait()

    return run_until_signal(serve)


def _cmd_demo(args: argparse.Namespace) -> int:
    from devolo_mqtt.tools.demo import run_demo  # noqa: PLC0415

    log.configure("WARNING", "console")
    return run_until_signal(
        lambda: run_demo(
            args.broker, args.port, args.speed, functools.partial(print, flush=True), listen=args.listen
        )
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    from devolo_mqtt.tools.bench import run_bench, write_json  # noqa: PLC0415

    log.configure("WARNING", "console")
    if args.chaos is not None:
        return _cmd_chaos(args)
    if args.sites is not None:
        return _cmd_sites(args)

    async def bench() -> None:
        report = await run_bench(
            args.devices or 50,
            rounds=args.rounds,
            window=args.window,
            commands=args.commands,
            interval=args.interval,
            configured=args.configured,
            out=functools.partial(print, flush=True),
        )
        if args.json:
            write_json(report, args.json)

    return run_until_signal(bench)


def _cmd_chaos(args: argparse.Namespace) -> int:
    from devolo_mqtt.tools import chaos  # noqa: PLC0415

    async def run() -> None:
        report = await chaos.run_chaos(
            args.chaos, devices=args.devices or 30, out=functools.partial(print, flush=True)
        )
        if args.json:
            chaos.write_json(report, args.json)

    return run_until_signal(run)


def _cmd_sites(args: argparse.Namespace) -> int:
    from devolo_mqtt.tools import sites  # noqa: PLC0415

    async def run() -> None:
        report = await sites.run_sites(
            args.sites,
            args.devices or 200,
            federated=args.federated,
            out=functools.partial(print, flush=True),
        )
        if args.json:
            sites.write_json(report, args.json)

    return run_until_signal(run)


def _cmd_diagnostics(args: argparse.Namespace) -> int:
    from devolo_mqtt.mqtt.ask import NoAnswerError, ask_bridge  # noqa: PLC0415

    settings = load_settings(args.config)
    log.configure("WARNING", "console")
    try:
        data = asyncio.run(ask_bridge(settings, "diagnostics", within=args.timeout))
    except NoAnswerError as err:
        print(f"devolo-mqtt: {err}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    from devolo_mqtt.heartbeat import check  # noqa: PLC0415

    settings = load_settings(args.config)
    healthy, reason = check(settings.data_dir)
    print(reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
