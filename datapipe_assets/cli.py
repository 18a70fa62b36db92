"""The `datapipe` command: validate, preview, run, discover and check."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa

from connectors import SOURCES
from connectors.base import ConnectorError
from datapipe_assets.compiler import CompileError, compile_node
from datapipe_assets.connections import ConnectionSpec, mask
from datapipe_assets.cursors import FULL_REFRESH_TAG
from datapipe_assets.factory import build_definitions
from datapipe_assets.progress import printed_progress
from datapipe_assets.project import (
    PROJECT_ROOT,
    LoadedPipeline,
    Project,
    connections_file,
    load_connections,
    load_project,
    pipelines_dir,
)
from datapipe_assets.status import format_runs, recent_runs
from datapipe_assets.validation import topological_order
from resources.duckdb_sandbox import first_line, sandboxed_connection

MAX_CELL = 40


class CommandError(Exception):
    """A one-line error for the user; the command exits 1."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (CommandError, ConnectorError, CompileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datapipe", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check every pipeline file; exit 1 on errors")
    validate.set_defaults(handler=validate_command)

    preview = commands.add_parser("preview", help="rows at a node, without loading anything")
    preview.add_argument("pipeline")
    preview.add_argument("--node", help="node id or source table (default: the last node)")
    preview.add_argument("--limit", type=int, default=10)
    preview.set_defaults(handler=preview_command)

    run = commands.add_parser("run", help="materialize a pipeline end to end, in process")
    run.add_argument("pipeline", nargs="?", help="pipeline name (default: --all)")
    run.add_argument("--all", action="store_true", help="run every valid pipeline")
    run.add_argument("--full-refresh", action="store_true", help="ignore incremental cursors")
    run.set_defaults(handler=run_command)

    status = commands.add_parser("status", help="last runs: status, rows per stage, checks")
    status.add_argument("pipeline", nargs="?", help="pipeline name (default: every pipeline)")
    status.add_argument("--limit", type=int, default=5, help="runs per pipeline")
    status.set_defaults(handler=status_command)

    for name, handler, text in (
        ("discover", discover_command, "list a connection's tables and columns"),
        ("check", check_command, "test a connection"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("connection")
        sub.set_defaults(handler=handler)
    return parser


def validate_command(args: argparse.Namespace) -> int:
    project = load_project()
    for loaded in project.pipelines:
        print(f"ok     {loaded.pipeline.name} ({loaded.file.name})")
    for errors in project.errors.values():
        for error in errors:
            print(f"error  {error}")
    count = sum(len(e) for e in project.errors.values())
    print(f"{len(project.pipelines)} valid pipeline(s), {count} error(s)")
    return 1 if count else 0


def _valid_pipeline(project: Project, name: str) -> LoadedPipeline:
    try:
        return project.get(name)
    except KeyError as error:
        problems = [str(e) for errors in project.errors.values() for e in errors]
        detail = f" ({problems[0]})" if problems else ""
        raise CommandError(f"{error.args[0]}{detail}") from None


def preview_command(args: argparse.Namespace) -> int:
    loaded = _valid_pipeline(load_project(), args.pipeline)
    table = preview_rows(loaded, args.node, args.limit)
    print(format_table(table))
    print(f"({table.num_rows} row(s) shown)")
    return 0


def preview_rows(loaded: LoadedPipeline, node_id: str | None, limit: int) -> pa.Table:
    """The first rows at a node, computed in a scratch DuckDB; nothing is staged or loaded."""
    pipeline = loaded.pipeline
    transform = pipeline.transform
    if transform is None or node_id in pipeline.source.tables:
        table = node_id or pipeline.source.tables[0]
        return _head(_extract(loaded, table), limit)
    order = topological_order(transform)
    target = node_id or order[-1]
    if target not in order:
        raise CommandError(
            f"pipeline {pipeline.name!r} has no node {target!r}; nodes: {', '.join(order)}"
        )
    # Only the chain that feeds the target is computed, not other branches.
    chain = [target]
    while transform.node(chain[0]).type != "source":
        chain.insert(0, transform.input_of(chain[0]))
    with sandboxed_connection() as con:
        for current in chain:
            node = transform.node(current)
            if node.type == "source":
                con.register("input", _extract(loaded, node.data.table))
                con.execute(f'CREATE TEMP TABLE "{current}" AS SELECT * FROM input')
                con.unregister("input")
            else:
                upstream = transform.input_of(current)
                con.execute(f'CREATE OR REPLACE TEMP VIEW input AS SELECT * FROM "{upstream}"')
                columns = [r[0] for r in con.execute("DESCRIBE input").fetchall()]
                sql = "SELECT * FROM input" if node.type == "destination" else None
                try:
                    sql = sql or compile_node(node, columns)
                    con.execute(f'CREATE TEMP TABLE "{current}" AS {sql}')
                except (CompileError, duckdb.Error) as error:
                    message = first_line(error) if isinstance(error, duckdb.Error) else error
                    raise CommandError(
                        f"pipeline {pipeline.name!r}, node {current!r} ({node.type}): {message}"
                    ) from None
        return con.sql(f'SELECT * FROM "{target}" LIMIT {int(limit)}').to_arrow_table()


def _extract(loaded: LoadedPipeline, table: str) -> pa.RecordBatchReader:
    extraction = loaded.source.open_source().extract(table)
    return pa.RecordBatchReader.from_batches(extraction.schema, iter(extraction))


def _head(reader: pa.RecordBatchReader, limit: int) -> pa.Table:
    batches, rows = [], 0
    for batch in reader:
        batches.append(batch.slice(0, limit - rows))
        rows += batches[-1].num_rows
        if rows >= limit:
            break
    return pa.Table.from_batches(batches, schema=reader.schema)


def format_table(table: pa.Table) -> str:
    def cell(value: Any) -> str:
        text = "NULL" if value is None else str(value)
        return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"

    rows = [[cell(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(table.column_names)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))  # noqa: E731
    return "\n".join([line(table.column_names), line(["-" * w for w in widths]), *map(line, rows)])


def dagster_home() -> str:
    """DAGSTER_HOME, defaulting to the project's embedded instance (shared with `dagster dev`)."""
    home = os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster"))
    os.makedirs(home, exist_ok=True)
    config = os.path.join(home, "dagster.yaml")
    if not os.path.exists(config):
        shutil.copy(PROJECT_ROOT / "dagster.yaml", config)
    return home


def run_command(args: argparse.Namespace) -> int:
    dagster_home()
    project = load_project()
    names = [p.pipeline.name for p in project.pipelines] if args.all else [args.pipeline]
    if not args.all and args.pipeline is None:
        raise CommandError("name a pipeline or pass --all")
    for errors in project.errors.values():
        for error in errors:
            print(f"skipped: {error}", file=sys.stderr)
    if not args.all:
        _valid_pipeline(project, args.pipeline)
    definitions = build_definitions(project)
    tags = {FULL_REFRESH_TAG: "true"} if args.full_refresh else {}
    failed = 0
    with dg.DagsterInstance.get() as instance:
        for name in names:
            print(f"running {name} ...", flush=True)
            run_id = str(uuid.uuid4())
            with printed_progress(instance, run_id):
                result = definitions.resolve_job_def(name).execute_in_process(
                    instance=instance,
                    run_id=run_id,
                    tags=tags,
                    raise_on_error=False,
                    # Progress and failures are printed from the event log, so Dagster's own
                    # console log stays quiet.
                    run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                )
            print(f"{name}: run {run_id} {'succeeded' if result.success else 'FAILED'}")
            failed += not result.success
    return 1 if failed else 0


def status_command(args: argparse.Namespace) -> int:
    dagster_home()
    names = (
        [args.pipeline] if args.pipeline else [p.pipeline.name for p in load_project().pipelines]
    )
    with dg.DagsterInstance.get() as instance:
        for name in names:
            print(format_runs(name, recent_runs(instance, name, args.limit)))
    return 0


def _connection(name: str) -> ConnectionSpec:
    project = Project()
    connections = load_connections(connections_file(pipelines_dir()), project)
    if name not in connections:
        known = ", ".join(sorted(connections)) or "none"
        raise CommandError(f"unknown connection {name!r}; connections.yaml has: {known}")
    return connections[name]


def _open(spec: ConnectionSpec) -> Any:
    return spec.open_source() if spec.connector in SOURCES else spec.open_destination()


def discover_command(args: argparse.Namespace) -> int:
    spec = _connection(args.connection)
    try:
        tables = _open(spec).discover()
    except ConnectorError as error:
        raise CommandError(mask(str(error), spec.secrets())) from None
    for table in tables:
        print(table.name)
        for field in table.schema:
            print(f"  {field.name:<32} {field.type}")
    print(f"{len(tables)} table(s)")
    return 0


def check_command(args: argparse.Namespace) -> int:
    spec = _connection(args.connection)
    try:
        print(f"ok: {_open(spec).check()}")
    except ConnectorError as error:
        raise CommandError(mask(str(error), spec.secrets())) from None
    return 0
