"""The connector examples work once copied into pipelines/, as the README says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from datapipe_assets.pipeline.project import PROJECT_ROOT

PIPELINES = PROJECT_ROOT / "pipelines"


def _paths(node: Any) -> list[tuple[str, str]]:
    """(connector, path) of every inline connection config in a pipeline file."""
    found = []
    if isinstance(node, dict):
        config = node.get("config")
        if "connector" in node and isinstance(config, dict) and "path" in config:
            found.append((node["connector"], config["path"]))
        for value in node.values():
            found += _paths(value)
    elif isinstance(node, list):
        for item in node:
            found += _paths(item)
    return found


@pytest.mark.parametrize("example", sorted((PIPELINES / "examples").glob("*.yaml")), ids=str)
def test_an_example_copied_into_pipelines_reads_and_writes_inside_the_project(example: Path):
    paths = _paths(yaml.safe_load(example.read_text()))
    assert paths, "every example names a file: its DuckDB destination or its CSV source"
    for connector, path in paths:
        resolved = (PIPELINES / path).resolve()
        if connector == "duckdb":
            assert resolved.parent == PROJECT_ROOT / ".datapipe"
        else:
            assert resolved.is_file(), (connector, path)
