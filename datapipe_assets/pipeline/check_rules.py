"""Check rules: what each data-quality check in a pipeline file asserts, and where.

A check names an asset: a transform node id, a source table, or `out` (the destination).
This module turns a check into the SQL that finds its failing rows and into its targets'
asset paths; the Dagster layer (`datapipe_assets.defs.checks`) runs them.

Row checks (not_null, unique, accepted_values, range, expression) count the rows that fail
and pass when the pass rate (percent of rows passing) reaches `pass_threshold`. NULLs pass
accepted_values and range (not_null checks for them), NULL keys are never duplicates, and
an expression passes only where it is TRUE. Checks on `out` examine the rows the latest
load wrote (its staged file), not the whole destination table; `reconcile` checks the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datapipe_assets.pipeline.compiler import quote_identifier, quote_literal
from datapipe_assets.pipeline.keys import AssetPath, load_key, raw_key, upstream_key
from datapipe_assets.pipeline.spec import CheckSpec, Pipeline, destination_node_id

DESTINATION = "out"
ROW_CHECKS = ("not_null", "unique", "accepted_values", "range", "expression")
# Checks that compare materialization metadata rather than read the data.
HISTORY_CHECKS = ("schema", "reconcile")


@dataclass(frozen=True)
class CheckTarget:
    """An asset a check runs on, and the node id or table whose schema that asset has."""

    key: AssetPath
    schema_of: str
    destination: bool  # a load asset: its data is the staged file it loaded


def asset_names(pipeline: Pipeline) -> list[str]:
    """Every name a check's `asset` may use."""
    nodes = [n.id for n in pipeline.transform.nodes] if pipeline.transform else []
    return list(dict.fromkeys([*nodes, *pipeline.table_names(), DESTINATION]))


def check_targets(pipeline: Pipeline, asset: str) -> list[CheckTarget]:
    """The assets a check on `asset` runs on; none for an unknown name.

    Without a transform, `out` means every destination table the pipeline loads.
    """
    transform = pipeline.transform
    if transform is None:
        if asset == DESTINATION:
            return [
                CheckTarget(load_key(pipeline, target), table, destination=True)
                for table, target in pipeline.target_tables().items()
            ]
        if asset in pipeline.table_names():
            return [CheckTarget(raw_key(pipeline, asset), asset, destination=False)]
        return []
    # A node id wins over a table of the same name; the two are usually the same asset.
    node = next((n for n in transform.nodes if n.id == asset), None)
    if node is None and asset in pipeline.table_names():
        readers = [n.id for n in transform.nodes if n.type == "source" and n.data.table == asset]
        return [
            CheckTarget(raw_key(pipeline, asset), next(iter(readers), asset), destination=False)
        ]
    if node is None and asset == DESTINATION:
        node = transform.node(destination_node_id(transform))
    if node is None:
        return []
    if node.type == "destination":
        key = load_key(pipeline, pipeline.target_table_for_transform())
        return [CheckTarget(key, node.id, destination=True)]
    return [CheckTarget(upstream_key(pipeline, node.id), node.id, destination=False)]


def key_columns(check: CheckSpec) -> list[str]:
    """The columns a check reads: `columns` (unique's key) or `column`."""
    return check.columns or ([check.column] if check.column else [])


def failing_condition(check: CheckSpec) -> str:
    """A boolean SQL expression over a row of `input`, TRUE where the row fails."""
    column = quote_identifier(check.column or "")
    match check.type:
        case "not_null":
            return f"{column} IS NULL"
        case "unique":
            keys = [quote_identifier(c) for c in key_columns(check)]
            present = " AND ".join(f"{k} IS NOT NULL" for k in keys)
            return f"(COUNT(*) OVER (PARTITION BY {', '.join(keys)}) > 1 AND {present})"
        case "accepted_values":
            return f"{column} NOT IN ({', '.join(quote_literal(v) for v in check.values)})"
        case "range":
            bounds = [(check.minimum, "<"), (check.maximum, ">")]
            outside = [f"{column} {op} {quote_literal(b)}" for b, op in bounds if b is not None]
            return "(" + " OR ".join(outside) + ")"
    return f"({check.expression}) IS NOT TRUE"


def freshness_sql(check: CheckSpec) -> str:
    """Rows and the newest value as epoch seconds (a naive timestamp is taken as UTC)."""
    return f"SELECT COUNT(*), epoch(MAX({quote_identifier(check.column or '')})) FROM input"


def describe_check(check: CheckSpec) -> str:
    """One line on what the check asserts, shown in the Dagster UI."""
    column = f"`{check.column}`"
    threshold = f" for at least {check.pass_threshold:g}% of rows"
    match check.type:
        case "not_null":
            text = f"{column} is never NULL"
        case "unique":
            text = f"{', '.join(f'`{c}`' for c in key_columns(check))} identify each row"
        case "accepted_values":
            text = f"{column} is one of {', '.join(map(str, check.values))} (or NULL)"
        case "range":
            text = f"{column} is within [{_bound(check.minimum)}, {_bound(check.maximum)}]"
        case "expression":
            text = f"`{check.expression}` is true"
        case "row_count":
            return f"Row count is within [{_bound(check.minimum)}, {_bound(check.maximum)}]."
        case "freshness":
            return f"The newest {column} is at most {check.max_age} old."
        case "schema":
            return "Column names and types are those of the previous materialization."
        case _:
            return (
                "The destination's row count matches the load: replace = rows loaded, "
                "append = previous rows + rows loaded, upsert >= rows loaded."
            )
    return text + (threshold if check.pass_threshold < 100 else "") + "."


def _bound(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def only_warns(check: CheckSpec) -> bool:
    """A schema check with `on_change: warn` only warns, whatever its severity."""
    return check.severity == "warn" or (check.type == "schema" and check.on_change == "warn")


def check_name(check: CheckSpec) -> str:
    """`not_null_customer_id`: the check's type and columns, as a Dagster name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join([check.type, *key_columns(check)]))
