"""Triggers through Dagster's testing APIs: file arrival, chaining, non-overlapping schedules."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from datapipe_assets.defs.factory import build_definitions, pipeline_jobs
from datapipe_assets.defs.triggers import (
    chain_sensors,
    non_overlapping_schedule,
    pipeline_sensors,
    upstream_loads,
)
from datapipe_assets.pipeline.project import Project, load_project
from datapipe_assets.pipeline.run_source import FILE_TAG, source_for_run
from tests.support.project_files import run, write_project

HEADER = "id,amount\n"


def csv_pipeline(name: str, path: str, **spec: object) -> dict:
    """A CSV -> DuckDB pipeline loading table `orders` into `<name>_orders`."""
    return {"name": name, "org": "acme",
            "source": {"connector": "csv", "config": {"path": path, "table": "orders"},
                       "tables": ["orders"]},
            "destination": {"connection": "warehouse", "table_prefix": f"{name}_",
                            "load_mode": "append"},
            **spec}  # fmt: skip


def triggered_project(directory: Path, pipelines: dict[str, dict]) -> Project:
    """A project loading into a DuckDB file in `directory`; one file per pipeline."""
    warehouse = {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}
    write_project(
        directory,
        {"warehouse": warehouse},
        {f"{name}.yaml": spec for name, spec in pipelines.items()},
    )
    return load_project(directory)


def file_sensor(project: Project, name: str) -> dg.SensorDefinition:
    loaded = project.get(name)
    job = next(j for j in build_definitions(project).jobs if j.name == f"acme__{name}")
    (sensor,) = pipeline_sensors(loaded, job)
    return sensor


def tick(sensor: dg.SensorDefinition, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    with dg.instance_for_test() as instance:
        return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


@pytest.fixture
def landing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pipelines folder, with an `incoming/` folder watched by pipeline `orders`."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    (tmp_path / "pipelines" / "incoming").mkdir(parents=True)
    return tmp_path / "pipelines"


def test_file_sensor_requests_one_run_per_new_local_file(landing: Path):
    project = triggered_project(
        landing, {"orders": csv_pipeline("orders", "incoming/*.csv", trigger={"on_new_file": True})}
    )
    sensor = file_sensor(project, "orders")
    assert (sensor.name, sensor.default_status) == (
        "acme__orders__new_file",
        dg.DefaultSensorStatus.RUNNING,
    )
    assert sensor.job_name == "acme__orders"

    empty = tick(sensor, None)
    assert empty == dg.SkipReason("no new file matches incoming/*.csv (0 seen)")

    for name in ("b.csv", "a.csv", "notes.txt"):
        (landing / "incoming" / name).write_text(HEADER + "1,10\n")
    first = tick(sensor, None)
    assert [(r.run_key, r.tags) for r in first.run_requests] == [
        ("incoming/a.csv", {FILE_TAG: "incoming/a.csv"}),
        ("incoming/b.csv", {FILE_TAG: "incoming/b.csv"}),
    ]
    assert first.cursor == '["incoming/a.csv", "incoming/b.csv"]'

    assert tick(sensor, first.cursor) == dg.SkipReason(
        "no new file matches incoming/*.csv (2 seen)"
    )

    (landing / "incoming" / "c.csv").write_text(HEADER + "3,30\n")
    second = tick(sensor, first.cursor)
    assert [r.run_key for r in second.run_requests] == ["incoming/c.csv"]
    assert json.loads(second.cursor) == ["incoming/a.csv", "incoming/b.csv", "incoming/c.csv"]


def test_file_sensor_watches_an_s3_prefix(landing: Path, s3, monkeypatch: pytest.MonkeyPatch):
    for variable, value in s3.env().items():
        monkeypatch.setenv(variable, value)
    bucket = s3.create_bucket()
    store = s3.filesystem()
    prefix = f"s3://{bucket}/landing/*.csv"
    project = triggered_project(
        landing, {"orders": csv_pipeline("orders", prefix, trigger={"on_new_file": True})}
    )
    sensor = file_sensor(project, "orders")
    assert tick(sensor, None) == dg.SkipReason(f"no new file matches {prefix} (0 seen)")

    # A file in a deeper folder is not matched: `*` stops at `/`, as in a shell.
    for key in ("landing/2026-01.csv", "landing/old/2025-12.csv"):
        with store.open_output_stream(f"{bucket}/{key}") as stream:
            stream.write((HEADER + "1,10\n").encode())
    result = tick(sensor, json.dumps([]))
    expected = f"s3://{bucket}/landing/2026-01.csv"
    assert [(r.run_key, r.tags) for r in result.run_requests] == [(expected, {FILE_TAG: expected})]
    assert result.cursor == json.dumps([expected])


def test_a_file_run_reads_only_its_file(landing: Path):
    (landing / "incoming" / "a.csv").write_text(HEADER + "1,10\n2,20\n")
    # Glob characters in a file's own name must not match other files.
    (landing / "incoming" / "b[1].csv").write_text(HEADER + "3,30\n")
    (landing / "incoming" / "b1.csv").write_text(HEADER + "4,40\n")
    project = triggered_project(
        landing, {"orders": csv_pipeline("orders", "incoming/*.csv", trigger={"on_new_file": True})}
    )
    loaded = project.get("orders")

    def rows(tags: dict[str, str]) -> list[dict]:
        source = source_for_run(loaded, "orders", tags.get(FILE_TAG)).open_source()
        return source.read("orders").read_all().to_pylist()

    assert rows({FILE_TAG: "incoming/b[1].csv"}) == [{"id": 3, "amount": 30}]
    assert rows({FILE_TAG: "incoming/a.csv"}) == [{"id": 1, "amount": 10}, {"id": 2, "amount": 20}]
    assert len(rows({})) == 4  # a run without the tag reads every matched file


def test_pipeline_without_file_trigger_has_no_sensor(landing: Path):
    (landing / "incoming" / "a.csv").write_text(HEADER)
    project = triggered_project(landing, {"orders": csv_pipeline("orders", "incoming/a.csv")})
    loaded = project.get("orders")
    assert pipeline_sensors(loaded, build_definitions(project).jobs[0]) == []


def chained_project(landing: Path) -> Project:
    """`report` (with a check on its raw table) runs after `orders` and `refunds` have loaded."""
    (landing / "incoming" / "orders.csv").write_text(HEADER + "1,10\n")
    return triggered_project(
        landing,
        {"orders": csv_pipeline("orders", "incoming/orders.csv"),
         "refunds": csv_pipeline("refunds", "incoming/orders.csv"),
         "report": csv_pipeline("report", "incoming/orders.csv",
                                trigger={"after": ["orders", "refunds"]},
                                checks=[{"asset": "orders", "type": "not_null", "column": "id"}])},
    )  # fmt: skip


REPORT_ASSETS = [
    dg.AssetKey(["acme", "report", "raw", "orders"]),
    dg.AssetKey(["acme", "report", "load", "report_orders"]),
]


class ChainTicks:
    """Ticks of Dagster's declarative automation over a project, as its daemon evaluates them."""

    def __init__(self, project: Project, instance: dg.DagsterInstance) -> None:
        self.definitions = build_definitions(project)
        self.instance = instance
        self.cursor = None

    def tick(self) -> dict[str, int]:
        """The assets requested on this tick: `pipeline/asset` -> count, for every one."""
        result = dg.evaluate_automation_conditions(
            self.definitions, self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        return {
            "/".join(key.path[1:]): result.get_num_requested(key)
            for key in REPORT_ASSETS
            if result.get_num_requested(key)
        }


def test_chained_pipeline_runs_once_all_named_pipelines_have_loaded(landing: Path):
    project = chained_project(landing)
    (sensor,) = chain_sensors(project)
    assert (sensor.name, sensor.default_status, sensor.run_tags) == (
        "acme__report__after", dg.DefaultSensorStatus.RUNNING,
        {"datapipe/pipeline": "acme__report", "datapipe/org": "acme", "dagster/max_runtime": "3600",
         "datapipe/pipeline_version": project.get("report").version},
    )  # fmt: skip
    assert sensor.asset_selection == dg.AssetSelection.groups("acme__report")
    assert upstream_loads(project, project.get("report")) == [
        dg.AssetKey(["acme", "orders", "load", "orders_orders"]),
        dg.AssetKey(["acme", "refunds", "load", "refunds_orders"]),
    ]
    with dg.instance_for_test() as instance:
        chain = ChainTicks(project, instance)
        assert chain.tick() == {}
        assert run(landing, "orders", instance).success
        assert chain.tick() == {}  # refunds has not loaded yet
        assert run(landing, "refunds", instance).success
        # The whole pipeline is requested on one tick: one run, as its checks ride along.
        assert chain.tick() == {"report/raw/orders": 1, "report/load/report_orders": 1}
        # Both loads are now consumed: the next ticks wait for new ones again.
        assert chain.tick() == {}
        assert run(landing, "orders", instance).success
        assert run(landing, "orders", instance).success
        assert chain.tick() == {}
        assert run(landing, "refunds", instance).success
        assert chain.tick() == {"report/raw/orders": 1, "report/load/report_orders": 1}


def test_chained_pipeline_waits_for_its_unfinished_run(landing: Path):
    project = chained_project(landing)
    with dg.instance_for_test() as instance:
        chain = ChainTicks(project, instance)
        assert chain.tick() == {}
        report = chain.definitions.resolve_job_def("acme__report")
        unfinished = instance.create_run_for_job(
            report, tags=report.tags, status=dg.DagsterRunStatus.STARTED
        )
        for name in ("orders", "refunds"):
            assert run(landing, name, instance).success
        # Loads arrived, but a run of the pipeline is still going: no second run beside it.
        assert chain.tick() == {}
        instance.report_run_canceled(unfinished)
        assert chain.tick() == {"report/raw/orders": 1, "report/load/report_orders": 1}


def test_schedule_skips_while_the_pipeline_has_an_unfinished_run(landing: Path):
    (landing / "incoming" / "a.csv").write_text(HEADER + "1,10\n")
    project = triggered_project(landing, {"orders": csv_pipeline("orders", "incoming/a.csv")})
    definitions = build_definitions(project)
    job, refresh_job = pipeline_jobs(project.get("orders"))
    schedule = non_overlapping_schedule(project.get("orders"), job, "0 * * * *", "Europe/Paris")
    assert (schedule.name, schedule.cron_schedule, schedule.execution_timezone) == (
        "acme__orders__schedule", "0 * * * *", "Europe/Paris"
    )  # fmt: skip
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:

        def evaluate() -> dg.RunRequest | dg.SkipReason:
            return schedule(dg.build_schedule_context(instance=instance))

        assert evaluate() == dg.RunRequest()
        assert run(landing, "orders", instance).success
        assert evaluate() == dg.RunRequest()  # a finished run does not hold the schedule

        # A manual full refresh counts too: both jobs carry the pipeline's tag.
        refresh = definitions.resolve_job_def(refresh_job.name)
        unfinished = instance.create_run_for_job(
            refresh, tags=refresh.tags, status=dg.DagsterRunStatus.STARTED
        )
        assert evaluate() == dg.SkipReason(
            f"pipeline 'orders' has an unfinished run ({unfinished.run_id}, STARTED); "
            "skipped this tick so two runs never overlap"
        )
        instance.report_run_canceled(unfinished)
        assert evaluate() == dg.RunRequest()
