"""deploy/dagster.yaml against real PostgreSQL and S3: runs, schedule and sensor ticks, daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest
from pyarrow import fs

from datapipe_assets.cli.status import recent_runs
from datapipe_assets.defs.factory import build_definitions, pipeline_jobs
from datapipe_assets.defs.triggers import non_overlapping_schedule
from datapipe_assets.pipeline.run_source import FILE_TAG
from tests.integration.test_sensors import (
    HEADER,
    ChainTicks,
    chained_project,
    csv_pipeline,
    triggered_project,
)
from tests.support.deploy_instance import deploy_instance_env
from tests.support.project_files import run

REPO = Path(__file__).resolve().parents[2]
LOG_PREFIX = "compute-logs"
SENSOR = "acme__orders__new_file"


@dataclass(frozen=True)
class Production:
    home: Path
    pipelines: Path
    bucket: str

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))


@pytest.fixture
def production(tmp_path, monkeypatch, postgres, pg_database, s3) -> Production:
    """DAGSTER_HOME holding deploy/dagster.yaml as shipped, its variables set to test servers."""
    home = tmp_path / "dagster_home"
    bucket = s3.create_bucket()
    env = {
        **deploy_instance_env(home, postgres, pg_database, s3, bucket, LOG_PREFIX),
        "DATAPIPE_PIPELINES_DIR": str(tmp_path / "pipelines"),
        "DATAPIPE_STAGING_URL": str(tmp_path / "staging"),
        "DATAPIPE_SENSOR_INTERVAL_SECONDS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "pipelines" / "incoming").mkdir(parents=True)
    return Production(home, tmp_path / "pipelines", bucket)


def test_deploy_instance_uses_postgres_the_run_queue_and_s3_logs(production, postgres, s3):
    with production.instance() as instance:
        assert [type(storage).__name__ for storage in (
            instance.run_storage, instance.event_log_storage, instance.schedule_storage,
            instance.run_coordinator, instance.compute_log_manager,
        )] == ["PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage",
               "QueuedRunCoordinator", "S3ComputeLogManager"]  # fmt: skip
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 10
        assert queue.tag_concurrency_limits == [
            {"key": "datapipe/pipeline", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]

        chained_project(production.pipelines)
        result = run(production.pipelines, "orders", instance)
        assert result.success

    with psycopg.connect(postgres.url(os.environ["DAGSTER_PG_DB"])) as conn:
        runs = conn.execute("SELECT run_id, pipeline_name, status FROM runs").fetchall()
    assert runs == [(result.run_id, "acme__orders", "SUCCESS")]
    store = s3.filesystem()
    logs = store.get_file_info(fs.FileSelector(f"{production.bucket}/{LOG_PREFIX}", recursive=True))
    files = sorted(info.path for info in logs if info.is_file)
    # One capture per run: the in-process executor runs every step in the run's process.
    folder = f"{production.bucket}/{LOG_PREFIX}/storage/{result.run_id}/compute_logs/"
    assert [(Path(f).parent.as_posix() + "/", Path(f).suffix) for f in files] == [
        (folder, ".err"), (folder, ".out")
    ]  # fmt: skip
    with store.open_input_stream(files[0]) as stream:
        assert "loaded 1 rows into orders_orders" in stream.read().decode()


def test_schedule_and_sensor_ticks_read_postgres_storage(production):
    project = chained_project(production.pipelines)
    definitions = build_definitions(project)
    job, _ = pipeline_jobs(project.get("orders"))
    schedule = non_overlapping_schedule(project.get("orders"), job, "0 * * * *", "UTC")
    with production.instance() as instance:
        chain = ChainTicks(project, instance)
        assert chain.tick() == {}
        for name in ("orders", "refunds"):
            assert run(production.pipelines, name, instance).success
        assert chain.tick() == {"report/raw/orders": 1, "report/load/report_orders": 1}
        assert chain.tick() == {}

        assert schedule(dg.build_schedule_context(instance=instance)) == dg.RunRequest()
        job_def = definitions.resolve_job_def(job.name)
        started = instance.create_run_for_job(
            job_def, tags=job_def.tags, status=dg.DagsterRunStatus.STARTED
        )
        assert schedule(dg.build_schedule_context(instance=instance)) == dg.SkipReason(
            f"pipeline 'orders' has an unfinished run ({started.run_id}, STARTED); "
            "skipped this tick so two runs never overlap"
        )


def write_workspace(directory: Path) -> Path:
    """A workspace loading DataPipe's own code location, as deploy/ runs it."""
    workspace = directory / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: datapipe_assets.definitions\n"
        f"      working_directory: {REPO}\n"
    )
    return workspace


