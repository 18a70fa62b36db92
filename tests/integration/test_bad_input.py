"""Bad input at run time: one clear line naming what to fix, and nothing lost or half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import psycopg

from tests.support.project_files import (
    SIX_NODE_TRANSFORM,
    failure_messages,
    postgres_config,
    run,
    write_project,
)
from tests.support.services import free_port

GOOD_CSV = "id,customer_id,status,amount_cents,currency,updated_at\n1,10,paid,1000,usd,2026-01-01\n"


def _csv_to_duckdb(directory: Path, csv_text: str, **destination: object) -> Path:
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "data" / "orders.csv").write_text(csv_text)
    return write_project(
        directory,
        {
            "orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
            "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}},
        },
        {
            "copy.yaml": {
                "name": "copy_orders",
                "source": {"connection": "orders_csv", "tables": ["orders"]},
                "destination": {"connection": "warehouse", **destination},
            }
        },
    )


def _duckdb_rows(directory: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_csv_row_with_wrong_field_count_fails_naming_the_line_and_loads_nothing(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    directory = tmp_path / "pipelines"
    _csv_to_duckdb(directory, GOOD_CSV)
    with dg.instance_for_test() as instance:
        assert run(directory, "copy_orders", instance).success
        bad = GOOD_CSV + "2,11,paid,2000,usd,2026-01-02\n3,12,paid,3000,usd,2026-01-03,extra\n"
        (directory / "data" / "orders.csv").write_text(bad)
        result = run(directory, "copy_orders", instance)
    assert not result.success
    assert failure_messages(result) == [
        "connection 'orders_csv': data/orders.csv line 4: expected 6 fields, found 7; "
        "fix the row or the delimiter (',')"
    ]
    # The first run's table is untouched: the second run never reached the load.
    assert _duckdb_rows(directory, "SELECT id FROM orders") == [(1,)]
    assert list((tmp_path / "staging").rglob("_incomplete*")) == []


def test_destination_column_type_conflict_leaves_the_table_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    directory = tmp_path / "pipelines"
    _csv_to_duckdb(directory, GOOD_CSV, load_mode="append")
    with duckdb.connect(str(directory / "warehouse.duckdb")) as con:
        con.execute("CREATE TABLE orders (id BIGINT, status BOOLEAN)")
        con.execute("INSERT INTO orders VALUES (99, true)")
    with dg.instance_for_test() as instance:
        result = run(directory, "copy_orders", instance)
    assert not result.success
    [message] = failure_messages(result)
    assert message.startswith(
        "connection 'warehouse': column 'status' of table 'orders' is BOOLEAN"
    )
    assert _duckdb_rows(directory, "SELECT * FROM orders") == [(99, True)]


def _run_shop_copy(tmp_path: Path, monkeypatch, postgres, instance) -> dg.ExecuteInProcessResult:
    """Run shop_copy: PostgreSQL, its password from ${SHOP_DB_PASSWORD}, into DuckDB."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    directory = write_project(
        tmp_path / "pipelines",
        {
            "shop_db": {
                "connector": "postgres",
                "config": {
                    **postgres_config(postgres, "postgres"),
                    "password": "${SHOP_DB_PASSWORD}",
                },
            },
            "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}},
        },
        {
            "p.yaml": {
                "name": "shop_copy",
                "source": {"connection": "shop_db", "tables": ["orders"]},
                "destination": {"connection": "warehouse"},
            }
        },
    )
    return run(directory, "shop_copy", instance)


def test_missing_secret_names_the_connection_and_variable(tmp_path, monkeypatch, postgres):
    monkeypatch.delenv("SHOP_DB_PASSWORD", raising=False)
    with dg.instance_for_test() as instance:
        result = _run_shop_copy(tmp_path, monkeypatch, postgres, instance)
    assert failure_messages(result) == [
        "connection 'shop_db': environment variable SHOP_DB_PASSWORD (for 'password') is not set; "
        "export it before running"
    ]


def test_unknown_column_found_at_run_time_names_the_node(
    tmp_path, monkeypatch, postgres, pg_database
):
    """A database source's columns are not read while definitions load; the step says it."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    with psycopg.connect(postgres.url(pg_database), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int, customer_id int, stat text)")
    directory = write_project(
        tmp_path / "pipelines",
        {
            "shop": {"connector": "postgres", "config": postgres_config(postgres, pg_database)},
            "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}},
        },
        {
            "p.yaml": {
                "name": "revenue",
                "source": {"connection": "shop", "tables": ["orders"]},
                "transform": SIX_NODE_TRANSFORM,
                "destination": {"connection": "warehouse", "target_table": "revenue"},
            }
        },
    )
    with dg.instance_for_test() as instance:
        result = run(directory, "revenue", instance)
    assert failure_messages(result) == [
        "pipeline 'revenue', node 'paid' (filter): unknown column 'status'; "
        "the input has id, customer_id, stat"
    ]
    assert not (directory / "warehouse.duckdb").exists()


def test_unreachable_s3_staging_fails_clearly(tmp_path, monkeypatch):
    port = free_port()  # nothing listens here
    monkeypatch.setenv("DATAPIPE_STAGING_URL", "s3://staging-bucket/runs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret-value")
    directory = tmp_path / "pipelines"
    _csv_to_duckdb(directory, GOOD_CSV)
    # An unreachable store is a transient failure: retried once, at once, then reported.
    with (directory / "copy.yaml").open("a") as file:
        file.write("retries: {max: 1, delays: [0]}\n")
    with dg.instance_for_test() as instance:
        result = run(directory, "copy_orders", instance)
    retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == ["default__copy_orders__raw__orders"]
    [message] = failure_messages(result)
    assert message.startswith("staging at s3://staging-bucket/runs failed: ")
    assert message.endswith("check DATAPIPE_STAGING_URL, AWS_ENDPOINT_URL and the credentials")
    assert "s3-secret-value" not in message
    # The load, in the extract's step, had begun; it rolled back when staging failed.
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SHOW TABLES").fetchall() == []


def test_validate_command_reports_a_malformed_file_and_keeps_the_others(tmp_path):
    directory = tmp_path / "pipelines"
    _csv_to_duckdb(directory, GOOD_CSV)
    (directory / "broken.yaml").write_text("name: broken\nsource: [unclosed\n")
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "datapipe"), "validate"],
        env={"DATAPIPE_PIPELINES_DIR": str(directory), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert completed.returncode == 1
    lines = completed.stdout.splitlines()
    assert lines[0] == "ok     copy_orders (copy.yaml)"
    assert lines[1].startswith("error  pipelines/broken.yaml: line 3, column 1: malformed YAML: ")
    assert lines[-1] == "1 valid pipeline(s), 1 error(s)"


def test_wrong_credentials_fail_clearly_and_the_password_appears_nowhere(
    tmp_path, monkeypatch, postgres
):
    secret = "Wr0ng-but-Secret-Value-8812"
    monkeypatch.setenv("SHOP_DB_PASSWORD", secret)
    with dg.instance_for_test() as instance:
        result = _run_shop_copy(tmp_path, monkeypatch, postgres, instance)
        assert failure_messages(result) == [
            "connection 'shop_db': authentication failed for user 'postgres'; "
            "check username and password"
        ]
        # Every event of the run, as the UI and the event log store it.
        logged = "\n".join(
            dg.serialize_value(record.dagster_event) + (record.user_message or "")
            for record in instance.all_logs(result.run_id)
            if record.dagster_event is not None
        )
    assert "authentication failed" in logged
    assert secret not in logged
