"""Data-quality checks from a pipeline file, as Dagster asset checks run in DuckDB.

What each check asserts, which assets it runs on and its name come from
`datapipe_assets.pipeline.check_rules`. Checks on data read the staged parquet file in a
sandboxed DuckDB connection; the rows never pass through Python, only the counts and up to
five failing rows do. A relationships check reads a second staged file, the `to` asset's,
which Dagster loads as an extra input (so the lineage shows it). `reconcile` compares the
load's latest materialization metadata with the one before; `schema` is Dagster's own
column-schema-change check (`dg.build_column_schema_change_checks`).

No `from __future__ import annotations`: Dagster reads the check functions' annotations as
objects.
"""

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import duckdb

from connectors.shared.durations import duration_seconds
from connectors.shared.secrets import mask
from datapipe_assets.defs.errors import step_failures
from datapipe_assets.pipeline.check_rules import (
    REFERENCED,
    CheckTarget,
    NamedCheck,
    describe_check,
    failing_condition,
    freshness_sql,
    named_checks,
    only_warns,
    reference_targets,
)
from datapipe_assets.pipeline.compiler import ROW_ORDER, quote_literal
from datapipe_assets.pipeline.connections import secrets_of
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.spec import CheckSpec
from resources.duckdb_sandbox import sandboxed_connection
from resources.staging import StagedTable, markdown_preview

FAILING_ROWS = 5
FAILED = "__datapipe_failed"

Metadata = dict[str, Any]


def severity(check: CheckSpec) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.WARN if only_warns(check) else dg.AssetCheckSeverity.ERROR


def pipeline_checks(loaded: LoadedPipeline) -> list[dg.AssetChecksDefinition]:
    """One Dagster asset check per check in the pipeline file and asset it names."""
    named = named_checks(loaded.pipeline)
    definitions = [_definition(loaded, n) for n in named if n.check.type != "schema"]
    return definitions + schema_checks([n for n in named if n.check.type == "schema"])


def schema_checks(named: list[NamedCheck]) -> list[dg.AssetChecksDefinition]:
    """Schema checks as Dagster's column-schema-change checks: one definition per severity.

    Each compares the `dagster/column_schema` of the asset's last two materializations and
    reports what changed in its description. Validation rejects what it cannot do: blocking,
    a name of one's own.
    """
    keys: dict[dg.AssetCheckSeverity, list[dg.AssetKey]] = {}
    for check in named:
        keys.setdefault(severity(check.check), []).append(dg.AssetKey(check.target.key))
    with warnings.catch_warnings():
        # The builder is marked beta in Dagster 1.13; the warning would print on every load.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return [
            definition
            for level, assets in keys.items()
            for definition in dg.build_column_schema_change_checks(assets=assets, severity=level)
        ]


def _definition(loaded: LoadedPipeline, named: NamedCheck) -> dg.AssetChecksDefinition:
    check, target = named.check, named.target
    asset_key = dg.AssetKey(target.key)
    reference = _reference(loaded, named)
    # The `to` asset's staged file comes in through the staging IO manager; a load asset has
    # none (its data is the file it loaded), so it is only a dependency, read by its metadata.
    staged_reference = reference is not None and not reference.destination
    decorator = dg.asset_check(
        asset=asset_key,
        name=named.name,
        description=describe_check(check),
        blocking=check.blocking,
        metadata={"check_type": check.type},
        additional_ins=(
            {REFERENCED: dg.AssetIn(key=dg.AssetKey(reference.key))}
            if reference is not None and staged_reference
            else None
        ),
        additional_deps=(
            [dg.AssetKey(reference.key)] if reference is not None and not staged_reference else None
        ),
    )

    def evaluate(
        context: dg.AssetCheckExecutionContext,
        data: StagedTable | None,
        referenced: StagedTable | None = None,
    ) -> dg.AssetCheckResult:
        data = data or _loaded_rows(context, target.key)
        if check.type == "relationships" and referenced is None:
            # The check's own asset, or a load asset's rows.
            referenced = data if reference is None else _loaded_rows(context, reference.key)
        return _evaluate_file(loaded, check, data, referenced)

    # Dagster loads one input per parameter besides the context (the asset's own data, then
    # `referenced`), so each shape of inputs needs a function of its own.
    if check.type == "reconcile":

        def _reconcile(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            records = context.instance.fetch_materializations(asset_key, limit=2).records
            history = [r.asset_materialization for r in records if r.asset_materialization]
            return _result(check, *reconcile(history))

        return decorator(_reconcile)
    if target.destination and staged_reference:

        def _loaded_referencing(
            context: dg.AssetCheckExecutionContext, referenced: StagedTable
        ) -> dg.AssetCheckResult:
            return evaluate(context, None, referenced)

        return decorator(_loaded_referencing)
    if target.destination:

        def _loaded(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
            return evaluate(context, None)

        return decorator(_loaded)
    if staged_reference:

        def _staged_referencing(
            context: dg.AssetCheckExecutionContext, data: StagedTable, referenced: StagedTable
        ) -> dg.AssetCheckResult:
            return evaluate(context, data, referenced)

        return decorator(_staged_referencing)

    def _staged(context: dg.AssetCheckExecutionContext, data: StagedTable) -> dg.AssetCheckResult:
        return evaluate(context, data)

    return decorator(_staged)


def _reference(loaded: LoadedPipeline, named: NamedCheck) -> CheckTarget | None:
    """The other asset a relationships check reads; None for none or the check's own asset."""
    references = reference_targets(loaded.pipeline, named.check)
    if not references or references[0].key == named.target.key:
        return None
    return references[0]


def _loaded_rows(context: dg.AssetCheckExecutionContext, key: tuple[str, ...]) -> StagedTable:
    """The rows a load asset last loaded: the staged file its materialization names."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None and event.asset_materialization is not None
    return StagedTable.open(str(event.asset_materialization.metadata["loaded_from"].value))


def _evaluate_file(
    loaded: LoadedPipeline,
    check: CheckSpec,
    data: StagedTable,
    referenced: StagedTable | None = None,
) -> dg.AssetCheckResult:
    pipeline = loaded.pipeline
    where = f"pipeline {pipeline.name!r}, {check.type} check on {check.asset!r}"
    connections = loaded.connections()
    with (
        step_failures(where, connections),
        data.local_path() as path,
        _local_path(referenced) as referenced_path,
        sandboxed_connection(readable=[path, *referenced_path]) as con,
    ):
        con.execute(f"CREATE VIEW input AS SELECT * FROM read_parquet({quote_literal(path)})")
        for other in referenced_path:
            con.execute(
                f"CREATE VIEW {REFERENCED} AS SELECT * FROM read_parquet({quote_literal(other)})"
            )
        evaluate = EVALUATORS.get(check.type, row_check)
        passed, metadata = evaluate(con, check)
    if "failing_rows" in metadata:
        # Failing rows are user data: a secret that reached a column must not leave the step.
        secrets = secrets_of(connections)
        metadata["failing_rows"] = dg.MetadataValue.md(mask(metadata["failing_rows"], secrets))
    return _result(check, passed, metadata)


@contextmanager
def _local_path(data: StagedTable | None) -> Iterator[list[str]]:
    """The staged file on local disk, as a list of one path; an empty list for no file."""
    if data is None:
        yield []
        return
    with data.local_path() as path:
        yield [path]


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
