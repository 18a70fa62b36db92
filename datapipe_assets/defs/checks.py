"""Data-quality checks from a pipeline file, as Dagster asset checks run in DuckDB.

What each check asserts, and which assets it runs on, comes from
`datapipe_assets.pipeline.check_rules`. Checks on data read the staged parquet file in a
sandboxed DuckDB connection; the rows never pass through Python, only the counts and up to
five failing rows do. `schema` and
`reconcile` compare the asset's latest materialization metadata with the one before.

No `from __future__ import annotations`: Dagster reads the check functions' annotations as
objects.
"""

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import dagster as dg
import duckdb

from connectors.shared.secrets import mask
from datapipe_assets.defs.errors import step_failures
from datapipe_assets.pipeline.check_rules import (
    HISTORY_CHECKS,
    CheckTarget,
    check_name,
    check_targets,
    describe_check,
    failing_condition,
    freshness_sql,
    only_warns,
)
from datapipe_assets.pipeline.compiler import ROW_ORDER, quote_literal
from datapipe_assets.pipeline.connections import secrets_of
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.spec import CheckSpec, duration_seconds
from resources.duckdb_sandbox import sandboxed_connection
from resources.staging import StagedTable, markdown_preview

FAILING_ROWS = 5
FAILED = "__datapipe_failed"

Metadata = dict[str, Any]


def severity(check: CheckSpec) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.WARN if only_warns(check) else dg.AssetCheckSeverity.ERROR


def pipeline_checks(loaded: LoadedPipeline) -> list[dg.AssetChecksDefinition]:
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
    loaded: LoadedPipeline, check: CheckSpec, target: CheckTarget, name: str
) -> dg.AssetChecksDefinition:
    asset_key = dg.AssetKey(target.key)
    decorator = dg.asset_check(
        asset=asset_key,
        name=name,
        description=describe_check(check),
        blocking=check.blocking,
        metadata={"check_type": check.type},
    )
    if check.type in HISTORY_CHECKS:

        def _history(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            records = context.instance.fetch_materializations(asset_key, limit=2).records
            history = [r.asset_materialization for r in records if r.asset_materialization]
            compare = schema_change if check.type == "schema" else reconcile
            return _result(check, *compare(history))

        return decorator(_history)
    if target.destination:

        def _loaded_rows(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            event = context.instance.get_latest_materialization_event(asset_key)
            assert event is not None and event.asset_materialization is not None
            url = event.asset_materialization.metadata["loaded_from"].value
            return _evaluate_file(loaded, check, StagedTable.open(str(url)))

        return decorator(_loaded_rows)

    def _staged(data: StagedTable) -> dg.AssetCheckResult:
        return _evaluate_file(loaded, check, data)

    return decorator(_staged)


def _evaluate_file(
    loaded: LoadedPipeline, check: CheckSpec, data: StagedTable
) -> dg.AssetCheckResult:
    pipeline = loaded.pipeline
    where = f"pipeline {pipeline.name!r}, {check.type} check on {check.asset!r}"
    connections = loaded.connections()
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
