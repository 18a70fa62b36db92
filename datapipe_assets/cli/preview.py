"""`datapipe preview`: the first rows at a node, without staging or loading anything."""

from __future__ import annotations

import argparse
from typing import Any

import duckdb
import pyarrow as pa

from datapipe_assets.cli.common import CommandError, valid_pipeline
from datapipe_assets.pipeline.compiler import CompileError, compile_node
from datapipe_assets.pipeline.project import LoadedPipeline, load_project
from datapipe_assets.pipeline.validation import topological_order
from resources.duckdb_sandbox import first_line, sandboxed_connection

MAX_CELL = 40


def preview_command(args: argparse.Namespace) -> int:
    loaded = valid_pipeline(load_project(), args.pipeline)
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
