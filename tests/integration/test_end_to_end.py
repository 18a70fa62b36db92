"""Pipelines end to end through Dagster: CSV -> transforms -> DuckDB / PostgreSQL, local and S3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest
from pyarrow import fs

from tests.support.project_files import SIX_NODE_TRANSFORM, postgres_config, run, write_project

ORDERS_CSV = """id,customer_id,status,amount_cents,currency,updated_at
1,10,paid,1000,usd,2026-01-01 00:00:00
2,10,paid,2550,usd,2026-01-01 01:00:00
3,20,pending,999,usd,2026-01-01 02:00:00
4,20,paid,500,usd,2026-01-01 03:00:00
2,10,paid,3000,usd,2026-01-02 00:00:00
5,30,refunded,100,usd,2026-01-01 04:00:00
6,30,paid,700,usd,2026-01-01 05:00:00
"""
# Hand-computed: paid rows 1, 2 (two versions, the later 3000 wins), 4 and 6.
EXPECTED_REVENUE = [(10, 40.0, 2), (20, 5.0, 1), (30, 7.0, 1)]


def _orders_project(directory: Path, destination: dict, **destination_spec: object) -> Path:
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text(ORDERS_CSV)
    return write_project(
        directory,
        {"orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
         "warehouse": destination},
        {"orders_revenue.yaml": {
            "name": "orders_revenue", "org": "acme", "description": "Paid revenue per customer",
            "source": {"connection": "orders_csv", "tables": ["orders"]},
            "transform": SIX_NODE_TRANSFORM,
            "destination": {"connection": "warehouse", "target_table": "revenue_by_customer",
                            "load_mode": "upsert", "upsert_key": ["customer_id"],
                            **destination_spec},
        }},
    )  # fmt: skip


def _local_duckdb_orders_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The orders project into DuckDB, staging under tmp_path."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    return _orders_project(
        tmp_path / "pipelines", {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}
    )


def _materialization(instance: dg.DagsterInstance, *key: str) -> dg.AssetMaterialization:
    event = instance.get_latest_materialization_event(dg.AssetKey(list(key)))
    assert event is not None and event.asset_materialization is not None
    return event.asset_materialization


def test_six_node_pipeline_into_duckdb_with_metadata(tmp_path, monkeypatch):
    project = _local_duckdb_orders_project(tmp_path, monkeypatch)
    with dg.instance_for_test() as instance:
        result = run(project, "orders_revenue", instance)
        assert result.success

        with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
            rows = con.execute(
                "SELECT customer_id, revenue, orders FROM revenue_by_customer ORDER BY customer_id"
            ).fetchall()
        assert rows == EXPECTED_REVENUE

        raw = _materialization(instance, "acme", "orders_revenue", "raw", "orders")
        assert raw.metadata["dagster/row_count"].value == 7
        paid = _materialization(instance, "acme", "orders_revenue", "paid")
        assert paid.metadata["dagster/row_count"].value == 5
        assert paid.metadata["sql"].value == (
            "```sql\nSELECT * FROM input WHERE \"status\" = 'paid'\n```"
        )
        assert [c.name for c in paid.metadata["dagster/column_schema"].value.columns] == [
            "id", "customer_id", "status", "amount_cents", "currency", "updated_at",
        ]  # fmt: skip
        # `paid` is fused into the segment of the load's input: only that node is staged.
        assert "staged_path" not in paid.metadata
        by_customer = _materialization(instance, "acme", "orders_revenue", "by_customer")
        staged = Path(str(by_customer.metadata["staged_path"].value))
        assert staged == (
            tmp_path / "staging" / result.run_id / "acme/orders_revenue/by_customer.parquet"
        )
        assert staged.stat().st_size == by_customer.metadata["staged_bytes"].value
        assert by_customer.metadata["preview"].value.splitlines() == [
            "| customer_id | revenue | orders |",
            "|---|---|---|",
            "| 10 | 40.0 | 2 |",
            "| 20 | 5.0 | 1 |",
            "| 30 | 7.0 | 1 |",
        ]
        renamed = _materialization(instance, "acme", "orders_revenue", "renamed")
        lineage = renamed.metadata["dagster/column_lineage"].value.deps_by_column
        assert [d.column_name for d in lineage["amount"]] == ["amount_cents"]
        load = _materialization(instance, "acme", "orders_revenue", "load", "revenue_by_customer")
        assert load.metadata["rows_loaded"].value == 3
        assert load.metadata["load_mode"].value == "upsert"
        assert load.metadata["dagster/row_count"].value == 3
        for stage in (raw, paid, load):
            assert stage.metadata["duration_seconds"].value > 0
        assert [c.name for c in load.metadata["dagster/column_schema"].value.columns] == [
            "customer_id",
            "revenue",
            "orders",
        ]
        assert load.metadata["loaded_from"].value == by_customer.metadata["staged_path"].value
        # Only the run's own files exist: no half-written leftovers.
        leftovers = [p.name for p in (tmp_path / "staging").rglob("_incomplete*")]
        assert leftovers == []


def test_s3_staging_and_postgres_destination(tmp_path, monkeypatch, s3, postgres, pg_database):
    bucket = s3.create_bucket()
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATAPIPE_STAGING_URL", f"s3://{bucket}/staging")
    project = _orders_project(
        tmp_path / "pipelines",
        {"connector": "postgres", "config": postgres_config(postgres, pg_database)},
    )
    with dg.instance_for_test() as instance:
        result = run(project, "orders_revenue", instance)
        assert result.success
        with psycopg.connect(postgres.url(pg_database)) as conn:
            rows = conn.execute(
                "SELECT customer_id, revenue, orders FROM revenue_by_customer ORDER BY customer_id"
            ).fetchall()
        assert rows == EXPECTED_REVENUE
        store = s3.filesystem()
        staged = store.get_file_info(
            fs.FileSelector(f"{bucket}/staging/{result.run_id}", recursive=True)
        )
        names = sorted(i.path.removeprefix(f"{bucket}/staging/{result.run_id}/")
                       for i in staged if i.type == fs.FileType.File)  # fmt: skip
        # The transforms before the load's input are fused: only it and the raw table staged.
        assert names == [
            "acme/orders_revenue/by_customer.parquet", "acme/orders_revenue/raw/orders.parquet",
        ]  # fmt: skip
        by_customer = _materialization(instance, "acme", "orders_revenue", "by_customer")
        assert by_customer.metadata["staged_path"].value == (
            f"s3://{bucket}/staging/{result.run_id}/acme/orders_revenue/by_customer.parquet"
        )


def test_downstream_rerun_reads_the_latest_upstream_version(tmp_path, monkeypatch):
    project = _local_duckdb_orders_project(tmp_path, monkeypatch)
    from datapipe_assets.defs.factory import build_definitions
    from datapipe_assets.pipeline.project import load_project

    with dg.instance_for_test() as instance:
        first = run(project, "orders_revenue", instance)
        assert first.success
        definitions = build_definitions(load_project(project))
        # Re-run only the aggregate and the load: they read `latest` from the first run.
        job = definitions.resolve_implicit_global_asset_job_def()
        rerun = job.get_subset(
            asset_selection={
                dg.AssetKey(["acme", "orders_revenue", "by_customer"]),
                dg.AssetKey(["acme", "orders_revenue", "load", "revenue_by_customer"]),
            }
        ).execute_in_process(instance=instance, raise_on_error=False)
        assert rerun.success
        latest = _materialization(instance, "acme", "orders_revenue", "by_customer")
        assert str(latest.metadata["staged_path"].value).startswith(
            str(tmp_path / "staging" / rerun.run_id)
        )
        assert latest.metadata["dagster/row_count"].value == 3


def test_dagster_cli_materializes_the_pipeline(tmp_path):
    project = _orders_project(
        tmp_path / "pipelines", {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DATAPIPE_PIPELINES_DIR": str(project), "DAGSTER_HOME": str(home),
           "DATAPIPE_STAGING_URL": str(tmp_path / "staging")}  # fmt: skip
    command = [
        str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
        "-m", "datapipe_assets.definitions", "--select", "group:orders_revenue",
    ]  # fmt: skip
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT customer_id, revenue, orders FROM revenue_by_customer ORDER BY customer_id"
        ).fetchall()
    assert rows == EXPECTED_REVENUE


@pytest.mark.parametrize("extra_table", [False, True])
def test_untransformed_tables_land_under_their_own_names(tmp_path, monkeypatch, extra_table):
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text(ORDERS_CSV)
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    write_project(
        directory,
        {"orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {"copy.yaml": {"name": "copy_orders", "source": {"connection": "orders_csv",
                                                         "tables": ["orders"]},
                       "destination": {"connection": "warehouse", "table_prefix": "raw_"}}},
    )  # fmt: skip
    with dg.instance_for_test() as instance:
        assert run(directory, "copy_orders", instance).success
        if extra_table:
            assert run(directory, "copy_orders", instance).success  # replace: not doubled
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), sum(amount_cents) FROM raw_orders").fetchone() == (
            7,
            8849,
        )
