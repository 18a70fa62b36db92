"""Data-quality checks from the pipeline file: real Dagster runs over CSV -> DuckDB."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg
import pyarrow as pa
import pytest

from datapipe_assets.cli.status import recent_runs
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.check_validation import check_problems
from datapipe_assets.pipeline.problems import Problem
from datapipe_assets.pipeline.project import load_project
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.project_files import (
    PAID_ONLY_TRANSFORM,
    failure_messages,
    postgres_config,
    write_project,
)

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
ROW_HEADER = [
    "| id | customer_id | status | amount_cents | currency | updated_at |",
    "|---|---|---|---|---|---|",
]


def _project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    checks: list[dict[str, Any]],
    csv: str = ORDERS,
    transform: dict[str, Any] | None = PAID_ONLY_TRANSFORM,
    **destination: Any,
) -> Path:
    """One pipeline `shop` from data/orders.csv into warehouse.duckdb, with the checks."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.setenv("CHECKS_TOKEN", TOKEN)
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "data" / "orders.csv").write_text(csv)
    # The token is a secret of the source connection (its S3 secret key, unused for a local
    # file): failing rows must never show it.
    source = {
        "path": "data/orders.csv",
        "aws_access_key_id": "checks",
        "aws_secret_access_key": "${CHECKS_TOKEN}",
    }
    pipeline: dict[str, Any] = {
        "name": "shop", "org": "acme", "checks": checks,
        "source": {"connection": "orders_csv", "tables": ["orders"]},
        "destination": {"connection": "warehouse", **destination},
    }  # fmt: skip
    if transform is not None:
        pipeline["transform"] = transform
        pipeline["destination"]["target_table"] = "paid_orders"
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
        .resolve_job_def("acme__shop")
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


