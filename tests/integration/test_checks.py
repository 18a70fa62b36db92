"""Data-quality checks from the pipeline file: real Dagster runs over CSV -> DuckDB."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.check_validation import check_problems
from datapipe_assets.pipeline.problems import Problem
from datapipe_assets.pipeline.project import load_project
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.project_files import failure_messages, write_project

TOKEN = "s3cr3t-t0ken"
HEADER = "id,customer_id,status,amount_cents,currency,updated_at\n"
# Paid rows: 1, 2 (no customer), 4 (negative, secret currency), 4 again, 5 (too large).
ORDERS = HEADER + (
    "1,10,paid,1000,usd,2026-01-01 00:00:00\n"
    "2,,paid,2550,eur,2026-01-01 01:00:00\n"
    "3,20,pending,999,usd,2026-01-01 02:00:00\n"
    f"4,20,paid,-500,{TOKEN},2026-01-01 03:00:00\n"
    "4,30,paid,700,gbp,2026-01-01 04:00:00\n"
    "5,30,paid,2000000,usd,2026-01-01 05:00:00\n"
)
TRANSFORM = {
    "nodes": [
        {"id": "orders", "type": "source", "data": {"table": "orders"}},
        {"id": "paid", "type": "filter",
         "data": {"column": "status", "operator": "eq", "value": "paid"}},
        {"id": "out", "type": "destination"},
    ],
    "edges": [{"source": "orders", "target": "paid"}, {"source": "paid", "target": "out"}],
}  # fmt: skip
ROW_HEADER = [
    "| id | customer_id | status | amount_cents | currency | updated_at |",
    "|---|---|---|---|---|---|",
]


def _project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    checks: list[dict[str, Any]],
    csv: str = ORDERS,
    transform: dict[str, Any] | None = TRANSFORM,
    **destination: Any,
) -> Path:
    """One pipeline `shop` from data/orders.csv into warehouse.duckdb, with the checks."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.setenv("CHECKS_TOKEN", TOKEN)
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "data" / "orders.csv").write_text(csv)
    # The token is a secret of the source connection: failing rows must never show it.
    source = {"path": "data/orders.csv", "api_token": "${CHECKS_TOKEN}"}
    pipeline: dict[str, Any] = {
        "name": "shop", "org": "acme", "checks": checks,
        "source": {"connection": "orders_csv", "tables": ["orders"]},
        "destination": {"connection": "warehouse", "target_table": "paid_orders", **destination},
    }  # fmt: skip
    if transform is not None:
        pipeline["transform"] = transform
    return write_project(
        directory,
        {"orders_csv": {"connector": "csv", "config": source},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {"shop.yaml": pipeline},
    )  # fmt: skip


def _run(directory: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Run `shop` (its job runs the checks on the assets it materializes)."""
    project = load_project(directory)
    assert project.errors == {}
    return (
        build_definitions(project)
        .resolve_job_def("shop")
        .execute_in_process(instance=instance, raise_on_error=False)
    )


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """`asset.check_name` (asset key without org and pipeline) -> (passed, severity, metadata)."""
    return {
        f"{'/'.join(e.asset_key.path[2:])}.{e.check_name}": (
            e.passed,
            e.severity.value,
            {k: v.value for k, v in e.metadata.items()},
        )
        for e in result.get_asset_check_evaluations()
    }


def _row_result(checked: int, failed: int, rate: float, threshold: float = 100.0) -> dict:
    return {
        "rows_checked": checked,
        "rows_failed": failed,
        "pass_rate": rate,
        "pass_threshold": threshold,
    }


def _failing(*rows: str) -> str:
    return "\n".join([*ROW_HEADER, *rows])


ROW_1 = "| 1 | 10 | paid | 1000 | usd | 2026-01-01 00:00:00 |"
ROW_2 = "| 2 | NULL | paid | 2550 | eur | 2026-01-01 01:00:00 |"
ROW_4A = "| 4 | 20 | paid | -500 | *** | 2026-01-01 03:00:00 |"
ROW_4B = "| 4 | 30 | paid | 700 | gbp | 2026-01-01 04:00:00 |"
ROW_5 = "| 5 | 30 | paid | 2000000 | usd | 2026-01-01 05:00:00 |"


def test_row_checks_pass_and_fail_with_counts_and_failing_rows(tmp_path, monkeypatch):
    amount_ok = {"asset": "paid", "type": "expression", "expression": "amount_cents < 1000000"}
    checks = [
        {"asset": "paid", "type": "not_null", "column": "customer_id"},
        {"asset": "paid", "type": "not_null", "column": "id"},
        {"asset": "paid", "type": "unique", "columns": ["id"], "severity": "warn"},
        {"asset": "paid", "type": "unique", "columns": ["id", "customer_id"]},
        {"asset": "paid", "type": "accepted_values", "column": "currency",
         "values": ["usd", "eur", "gbp"]},
        {"asset": "paid", "type": "accepted_values", "column": "status", "values": ["paid"]},
        {"asset": "paid", "type": "range", "column": "amount_cents", "min": 0},
        {"asset": "paid", "type": "range", "column": "amount_cents", "min": -500, "max": 2e6},
        {**amount_ok, "pass_threshold": 99.5},
        {**amount_ok, "pass_threshold": 80},
        {"asset": "out", "type": "not_null", "column": "customer_id"},
    ]  # fmt: skip
    project = _project(tmp_path, monkeypatch, checks)
    with dg.instance_for_test() as instance:
        result = _run(project, instance)
    # Failed checks that do not block leave the run successful.
    assert result.success
    assert _evaluations(result) == {
        "paid.not_null_customer_id": (
            False, "ERROR", {**_row_result(5, 1, 80.0), "failing_rows": _failing(ROW_2)},
        ),
        "paid.not_null_id": (True, "ERROR", _row_result(5, 0, 100.0)),
        "paid.unique_id": (
            False, "WARN",
            {**_row_result(5, 2, 60.0), "failing_rows": _failing(ROW_4A, ROW_4B)},
        ),
        "paid.unique_id_customer_id": (True, "ERROR", _row_result(5, 0, 100.0)),
        "paid.accepted_values_currency": (
            False, "ERROR", {**_row_result(5, 1, 80.0), "failing_rows": _failing(ROW_4A)},
        ),
        "paid.accepted_values_status": (True, "ERROR", _row_result(5, 0, 100.0)),
        "paid.range_amount_cents": (
            False, "ERROR", {**_row_result(5, 1, 80.0), "failing_rows": _failing(ROW_4A)},
        ),
        "paid.range_amount_cents_2": (True, "ERROR", _row_result(5, 0, 100.0)),
        "paid.expression": (
            False, "ERROR", {**_row_result(5, 1, 80.0, 99.5), "failing_rows": _failing(ROW_5)},
        ),
        "paid.expression_2": (
            True, "ERROR", {**_row_result(5, 1, 80.0, 80.0), "failing_rows": _failing(ROW_5)},
        ),
        # Checks on `out` read the rows the load wrote.
        "load/paid_orders.not_null_customer_id": (
            False, "ERROR", {**_row_result(5, 1, 80.0), "failing_rows": _failing(ROW_2)},
        ),
    }  # fmt: skip
    assert TOKEN not in str(_evaluations(result))


def test_row_count_and_freshness(tmp_path, monkeypatch):
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)
    csv = ORDERS + f"6,40,paid,100,usd,{hour_ago:%Y-%m-%d %H:%M:%S}\n"
    checks = [
        {"asset": "orders", "type": "row_count", "min": 1, "max": 10000000},
        {"asset": "orders", "type": "row_count", "min": 8, "severity": "warn"},
        {"asset": "orders", "type": "freshness", "column": "updated_at", "max_age": "26h"},
        {"asset": "orders", "type": "freshness", "column": "updated_at", "max_age": "30m"},
    ]
    project = _project(tmp_path, monkeypatch, checks, csv=csv)
    with dg.instance_for_test() as instance:
        result = _run(project, instance)
    evaluations = _evaluations(result)
    assert evaluations["raw/orders.row_count"] == (True, "ERROR", {"rows_checked": 7})
    assert evaluations["raw/orders.row_count_2"] == (False, "WARN", {"rows_checked": 7})
    newest = hour_ago.isoformat()
    for name, passed, max_age in (("freshness_updated_at", True, "26h"),
                                  ("freshness_updated_at_2", False, "30m")):  # fmt: skip
        ok, severity, metadata = evaluations[f"raw/orders.{name}"]
        assert (ok, severity) == (passed, "ERROR")
        assert metadata == {
            "rows_checked": 7,
            "max_age": max_age,
            "newest": newest,
            "age_hours": pytest.approx(1.0, abs=0.05),
        }


def _destination_rows(project: Path, table: str) -> int | None:
    database = project / "warehouse.duckdb"
    if not database.exists():
        return None
    with duckdb.connect(str(database), read_only=True) as con:
        found = con.execute(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ?", [table]
        ).fetchone()
        if not found or not found[0]:
            return None
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_blocking_error_check_stops_the_load(tmp_path, monkeypatch):
    check = {"asset": "paid", "type": "not_null", "column": "customer_id", "blocking": True}
    project = _project(tmp_path, monkeypatch, [check])
    with dg.instance_for_test() as instance:
        result = _run(project, instance)
        assert (
            instance.get_latest_materialization_event(
                dg.AssetKey(["acme", "shop", "load", "paid_orders"])
            )
            is None
        )
    assert not result.success
    assert failure_messages(result) == [
        "dagster._core.errors.DagsterAssetCheckFailedError: 1 blocking asset check failed with "
        "ERROR severity: acme/shop/paid: not_null_customer_id"
    ]
    assert _evaluations(result)["paid.not_null_customer_id"][:2] == (False, "ERROR")
    assert _destination_rows(project, "paid_orders") is None


def test_warn_check_and_passing_blocking_check_do_not_stop_the_load(tmp_path, monkeypatch):
    checks = [
        {"asset": "paid", "type": "not_null", "column": "customer_id", "severity": "warn"},
        {"asset": "paid", "type": "not_null", "column": "id", "blocking": True},
    ]
    project = _project(tmp_path, monkeypatch, checks)
    with dg.instance_for_test() as instance:
        result = _run(project, instance)
    assert result.success
    evaluations = _evaluations(result)
    assert evaluations["paid.not_null_customer_id"][:2] == (False, "WARN")
    assert evaluations["paid.not_null_id"][:2] == (True, "ERROR")
    assert _destination_rows(project, "paid_orders") == 5


def test_schema_check_reports_added_removed_and_retyped_columns(tmp_path, monkeypatch):
    checks = [
        {"asset": "orders", "type": "schema"},
        {"asset": "out", "type": "schema", "on_change": "fail"},
    ]
    first = "id,amount,note\n1,10,a\n2,20,b\n"
    project = _project(tmp_path, monkeypatch, checks, csv=first, transform=None)
    with dg.instance_for_test() as instance:
        unchanged = {"previous_materialization": "none"}
        assert _evaluations(_run(project, instance)) == {
            "raw/orders.schema": (True, "WARN", unchanged),
            "load/orders.schema": (True, "ERROR", unchanged),
        }
        same = _evaluations(_run(project, instance))
        assert same["raw/orders.schema"] == (
            True, "WARN",
            {"columns_added": "none", "columns_removed": "none", "columns_retyped": "none"},
        )  # fmt: skip
        (project / "data" / "orders.csv").write_text("id,amount,channel\n1,10.5,web\n")
        changed = {
            "columns_added": "channel",
            "columns_removed": "note",
            "columns_retyped": "amount: int64 -> double",
        }
        assert _evaluations(_run(project, instance)) == {
            "raw/orders.schema": (False, "WARN", changed),
            "load/orders.schema": (False, "ERROR", changed),
        }


@pytest.mark.parametrize(
    ("mode", "second_run"),
    [
        ("replace", {"table_rows": 3, "rows_loaded": 3, "expected": "= 3"}),
        ("append", {"table_rows": 6, "rows_loaded": 3, "previous_table_rows": 3,
                    "expected": "= 6"}),
        ("upsert", {"table_rows": 3, "rows_loaded": 3, "expected": ">= 3"}),
    ],
)  # fmt: skip
def test_reconcile_per_load_mode(tmp_path, monkeypatch, mode, second_run):
    csv = "id,amount\n1,10\n2,20\n3,30\n"
    keys = {"upsert_key": ["id"]} if mode == "upsert" else {}
    project = _project(
        tmp_path, monkeypatch, [{"asset": "out", "type": "reconcile"}],
        csv=csv, transform=None, load_mode=mode, **keys,
    )  # fmt: skip
    with dg.instance_for_test() as instance:
        _run(project, instance)
        result = _run(project, instance)
    assert _evaluations(result) == {
        "load/orders.reconcile": (True, "ERROR", {**second_run, "load_mode": mode})
    }


def test_reconcile_fails_when_the_table_changed_between_appends(tmp_path, monkeypatch):
    project = _project(
        tmp_path, monkeypatch, [{"asset": "out", "type": "reconcile"}],
        csv="id,amount\n1,10\n2,20\n", transform=None, load_mode="append",
    )  # fmt: skip
    with dg.instance_for_test() as instance:
        _run(project, instance)
        with duckdb.connect(str(project / "warehouse.duckdb")) as con:
            con.execute("INSERT INTO orders VALUES (9, 90)")
        result = _run(project, instance)
    assert _evaluations(result) == {
        "load/orders.reconcile": (
            False, "ERROR",
            {"table_rows": 5, "rows_loaded": 2, "previous_table_rows": 2, "expected": "= 4",
             "load_mode": "append"},
        )
    }  # fmt: skip


SCHEMA = pa.schema(
    [("id", pa.int64()), ("currency", pa.string()), ("amount", pa.float64()),
     ("updated_at", pa.timestamp("us"))]
)  # fmt: skip


def _problems(checks: list[dict[str, Any]], schema: pa.Schema | None = SCHEMA) -> list[Problem]:
    pipeline = Pipeline.model_validate(
        {"name": "shop", "checks": checks,
         "source": {"connector": "csv", "tables": ["orders"]},
         "transform": TRANSFORM,
         "destination": {"connector": "duckdb"}}
    )  # fmt: skip
    return check_problems(pipeline, {"orders": schema, "paid": schema, "out": schema})


def test_valid_checks_have_no_problems():
    assert _problems([
        {"asset": "paid", "type": "not_null", "column": "id", "blocking": True},
        {"asset": "orders", "type": "unique", "columns": ["id", "currency"]},
        {"asset": "out", "type": "accepted_values", "column": "currency", "values": ["usd"]},
        {"asset": "paid", "type": "range", "column": "amount", "min": 0, "max": 10},
        {"asset": "paid", "type": "expression", "expression": "amount < 1000000"},
        {"asset": "orders", "type": "freshness", "column": "updated_at", "max_age": "26h"},
        {"asset": "orders", "type": "row_count", "min": 1},
        {"asset": "orders", "type": "schema", "on_change": "fail", "blocking": True},
        {"asset": "out", "type": "reconcile"},
    ]) == []  # fmt: skip


def test_check_problems_exact_text():
    use_columns = "use one of: id, currency, amount, updated_at"
    needs = "a {} check needs {}"
    assert _problems([
        {"asset": "missing", "type": "not_null", "column": "id"},
        {"asset": "paid", "type": "not_null", "column": "customer"},
        {"asset": "paid", "type": "unique", "columns": ["id", "nope"]},
        {"asset": "paid", "type": "not_null"},
        {"asset": "paid", "type": "unique"},
        {"asset": "paid", "type": "accepted_values", "column": "currency"},
        {"asset": "paid", "type": "range", "column": "amount"},
        {"asset": "paid", "type": "expression"},
        {"asset": "paid", "type": "row_count"},
        {"asset": "paid", "type": "freshness"},
        {"asset": "paid", "type": "row_count", "min": 10, "max": 1},
        {"asset": "paid", "type": "not_null", "column": "id", "severity": "warn",
         "blocking": True},
        {"asset": "paid", "type": "schema", "blocking": True},
        {"asset": "paid", "type": "reconcile"},
        {"asset": "paid", "type": "expression", "expression": "amount <"},
        {"asset": "paid", "type": "expression", "expression": "1); DROP TABLE x; SELECT (1"},
        {"asset": "paid", "type": "expression", "expression": "amout > 0"},
        {"asset": "paid", "type": "accepted_values", "column": "amount", "values": ["big"]},
        {"asset": "paid", "type": "freshness", "column": "currency", "max_age": "1d"},
        {"asset": "paid", "type": "range", "column": "currency", "min": 0},
    ]) == [
        Problem("checks[0].asset", "unknown asset 'missing'",
                "use a node id, a source table or out: orders, paid, out"),
        Problem("checks[1].column", "asset 'paid' has no column 'customer'", use_columns),
        Problem("checks[2].columns", "asset 'paid' has no column 'nope'", use_columns),
        Problem("checks[3].column", needs.format("not_null", "column"),
                "name the column to check"),
        Problem("checks[4].columns", needs.format("unique", "columns or column"),
                "list the key column(s), e.g. columns: [id]"),
        Problem("checks[5].values", needs.format("accepted_values", "values"),
                "list the accepted values, e.g. values: [usd, eur]"),
        Problem("checks[6].min", needs.format("range", "min or max"), "give min, max or both"),
        Problem("checks[7].expression", needs.format("expression", "expression"),
                "give a condition every row meets, e.g. amount >= 0"),
        Problem("checks[8].min", needs.format("row_count", "min or max"),
                "give min, max or both"),
        Problem("checks[9].column", needs.format("freshness", "column"),
                "name the timestamp column"),
        Problem("checks[9].max_age", needs.format("freshness", "max_age"),
                "give the largest allowed age, e.g. max_age: 26h"),
        Problem("checks[10].min", "min 10 is greater than max 1", "swap them"),
        *[Problem(f"checks[{i}].blocking", "a check that only warns never blocks",
                  "set severity: error (for schema checks, on_change: fail) or remove blocking")
          for i in (11, 12)],
        Problem("checks[13].asset",
                "reconcile compares the destination table with the load, and 'paid' is not "
                "the destination", "use asset: out"),
        Problem("checks[14].expression",
                "expression 'amount <' is not valid SQL: Parser Error: syntax error at or "
                'near ")"',
                "write a DuckDB condition over the asset's columns, e.g. amount >= 0"),
        Problem("checks[15].expression",
                "expression '1); DROP TABLE x; SELECT (1' is not valid SQL: it must be one "
                "condition",
                "write a DuckDB condition over the asset's columns, e.g. amount >= 0"),
        Problem("checks[16].expression",
                'expression check does not fit the asset\'s columns: Binder Error: '
                'Referenced column "amout" not found in FROM clause!',
                "use the asset's column names and values of the column's type"),
        Problem("checks[17].values",
                "accepted_values check does not fit the asset's columns: Conversion Error: "
                "Could not convert string 'big' to DOUBLE",
                "use the asset's column names and values of the column's type"),
        Problem("checks[18].column",
                "freshness needs a date or timestamp column; 'currency' is string",
                "name a column such as updated_at"),
        Problem("checks[19].column", "range needs a numeric column; 'currency' is string",
                "use accepted_values or an expression for other types"),
    ]  # fmt: skip


def test_unknown_schema_skips_column_checks_only():
    assert _problems(
        [{"asset": "paid", "type": "not_null", "column": "anything"},
         {"asset": "paid", "type": "expression", "expression": "a >"}],
        schema=None,
    ) == [
        Problem("checks[1].expression",
                "expression 'a >' is not valid SQL: Parser Error: syntax error at or near \")\"",
                "write a DuckDB condition over the asset's columns, e.g. amount >= 0"),
    ]  # fmt: skip
