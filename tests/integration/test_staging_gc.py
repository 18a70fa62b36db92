"""Staging retention: `datapipe gc` and the daily job remove old staged runs, never one that
a run in progress or an asset's latest materialization still points at. Local and S3."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from datapipe_assets.cli.main import main
from tests.support.project_files import write_project

HOUR = 60 * 60
DAY = 24 * HOUR
# Old enough for the default retention (14d), at a whole minute so the lines are exact.
OLD = (int(time.time()) // 60) * 60 - 20 * DAY


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two CSV -> DuckDB pipelines, orders and customers, staging in tmp_path/staging."""
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text("id,amount\n1,5\n2,7\n")
    (directory / "data" / "customers.csv").write_text("id,name\n1,Ann\n")
    tables = {"orders": "data/orders.csv", "customers": "data/customers.csv"}
    write_project(
        directory,
        {
            "warehouse": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
            "files": {"connector": "csv", "config": {"tables": tables}},
        },
        {
            f"{name}.yaml": {
                "name": name,
                "source": {"connection": "files", "tables": [name]},
                "destination": {"connection": "warehouse"},
            }
            for name in tables
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
    deleted_files, deleted_bytes = folder_size(staging / deleted)
    superseded_files, superseded_bytes = folder_size(staging / superseded)
    expected = [
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
    assert gc(capsys) == [line.replace("{verb}", "removed") for line in expected]
    assert sorted(p.name for p in staging.iterdir()) == sorted(["README.txt", customers, latest])
    assert gc(capsys) == [
        f"kept {staging / customers} (older than 14d, but it holds the latest materialization "
        "of default/customers/load/customers and 1 more asset(s))",
        "removed 0 run folder(s), 0 file(s), 0 bytes; kept 1 still referenced and 1 newer than 14d",
    ]


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")
