"""Staging retention: `datapipe gc` and the daily job remove old staged runs, never one that
a run in progress or an asset's latest materialization still points at. Local and S3."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from pyarrow import fs

from datapipe_assets.cli.main import main
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import PROJECT_ROOT, load_project
from tests.support.project_files import failure_messages, postgres_config, write_project
from tests.support.services import PostgresServer, S3Server, free_port

HOUR = 60 * 60
DAY = 24 * HOUR
# Old enough for the default retention (14d), at a whole minute so the lines are exact.
OLD = (int(time.time()) // 60) * 60 - 20 * DAY
FILES = {"orders": "data/orders.csv", "customers": "data/customers.csv"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two CSV -> DuckDB pipelines, orders and customers, staging in tmp_path/staging."""
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text("id,amount\n1,5\n2,7\n")
    (directory / "data" / "customers.csv").write_text("id,name\n1,Ann\n")
    write_project(
        directory,
        {
            "warehouse": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
            "files": {"connector": "csv", "config": {"tables": FILES}},
        },
        {
            f"{name}.yaml": {
                "name": name,
                "source": {"connection": "files", "tables": [name]},
                "destination": {"connection": "warehouse"},
            }
            for name in FILES
        },
    )
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(directory))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.delenv("DATAPIPE_STAGING_RETENTION", raising=False)
    # Stale scratch folders of this machine's other tests stay out of the output.
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    return directory


