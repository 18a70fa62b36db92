"""A pipeline's `timeout` bounds its runs: `datapipe run` stops its own in-process run, and
the daemon's run monitoring (dagster.yaml) stops a run launched from the UI.

The source is a REST API whose one endpoint answers only once the test lets it, so the
extract step is still waiting when the time is up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from tests.integration.test_production_storage import daemon_running, wait_for, write_workspace
from tests.support.fake_http import FakeServer, Response, serve
from tests.support.project_files import write_project
from tests.support.webserver import dagster_webserver

REPO = Path(__file__).resolve().parents[2]
DATAPIPE = str(Path(sys.executable).parent / "datapipe")


@dataclass
class SlowApi:
    """The endpoint's answer waits for `release`, or `seconds` at most."""

    url: str
    release: threading.Event
    seconds: float = 120.0


@dataclass(frozen=True)
class Project:
    pipelines: Path
    home: Path
    api: SlowApi
    fake: FakeServer

    def write(self, answer_after: float, timeout: str = "1s", **settings: object) -> None:
        """The `items` pipeline: the slow API into DuckDB, with the given timeout (and any
        other pipeline `settings`)."""
        self.api.seconds = answer_after
        source = {
            "connector": "rest_api",
            "config": {
                "base_url": self.api.url,
                "endpoints": {"items": {"path": "/items", "data_path": "data"}},
            },
            "tables": ["items"],
        }
        write_project(
            self.pipelines,
            {"warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
            {
                "items.yaml": {
                    "name": "items",
                    "source": source,
                    "destination": {"connection": "warehouse"},
                    "timeout": timeout,
                    # Retried at once if a retry were due: a stopped step never is.
                    "retries": {"max": 3, "delays": [0]},
                    **settings,
                }
            },
        )

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def loaded_tables(self) -> list[tuple]:
        with duckdb.connect(str(self.pipelines / "warehouse.duckdb")) as con:
            return con.execute("SELECT table_name FROM information_schema.tables").fetchall()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    release = threading.Event()
    fake = FakeServer()
    api = SlowApi("", release)

    @fake.route("GET", "/items")
    def items(request):
        release.wait(api.seconds)
        return Response(200, {"data": [{"id": 1}]})

    fake.route("POST", "/hooks/datapipe")(lambda request: Response(204, b""))

    home = tmp_path / "dagster_home"
    home.mkdir()
    for name, value in {
        "DATAPIPE_PIPELINES_DIR": str(tmp_path / "pipelines"),
        "DAGSTER_HOME": str(home),
        "DATAPIPE_STAGING_URL": str(tmp_path / "staging"),
    }.items():
        monkeypatch.setenv(name, value)
    with serve(fake):
        api.url = fake.url
        try:
            yield Project(tmp_path / "pipelines", home, api, fake)
        finally:
            release.set()


def datapipe_run(pipeline: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`datapipe run` in a process of its own (it interrupts itself); its result and time."""
    started = time.monotonic()
    result = subprocess.run(
        [DATAPIPE, "run", pipeline], capture_output=True, text=True, timeout=120, env=os.environ
    )
    return result, time.monotonic() - started


def run_events(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """The run's ending events with their messages (Dagster still names them PIPELINE_*)."""
    kinds = {
        dg.DagsterEventType.RUN_CANCELING,
        dg.DagsterEventType.RUN_CANCELED,
        dg.DagsterEventType.RUN_FAILURE,
        dg.DagsterEventType.RUN_SUCCESS,
    }
    return [
        (event.event_type.value, entry.message)
        for entry in instance.all_logs(run_id)
        if (event := entry.dagster_event) is not None and event.event_type in kinds
    ]


def test_cli_stops_a_run_over_its_timeout(project: Project):
    project.write(answer_after=3)
    result, seconds = datapipe_run("items")
    assert result.returncode == 1
    first, last = result.stdout.splitlines()
    assert first == "running items ..."
    run_id = re.fullmatch(r"items: run (\S+) FAILED", last).group(1)
    assert result.stderr.splitlines() == [
        "items: timed out after 1 s (its timeout); stopping the run",
        "  FAILED default/items/load/items, default/items/raw/items: interrupted: the run was "
        "stopped before this step finished",
    ]
    # Stopped once the endpoint answered (3 s): the step noticed the interrupt then.
    assert seconds < 10
    with project.instance() as instance:
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert run.tags[dg.MAX_RUNTIME_SECONDS_TAG] == "1"
        assert run_events(instance, run_id) == [
            ("PIPELINE_CANCELING", "timed out after 1 s; stopping the run"),
            ("PIPELINE_CANCELED", 'Execution of run for "items" canceled.'),
            ("PIPELINE_FAILURE", "timed out after 1 s"),
        ]
    assert project.loaded_tables() == []


def test_cli_ends_a_run_whose_step_does_not_stop(project: Project):
    project.write(answer_after=120)
    result, seconds = datapipe_run("items")
    assert result.returncode == 1
    run_id = re.fullmatch(
        r"running items ...\nitems: run (\S+) FAILED: timed out after 1 s\n", result.stdout
    ).group(1)
    assert result.stderr == "items: timed out after 1 s (its timeout); stopping the run\n"
    # 1 s of timeout, then 10 s for the interrupted step to stop.
    assert 11 <= seconds < 30
    with project.instance() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert run_events(instance, run_id) == [
            ("PIPELINE_CANCELING", "timed out after 1 s; stopping the run"),
            (
                "PIPELINE_FAILURE",
                "timed out after 1 s; a step did not stop within 10 s, so its process ended",
            ),
        ]


def test_a_run_within_its_timeout_is_left_alone(project: Project):
    project.write(answer_after=0, timeout="1m")
    result, _ = datapipe_run("items")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert project.loaded_tables() == [("items",)]


RUN_MONITORING = {
    "enabled": True,
    "start_timeout_seconds": 180,
    "cancel_timeout_seconds": 180,
    "max_runtime_seconds": 86400,
    "poll_interval_seconds": 30,
}


@pytest.mark.parametrize("file", ["dagster.yaml", "deploy/dagster.yaml"])
def test_both_instances_monitor_runs(file: str):
    assert yaml.safe_load((REPO / file).read_text())["run_monitoring"] == RUN_MONITORING


def test_daemon_run_monitoring_stops_a_run_over_its_timeout(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """dagster.yaml as shipped, but polled every second: a run launched through the
    webserver (as from the UI) is stopped by the daemon once over its pipeline's timeout,
    and the pipeline's failure alert goes out with the reason."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 1
    (project.home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DATAPIPE_SENSOR_INTERVAL_SECONDS", "1")
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"{project.fake.url}/hooks/datapipe")
    alert = {"on": ["failure"], "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}"}
    project.write(answer_after=120, timeout="2s", alerts=[alert])
    log = tmp_path / "dagster.log"
    with (
        dagster_webserver(os.environ, "datapipe_assets.definitions", log) as url,
        daemon_running(write_workspace(tmp_path), log),
        project.instance() as instance,
    ):
        port = int(url.rsplit(":", 1)[1])
        run_id = DagsterGraphQLClient("127.0.0.1", port_number=port).submit_job_execution("items")
        wait_for(lambda: instance.get_run_by_id(run_id).is_finished, log, timeout=120)
        assert instance.get_run_by_id(run_id).tags[dg.MAX_RUNTIME_SECONDS_TAG] == "2"
        assert run_events(instance, run_id) == [
            ("PIPELINE_CANCELING", "Canceling due to exceeding maximum runtime of 2 seconds."),
            ("PIPELINE_CANCELING", "Sending run termination request."),
            ("PIPELINE_FAILURE", "Exceeded maximum runtime of 2 seconds."),
        ]
        wait_for(lambda: bool(alerts_sent(project.fake)), log, timeout=60)
        assert alerts_sent(project.fake) == [
            {
                "event": "failure",
                "org": "default",
                "pipeline": "items",
                "run_id": run_id,
                "stage": "run",
                "error": "Exceeded maximum runtime of 2 seconds.",
                "run_url": f"http://127.0.0.1:3000/runs/{run_id}",
            }
        ]
        # The interrupted extract ends once the API answers, loading nothing, and the run
        # stays failed.
        project.api.release.set()
        wait_for(lambda: worker_exited(instance, run_id), log, timeout=60)
        failed = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        assert [r.event_log_entry.step_key for r in failed.records] == [
            "default__items__raw__items"
        ]
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert project.loaded_tables() == []


def alerts_sent(fake: FakeServer) -> list[dict[str, object]]:
    return [r.json() for r in fake.requests if r.path == "/hooks/datapipe"]


def worker_exited(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run's worker process has ended, by its last engine event."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    return any(
        r.event_log_entry.message.startswith("Process for run exited") for r in records.records
    )
