"""Re-executing a failed run from its failed step reuses the staged data of the steps that
succeeded: the destination was down, is fixed, and only the load runs again."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from tests.support.project_files import (
    PAID_ONLY_TRANSFORM,
    failure_messages,
    postgres_config,
    write_project,
)
from tests.support.services import PostgresServer, free_port

ORDERS_CSV = """id,status,amount,updated_at
1,paid,10,2026-01-01 00:00:00
2,open,20,2026-01-01 01:00:00
3,paid,5,2026-01-01 02:00:00
"""
PIPELINE = {
    "name": "paid",
    "source": {"connection": "orders_csv", "tables": ["orders"]},
    "transform": PAID_ONLY_TRANSFORM,
    "destination": {"connection": "warehouse", "load_mode": "append", "target_table": "paid"},
    "retries": {"max": 1, "delays": [0]},
}  # fmt: skip
EXTRACT, SEGMENT, LOAD = (
    "default__paid__raw__orders",
    "default__paid__paid",
    "default__paid__load__paid",
)


def paid_job() -> dg.JobDefinition:
    """The pipeline's job, from the test's pipelines folder."""
    project = load_project(Path(os.environ["DATAPIPE_PIPELINES_DIR"]))
    return build_definitions(project).resolve_job_def("paid")


def started_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The step of each attempt the run started, first attempts and retries alike."""
    started = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED}
    records = instance.get_records_for_run(run_id, of_type=started).records
    return [record.event_log_entry.step_key for record in records]


@pytest.fixture
def directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer, pg_database: str
) -> Path:
    folder = tmp_path / "pipelines"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "orders.csv").write_text(ORDERS_CSV)
    # The warehouse's port is read when a step connects, as every ${VARIABLE} is.
    warehouse = {**postgres_config(postgres, pg_database), "port": "${WAREHOUSE_PORT}"}
    write_project(
        folder,
        {
            "orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
            "warehouse": {"connector": "postgres", "config": warehouse},
        },
        {"paid.yaml": PIPELINE},
    )
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(folder))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    return folder


def test_from_failure_reruns_only_the_load_and_lands_rows_once(
    directory: Path, postgres: PostgresServer, pg_database: str, monkeypatch: pytest.MonkeyPatch
):
    down = free_port()
    monkeypatch.setenv("WAREHOUSE_PORT", str(down))
    job = dg.reconstructable(paid_job)
    with dg.instance_for_test() as instance:
        failed = dg.execute_job(job, instance, raise_on_error=False)
        assert not failed.success
        assert started_steps(instance, failed.run_id) == [EXTRACT, SEGMENT, LOAD, LOAD]
        assert failure_messages(failed) == [
            f"connection 'warehouse': cannot reach 127.0.0.1:{down} (connection refused); "
            "check host and port"
        ]

        monkeypatch.setenv("WAREHOUSE_PORT", str(postgres.port))  # the destination is back
        options = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
        resumed = dg.execute_job(job, instance, reexecution_options=options)
        assert resumed.success
        # Only the failed load ran; it read the extract's and the filter's staged data.
        assert started_steps(instance, resumed.run_id) == [LOAD]
        assert instance.get_run_by_id(resumed.run_id).parent_run_id == failed.run_id
        load = instance.get_latest_materialization_event(
            dg.AssetKey(["default", "paid", "load", "paid"])
        )
        assert load.run_id == resumed.run_id
        loaded_from = str(load.asset_materialization.metadata["loaded_from"].value)
        assert f"/{failed.run_id}/" in loaded_from

    with psycopg.connect(postgres.url(pg_database)) as conn:
        rows = conn.execute("SELECT id, status, amount FROM paid ORDER BY id").fetchall()
    assert rows == [(1, "paid", 10), (3, "paid", 5)]
