"""Segment assets: a staged node and the unstaged nodes fused into it, run as one step.

One Dagster step and one sandboxed DuckDB connection run the segment's nodes in order. Each
fused node goes into a DuckDB temporary table (DuckDB's own storage, which spills to disk
beyond the memory limit: no parquet, no rows through Python) and the staged node straight
into parquet, which the staging IO manager publishes. Every node is still an asset of its
own, recording its SQL, schema, row count, duration and column lineage on each run.
"""

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from datapipe_assets.defs.assets.transform import describe_node, node_metadata, staged_copy_options
from datapipe_assets.defs.errors import step_failures
from datapipe_assets.defs.partitions import partitions_definition
from datapipe_assets.defs.retries import transient_retries
from datapipe_assets.defs.stage_metadata import seconds_since
from datapipe_assets.pipeline.compiler import (
    Relation,
    compile_step,
    quote_identifier,
    quote_literal,
    relation_names,
    relation_views,
)
from datapipe_assets.pipeline.graph import ancestors
from datapipe_assets.pipeline.keys import dagster_name, node_key, upstream_key
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.segments import Segment
from datapipe_assets.pipeline.spec import TransformSpec
from resources.staging import StagedFile, StagedTable, scratch_file, table_schema
from resources.transform_engine import TransformEngine


def segment_asset(loaded: LoadedPipeline, segment: Segment) -> dg.AssetsDefinition:
    pipeline = loaded.pipeline
    transform = pipeline.transform
    assert transform is not None
    keys = {n: dg.AssetKey(node_key(pipeline, n)) for n in segment.nodes}
    # The staged assets the segment reads; two source nodes may read one raw table.
    input_keys = list(dict.fromkeys(dg.AssetKey(upstream_key(pipeline, n)) for n in segment.inputs))
    ins = {f"in_{i}": dg.AssetIn(key=key) for i, key in enumerate(input_keys)}
    specs = [
        _spec(loaded, transform, node_id, node_id == segment.staged) for node_id in segment.nodes
    ]
    where = f"pipeline {pipeline.name!r}, segment of node {segment.staged!r}"

    @dg.multi_asset(
        name="__".join(node_key(pipeline, segment.staged)),
        specs=specs,
        ins=ins,
        # Any node may be materialized alone: the segment then runs only what that node needs.
        can_subset=True,
        partitions_def=partitions_definition(pipeline),
    )
    def _segment(
        context: dg.AssetExecutionContext, engine: TransformEngine, **staged: StagedTable
    ) -> Iterator[dg.MaterializeResult]:
        tables = {key: staged[f"in_{i}"] for i, key in enumerate(input_keys)}
        selected = [n for n in segment.nodes if keys[n] in context.selected_asset_keys]
        # The selected nodes and the segment's nodes they read from, in run order.
        reached = set().union(*(ancestors(transform, s) for s in selected))
        needed = [n for n in segment.nodes if n in reached]
        with (
            transient_retries(context, pipeline.retries),
            step_failures(where, []),
            scratch_file() as output,
            contextlib.ExitStack() as stack,
        ):
            paths = {key: stack.enter_context(t.local_path()) for key, t in tables.items()}
            con = stack.enter_context(engine.connect(list(paths.values()), str(output.parent)))
            runner = _SegmentRun(loaded, transform, con, output)
            for node_id in segment.inputs:
                key = dg.AssetKey(upstream_key(pipeline, node_id))
                runner.add_input(node_id, paths[key], tables[key].schema)
            results = []
            for node_id in needed:
                if node_id == segment.staged:
                    metadata = runner.stage(node_id, list(tables.values()))
                    context.log.info(f"{node_id}: staged")
                    value = StagedFile(output, metadata)
                    results.append(dg.MaterializeResult(asset_key=keys[node_id], value=value))
                else:
                    metadata = runner.fuse(node_id)
                    context.log.info(
                        f"{node_id}: fused, {metadata['dagster/row_count'].value} rows"
                    )
                    if node_id in selected:
                        results.append(
                            dg.MaterializeResult(asset_key=keys[node_id], metadata=metadata)
                        )
            if segment.staged not in needed:
                # Nothing to publish: the IO manager, which removes the scratch folder, is idle.
                shutil.rmtree(output.parent, ignore_errors=True)
        # After the connection is closed; the staged file is left for the IO manager.
        yield from results

    return _segment


def _spec(
    loaded: LoadedPipeline, transform: TransformSpec, node_id: str, staged: bool
) -> dg.AssetSpec:
    """The node's asset, as its own asset would be: key, group, kinds, description, inputs."""
    pipeline = loaded.pipeline
    node = transform.node(node_id)
    inputs = transform.inputs_of(node_id)
    spec = dg.AssetSpec(
        key=node_key(pipeline, node_id),
        deps=list(dict.fromkeys(dg.AssetKey(upstream_key(pipeline, i.source)) for i in inputs)),
        group_name=dagster_name(pipeline),
        kinds={"duckdb"},
        description=describe_node(node, inputs),
        metadata={"node_type": node.type},
        code_version=loaded.version,
    )
    # Only the staged node's output goes through the IO manager; the fused ones have none.
    return spec.with_io_manager_key("staging") if staged else spec


