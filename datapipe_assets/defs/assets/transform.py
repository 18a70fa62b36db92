"""Transform assets: one per transform node, compiled to SQL and run in sandboxed DuckDB."""

import time

import dagster as dg

from connectors.shared.parquet import ROW_GROUP_ROWS, ZSTD_LEVEL
from datapipe_assets.defs import cursors
from datapipe_assets.defs.errors import step_failures
from datapipe_assets.defs.stage_metadata import seconds_since
from datapipe_assets.pipeline.compiler import column_lineage, compile_node, quote_literal
from datapipe_assets.pipeline.keys import node_key, upstream_key
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.spec import TransformNode
from resources.staging import StagedFile, StagedTable, scratch_file
from resources.transform_engine import TransformEngine


def transform_asset(loaded: LoadedPipeline, node: TransformNode) -> dg.AssetsDefinition:
    pipeline = loaded.pipeline
    assert pipeline.transform is not None
    input_key = dg.AssetKey(upstream_key(pipeline, pipeline.transform.input_of(node.id)))
    where = f"pipeline {pipeline.name!r}, node {node.id!r} ({node.type})"

    @dg.asset(
        key=node_key(pipeline, node.id),
        ins={"upstream": dg.AssetIn(key=input_key)},
        group_name=pipeline.name,
        kinds={"duckdb"},
        io_manager_key="staging",
        description=describe_node(node),
        metadata={"node_type": node.type},
    )
    def _transform(
        context: dg.AssetExecutionContext, engine: TransformEngine, upstream: StagedTable
    ) -> dg.Output[StagedFile]:
        columns = upstream.schema.names
        started = time.perf_counter()
        with (
            step_failures(where, []),
            scratch_file() as output,
            upstream.local_path() as input_path,
            engine.connect([input_path], str(output.parent)) as con,
        ):
            sql = compile_node(node, columns)
            # DuckDB reads and writes the parquet itself: its native, parallel reader and
            # writer are several times faster than streaming the rows through Python.
            con.execute(
                f"CREATE VIEW input AS SELECT * FROM read_parquet({quote_literal(input_path)})"
            )
            options = (
                f"FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL}, "
                f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}, "
                f"KV_METADATA {_struct(cursors.passthrough(upstream))}"
            )
            con.execute(f"COPY ({sql}) TO {quote_literal(str(output))} ({options})")
        context.log.info(f"{node.id}: ran {sql}")
        metadata = _node_metadata(sql, node, columns, input_key)
        metadata["duration_seconds"] = seconds_since(started)
        return dg.Output(StagedFile(output, metadata))

    return _transform


def _struct(metadata: dict[str, str]) -> str:
    """A DuckDB struct literal, for parquet key-value metadata."""
    fields = (f"{quote_literal(k)}: {quote_literal(v)}" for k, v in metadata.items())
    return "{" + ", ".join(fields) + "}"


def _node_metadata(
    sql: str, node: TransformNode, columns: list[str], input_key: dg.AssetKey
) -> dict[str, object]:
    metadata: dict[str, object] = {"sql": dg.MetadataValue.md(f"```sql\n{sql}\n```")}
    lineage = column_lineage(node, columns)
    if lineage is not None:
        metadata["dagster/column_lineage"] = dg.TableColumnLineage(
            deps_by_column={
                out: [dg.TableColumnDep(asset_key=input_key, column_name=c) for c in sources]
                for out, sources in lineage.items()
            }
        )
    return metadata


def describe_node(node: TransformNode) -> str:
    """A one-line description of what the node does, shown in the Dagster UI."""
    data = node.data
    match node.type:
        case "filter":
            return f"Keeps rows where `{data.column}` {data.operator} {data.value!r}."
        case "rename":
            pairs = ", ".join(f"`{m.from_}` -> `{m.to}`" for m in data.mappings)
            return f"Renames {pairs}" + (" and drops other columns." if data.drop_unmapped else ".")
        case "computed":
            added = ", ".join(
                f"`{c.name}` = {c.expression} ({c.result_type})" for c in data.columns
            )
            return f"Adds computed columns: {added}."
        case "aggregate":
            measures = ", ".join(
                f"{m.function}(`{m.column}`) as `{m.alias}`" for m in data.measures
            )
            groups = ", ".join(f"`{c}`" for c in data.group_by) or "all rows"
            return f"Aggregates {measures} by {groups}."
        case "deduplicate":
            order = f" by `{data.order_by}`" if data.order_by else " in input order"
            return f"Keeps the {data.keep_strategy} row{order} per {', '.join(data.columns)}."
    return f"Runs SQL: {data.query}"
