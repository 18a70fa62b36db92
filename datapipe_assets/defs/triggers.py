"""Event triggers and guarded schedules: file arrival, pipeline chaining, no overlapping runs.

- `pipeline_sensors`: a CSV source with `trigger: {on_new_file: true}` gets a sensor that
  requests one run per file newly matched by its `path` (a folder glob or an S3 prefix glob).
  The run carries the file in the `datapipe/file` tag; `source_for_run` (in the pipeline
  core) narrows the source to that file inside the run.
- `chain_sensors`: `trigger: {after: [...]}` runs a pipeline once every named pipeline has
  loaded again; `upstream_loads` gives the asset keys behind it, for lineage.
- `non_overlapping_schedule`: a cron schedule that skips, and says why, while its pipeline
  still has a run queued or in progress.
"""

from __future__ import annotations

import json
import os

import dagster as dg

from connectors.sources.csv import CsvSource
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.keys import load_key
from datapipe_assets.pipeline.project import LoadedPipeline, Project
from datapipe_assets.pipeline.run_source import FILE_TAG

# How often the daemon may evaluate each sensor; a listing of a folder or prefix is cheap.
SENSOR_INTERVAL_VARIABLE = "DATAPIPE_SENSOR_INTERVAL_SECONDS"
DEFAULT_SENSOR_INTERVAL = 30
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def sensor_interval() -> int:
    return int(os.environ.get(SENSOR_INTERVAL_VARIABLE, DEFAULT_SENSOR_INTERVAL))


def pipeline_sensors(
    loaded: LoadedPipeline, job: dg.UnresolvedAssetJobDefinition
) -> list[dg.SensorDefinition]:
    """The pipeline's own sensors: a file-arrival sensor when it asks for one."""
    trigger = loaded.pipeline.trigger
    if trigger is None or not trigger.on_new_file:
        return []
    return [file_arrival_sensor(loaded, job)]


def file_arrival_sensor(
    loaded: LoadedPipeline, job: dg.UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    """One run per file newly matched by the CSV source's path.

    The cursor is the sorted JSON list of every file already requested, so the UI shows
    exactly what was seen. Each run key is the file itself: if the daemon stops between
    submitting runs and saving the cursor, the next tick asks again and Dagster drops the
    run keys it has already launched, so a file is neither missed nor run twice.
    """
    name = loaded.pipeline.name
    # Validation allows on_new_file only for a pipeline with one CSV source block.
    source = loaded.table_connection(loaded.pipeline.table_names()[0])
    path = source.config.get("path")

    @dg.sensor(
        name=f"{name}__new_file",
        job=job,
        minimum_interval_seconds=sensor_interval(),
        description=f"Runs {name} once for each new file matching `{path}`.",
        # Declaring the trigger in the pipeline file is asking for it to run.
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _new_files(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        new = [file for file in landed_files(source) if file not in seen]
        if not new:
            return dg.SkipReason(f"no new file matches {path} ({len(seen)} seen)")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=file, tags={FILE_TAG: file}) for file in new],
            cursor=json.dumps(sorted(seen.union(new))),
        )

    return _new_files


def landed_files(source: ConnectionSpec) -> list[str]:
    """The files a CSV connection's path matches now, as `path` values (possibly none)."""
    csv = source.open_source()
    assert isinstance(csv, CsvSource), f"{source.name} is a {source.connector} connection"
    return csv.matching_files()


def upstream_loads(project: Project, loaded: LoadedPipeline) -> list[dg.AssetKey]:
    """The load assets of the pipelines named in `trigger.after`: a chained pipeline's deps.

    Validation keeps only pipelines whose `after` names valid pipelines, so `project.get`
    finds each one.
    """
    trigger = loaded.pipeline.trigger
    return [
        dg.AssetKey(load_key(upstream.pipeline, target))
        for upstream in (project.get(name) for name in (trigger.after if trigger else []))
        for target in upstream.pipeline.target_tables().values()
    ]


def chain_sensors(project: Project) -> list[dg.MultiAssetSensorDefinition]:
    """One sensor per pipeline with `trigger.after`, requesting that pipeline's job."""
    return [
        chain_sensor(loaded, upstream_loads(project, loaded))
        for loaded in project.pipelines
        if loaded.pipeline.trigger is not None and loaded.pipeline.trigger.after
    ]


def chain_sensor(
    loaded: LoadedPipeline, upstream: list[dg.AssetKey]
) -> dg.MultiAssetSensorDefinition:
    """Runs the pipeline once every upstream load has materialized since its last trigger."""
    name = loaded.pipeline.name

    @dg.multi_asset_sensor(
        name=f"{name}__after",
        monitored_assets=upstream,
        # The pipeline's job (named after it) is found in the same Definitions.
        job_name=name,
        minimum_interval_seconds=sensor_interval(),
        description=f"Runs {name} once {', '.join(map(str, upstream))} have all loaded again.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _after(context: dg.MultiAssetSensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        latest = context.latest_materialization_records_by_key()
        waiting = [key.to_user_string() for key, record in latest.items() if record is None]
        if waiting:
            # The cursors stay put, so loads already seen still count on a later tick.
            return dg.SkipReason(f"waiting for new loads of {', '.join(waiting)}")
        context.advance_all_cursors()
        # The materializations' storage ids make the key unique to this set of loads.
        run_key = "-".join(str(record.storage_id) for record in latest.values() if record)
        return dg.RunRequest(run_key=run_key)

    return _after


def non_overlapping_schedule(
    loaded: LoadedPipeline, job: dg.UnresolvedAssetJobDefinition, cron: str, tz: str
) -> dg.ScheduleDefinition:
    """The pipeline's cron schedule; a tick is skipped while a run of the pipeline is unfinished.

    Runs are matched by the job's tags (`datapipe/pipeline`), which the full-refresh job
    carries too, so a manual full refresh also holds the schedule back.
    """
    name = loaded.pipeline.name

    @dg.schedule(
        name=f"{name}__schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=tz,
        # Declaring a schedule in the pipeline file is asking for it to run.
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def _evaluate(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        running = context.instance.get_runs(
            filters=dg.RunsFilter(tags=dict(job.tags), statuses=IN_PROGRESS), limit=1
        )
        if running:
            run = running[0]
            return dg.SkipReason(
                f"pipeline {name!r} has an unfinished run ({run.run_id}, {run.status.value}); "
                "skipped this tick so two runs never overlap"
            )
        return dg.RunRequest()

    return _evaluate
