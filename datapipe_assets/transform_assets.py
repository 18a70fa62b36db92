"""Transform assets: one per transform node, compiled to SQL and run in sandboxed DuckDB."""

from collections.abc import Iterator

import dagster as dg
from dagster_duckdb import DuckDBResource

from connectors.base import BATCH_ROWS
from datapipe_assets import cursors
from datapipe_assets.compiler import column_lineage, compile_node
from datapipe_assets.errors import guarded_batches, step_failures
from datapipe_assets.keys import node_key, upstream_key
from datapipe_assets.project import LoadedPipeline
from datapipe_assets.spec import TransformNode
from resources.staging import BatchStream, StagedTable


def transform_asset(loaded: LoadedPipeline, node: TransformNode) -> dg.AssetsDefinition:
    pipeline = loaded.pipeline
    assert pipeline.transform is not None
    input_key = upstream_key(pipeline, pipeline.transform.input_of(node.id))
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
        context: dg.AssetExecutionContext, duckdb: DuckDBResource, upstream: StagedTable
    ) -> Iterator[dg.Output[BatchStream]]:
        columns = upstream.schema.names
        with step_failures(where, []):
            sql = compile_node(node, columns)
        # The connection stays open while the IO manager streams the result into staging.
        with duckdb.get_connection() as con, step_failures(where, []):
            con.register("input", upstream.dataset())
            reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
            yield dg.Output(
                BatchStream(
                    schema=reader.schema,
                    batches=guarded_batches(reader, where, []),
                    file_metadata=lambda: cursors.passthrough(upstream),
                    metadata=lambda: _node_metadata(sql, node, columns, input_key),
                )
            )
        context.log.info(f"{node.id}: ran {sql}")

    return _transform


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