@contextmanager
def daemon_running(workspace: Path, log: Path) -> Iterator[None]:
    """`dagster-daemon run` on $DAGSTER_HOME's instance, stopped with SIGTERM afterwards."""
    binary = Path(sys.executable).parent / "dagster-daemon"
    with log.open("ab") as output:
        # Popen keeps signals at their defaults, so SIGTERM reaches the daemon's handler.
        process = subprocess.Popen(
            [str(binary), "run", "-w", str(workspace)], stdout=output, stderr=subprocess.STDOUT
        )
        try:
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def wait_for(condition: Callable[[], bool], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; daemon log:\n{log.read_text()[-5000:]}")
        time.sleep(0.5)


def sensor_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(
        reversed(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": SENSOR})))
    )


def test_daemon_runs_each_new_file_once_across_restarts(production, tmp_path):
    landing = production.pipelines / "incoming"
    (landing / "a.csv").write_text(HEADER + "1,10\n")
    triggered_project(
        production.pipelines,
        {"orders": csv_pipeline("orders", "incoming/*.csv", trigger={"on_new_file": True})},
    )
    workspace, log = write_workspace(tmp_path), tmp_path / "daemon.log"
    with production.instance() as instance:
        with daemon_running(workspace, log):
            wait_for(sensor_runs_finished(instance, 1), log)
        (landing / "b.csv").write_text(HEADER + "2,20\n")
        with daemon_running(workspace, log):
            wait_for(sensor_runs_finished(instance, 2), log)
            # Several more ticks (one a second) must find nothing new.
            time.sleep(4)

        runs = sensor_runs(instance)
        assert [(r.tags[FILE_TAG], r.status) for r in runs] == [
            ("incoming/a.csv", dg.DagsterRunStatus.SUCCESS),
            ("incoming/b.csv", dg.DagsterRunStatus.SUCCESS),
        ]
        assert {r.tags["datapipe/pipeline"] for r in runs} == {"acme__orders"}
        (state,) = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
        assert state.instigator_data.cursor == '["incoming/a.csv", "incoming/b.csv"]'


def sensor_runs_finished(instance: dg.DagsterInstance, count: int) -> Callable[[], bool]:
    """Whether the file sensor has started `count` runs (or more), all finished."""

    def check() -> bool:
        runs = sensor_runs(instance)
        return len(runs) >= count and all(r.is_finished for r in runs)

    return check


def test_daemon_adds_each_new_file_as_a_partition_then_runs_it(production, tmp_path):
    """With partitions by file, the daemon adds a tick's files as partitions, then runs each."""
    landing = production.pipelines / "incoming"
    (landing / "a.csv").write_text(HEADER + "1,10\n")
    (landing / "b.csv").write_text(HEADER + "2,20\n")
    pipeline = csv_pipeline(
        "orders", "incoming/*.csv", trigger={"on_new_file": True}, partitions={"by": "file"}
    )
    triggered_project(production.pipelines, {"orders": pipeline})
    workspace, log = write_workspace(tmp_path), tmp_path / "daemon.log"
    with production.instance() as instance:
        with daemon_running(workspace, log):
            wait_for(sensor_runs_finished(instance, 2), log)
        runs = sensor_runs(instance)
        assert sorted((r.tags["dagster/partition"], r.status) for r in runs) == [
            ("incoming/a.csv", dg.DagsterRunStatus.SUCCESS),
            ("incoming/b.csv", dg.DagsterRunStatus.SUCCESS),
        ]
        assert instance.get_dynamic_partitions("acme__orders__files") == [
            "incoming/a.csv",
            "incoming/b.csv",
        ]
    with duckdb.connect(str(production.pipelines / "warehouse.duckdb"), read_only=True) as con:
        loaded = con.execute("SELECT id, amount, _datapipe_file FROM orders_orders ORDER BY id")
        assert loaded.fetchall() == [(1, 10, "incoming/a.csv"), (2, 20, "incoming/b.csv")]


def test_daemon_runs_a_chained_pipeline_once_per_upstream_loads(production, tmp_path):
    """The automation-condition sensor, run by the daemon: one whole run, with the tag."""
    chained_project(production.pipelines)
    workspace, log = write_workspace(tmp_path), tmp_path / "daemon.log"
    report_tag = {"datapipe/pipeline": "acme__report"}
    with production.instance() as instance:

        def report_runs() -> list[dg.DagsterRun]:
            return list(reversed(instance.get_runs(filters=dg.RunsFilter(tags=report_tag))))

        def finished(count: int) -> Callable[[], bool]:
            return lambda: len(runs := report_runs()) >= count and all(r.is_finished for r in runs)

        with daemon_running(workspace, log):
            # The sensor's first tick starts its state: loads before it do not count.
            wait_for(lambda: _ticked(instance, "acme__report__after"), log)
            for name in ("orders", "refunds"):
                assert run(production.pipelines, name, instance).success
            wait_for(finished(1), log)
            # Several more ticks (one a second) must start nothing: the loads are consumed.
            time.sleep(5)
            assert len(report_runs()) == 1

        [report] = report_runs()
        assert report.status == dg.DagsterRunStatus.SUCCESS
        assert report.tags["dagster/sensor_name"] == "acme__report__after"
        assert set(report.asset_selection or ()) == {
            dg.AssetKey(["acme", "report", "raw", "orders"]),
            dg.AssetKey(["acme", "report", "load", "report_orders"]),
        }
        # The pipeline's checks ride along with its assets.
        [check] = instance.get_records_for_run(
            report.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        evaluation = check.event_log_entry.dagster_event.asset_check_evaluation_data
        assert (evaluation.check_name, evaluation.passed) == ("not_null_id", True)
        # datapipe status finds the run by the pipeline's tag, though its job is Dagster's own.
        [summary] = recent_runs(instance, "acme__report")
        assert (summary.run_id, summary.status, summary.rows["loaded"]) == (
            report.run_id, "SUCCESS", 1
        )  # fmt: skip


def _ticked(instance: dg.DagsterInstance, sensor: str) -> bool:
    """Whether the sensor has evaluated at least once."""
    states = [s for s in instance.all_instigator_state() if s.instigator_name == sensor]
    return bool(states) and bool(instance.get_ticks(states[0].instigator_origin_id,
                                                    states[0].selector_id))  # fmt: skip
