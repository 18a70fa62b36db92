"""What every transform node records and how it is staged: its description in the UI, its
per-run metadata (SQL, column lineage), and the parquet options of a staged node's file."""

from collections.abc import Sequence

import dagster as dg

from connectors.shared.parquet import ROW_GROUP_ROWS, ZSTD_LEVEL
from datapipe_assets.defs import cursors, rejects
from datapipe_assets.pipeline.compiler import (
    Relation,
    quote_literal,
    step_lineage,
)
from datapipe_assets.pipeline.keys import upstream_key
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.spec import NodeInput, TransformNode
from resources.staging import StagedTable


def staged_copy_options(upstream: Sequence[StagedTable]) -> str:
    """DuckDB COPY options of a staged node's parquet file, carrying its inputs' cursors
    and rejects tallies."""
    carried = {**cursors.passthrough(upstream), **rejects.passthrough(upstream)}
    return (
        f"FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {ZSTD_LEVEL}, "
        f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}, "
        f"KV_METADATA {_struct(carried)}"
    )


def _struct(metadata: dict[str, str]) -> str:
    """A DuckDB struct literal, for parquet key-value metadata."""
    fields = (f"{quote_literal(k)}: {quote_literal(v)}" for k, v in metadata.items())
    return "{" + ", ".join(fields) + "}"


def node_metadata(
    loaded: LoadedPipeline,
    sql: str,
    node: TransformNode,
    relations: Sequence[Relation],
    output_columns: Sequence[str],
) -> dict[str, object]:
    """The node's compiled SQL and, where known, its column lineage."""
    metadata: dict[str, object] = {"sql": dg.MetadataValue.md(f"```sql\n{sql}\n```")}
    lineage = step_lineage(node, relations, output_columns)
    if lineage is not None:
        pipeline = loaded.pipeline
        metadata["dagster/column_lineage"] = dg.TableColumnLineage(
            deps_by_column={
                out: [
                    dg.TableColumnDep(
                        asset_key=dg.AssetKey(upstream_key(pipeline, source)), column_name=c
                    )
                    for source, c in sources
                ]
                for out, sources in lineage.items()
            }
        )
    return metadata


def describe_node(node: TransformNode, inputs: list[NodeInput]) -> str:
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
            return f"Computes columns (a name that exists is replaced in place): {added}."
        case "aggregate":
            measures = ", ".join(
                f"{m.function}(`{m.column}`) as `{m.alias}`" for m in data.measures
            )
            groups = ", ".join(f"`{c}`" for c in data.group_by) or "all rows"
            return f"Aggregates {measures} by {groups}."
        case "deduplicate":
            order = f" by `{data.order_by}`" if data.order_by else " in input order"
            return f"Keeps the {data.keep_strategy} row{order} per {', '.join(data.columns)}."
        case "join":
            by_handle = {i.handle: i.source for i in inputs}
            keys = " and ".join(f"`{k.left}` = `{k.right}`" for k in data.on)
            return (
                f"{data.how.capitalize()} join of `{by_handle.get('left')}` with "
                f"`{by_handle.get('right')}` on {keys}."
            )
        case "union":
            sources = ", ".join(f"`{i.source}`" for i in inputs)
            kept = "distinct rows" if data.distinct else "all rows"
            return f"Union ({kept}) of {sources}, columns lined up by {data.by}."
    names = ", ".join(f"`{i.handle or i.source}`" for i in inputs)
    return f"Runs SQL over {names}: {data.query}"
