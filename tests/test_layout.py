"""Which package may import which, and what a light command loads.

Layout (see README "Layout"): ``hopline/wire`` is the leaf; ``hopline/settings`` and
``hopline/runtime`` are shared library modules; the components (gateway, processor,
tui, loadtest) import those, never each other and never the command's modules
(``hopline/cli.py``, ``hopline/up.py``, ``hopline/send.py``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
COMPONENTS = ("gateway", "processor", "tui", "loadtest")
COMMAND_MODULES = ("hopline.cli", "hopline.up", "hopline.send", "hopline.__main__")


def imports(path: Path) -> set[str]:
    """Every module a Python file imports (absolute imports; relative ones are not used)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    """``<file> imports <module>`` for each ``forbidden`` import under ``package`` (dir/file)."""
    root = ROOT / package
    bad = []
    for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
        for module in sorted(imports(path)):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_import_neither_each_other_nor_the_command(component: str) -> None:
    """A component imports hopline's library modules, never another component or hopline.cli."""
    others = tuple(c for c in COMPONENTS if c != component)
    assert violations(component, others + COMMAND_MODULES) == []


LIBRARY = [
    "hopline/wire",
    "hopline/client",
    "hopline/settings",
    "hopline/runtime.py",
    "hopline/handler.py",
]


@pytest.mark.parametrize("library", LIBRARY)
def test_library_modules_import_no_component_and_no_command(library: str) -> None:
    """The wire leaf and the settings registry depend on no component and not on the command."""
    assert violations(library, COMPONENTS + COMMAND_MODULES) == []


def test_wire_imports_nothing_else_from_the_project() -> None:
    """hopline.wire is a leaf: it imports only itself from the project."""
    bad = [
        line
        for line in violations("hopline/wire", ("hopline",))
        if not line.split(" imports ")[1].startswith("hopline.wire")
    ]
    assert bad == []


HEAVY = ("aio_pika", "aiormq", "jwt", "pamqp")


@pytest.mark.parametrize("command", ["tui", "loadtest", "send"])
def test_client_commands_load_no_amqp_and_no_jwt(command: str) -> None:
    """``hopline <client command> --help`` imports neither aio-pika/aiormq nor PyJWT."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hopline", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "hopline.cli" in loaded  # the measurement saw the command load
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == [], f"hopline {command} --help loads {heavy}"