def run_pipeline(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a pipeline through the CLI; its run id."""
    assert main(["run", name]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith(" succeeded")
    return last.split()[2]


def back_date_run(run_id: str, when: float) -> None:
    """Make a run look as if it started and ended at `when`, in the SQLite run storage."""
    runs = Path(os.environ["DAGSTER_HOME"]) / "history" / "runs.db"
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(runs) as db:
        changed = db.execute(
            "UPDATE runs SET start_time = ?, end_time = ?, create_timestamp = ?, "
            "update_timestamp = ? WHERE run_id = ?",
            (when, when, stamp, stamp, run_id),
        ).rowcount
    assert changed == 1


def back_date_files(folder: Path, when: float) -> None:
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (when, when))


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def gc(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["gc", *args]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.splitlines()


def test_gc_removes_old_unreferenced_runs_and_keeps_latest_materializations(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = tmp_path / "staging"
    customers = run_pipeline("customers", capsys)
    deleted, superseded, latest = (run_pipeline("orders", capsys) for _ in range(3))
    back_date_run(customers, OLD - HOUR)
    back_date_run(superseded, OLD)
    # A run deleted from the run storage is dated by its newest file.
    with dg.DagsterInstance.get() as instance:
        instance.delete_run(deleted)
    back_date_files(staging / deleted, OLD - 2 * HOUR)
    (staging / "README.txt").write_text("not a run folder: never removed\n")
    back_date_files(staging / "README.txt", OLD)
    # A step killed two days ago left its scratch folder.
    scratch = tmp_path / "datapipe-step-killed"
    (scratch / "data.parquet").parent.mkdir()
    (scratch / "data.parquet").write_bytes(b"partial")
    back_date_files(scratch, time.time() - 2 * DAY)
    deleted_files, deleted_bytes = folder_size(staging / deleted)
    superseded_files, superseded_bytes = folder_size(staging / superseded)
    expected = [
        f"{{verb}} stale scratch folder {scratch}",
        f"{{verb}} {staging / deleted} ({deleted_files} file(s), {deleted_bytes:,} bytes, "
        f"no run record, newest file {_stamp(OLD - 2 * HOUR)})",
        f"kept {staging / customers} (older than 14d, but it holds the latest materialization "
        "of default/customers/load/customers and 1 more asset(s))",
        f"{{verb}} {staging / superseded} ({superseded_files} file(s), {superseded_bytes:,} "
        f"bytes, run ended {_stamp(OLD)})",
        f"{{verb}} 2 run folder(s), {deleted_files + superseded_files} file(s), "
        f"{deleted_bytes + superseded_bytes:,} bytes; kept 1 still referenced and 1 newer "
        "than 14d",
    ]
    before = sorted(p.name for p in staging.iterdir())
    assert gc(capsys, "--dry-run") == [line.replace("{verb}", "would remove") for line in expected]
    assert sorted(p.name for p in staging.iterdir()) == before
    assert scratch.exists()
    assert gc(capsys) == [line.replace("{verb}", "removed") for line in expected]
    assert not scratch.exists()
    assert sorted(p.name for p in staging.iterdir()) == sorted(["README.txt", customers, latest])
    assert gc(capsys) == [
        f"kept {staging / customers} (older than 14d, but it holds the latest materialization "
        "of default/customers/load/customers and 1 more asset(s))",
        "removed 0 run folder(s), 0 file(s), 0 bytes; kept 1 still referenced and 1 newer than 14d",
    ]


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")


def test_a_run_in_progress_keeps_its_folder_however_old(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres: PostgresServer,
    pg_database: str,
) -> None:
    """A real run, held in its load step by a lock on the destination table, is STARTED."""
    directory = tmp_path / "pipelines"
    (directory / "orders.csv").parent.mkdir(parents=True)
    (directory / "orders.csv").write_text("id,updated_at\n1,2026-01-01\n")
    orders = {"name": "orders", "sync_mode": "incremental", "incremental_key": "updated_at"}
    write_project(
        directory,
        {
            "files": {"connector": "csv", "config": {"path": "orders.csv"}},
            "pg": {"connector": "postgres", "config": postgres_config(postgres, pg_database)},
        },
        {"orders.yaml": {"name": "orders", "source": {"connection": "files", "tables": [orders]},
                         "destination": {"connection": "pg", "load_mode": "append"}}},
    )  # fmt: skip
    staging = tmp_path / "staging"
    env = {"DATAPIPE_PIPELINES_DIR": str(directory), "DAGSTER_HOME": str(tmp_path / "home"),
           "DATAPIPE_STAGING_URL": str(staging)}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    first = run_pipeline("orders", capsys)
    with psycopg.connect(postgres.url(pg_database)) as lock:
        lock.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        running = subprocess.Popen(
            [str(Path(sys.executable).parent / "datapipe"), "run", "orders"],
            env={**os.environ, **env}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            run_id = _started_run_with_files(staging)
            back_date_run(first, OLD - HOUR)
            back_date_run(run_id, OLD)
            # The first run's folder stays too: its load is still the latest.
            assert gc(capsys) == [
                f"kept {staging / first} (older than 14d, but it holds the latest "
                "materialization of default/orders/load/orders)",
                f"kept {staging / run_id} (older than 14d, but its run is STARTED)",
                "removed 0 run folder(s), 0 file(s), 0 bytes; kept 2 still referenced and 0 "
                "newer than 14d",
            ]
        finally:
            lock.rollback()
            output, _ = running.communicate(timeout=120)
    assert output.splitlines()[-1] == f"orders: run {run_id} succeeded"
    files, size = folder_size(staging / first)
    assert gc(capsys) == [
        f"removed {staging / first} ({files} file(s), {size:,} bytes, run ended "
        f"{_stamp(OLD - HOUR)})",
        f"removed 1 run folder(s), {files} file(s), {size:,} bytes; kept 0 still referenced "
        "and 1 newer than 14d",
    ]
    assert [p.name for p in staging.iterdir()] == [run_id]


def _started_run_with_files(staging: Path, timeout: float = 60) -> str:
    """The id of the STARTED run, once its extract has published its file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with dg.DagsterInstance.get() as instance:
            records = instance.get_run_records(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            )
        for record in records:
            run_id = record.dagster_run.run_id
            if list((staging / run_id).rglob("*.parquet")):
                return run_id
        time.sleep(0.2)
    raise AssertionError("no run reached its load step")


def test_on_s3_the_cli_and_the_daily_job_share_the_cleanup(
    project: Path,
    s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = s3.create_bucket()
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATAPIPE_STAGING_URL", f"s3://{bucket}/staging")
    store = s3.filesystem()
    customers = run_pipeline("customers", capsys)
    superseded, latest = (run_pipeline("orders", capsys) for _ in range(2))
    back_date_run(customers, OLD - HOUR)
    back_date_run(superseded, OLD)
    with store.open_output_stream(f"{bucket}/staging/README.txt") as out:
        out.write(b"not a run folder: never removed\n")
    listed = store.get_file_info(fs.FileSelector(f"{bucket}/staging/{superseded}", recursive=True))
    size = sum(f.size for f in listed if f.type == fs.FileType.File)
    expected = [
        f"kept s3://{bucket}/staging/{customers} (older than 14d, but it holds the latest "
        "materialization of default/customers/load/customers and 1 more asset(s))",
        f"{{verb}} s3://{bucket}/staging/{superseded} (1 file(s), {size:,} bytes, run ended "
        f"{_stamp(OLD)})",
        f"{{verb}} 1 run folder(s), 1 file(s), {size:,} bytes; kept 1 still referenced and 1 "
        "newer than 14d",
    ]
    assert gc(capsys, "--dry-run") == [line.replace("{verb}", "would remove") for line in expected]
    assert _s3_entries(store, bucket) == sorted(["README.txt", customers, superseded, latest])

    definitions = build_definitions(load_project(project))
    with dg.DagsterInstance.get() as instance:
        result = definitions.resolve_job_def("datapipe_staging_gc").execute_in_process(
            instance=instance
        )
        assert result.success
        logged = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.dagster_event is None and entry.step_key == "remove_expired_staged_runs"
        ]
    assert logged == [line.replace("{verb}", "removed") for line in expected]
    assert _s3_entries(store, bucket) == sorted(["README.txt", customers, latest])


def _s3_entries(store: fs.S3FileSystem, bucket: str) -> list[str]:
    """The names under the bucket's staging prefix that hold files. (SeaweedFS still lists
    a prefix whose objects are all deleted, as an empty folder; AWS S3 does not.)"""
    prefix = f"{bucket}/staging/"
    files = store.get_file_info(fs.FileSelector(prefix, recursive=True))
    return sorted(
        {f.path.removeprefix(prefix).split("/")[0] for f in files if f.type == fs.FileType.File}
    )


def test_the_daily_cleanup_is_defined_and_on_by_default() -> None:
    definitions = build_definitions(load_project(PROJECT_ROOT / "pipelines"))
    dg.Definitions.validate_loadable(definitions)
    schedule = definitions.resolve_schedule_def("datapipe_staging_gc__schedule")
    assert (
        schedule.job_name,
        schedule.cron_schedule,
        schedule.execution_timezone,
        schedule.default_status,
    ) == ("datapipe_staging_gc", "30 3 * * *", "UTC", dg.DefaultScheduleStatus.RUNNING)
    tick = schedule.evaluate_tick(dg.build_schedule_context())
    assert tick.run_requests == [
        dg.RunRequest(tags={"dagster/schedule_name": "datapipe_staging_gc__schedule"})
    ]


def test_a_bad_retention_is_one_line_for_the_cli_and_the_job(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATAPIPE_STAGING_RETENTION", "2 weeks")
    message = (
        "DATAPIPE_STAGING_RETENTION='2 weeks' is not a retention; use a duration of at least "
        "1h, such as 36h, 14d or 2w"
    )
    assert main(["gc", "--dry-run"]) == 1
    assert capsys.readouterr() == ("", f"error: {message}\n")
    definitions = build_definitions(load_project(project))
    with dg.instance_for_test() as instance:
        result = definitions.resolve_job_def("datapipe_staging_gc").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert failure_messages(result) == [message]


def test_unreachable_s3_staging_is_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATAPIPE_STAGING_URL", "s3://staging-bucket/runs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret-value")
    assert main(["gc"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: staging at s3://staging-bucket/runs failed: ")
    assert line.endswith("check DATAPIPE_STAGING_URL, AWS_ENDPOINT_URL and the credentials")
    assert "s3-secret-value" not in line


def test_a_partial_upload_left_by_an_unreachable_store_is_removed_once_old(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A publish whose store stopped answering could not remove its upload; the next
    collection does, even from a folder that stays, but never an upload that may be going on."""
    staging = tmp_path / "staging"
    latest = run_pipeline("orders", capsys)
    raw = next((staging / latest).rglob("orders.parquet")).parent
    left = raw / "_incomplete-0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f.parquet"
    going_on = raw / "_incomplete-1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a.parquet"
    left.write_bytes(b"half a file")
    going_on.write_bytes(b"an upload in progress")
    back_date_files(left, time.time() - 2 * HOUR)
    files = sorted(p.name for p in (staging / latest).rglob("*") if p.is_file())
    expected = [
        f"{{verb}} partial upload {left}",
        "{verb} 0 run folder(s), 0 file(s), 0 bytes; kept 0 still referenced and 1 newer than 14d",
    ]
    assert gc(capsys, "--dry-run") == [line.replace("{verb}", "would remove") for line in expected]
    assert sorted(p.name for p in (staging / latest).rglob("*") if p.is_file()) == files
    assert gc(capsys) == [line.replace("{verb}", "removed") for line in expected]
    assert not left.exists()
    assert going_on.exists()


def test_each_partitions_latest_materialization_keeps_its_run(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backfill writes one run per partition: each run holds its partition's latest
    staged file, so each is kept however old, until that partition is run again."""
    (project / "data" / "events.csv").write_text(
        "id,created_at\n1,2024-01-01 08:00:00\n2,2024-01-02 09:00:00\n"
    )
    write_project(
        project,
        {
            "warehouse": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
            "files": {"connector": "csv", "config": {"tables": FILES}},
            "events_csv": {"connector": "csv", "config": {"path": "data/events.csv"}},
        },
        {
            "events.yaml": {
                "name": "events",
                "source": {"connection": "events_csv", "tables": ["events"]},
                "destination": {"connection": "warehouse"},
                "partitions": {"by": "day", "column": "created_at", "start": "2024-01-01"},
            }
        },
    )
    staging = tmp_path / "staging"
    assert main(["backfill", "events", "--from", "2024-01-01", "--to", "2024-01-02"]) == 0
    day_1, day_2 = (line.split()[2] for line in capsys.readouterr().out.splitlines()
                    if line.startswith("events: run "))  # fmt: skip
    for run_id in (day_1, day_2):
        back_date_run(run_id, OLD)
    held = "holds the latest materialization of default/events/load/events and 1 more asset(s)"
    # Folders are listed in the order of their names (run ids).
    assert gc(capsys) == [
        *sorted(f"kept {staging / run} (older than 14d, but it {held})" for run in (day_1, day_2)),
        "removed 0 run folder(s), 0 file(s), 0 bytes; kept 2 still referenced and 0 newer than 14d",
    ]
    assert main(["backfill", "events", "--from", "2024-01-01", "--to", "2024-01-01"]) == 0
    capsys.readouterr()
    files, size = folder_size(staging / day_1)
    *folders, summary = gc(capsys)
    assert sorted(folders) == sorted([
        f"removed {staging / day_1} ({files} file(s), {size:,} bytes, run ended {_stamp(OLD)})",
        f"kept {staging / day_2} (older than 14d, but it {held})",
    ])  # fmt: skip
    assert summary == (
        f"removed 1 run folder(s), {files} file(s), {size:,} bytes; kept 1 still referenced "
        "and 1 newer than 14d"
    )
    assert not (staging / day_1).exists()