def _descriptions(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """`asset.check_name` -> (passed, severity, description): what a schema check reports."""
    return {
        f"{'/'.join(e.asset_key.path[2:])}.{e.check_name}": (
            e.passed, e.severity.value, e.description
        )
        for e in result.get_asset_check_evaluations()
    }  # fmt: skip


def test_schema_check_reports_added_removed_and_retyped_columns(tmp_path, monkeypatch):
    """Dagster's column-schema-change check: severity from on_change, details in the text."""
    checks = [
        {"asset": "orders", "type": "schema"},
        {"asset": "out", "type": "schema", "on_change": "fail"},
    ]
    first = "id,amount,note\n1,10,a\n2,20,b\n"
    project = _project(tmp_path, monkeypatch, checks, csv=first, transform=None)
    with dg.instance_for_test() as instance:
        once = "The asset has been materialized fewer than 2 times"
        assert _descriptions(_run(project, instance)) == {
            "raw/orders.column_schema_change": (True, "WARN", once),
            "load/orders.column_schema_change": (True, "ERROR", once),
        }
        same = _descriptions(_run(project, instance))
        assert same["raw/orders.column_schema_change"] == (
            True, "WARN",
            "No changes to column schema between previous and latest materialization",
        )  # fmt: skip
        (project / "data" / "orders.csv").write_text("id,amount,channel\n1,10.5,web\n")
        changed = (
            "Column schema changed between previous and latest materialization.\n\n"
            "Added columns: channel\n\n"
            "Removed columns: note\n\n"
            "Column type changes:\n- amount: int64 -> double"
        )
        result = _run(project, instance)
        # A failed schema check never blocks: the changed data is loaded.
        assert result.success
        assert _descriptions(result) == {
            "raw/orders.column_schema_change": (False, "WARN", changed),
            "load/orders.column_schema_change": (False, "ERROR", changed),
        }
        assert _evaluations(result)["load/orders.column_schema_change"][2] == {}


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
         "transform": PAID_ONLY_TRANSFORM,
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
        {"asset": "orders", "type": "schema", "on_change": "fail"},
        {"asset": "out", "type": "reconcile"},
        {"asset": "paid", "type": "relationships", "column": "id", "to": "orders",
         "to_column": "id", "blocking": True},
        {"asset": "orders", "type": "relationships", "column": "id", "to": "out",
         "to_column": "id"},
        {"asset": "out", "type": "relationships", "column": "id", "to": "out", "to_column": "id",
         "blocking": True, "name": "self_reference"},
        {"asset": "paid", "type": "not_null", "column": "id", "name": "id_present"},
        {"asset": "orders", "type": "not_null", "column": "id", "name": "id_present"},
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
        Problem("checks[11].blocking", "a check that only warns never blocks",
                "set severity: error or remove blocking"),
        Problem("checks[12].blocking",
                "a schema check cannot block: Dagster's column-schema-change check, which runs "
                "it, never blocks",
                "remove blocking; to stop a load on missing columns, add a blocking not_null or "
                "expression check on the columns the destination needs"),
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


def test_relationships_check_problems_exact_text():
    needs = "a relationships check needs {}"
    relationship = {"asset": "paid", "type": "relationships", "column": "id"}
    assert _problems([
        {"asset": "paid", "type": "relationships"},
        {**relationship, "to": "nowhere", "to_column": "id"},
        {**relationship, "to": "orders", "to_column": "customer"},
        {**relationship, "to": "orders", "to_column": "currency"},
        {**relationship, "column": "nope", "to": "orders", "to_column": "id"},
        {"asset": "orders", "type": "relationships", "column": "id", "to": "paid",
         "to_column": "id", "blocking": True},
        {"asset": "paid", "type": "relationships", "column": "id", "to": "out",
         "to_column": "id", "blocking": True},
    ]) == [
        Problem("checks[0].column", needs.format("column"),
                "name the column that refers to the other asset"),
        Problem("checks[0].to", needs.format("to"),
                "name the asset it refers to: a node id, a source table or out"),
        Problem("checks[0].to_column", needs.format("to_column"),
                "name the column it refers to, e.g. to_column: id"),
        Problem("checks[1].to", "unknown asset 'nowhere'",
                "use a node id, a source table or out: orders, paid, out"),
        Problem("checks[2].to_column", "asset 'orders' has no column 'customer'",
                "use one of: id, currency, amount, updated_at"),
        Problem("checks[3].to_column",
                "'id' (int64) cannot be compared with 'currency' of 'orders' (string)",
                "refer to a column of the same kind (number, text, date and time, boolean), "
                "or cast one in a computed node"),
        Problem("checks[4].column", "asset 'paid' has no column 'nope'",
                "use one of: id, currency, amount, updated_at"),
        Problem("checks[5].blocking",
                "'paid' is built from 'orders', so a blocking check on 'orders' that reads it "
                "would wait for itself",
                "remove blocking, or put the check on an asset built from both"),
        Problem("checks[6].blocking",
                "'out' is built from 'paid', so a blocking check on 'paid' that reads it would "
                "wait for itself",
                "remove blocking, or put the check on an asset built from both"),
    ]  # fmt: skip


def test_relationships_to_an_unknown_schema_checks_names_only():
    checks = [{"asset": "paid", "type": "relationships", "column": "id", "to": "orders",
               "to_column": "anything"}]  # fmt: skip
    pipeline = Pipeline.model_validate(
        {"name": "shop", "checks": checks, "source": {"connector": "csv", "tables": ["orders"]},
         "transform": PAID_ONLY_TRANSFORM, "destination": {"connector": "duckdb"}}
    )  # fmt: skip
    assert check_problems(pipeline, {"paid": SCHEMA, "orders": None}) == []


def test_relationships_to_out_of_several_tables_is_ambiguous():
    pipeline = Pipeline.model_validate(
        {"name": "shop", "source": {"connector": "csv", "tables": ["orders", "customers"]},
         "destination": {"connector": "duckdb"},
         "checks": [{"asset": "orders", "type": "relationships", "column": "customer_id",
                     "to": "out", "to_column": "id"}]}
    )  # fmt: skip
    assert check_problems(pipeline, {}) == [
        Problem("checks[0].to", "'out' names 2 destination tables",
                "name the source table of the one meant"),
    ]  # fmt: skip


def test_check_name_problems_exact_text():
    not_null = {"asset": "paid", "type": "not_null", "column": "id"}
    assert _problems([
        {**not_null, "name": "id_present"},
        {**not_null, "name": "id_present"},
        not_null,
        {**not_null, "name": "not_null_id"},
        {"asset": "orders", "type": "schema"},
        {"asset": "orders", "type": "schema", "on_change": "fail"},
        {"asset": "paid", "type": "schema", "name": "columns_stable"},
    ]) == [
        Problem("checks[6].name", "a schema check is always named column_schema_change "
                "(Dagster names it)", "remove name"),
        Problem("checks[1].name",
                "check name 'id_present' is already used on asset 'paid' by checks[0]",
                "give one of them another name (name: ...)"),
        Problem("checks[3].name",
                "check name 'not_null_id' is already used on asset 'paid' by checks[2]",
                "give one of them another name (name: ...)"),
        Problem("checks[5].type",
                "check name 'column_schema_change' is already used on asset 'orders' by "
                "checks[4]",
                "keep one schema check per asset"),
    ]  # fmt: skip


def _check_specs(definitions: dg.Definitions) -> dict[str, dg.AssetCheckSpec]:
    """Every asset check of the definitions, by name."""
    graph = definitions.resolve_asset_graph()
    return {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}


def test_named_checks_in_the_ui_and_in_status(tmp_path, monkeypatch):
    checks = [
        {"asset": "paid", "type": "not_null", "column": "customer_id", "name": "has_customer"},
        {"asset": "paid", "type": "not_null", "column": "customer_id", "severity": "warn"},
        {"asset": "paid", "type": "expression", "expression": "amount_cents > 0",
         "name": "positive_amount"},
    ]  # fmt: skip
    project = _project(tmp_path, monkeypatch, checks)
    with dg.instance_for_test() as instance:
        definitions = build_definitions(load_project(project))
        result = definitions.resolve_job_def("acme__shop").execute_in_process(instance=instance)
        [summary] = recent_runs(instance, "acme__shop")
    assert sorted(_check_specs(definitions)) == [
        "has_customer", "not_null_customer_id", "positive_amount"
    ]  # fmt: skip
    assert {name: (passed, severity) for name, (passed, severity, _) in
            _evaluations(result).items()} == {
        "paid.has_customer": (False, "ERROR"),
        "paid.not_null_customer_id": (False, "WARN"),
        "paid.positive_amount": (False, "ERROR"),
    }  # fmt: skip
    assert summary.failing_checks == [
        "acme/shop/paid:has_customer",
        "acme/shop/paid:not_null_customer_id",
        "acme/shop/paid:positive_amount",
    ]


# Orders 3 and 5 name customers that do not exist; order 2 has none, which passes.
SHOP_TABLES = (
    "CREATE TABLE customers (id integer, name text, referred_by integer)",
    "INSERT INTO customers VALUES (10, 'Ada', NULL), (20, 'Bo', 10), (30, 'Cy', 99)",
    "CREATE TABLE orders (id integer, customer_id integer, amount integer)",
    "INSERT INTO orders VALUES (1, 10, 5), (2, NULL, 6), (3, 77, 7), (4, 20, 8), (5, 88, 9)",
)
ORDER_HEADER = ["| id | customer_id | amount |", "|---|---|---|"]


def _database_project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres: Any,
    database: str,
    checks: list[dict[str, Any]],
) -> Path:
    """Pipeline `shop`: tables customers and orders from PostgreSQL, loaded as is into DuckDB."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    with psycopg.connect(postgres.url(database), autocommit=True) as conn:
        for statement in SHOP_TABLES:
            conn.execute(statement)
    return write_project(
        tmp_path / "pipelines",
        {"shop_db": {"connector": "postgres", "config": postgres_config(postgres, database)},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {"shop.yaml": {
            "name": "shop", "org": "acme", "checks": checks,
            "source": {"connection": "shop_db", "tables": ["customers", "orders"]},
            "destination": {"connection": "warehouse"},
        }},
    )  # fmt: skip


def test_relationships_check_finds_rows_without_a_match(tmp_path, monkeypatch, postgres,
                                                        pg_database):  # fmt: skip
    known = {"asset": "orders", "type": "relationships", "column": "customer_id",
             "to": "customers", "to_column": "id"}  # fmt: skip
    checks = [
        known,
        {**known, "name": "customer_mostly_known", "pass_threshold": 60},
        {"asset": "customers", "type": "relationships", "column": "referred_by",
         "to": "customers", "to_column": "id", "severity": "warn"},
    ]  # fmt: skip
    project = _database_project(tmp_path, monkeypatch, postgres, pg_database, checks)
    with dg.instance_for_test() as instance:
        definitions = build_definitions(load_project(project))
        result = definitions.resolve_job_def("acme__shop").execute_in_process(instance=instance)
    unknown = "\n".join([*ORDER_HEADER, "| 3 | 77 | 7 |", "| 5 | 88 | 9 |"])
    assert result.success
    assert _evaluations(result) == {
        "raw/orders.relationships_customer_id": (
            False, "ERROR", {**_row_result(5, 2, 60.0), "failing_rows": unknown},
        ),
        "raw/orders.customer_mostly_known": (
            True, "ERROR", {**_row_result(5, 2, 60.0, 60.0), "failing_rows": unknown},
        ),
        # A check on an asset's own column reads no second file.
        "raw/customers.relationships_referred_by": (
            False, "WARN",
            {**_row_result(3, 1, 66.67),
             "failing_rows": "| id | name | referred_by |\n|---|---|---|\n| 30 | Cy | 99 |"},
        ),
    }  # fmt: skip
    # The referenced asset is an input of the check: the lineage shows it.
    specs = _check_specs(definitions)
    customers = dg.AssetKey(["acme", "shop", "raw", "customers"])
    assert [d.asset_key for d in specs["relationships_customer_id"].additional_deps] == [customers]
    assert list(specs["relationships_referred_by"].additional_deps) == []


def test_blocking_relationships_check_stops_only_its_load(tmp_path, monkeypatch, postgres,
                                                         pg_database):  # fmt: skip
    check = {"asset": "orders", "type": "relationships", "column": "customer_id",
             "to": "customers", "to_column": "id", "blocking": True}  # fmt: skip
    project = _database_project(tmp_path, monkeypatch, postgres, pg_database, [check])
    with dg.instance_for_test() as instance:
        result = _run(project, instance)
    assert not result.success
    assert failure_messages(result) == [
        "dagster._core.errors.DagsterAssetCheckFailedError: 1 blocking asset check failed with "
        "ERROR severity: acme/shop/raw/orders: relationships_customer_id"
    ]
    assert _destination_rows(project, "customers") == 3
    assert _destination_rows(project, "orders") is None


def test_relationships_to_the_destination_reads_the_loaded_rows(tmp_path, monkeypatch):
    """Which orders were not loaded: raw orders against the rows the load wrote."""
    checks = [{"asset": "orders", "type": "relationships", "column": "id", "to": "out",
               "to_column": "id", "severity": "warn"}]  # fmt: skip
    project = _project(tmp_path, monkeypatch, checks)
    with dg.instance_for_test() as instance:
        result = _run(project, instance)
    pending = "| 3 | 20 | pending | 999 | usd | 2026-01-01 02:00:00 |"
    assert _evaluations(result) == {
        "raw/orders.relationships_id": (
            False, "WARN", {**_row_result(6, 1, 83.33), "failing_rows": _failing(pending)},
        ),
    }  # fmt: skip
