"""The layering the code relies on: a Dagster-free pipeline core, no cycles, no upward imports."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("datapipe_assets", "connectors", "resources")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each project module and the project modules (and dagster modules) it imports."""
    modules = {
        _module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                # `from package import module` imports the module.
                found.update(
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if f"{node.module}.{alias.name}" in modules
                )
        graph[name] = {m for m in found if m in modules or m.startswith("dagster")}
    return graph


def test_no_import_cycles() -> None:
    graph = {
        name: {m for m in deps if not m.startswith("dagster")} for name, deps in _imports().items()
    }
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_connectors_and_resources_never_import_datapipe_assets() -> None:
    upward = {
        (name, imported)
        for name, deps in _imports().items()
        if name.startswith(("connectors", "resources"))
        for imported in deps
        if imported.startswith("datapipe_assets")
    }
    assert upward == set()


def test_pipeline_core_builds_no_dagster_object() -> None:
    """The core imports neither Dagster nor the Dagster layer, directly or indirectly."""
    code = (
        "import sys; import datapipe_assets.pipeline.project, "
        "datapipe_assets.pipeline.check_rules, datapipe_assets.pipeline.run_source; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster' "
        "or m.startswith(('datapipe_assets.defs', 'datapipe_assets.cli'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_no_private_dagster_imports() -> None:
    """Only Dagster's public API (`import dagster as dg`): `dagster._...` changes without notice."""
    private = {
        (name, imported)
        for name, deps in _imports().items()
        for imported in deps
        if imported.startswith("dagster._")
    }
    assert private == set()
