"""The import contract: the core and the pure builders import no I/O library, only the device client
touches devolo-plc-api, the bridge never imports the tools, and the package has no import circles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "devolo_mqtt"
# The pure core, and the pure builders elsewhere: they load no I/O library.
PURE = (
    *sorted(f"core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__"),
    "mqtt.topics",
    "mqtt.ha.configs",
    "plc.plcmap",
    "plc.ratematrix",
)
IO_LIBRARIES = ("devolo_plc_api", "httpx", "httpcore", "zeroconf", "aiomqtt", "paho")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, wherever the import stands (TYPE_CHECKING and functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_architecture_pure_builders_import_no_io_library() -> None:
    """The core (capability table, commands, model …), topics and Home Assistant builders load
    without any I/O library."""
    code = (
        f"import sys\nfor m in {PURE!r}: __import__('devolo_mqtt.' + m)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "devolo_mqtt.core.capabilities" in loaded  # the check ran
    offending = sorted(m for m in loaded if m.split(".")[0] in IO_LIBRARIES)
    assert offending == []


def test_architecture_only_the_device_boundary_imports_the_library() -> None:
    """devolo_plc_api is imported by `devices/client.py` alone (and by the emulator, which serves it, and the
    benchmark, which measures the bare library next to the bridge)."""
    users = {
        _module_name(path)
        for path in PACKAGE.rglob("*.py")
        if any(m.split(".")[0] == "devolo_plc_api" for m in _imports(path))
    }
    tools = ("devolo_mqtt.tools.emulator", "devolo_mqtt.tools.bench")
    assert {u for u in users if not u.startswith(tools)} == {"devolo_mqtt.devices.client"}


def test_architecture_the_bridge_never_imports_the_tools() -> None:
    """Nothing of the bridge imports `tools/` (emulator, demo, benchmark, broker helper): only the tools
    themselves and the CLI that starts them."""
    importers = {
        name
        for name, imported in _graph().items()
        if any(m.startswith("devolo_mqtt.tools") for m in imported)
    }
    assert {i for i in importers if not i.startswith(("devolo_mqtt.tools", "devolo_mqtt.cli"))} == set()


def test_architecture_the_core_imports_nothing_outside_it() -> None:
    """`core/` depends on no other part of the package (settings aside: the table reads intervals)."""
    graph = _graph()
    outside = {
        (name, m)
        for name, imported in graph.items()
        if name.startswith("devolo_mqtt.core.")
        for m in imported
        if not m.startswith("devolo_mqtt.core") and m not in ("devolo_mqtt.settings", "devolo_mqtt.log")
    }
    assert outside == set()


def test_architecture_no_import_circles() -> None:
    """No module reaches itself through imports (TYPE_CHECKING and function-level ones included)."""
    graph = _graph()
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == path[0]:
                circles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each circle once, from its smallest member
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert circles == []
