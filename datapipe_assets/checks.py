"""Data-quality checks from a pipeline file, as Dagster asset checks run in DuckDB.

A check names an asset: a transform node id, a source table, or `out` (the destination).
Checks on data read the staged parquet file in a sandboxed DuckDB connection; the rows
never pass through Python, only the counts and up to five failing rows do. `schema` and
`reconcile` compare the asset's latest materialization metadata with the one before.

Row checks (not_null, unique, accepted_values, range, expression) count the rows that fail
and pass when the pass rate (percent of rows passing) reaches `pass_threshold`. NULLs pass
accepted_values and range (not_null checks for them), NULL keys are never duplicates, and
an expression passes only where it is TRUE. Checks on `out` examine the rows the latest
load wrote (its staged file), not the whole destination table; `reconcile` checks the table.

This module must not import `datapipe_assets.project` at run time: validation (imported by
project) uses the SQL compiled here. No `from __future__ import annotations` either: Dagster
reads the check functions' annotations as objects.
"""

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb

from datapipe_assets.compiler import ROW_ORDER, quote_identifier, quote_literal
from datapipe_assets.connections import mask, secrets_of
from datapipe_assets.errors import step_failures
from datapipe_assets.keys import load_key, raw_key, upstream_key
from datapipe_assets.spec import CheckSpec, Pipeline, destination_node_id, duration_seconds
from resources.duckdb_sandbox import sandboxed_connection
from resources.staging import StagedTable, markdown_preview

if TYPE_CHECKING:
    from datapipe_assets.project import LoadedPipeline

DESTINATION = "out"
ROW_CHECKS = ("not_null", "unique", "accepted_values", "range", "expression")
# Checks that compare materialization metadata rather than read the data.
HISTORY_CHECKS = ("schema", "reconcile")
FAILING_ROWS = 5
FAILED = "__datapipe_failed"

Metadata = dict[str, Any]


@dataclass(frozen=True)
class CheckTarget:
    """An asset a check runs on, and the node id or table whose schema that asset has."""

    key: dg.AssetKey
    schema_of: str
    destination: bool  # a load asset: its data is the staged file it loaded


def asset_names(pipeline: Pipeline) -> list[str]:
    """Every name a check's `asset` may use."""
    nodes = [n.id for n in pipeline.transform.nodes] if pipeline.transform else []
    return list(dict.fromkeys([*nodes, *pipeline.source.tables, DESTINATION]))


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
        if asset in pipeline.source.tables:
            return [CheckTarget(raw_key(pipeline, asset), asset, destination=False)]
        return []
    # A node id wins over a table of the same name; the two are usually the same asset.
    node = next((n for n in transform.nodes if n.id == asset), None)
    if node is None and asset in pipeline.source.tables:
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


def severity(check: CheckSpec) -> dg.AssetCheckSeverity:
    """A schema check with `on_change: warn` only warns, whatever its severity."""
    warns = check.severity == "warn" or (check.type == "schema" and check.on_change == "warn")
    return dg.AssetCheckSeverity.WARN if warns else dg.AssetCheckSeverity.ERROR


