"""Dependencies point down: the edges (web/, cli/) and the composition root build the
parts from the settings; the parts themselves never read the settings nor import an edge."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "simpro_counter"
# Where Settings may be read: the composition root and the two edges that own a process.
SETTINGS_READERS = ("wiring.py", "settings.py", "cli/", "web/")
EDGES = ("simpro_counter.web", "simpro_counter.cli")


def _is_edge(module: str) -> bool:
    return any(module == edge or module.startswith(edge + ".") for edge in EDGES)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> list[tuple[str, set[str]]]:
    return [
        (path.relative_to(PACKAGE).as_posix(), _imports(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_only_the_composition_root_and_the_edges_read_the_settings() -> None:
    readers = [
        name
        for name, imported in _modules()
        if "simpro_counter.settings" in imported and not name.startswith(SETTINGS_READERS)
    ]
    assert readers == []


def test_no_part_imports_the_web_layer_or_the_command_line() -> None:
    upward = [
        (name, sorted(m for m in imported if _is_edge(m)))
        for name, imported in _modules()
        if not name.startswith(("web/", "cli/", "__main__.py"))
        and any(_is_edge(m) for m in imported)
    ]
    assert upward == []


# Layers that must not reach up: the webhook worker publishes through `publishing` and
# recounts through its `Recounter` protocol; the store and the pure metrics import neither
# the refresh nor the webhooks.
FORBIDDEN_UPWARD = {
    "webhooks/": ("simpro_counter.refresh", "simpro_counter.wiring", "simpro_counter.scheduler"),
    "store/": ("simpro_counter.refresh", "simpro_counter.webhooks", "simpro_counter.publishing"),
    "metrics/": ("simpro_counter.store", "simpro_counter.simpro", "simpro_counter.refresh"),
}


def test_lower_layers_do_not_import_the_layers_above_them() -> None:
    upward = [
        (name, sorted(m for m in imported if m.startswith(FORBIDDEN_UPWARD[layer])))
        for name, imported in _modules()
        for layer in FORBIDDEN_UPWARD
        if name.startswith(layer) and any(m.startswith(FORBIDDEN_UPWARD[layer]) for m in imported)
    ]
    assert upward == []


def test_the_simpro_client_is_built_without_the_settings() -> None:
    simpro = [
        name
        for name, imported in _modules()
        if name.startswith("simpro/") and "simpro_counter.settings" in imported
    ]
    assert simpro == []


def test_invoice_parsing_loads_neither_the_http_client_nor_its_retries() -> None:
    probe = (
        "import sys, simpro_counter.metrics.invoices, simpro_counter.ids; "
        "print(sorted(m for m in ('httpx', 'stamina', 'redis') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_the_deployment_check_loads_none_of_the_service() -> None:
    probe = (
        "import sys, simpro_counter.check; "
        "print(sorted(m for m in ('fastapi', 'redis', 'stamina', 'simpro_counter.web') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
