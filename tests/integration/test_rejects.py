"""Rejected rows (`on_bad_rows: {action: reject}`): each bad row is kept, with its reason,
file, line and text, in the run's rejects file; the good rows load; over the limit, nothing
loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg
import pyarrow.parquet as pq
import pytest

from datapipe_assets.cli.main import main
from tests.support.project_files import failure_messages, postgres_config, run, write_project
from tests.support.warehouse_runs import materializations, warehouse_rows, warehouse_tables

HEADER = b"id,name,amount\n"
REJECT = {"action": "reject", "max_rejected": 5}


def _project(
    directory: Path, csv: bytes, warehouse: dict[str, Any] | None = None, **pipeline: Any
) -> Path:
    """orders.csv (id declared BIGINT, amount DOUBLE) copied by pipeline `copy` into the
    `warehouse` connection (default: wh.duckdb)."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "data" / "orders.csv").write_bytes(csv)
    return write_project(
        directory,
        {
            "files": {
                "connector": "csv",
                "config": {
                    "path": "data/orders.csv",
                    "columns": {"id": "BIGINT", "amount": "DOUBLE"},
                },
            },
            "warehouse": warehouse or {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
        },
        {
            "copy.yaml": {
                "name": "copy",
                "source": {"connection": "files", "tables": ["orders"]},
                "destination": {"connection": "warehouse", "load_mode": "append"},
                "on_bad_rows": REJECT,
                **pipeline,
            }
        },
    )


def _tables(project: Path) -> list[str]:
    """The tables in wh.duckdb; none when the file was never created."""
    return warehouse_tables(project) if (project / "wh.duckdb").exists() else []


EXTRACT = "pipeline 'copy', table 'orders' (connection 'files')"


def _nothing_loaded(tmp_path: Path, result: dg.ExecuteInProcessResult, stage: str) -> str:
    """How a failure over the limit ends: where the rejects of orders at `stage` are."""
    rejects = tmp_path / "staging" / result.run_id / f"rejects/default/copy/{stage}/orders.parquet"
    return f"nothing was loaded; the rejects are in {rejects} (datapipe rejects copy)"


def _run_again_with(project: Path, csv: bytes) -> dg.ExecuteInProcessResult:
    """Run `copy` (it succeeds), then again over `csv` (it fails): the second run."""
    with dg.instance_for_test() as instance:
        assert run(project, "copy", instance).success
        (project / "data" / "orders.csv").write_bytes(csv)
        result = run(project, "copy", instance)
    assert not result.success
    return result


def _rejects(staging: Path, run_id: str, *key: str) -> list[tuple[Any, ...]]:
    path = staging / run_id / "rejects" / "default" / "copy" / Path(*key).with_suffix(".parquet")
    return [tuple(row.values()) for row in pq.read_table(path).to_pylist()]


# Per CSV reject cause: the file's rows after the header, the rows loaded, the rejects.
CSV_CAUSES: dict[str, tuple[bytes, list[tuple[Any, ...]], list[tuple[Any, ...]]]] = {
    "wrong_field_count": (
        b"1,a,1.5\n\n2,b,2.5,extra\n3,c,3\n",
        [(1, "a", 1.5), (3, "c", 3.0)],
        [("expected 3 fields, found 4", "data/orders.csv", 4, "2,b,2.5,extra")],
    ),
    "value_not_of_the_column_type": (
        b'1,a,1.5\n2,b,"x"\n3,c, 3 \nfour,d,4\n5,e,\n',
        [(1, "a", 1.5), (3, "c", 3.0), (5, "e", None)],
        [
            ("column 'amount' value 'x' is not double", "data/orders.csv", 3, '2,b,"x"'),
            ("column 'id' value 'four' is not int64", "data/orders.csv", 5, "four,d,4"),
        ],
    ),
    "text_not_valid_in_the_encoding": (
        b"1,caf\xc3\xa9,1.5\n2,caf\xe9,2\n3,c,3\n",
        [(1, "caf\u00e9", 1.5), (3, "c", 3.0)],
        [("column 'name' is not valid utf-8 text", "data/orders.csv", 3, "2,caf\\xe9,2")],
    ),
}


@pytest.mark.parametrize("cause", CSV_CAUSES)
@pytest.mark.parametrize("staging_mode", ["minimal", "every_node"])
def test_csv_row_rejected(tmp_path, monkeypatch, cause, staging_mode):
    """Each cause, with the load in the extract's step (minimal) and in a step of its own."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    rows, loaded, rejected = CSV_CAUSES[cause]
    project = _project(tmp_path / "p", HEADER + rows, staging=staging_mode)
    with dg.instance_for_test() as instance:
        result = run(project, "copy", instance)
    assert result.success, failure_messages(result)
    assert warehouse_rows(project, "orders") == loaded
    assert _rejects(tmp_path / "staging", result.run_id, "raw", "orders") == rejected
    found = materializations(result)
    assert found["raw/orders"].metadata["rejected_rows"] == dg.IntMetadataValue(len(rejected))
    assert found["load/orders"].metadata["rejected_rows"] == dg.IntMetadataValue(0)


def test_rejects_over_max_rejected_load_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(tmp_path / "p", HEADER + b"1,a,1\n", on_bad_rows={
        "action": "reject", "max_rejected": 1})  # fmt: skip
    result = _run_again_with(project, HEADER + b"2,b,x\n3,c,3\n4,d,4,4\n")
    assert failure_messages(result) == [
        f"{EXTRACT}: 2 of 3 rows read were rejected (66.67%), over the pipeline's on_bad_rows "
        f"limit (max_rejected: 1); {_nothing_loaded(tmp_path, result, 'raw')}"
    ]
    assert warehouse_rows(project, "orders") == [(1, "a", 1.0)]
    assert _rejects(tmp_path / "staging", result.run_id, "raw", "orders") == [
        ("column 'amount' value 'x' is not double", "data/orders.csv", 2, "2,b,x"),
        ("expected 3 fields, found 4", "data/orders.csv", 4, "4,d,4,4"),
    ]


@pytest.mark.parametrize(("percent", "loads"), [(25, True), (24.9, False)])
def test_max_rejected_percent_of_the_rows_read(tmp_path, monkeypatch, percent, loads):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    csv = HEADER + b"1,a,1\n2,b,2\n3,c,x\n4,d,4\n"
    policy = {"action": "reject", "max_rejected_percent": percent}
    project = _project(tmp_path / "p", csv, on_bad_rows=policy, staging="every_node")
    with dg.instance_for_test() as instance:
        result = run(project, "copy", instance)
    assert result.success is loads
    if loads:
        assert warehouse_rows(project, "orders") == [(1, "a", 1.0), (2, "b", 2.0), (4, "d", 4.0)]
        return
    assert _tables(project) == []
    assert failure_messages(result) == [
        f"{EXTRACT}: 1 of 4 rows read were rejected (25.00%), over the pipeline's on_bad_rows "
        f"limit (max_rejected_percent: 24.9); {_nothing_loaded(tmp_path, result, 'raw')}"
    ]


def test_action_fail_is_the_default_and_fails_at_the_first_bad_row(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    csv = HEADER + b"1,a,1\n2,b,x\n"
    project = _project(tmp_path / "p", csv, on_bad_rows={"action": "fail"})
    with dg.instance_for_test() as instance:
        result = run(project, "copy", instance)
    assert failure_messages(result) == [
        "connection 'files': data/orders.csv line 3: column 'amount' value 'x' is not double; "
        "fix the value, list it in null_values if it means NULL, or set columns: "
        "{amount: VARCHAR} (or another type that fits)"
    ]
    assert _tables(project) == []
    assert not (tmp_path / "staging" / result.run_id / "rejects").exists()


def test_incremental_rejects_once_and_the_cursor_passes_them(tmp_path, monkeypatch):
    """A rejected row is read once: the next runs start past it and do not reject it again."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    header = b"id,name,amount,updated_at\n"
    first = header + b"1,a,1,2026-01-01\n2,b,x,2026-01-02\n3,c,3,2026-01-03\n"
    incremental = {"sync_mode": "incremental", "incremental_key": "updated_at",
                   "primary_key": ["id"], "tables": ["orders"]}  # fmt: skip
    project = _project(tmp_path / "p", first, source={"connection": "files", **incremental})
    later = first + b"4,d,y,2026-01-04\n5,e,5,2026-01-05\n"
    staging = tmp_path / "staging"
    with dg.instance_for_test() as instance:
        runs = [run(project, "copy", instance)]
        (project / "data" / "orders.csv").write_bytes(later)
        runs += [run(project, "copy", instance), run(project, "copy", instance)]
    assert [r.success for r in runs] == [True, True, True]
    assert [row[:3] for row in warehouse_rows(project, "orders")] == [
        (1, "a", 1.0), (3, "c", 3.0), (5, "e", 5.0)
    ]  # fmt: skip
    assert _rejects(staging, runs[0].run_id, "raw", "orders") == [
        ("column 'amount' value 'x' is not double", "data/orders.csv", 3, "2,b,x,2026-01-02")
    ]
    assert _rejects(staging, runs[1].run_id, "raw", "orders") == [
        ("column 'amount' value 'y' is not double", "data/orders.csv", 5, "4,d,y,2026-01-04")
    ]
    assert not (staging / runs[2].run_id / "rejects").exists()
    rejected = [materializations(r)["raw/orders"].metadata["rejected_rows"] for r in runs]
    assert rejected == [dg.IntMetadataValue(1), dg.IntMetadataValue(1), dg.IntMetadataValue(0)]
    [(pipeline, table, state, _)] = warehouse_rows(project, "_datapipe_state")
    cursor = {"type": "date", "value": "2026-01-05"}
    assert (pipeline, table, json.loads(state)) == (
        "copy", "orders", {"cursor": cursor, "boundary_keys": [[5]]}
    )  # fmt: skip


def test_rejected_rows_check_fails_showing_the_first_five(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    bad = b"".join(b"%d,n%d,x%d\n" % (i, i, i) for i in range(2, 8))
    project = _project(tmp_path / "p", HEADER + b"1,a,1\n" + bad, on_bad_rows={
        "action": "reject", "max_rejected": 6})  # fmt: skip
    with dg.instance_for_test() as instance:
        result = run(project, "copy", instance)
    assert result.success, failure_messages(result)
    checks = {"/".join(e.asset_key.path[2:]): e for e in result.get_asset_check_evaluations()}
    assert sorted(checks) == ["load/orders", "raw/orders"]
    assert (checks["load/orders"].passed, checks["load/orders"].metadata) == (
        True, {"rows_checked": dg.IntMetadataValue(7), "rows_failed": dg.IntMetadataValue(0)}
    )  # fmt: skip
    raw = checks["raw/orders"]
    assert (raw.check_name, raw.passed, raw.severity) == (
        "rejected_rows", False, dg.AssetCheckSeverity.WARN
    )  # fmt: skip
    assert raw.description == (
        "6 rows rejected; first data/orders.csv line 3: column 'amount' value 'x2' is not double"
    )
    url = tmp_path / "staging" / result.run_id / "rejects/default/copy/raw/orders.parquet"
    table = "\n".join(
        f"| column 'amount' value 'x{i}' is not double | data/orders.csv | {i + 1} "
        f"| {i},n{i},x{i} |"
        for i in range(2, 7)
    )
    assert raw.metadata == {
        "rows_checked": dg.IntMetadataValue(7),
        "rows_failed": dg.IntMetadataValue(6),
        "rejects_path": dg.PathMetadataValue(str(url)),
        "failing_rows": dg.MarkdownMetadataValue(
            "| reason | file | line | raw |\n|---|---|---|---|\n" + table
        ),
    }


@dataclass(frozen=True)
class Warehouse:
    """A destination connection, how to read a table's rows from it, sorted, and how to run
    a statement in it (both given the project's folder)."""

    name: str
    connection: dict[str, Any]
    rows: Callable[[Path, str], list[tuple[Any, ...]]]
    execute: Callable[[Path, str], None]


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    if request.param == "duckdb":

        def execute_duckdb(project: Path, sql: str) -> None:
            with duckdb.connect(str(project / "wh.duckdb")) as con:
                con.execute(sql)

        connection = {"connector": "duckdb", "config": {"path": "wh.duckdb"}}
        return Warehouse("duckdb", connection, warehouse_rows, execute_duckdb)
    server, database = request.getfixturevalue("postgres"), request.getfixturevalue("pg_database")

    def rows(_: Path, table: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(server.url(database)) as con:
            return con.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()

    def execute(_: Path, sql: str) -> None:
        with psycopg.connect(server.url(database), autocommit=True) as con:
            con.execute(sql)

    connection = {"connector": "postgres", "config": postgres_config(server, database)}
    return Warehouse("postgres", connection, rows, execute)


def test_null_and_repeated_upsert_keys(tmp_path, monkeypatch, warehouse):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    csv = HEADER + b"1,a,1\n,b,2\n2,c,3\n1,d,4\n"
    upsert = {"connection": "warehouse", "load_mode": "upsert", "upsert_key": ["id"]}
    # 2 of the 4 rows read: at the limit, so the load goes ahead (in the extract's step).
    policy = {"action": "reject", "max_rejected_percent": 50}
    project = _project(
        tmp_path / "p", csv, warehouse.connection, destination=upsert, on_bad_rows=policy
    )
    with dg.instance_for_test() as instance:
        result = run(project, "copy", instance)
    assert result.success, failure_messages(result)
    assert warehouse.rows(project, "orders") == [(1, "d", 4.0), (2, "c", 3.0)]
    assert _rejects(tmp_path / "staging", result.run_id, "load", "orders") == [
        ("upsert key (id) = (1) is repeated later in the load, which keeps the last row",
         None, None, '{"id": 1, "name": "a", "amount": 1.0}'),
        ("upsert key (id) has a NULL", None, None, '{"id": null, "name": "b", "amount": 2.0}'),
    ]  # fmt: skip
    found = materializations(result)
    assert found["raw/orders"].metadata["rejected_rows"] == dg.IntMetadataValue(0)
    assert found["load/orders"].metadata["rejected_rows"] == dg.IntMetadataValue(2)


def test_load_rejects_over_the_limit_roll_the_load_back(tmp_path, monkeypatch, warehouse):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    upsert = {"connection": "warehouse", "load_mode": "upsert", "upsert_key": ["id"]}
    policy = {"action": "reject", "max_rejected": 1}
    project = _project(
        tmp_path / "p", HEADER + b"9,z,9\n", warehouse.connection, destination=upsert,
        on_bad_rows=policy, staging="every_node",
    )  # fmt: skip
    result = _run_again_with(project, HEADER + b"1,a,1\n,b,2\n1,d,4\n")
    assert failure_messages(result) == [
        "pipeline 'copy', load into 'orders' (connection 'warehouse'): 2 of 3 rows read were "
        "rejected (66.67%), over the pipeline's on_bad_rows limit (max_rejected: 1); "
        + _nothing_loaded(tmp_path, result, "load")
    ]
    assert warehouse.rows(project, "orders") == [(9, "z", 9.0)]
    assert len(_rejects(tmp_path / "staging", result.run_id, "load", "orders")) == 2


# A value the destination refuses: an existing orders table whose columns hold less than the
# CSV's (a NOT NULL name, an INTEGER amount that may not be negative).
ORDERS_TABLE = (
    "CREATE TABLE orders (id BIGINT, name TEXT NOT NULL, amount INTEGER CHECK (amount >= 0))"
)
REFUSED_CSV = HEADER + b"1,a,1\n2,,2\n3,c,3000000000\n4,d,-4\n5,e,5\n"
# The rows refused, as JSON, and each destination's message for each.
REFUSED_ROWS = [
    '{"id": 2, "name": null, "amount": 2.0}',
    '{"id": 3, "name": "c", "amount": 3000000000.0}',
    '{"id": 4, "name": "d", "amount": -4.0}',
]
REFUSALS = {
    "duckdb": [
        'Constraint Error: NOT NULL constraint failed: orders."name"',
        "Conversion Error: Type DOUBLE with value 3000000000.0 can't be cast because the value "
        "is out of range for the destination type INT32 when casting from source column amount",
        'Constraint Error: CHECK constraint failed on table "orders" with expression '
        "CHECK((amount >= 0))",
    ],
    "postgres": [
        'null value in column "name" of relation "orders" violates not-null constraint',
        'value "3000000000" is out of range for type integer',
        'new row for relation "orders" violates check constraint "orders_amount_check"',
    ],
}


@pytest.mark.parametrize("staging_mode", ["minimal", "every_node"])
def test_values_the_destination_refuses_are_rejected(
    tmp_path, monkeypatch, warehouse, staging_mode
):
    """In the extract's step (minimal: the load reads the extract's stream) and in its own."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(tmp_path / "p", REFUSED_CSV, warehouse.connection, staging=staging_mode)
    warehouse.execute(project, ORDERS_TABLE)
    with dg.instance_for_test() as instance:
        result = run(project, "copy", instance)
    assert result.success, failure_messages(result)
    assert warehouse.rows(project, "orders") == [(1, "a", 1), (5, "e", 5)]
    assert _rejects(tmp_path / "staging", result.run_id, "load", "orders") == [
        (reason, None, None, raw)
        for reason, raw in zip(REFUSALS[warehouse.name], REFUSED_ROWS, strict=True)
    ]
    found = materializations(result)
    assert found["raw/orders"].metadata["rejected_rows"] == dg.IntMetadataValue(0)
    assert found["load/orders"].metadata["rejected_rows"] == dg.IntMetadataValue(3)
    assert found["load/orders"].metadata["rows_loaded"] == dg.IntMetadataValue(2)
    checks = {"/".join(e.asset_key.path[2:]): e for e in result.get_asset_check_evaluations()}
    load_check = checks["load/orders"]
    assert (load_check.passed, load_check.description) == (
        False, f"3 rows rejected; first {REFUSALS[warehouse.name][0]}"
    )  # fmt: skip


INCREMENTAL = {"sync_mode": "incremental", "incremental_key": "updated_at",
               "primary_key": ["id"], "tables": ["orders"]}  # fmt: skip
DATED_HEADER = b"id,name,amount,updated_at\n"
DATED_TABLE = "CREATE TABLE orders (id BIGINT, name TEXT, amount INTEGER, updated_at DATE)"


def _dated(project: Path, warehouse: Warehouse, csv: bytes, **pipeline: Any) -> Path:
    """`copy` reading orders.csv incrementally on updated_at into an existing orders table."""
    source = {"source": {"connection": "files", **INCREMENTAL}}
    project = _project(project, DATED_HEADER + csv, warehouse.connection, **source, **pipeline)
    warehouse.execute(project, DATED_TABLE)
    return project


def _state(project: Path, warehouse: Warehouse) -> tuple[str, str, dict[str, Any]]:
    [(pipeline, table, state, _)] = warehouse.rows(project, "_datapipe_state")
    return pipeline, table, json.loads(state)


def test_the_cursor_passes_rows_the_destination_refused(tmp_path, monkeypatch, warehouse):
    """A refused row is committed as rejected: the cursor moves past it, even when it is the
    last row read, and the next runs neither load nor reject it again."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    first = b"1,a,1,2026-01-01\n2,b,3000000000,2026-01-02\n3,c,3,2026-01-03\n"
    project = _dated(tmp_path / "p", warehouse, first)
    staging = tmp_path / "staging"
    with dg.instance_for_test() as instance:
        runs = [run(project, "copy", instance)]
        later = first + b"4,d,4,2026-01-04\n5,e,3000000000,2026-01-05\n"
        (project / "data" / "orders.csv").write_bytes(DATED_HEADER + later)
        runs += [run(project, "copy", instance), run(project, "copy", instance)]
    assert [r.success for r in runs] == [True, True, True]
    assert [row[:3] for row in warehouse.rows(project, "orders")] == [
        (1, "a", 1), (3, "c", 3), (4, "d", 4)
    ]  # fmt: skip
    out_of_range = REFUSALS[warehouse.name][1]
    assert _rejects(staging, runs[0].run_id, "load", "orders") == [
        (out_of_range, None, None,
         '{"id": 2, "name": "b", "amount": 3000000000.0, "updated_at": "2026-01-02"}')
    ]  # fmt: skip
    assert _rejects(staging, runs[1].run_id, "load", "orders") == [
        (out_of_range, None, None,
         '{"id": 5, "name": "e", "amount": 3000000000.0, "updated_at": "2026-01-05"}')
    ]  # fmt: skip
    assert not (staging / runs[2].run_id / "rejects").exists()
    rejected = [materializations(r)["load/orders"].metadata["rejected_rows"] for r in runs]
    assert rejected == [dg.IntMetadataValue(1), dg.IntMetadataValue(1), dg.IntMetadataValue(0)]
    cursor = {"type": "date", "value": "2026-01-05"}
    assert _state(project, warehouse) == (
        "copy", "orders", {"cursor": cursor, "boundary_keys": [[5]]}
    )  # fmt: skip


def test_refusals_over_the_limit_load_nothing_and_keep_the_cursor(tmp_path, monkeypatch, warehouse):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    first = b"1,a,1,2026-01-01\n"
    policy = {"action": "reject", "max_rejected": 1}
    project = _dated(tmp_path / "p", warehouse, first, on_bad_rows=policy)
    bad = b"2,b,3000000000,2026-01-02\n3,c,-3000000000,2026-01-03\n4,d,4,2026-01-04\n"
    result = _run_again_with(project, DATED_HEADER + first + bad)
    assert failure_messages(result) == [
        "pipeline 'copy', load into 'orders' (connection 'warehouse'): 2 of 3 rows read were "
        "rejected (66.67%), over the pipeline's on_bad_rows limit (max_rejected: 1); "
        + _nothing_loaded(tmp_path, result, "load")
    ]
    assert [row[:3] for row in warehouse.rows(project, "orders")] == [(1, "a", 1)]
    cursor = {"type": "date", "value": "2026-01-01"}
    assert _state(project, warehouse) == (
        "copy", "orders", {"cursor": cursor, "boundary_keys": [[1]]}
    )  # fmt: skip
    rejected = _rejects(tmp_path / "staging", result.run_id, "load", "orders")
    assert [raw for _, _, _, raw in rejected] == [
        '{"id": 2, "name": "b", "amount": 3000000000.0, "updated_at": "2026-01-02"}',
        '{"id": 3, "name": "c", "amount": -3000000000.0, "updated_at": "2026-01-03"}',
    ]


def test_with_action_fail_a_refused_value_fails_the_load(tmp_path, monkeypatch, warehouse):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(
        tmp_path / "p", REFUSED_CSV, warehouse.connection, on_bad_rows={"action": "fail"}
    )
    warehouse.execute(project, ORDERS_TABLE)
    with dg.instance_for_test() as instance:
        result = run(project, "copy", instance)
    # Both databases convert the values of the rows before they check their constraints.
    out_of_range = REFUSALS[warehouse.name][1]
    assert failure_messages(result) == [
        f"connection 'warehouse': loading table 'orders' failed: {out_of_range}"
    ]
    assert warehouse.rows(project, "orders") == []
    assert not (tmp_path / "staging" / result.run_id / "rejects").exists()


def test_rejects_files_on_s3_staging(tmp_path, monkeypatch, s3, capsys):
    """The rejects of an extract and of a load are published to S3 staging, named in the
    assets' metadata and printed by `datapipe rejects` from there."""
    bucket = s3.create_bucket()
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATAPIPE_STAGING_URL", f"s3://{bucket}/staging")
    project = _project(tmp_path / "p", REFUSED_CSV + b"6,f,6,extra\n")
    with duckdb.connect(str(project / "wh.duckdb")) as con:
        con.execute(ORDERS_TABLE)
    with dg.instance_for_test() as instance:
        result = run(project, "copy", instance)
    assert result.success, failure_messages(result)
    assert warehouse_rows(project, "orders") == [(1, "a", 1), (5, "e", 5)]
    folder = f"{bucket}/staging/{result.run_id}/rejects/default/copy"
    found = materializations(result)
    for asset in ("raw/orders", "load/orders"):
        url = dg.PathMetadataValue(f"s3://{folder}/{asset}.parquet")
        assert found[asset].metadata["rejects_path"] == url
    store = s3.filesystem()
    with store.open_input_file(f"{folder}/raw/orders.parquet") as raw:
        assert pq.read_table(raw).to_pylist() == [
            {"reason": "expected 3 fields, found 4", "file": "data/orders.csv", "line": 7,
             "raw": "6,f,6,extra"}
        ]  # fmt: skip
    with store.open_input_file(f"{folder}/load/orders.parquet") as load:
        assert [tuple(row.values()) for row in pq.read_table(load).to_pylist()] == [
            (reason, None, None, raw)
            for reason, raw in zip(REFUSALS["duckdb"], REFUSED_ROWS, strict=True)
        ]
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(project))
    assert main(["rejects", "copy", "--run", result.run_id]) == 0
    printed = [
        f"copy: run {result.run_id}: 4 rejected rows",
        f"load/orders (s3://{folder}/load/orders.parquet)",
    ]
    for reason, raw in zip(REFUSALS["duckdb"], REFUSED_ROWS, strict=True):
        printed += [f"  {reason}", f"    {raw}"]
    printed += [
        f"raw/orders (s3://{folder}/raw/orders.parquet)",
        "  data/orders.csv line 7: expected 3 fields, found 4",
        "    6,f,6,extra",
    ]
    assert capsys.readouterr().out.splitlines() == printed