class _SegmentRun:
    """The segment's nodes in one DuckDB connection: each reads its inputs by name."""

    def __init__(
        self,
        loaded: LoadedPipeline,
        transform: TransformSpec,
        con: duckdb.DuckDBPyConnection,
        output: Path,
    ) -> None:
        self.loaded, self.transform, self.con, self.output = loaded, transform, con, output
        self.sources: dict[str, str] = {}  # node id -> what its readers select from
        self.schemas: dict[str, pa.Schema] = {}  # node id -> its output's schema, as staged
        self.fused: set[str] = set()  # nodes whose rows are in a temporary table

    def add_input(self, node_id: str, path: str, schema: pa.Schema) -> None:
        self.sources[node_id] = f"read_parquet({quote_literal(path)})"
        self.schemas[node_id] = schema

    def fuse(self, node_id: str) -> dict[str, object]:
        """Run a fused node into a temporary table; its metadata, as if it were staged."""
        table = quote_identifier(f"datapipe_fused_{node_id}")
        started = time.perf_counter()
        sql, relations = self._run(
            node_id,
            lambda sql: self.con.execute(f"CREATE TEMP TABLE {table} AS {self._as_staged(sql)}"),
        )
        schema = self._staged_schema(f"SELECT * FROM {table}")
        row = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        self.sources[node_id] = table
        self.schemas[node_id] = schema
        self.fused.add(node_id)
        metadata = node_metadata(
            self.loaded, sql, self.transform.node(node_id), relations, schema.names
        )
        metadata["dagster/row_count"] = dg.MetadataValue.int(int(row[0]))
        metadata["dagster/column_schema"] = dg.MetadataValue.table_schema(table_schema(schema))
        metadata["duration_seconds"] = seconds_since(started)
        return metadata

    def stage(self, node_id: str, upstream: list[StagedTable]) -> dict[str, object]:
        """Run the staged node into the parquet file, with every input's cursor states."""
        target = quote_literal(str(self.output))
        started = time.perf_counter()
        sql, relations = self._run(
            node_id,
            lambda sql: self.con.execute(
                f"COPY ({sql}) TO {target} ({staged_copy_options(upstream)})"
            ),
        )
        columns = pq.read_schema(self.output).names
        metadata = node_metadata(self.loaded, sql, self.transform.node(node_id), relations, columns)
        metadata["duration_seconds"] = seconds_since(started)
        return metadata

    def _run(self, node_id: str, execute: Callable[[str], object]) -> tuple[str, list[Relation]]:
        """Compile the node over its inputs, name them as its SQL reads them, and execute."""
        node = self.transform.node(node_id)
        # A failure names the node, as the node's own step would.
        where = f"pipeline {self.loaded.pipeline.name!r}, node {node_id!r} ({node.type})"
        with step_failures(where, []):
            return self._execute(node_id, execute)

    def _execute(
        self, node_id: str, execute: Callable[[str], object]
    ) -> tuple[str, list[Relation]]:
        node = self.transform.node(node_id)
        inputs = self.transform.inputs_of(node_id)
        relations = [
            Relation(name, declared.source, self.schemas[declared.source])
            for name, declared in zip(relation_names(node, inputs), inputs, strict=True)
        ]
        sql = compile_step(node, relations)
        views = relation_views(node, relations)
        for view, relation in views.items():
            self.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {quote_identifier(view)} AS "
                f"SELECT * FROM {self.sources[relation.node_id]}"
            )
        execute(sql)
        for view in views:
            self.con.execute(f"DROP VIEW {quote_identifier(view)}")
        # A fused node has this one reader: its rows are done with, so free their storage.
        for fused in dict.fromkeys(r.node_id for r in relations if r.node_id in self.fused):
            self.con.execute(f"DROP TABLE {self.sources.pop(fused)}")
        return sql, relations

    def _as_staged(self, sql: str) -> str:
        """The query with each column in the type its staged parquet file would have.

        DuckDB's parquet writer stores a few types as others (HUGEINT as DOUBLE, ENUM as
        VARCHAR); a fused node's readers must see what they would read from its file.
        """
        ours = self.con.execute(f"DESCRIBE SELECT * FROM ({sql})").fetchall()
        staged = self.con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({quote_literal(self._empty_file(sql))})"
        ).fetchall()
        casts = [
            f"CAST({quote_identifier(name)} AS {staged_type}) AS {quote_identifier(name)}"
            for (name, own_type, *_), (_, staged_type, *_) in zip(ours, staged, strict=True)
            if own_type != staged_type
        ]
        return f"SELECT * REPLACE ({', '.join(casts)}) FROM ({sql})" if casts else sql

    def _staged_schema(self, sql: str) -> pa.Schema:
        """The Arrow schema a staged parquet file of the query's rows would have."""
        return pq.read_schema(self._empty_file(sql)).remove_metadata()

    def _empty_file(self, sql: str) -> str:
        """A parquet file of the query's columns and no rows, in the step's scratch folder."""
        path = self.output.parent / "schema.parquet"
        self.con.execute(
            f"COPY (SELECT * FROM ({sql}) LIMIT 0) TO {quote_literal(str(path))} (FORMAT parquet)"
        )
        return str(path)