def check_name(check: CheckSpec) -> str:
    """`not_null_customer_id`: the check's type and columns, as a Dagster name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join([check.type, *key_columns(check)]))


def pipeline_checks(loaded: "LoadedPipeline") -> list[dg.AssetChecksDefinition]:
    """One Dagster asset check per check in the pipeline file and asset it names."""
    pipeline = loaded.pipeline
    uses: Counter[tuple[dg.AssetKey, str]] = Counter()
    definitions = []
    for check in pipeline.checks:
        for target in check_targets(pipeline, check.asset):
            # Names must be unique per asset: a second `expression` check becomes expression_2.
            base = check_name(check)
            uses[target.key, base] += 1
            name = base if uses[target.key, base] == 1 else f"{base}_{uses[target.key, base]}"
            definitions.append(_definition(loaded, check, target, name))
    return definitions


def _definition(
    loaded: "LoadedPipeline", check: CheckSpec, target: CheckTarget, name: str
) -> dg.AssetChecksDefinition:
    decorator = dg.asset_check(
        asset=target.key,
        name=name,
        description=describe_check(check),
        blocking=check.blocking,
        metadata={"check_type": check.type},
    )
    if check.type in HISTORY_CHECKS:

        def _history(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            records = context.instance.fetch_materializations(target.key, limit=2).records
            history = [r.asset_materialization for r in records if r.asset_materialization]
            compare = schema_change if check.type == "schema" else reconcile
            return _result(check, *compare(history))

        return decorator(_history)
    if target.destination:

        def _loaded_rows(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            event = context.instance.get_latest_materialization_event(target.key)
            assert event is not None and event.asset_materialization is not None
            url = event.asset_materialization.metadata["loaded_from"].value
            return _evaluate_file(loaded, check, StagedTable.open(str(url)))

        return decorator(_loaded_rows)

    def _staged(data: StagedTable) -> dg.AssetCheckResult:
        return _evaluate_file(loaded, check, data)

    return decorator(_staged)


def _evaluate_file(
    loaded: "LoadedPipeline", check: CheckSpec, data: StagedTable
) -> dg.AssetCheckResult:
    pipeline = loaded.pipeline
    where = f"pipeline {pipeline.name!r}, {check.type} check on {check.asset!r}"
    connections = [loaded.source, loaded.destination]
    with (
        step_failures(where, connections),
        data.local_path() as path,
        sandboxed_connection(readable=[path]) as con,
    ):
        con.execute(f"CREATE VIEW input AS SELECT * FROM read_parquet({quote_literal(path)})")
        evaluate = EVALUATORS.get(check.type, row_check)
        passed, metadata = evaluate(con, check)
    if "failing_rows" in metadata:
        # Failing rows are user data: a secret that reached a column must not leave the step.
        secrets = secrets_of(connections)
        metadata["failing_rows"] = dg.MetadataValue.md(mask(metadata["failing_rows"], secrets))
    return _result(check, passed, metadata)


def _result(check: CheckSpec, passed: bool, metadata: Metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, severity=severity(check), metadata=metadata)


def row_check(con: duckdb.DuckDBPyConnection, check: CheckSpec) -> tuple[bool, Metadata]:
    """Rows checked and failed, the pass rate, and the first failing rows in file order."""
    marked = (
        f"SELECT *, COALESCE({failing_condition(check)}, FALSE) AS {FAILED} "
        f"FROM (SELECT *, ROW_NUMBER() OVER () AS {ROW_ORDER} FROM input)"
    )
    [(checked, failed)] = con.execute(
        f"SELECT COUNT(*), COUNT(*) FILTER ({FAILED}) FROM ({marked})"
    ).fetchall()
    rate = 100.0 * (checked - failed) / checked if checked else 100.0
    metadata: Metadata = {
        "rows_checked": checked,
        "rows_failed": failed,
        "pass_rate": dg.MetadataValue.float(round(rate, 2)),
        "pass_threshold": dg.MetadataValue.float(check.pass_threshold),
    }
    if failed:
        rows = con.sql(
            f"SELECT * EXCLUDE ({ROW_ORDER}, {FAILED}) FROM ({marked}) WHERE {FAILED} "
            f"ORDER BY {ROW_ORDER} LIMIT {FAILING_ROWS}"
        ).to_arrow_table()
        metadata["failing_rows"] = markdown_preview(
            rows.schema, rows.combine_chunks().to_batches()[0]
        )
    return rate >= check.pass_threshold, metadata


def row_count_check(con: duckdb.DuckDBPyConnection, check: CheckSpec) -> tuple[bool, Metadata]:
    """The file's row count against min and max."""
    [(rows,)] = con.execute("SELECT COUNT(*) FROM input").fetchall()
    passed = _within(rows, check.minimum, check.maximum)
    return passed, {"rows_checked": rows}


def freshness_check(con: duckdb.DuckDBPyConnection, check: CheckSpec) -> tuple[bool, Metadata]:
    """The age of the column's newest value against max_age; no value at all fails."""
    [(rows, newest)] = con.execute(freshness_sql(check)).fetchall()
    metadata: Metadata = {"rows_checked": rows, "max_age": str(check.max_age)}
    if newest is None:
        return False, {**metadata, "newest": "none (no non-NULL values)"}
    age = dt.datetime.now(dt.UTC).timestamp() - newest
    metadata["newest"] = dt.datetime.fromtimestamp(newest, dt.UTC).isoformat()
    metadata["age_hours"] = dg.MetadataValue.float(round(age / 3600, 2))
    return age <= duration_seconds(str(check.max_age)), metadata


EVALUATORS: dict[str, Callable[[duckdb.DuckDBPyConnection, CheckSpec], tuple[bool, Metadata]]] = {
    "row_count": row_count_check,
    "freshness": freshness_check,
}


def _within(value: float, minimum: float | None, maximum: float | None) -> bool:
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def schema_change(history: list[dg.AssetMaterialization]) -> tuple[bool, Metadata]:
    """Columns added, removed or retyped since the previous materialization."""
    current = _columns(history[0])
    if len(history) < 2:
        return True, {"previous_materialization": "none"}
    previous = _columns(history[1])
    added = [c for c in current if c not in previous]
    removed = [c for c in previous if c not in current]
    retyped = [f"{c}: {previous[c]} -> {t}" for c, t in current.items() if previous.get(c, t) != t]
    metadata = {
        "columns_added": ", ".join(added) or "none",
        "columns_removed": ", ".join(removed) or "none",
        "columns_retyped": ", ".join(retyped) or "none",
    }
    return not (added or removed or retyped), metadata


def _columns(materialization: dg.AssetMaterialization) -> dict[str, str]:
    schema = materialization.metadata["dagster/column_schema"].value
    return {column.name: column.type for column in schema.columns}


def reconcile(history: list[dg.AssetMaterialization]) -> tuple[bool, Metadata]:
    """The table's rows after the load against what the load wrote, per load mode.

    replace: table rows == rows loaded; append: == the previous load's table rows + rows
    loaded (0 before the first load); upsert: >= rows loaded (updates replace rows).
    """
    latest = history[0].metadata
    table_rows = int(latest["dagster/row_count"].value)
    loaded = int(latest["rows_loaded"].value)
    mode = str(latest["load_mode"].value)
    metadata: Metadata = {"table_rows": table_rows, "rows_loaded": loaded, "load_mode": mode}
    if mode == "upsert":
        return table_rows >= loaded, {**metadata, "expected": f">= {loaded}"}
    expected = loaded
    if mode == "append":
        previous = int(history[1].metadata["dagster/row_count"].value) if len(history) > 1 else 0
        metadata["previous_table_rows"] = previous
        expected += previous
    return table_rows == expected, {**metadata, "expected": f"= {expected}"}
