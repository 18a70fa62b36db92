"""Write a pipelines folder for a test and run its pipelines through Dagster."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from datapipe_assets.defs.errors import failure_message
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.keys import dagster_name
from datapipe_assets.pipeline.project import load_project

SIX_NODE_TRANSFORM: dict[str, Any] = {
    "nodes": [
        {"id": "orders", "type": "source", "data": {"table": "orders"}},
        {"id": "paid", "type": "filter",
         "data": {"column": "status", "operator": "eq", "value": "paid"}},
        {"id": "renamed", "type": "rename",
         "data": {"mappings": [{"from": "amount_cents", "to": "amount"}], "dropUnmapped": False}},
        {"id": "usd", "type": "computed",
         "data": {"columns": [{"name": "amount_usd", "expression": "amount / 100.0",
                               "resultType": "DOUBLE"}]}},
        {"id": "latest", "type": "deduplicate",
         "data": {"columns": ["id"], "keepStrategy": "last", "orderBy": "updated_at"}},
        {"id": "by_customer", "type": "aggregate",
         "data": {"groupBy": ["customer_id"],
                  "measures": [{"column": "amount_usd", "function": "sum", "alias": "revenue"},
                               {"column": "id", "function": "count", "alias": "orders"}]}},
        {"id": "out", "type": "destination"},
    ],
    "edges": [
        {"source": "orders", "target": "paid"},
        {"source": "paid", "target": "renamed"},
        {"source": "renamed", "target": "usd"},
        {"source": "usd", "target": "latest"},
        {"source": "latest", "target": "by_customer"},
        {"source": "by_customer", "target": "out"},
    ],
}  # fmt: skip

# Only the paid orders, loaded as they are.
PAID_ONLY_TRANSFORM = {
    "nodes": [
        {"id": "orders", "type": "source", "data": {"table": "orders"}},
        {"id": "paid", "type": "filter",
         "data": {"column": "status", "operator": "eq", "value": "paid"}},
        {"id": "out", "type": "destination"},
    ],
    "edges": [{"source": "orders", "target": "paid"}, {"source": "paid", "target": "out"}],
}  # fmt: skip


def cli_folder(tmp_path: Path, monkeypatch: Any) -> Path:
    """The pipelines folder (not yet written) the `datapipe` command reads in a test, with
    the test's own Dagster instance and staging."""
    directory = tmp_path / "pipelines"
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(directory))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    return directory


def write_project(
    directory: Path, connections: dict[str, Any], pipelines: dict[str, dict[str, Any] | str]
) -> Path:
    """A pipelines folder: connections.yaml plus one file per pipeline (dict -> YAML)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "connections.yaml").write_text(yaml.safe_dump(connections))
    for file_name, content in pipelines.items():
        text = content if isinstance(content, str) else _dump(file_name, content)
        (directory / file_name).write_text(text)
    return directory


def _dump(file_name: str, content: dict[str, Any]) -> str:
    return json.dumps(content) if file_name.endswith(".json") else yaml.safe_dump(content)


def postgres_config(server: Any, database: str) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "database": database,
            "username": server.user, "password": server.password}  # fmt: skip


def run(
    directory: Path, pipeline: str, instance: dg.DagsterInstance, tags: dict[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    """Run a pipeline's job, named as the CLI names it (`NAME`, or `ORG/NAME`)."""
    project = load_project(directory)
    job = dagster_name(project.get(pipeline).pipeline)
    return (
        build_definitions(project)
        .resolve_job_def(job)
        .execute_in_process(instance=instance, tags=tags or {}, raise_on_error=False)
    )


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """The user-facing message of each failed step."""
    return [failure_message(e) for e in result.all_events if e.is_step_failure]


def run_summary(output: str, pipeline: str) -> list[str]:
    """The lines of a `datapipe run` or `backfill` output that are not a step's progress,
    with run ids as `run ID`."""
    return [
        re.sub(r"run [0-9a-f-]{36}", "run ID", line)
        for line in output.splitlines()
        if line.startswith(("running", f"{pipeline}:"))
    ]
