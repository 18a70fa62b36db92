"""`datapipe preview`: the first rows at a node, without staging or loading anything."""

from __future__ import annotations

import argparse
from typing import Any

import duckdb
import pyarrow as pa

from datapipe_assets.cli.common import CommandError, cli_project, valid_pipeline
from datapipe_assets.pipeline.compiler import (
    CompileError,
    Relation,
    compile_step,
    quote_identifier,
    relation_names,
    relation_views,
)
from datapipe_assets.pipeline.graph import ancestors, topological_order
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.spec import Node
from resources.duckdb_sandbox import first_line, sandboxed_connection

MAX_CELL = 40


def preview_command(args: argparse.Namespace) -> int:
    loaded = valid_pipeline(cli_project(), args.pipeline)
    table = preview_rows(loaded, args.node, args.limit)
    print(format_table(table))
    print(f"({table.num_rows} row(s) shown)")
    return 0


def preview_rows(loaded: LoadedPipeline, node_id: str | None, limit: int) -> pa.Table:
    """The first rows at a node, computed in a scratch DuckDB; nothing is staged or loaded."""
    pipeline = loaded.pipeline
    transform = pipeline.transform
    if transform is None or node_id in pipeline.table_names():
        table = node_id or pipeline.table_names()[0]
        return _head(_extract(loaded, table), limit)
    order = topological_order(transform)
    target = node_id or next(n.id for n in transform.nodes if n.type == "destination")
    if target not in order:
        raise CommandError(
            f"pipeline {pipeline.name!r} has no node {target!r}; nodes: {', '.join(order)}"
        )
    # Only the nodes that feed the target are computed, not other branches.
    needed = ancestors(transform, target)
    with sandboxed_connection() as con:
        for current in (n for n in order if n in needed):
            node = transform.node(current)
            try:
                _compute(con, loaded, node)
            except (CompileError, duckdb.Error) as error:
                message = first_line(error) if isinstance(error, duckdb.Error) else error
                raise CommandError(
                    f"pipeline {pipeline.name!r}, node {current!r} ({node.type}): {message}"
                ) from None
        return con.sql(f"SELECT * FROM {_table(target)} LIMIT {int(limit)}").to_arrow_table()


def _table(node_id: str) -> str:
    """The scratch table holding a node's rows; prefixed so no node id clashes with the
    names its consumers read their inputs by (input, left, right, ...)."""
    return quote_identifier(f"__node_{node_id}")


def _compute(con: duckdb.DuckDBPyConnection, loaded: LoadedPipeline, node: Node) -> None:
    transform = loaded.pipeline.transform
    assert transform is not None
    if node.type == "source":
        table = loaded.pipeline.node_table(node.data)
        assert table is not None
        con.register("extracted", _extract(loaded, table.name))
        con.execute(f"CREATE TEMP TABLE {_table(node.id)} AS SELECT * FROM extracted")
        con.unregister("extracted")
        return
    inputs = transform.inputs_of(node.id)
    if node.type == "destination":
        con.execute(
            f"CREATE TEMP TABLE {_table(node.id)} AS SELECT * FROM {_table(inputs[0].source)}"
        )
        return
    relations = []
    for name, declared in zip(relation_names(node, inputs), inputs, strict=True):
        schema = con.sql(f"SELECT * FROM {_table(declared.source)} LIMIT 0").to_arrow_table().schema
        relations.append(Relation(name, declared.source, schema))
    for view, relation in relation_views(node, relations).items():
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {quote_identifier(view)} AS "
            f"SELECT * FROM {_table(relation.node_id)}"
        )
    con.execute(f"CREATE TEMP TABLE {_table(node.id)} AS {compile_step(node, relations)}")


def _extract(loaded: LoadedPipeline, table: str) -> pa.RecordBatchReader:
    source_table = loaded.pipeline.source_table(table)
    extraction = loaded.table_connection(table).open_source().extract(source_table.source_name)
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
