"""Event triggers and guarded schedules: file arrival, pipeline chaining, no overlapping runs.

- `pipeline_sensors`: a CSV source with `trigger: {on_new_file: true}` gets a sensor that
  requests one run per file newly matched by its `path` (a folder glob or an S3 prefix glob).
  The run carries the file in the `datapipe/file` tag; `source_for_run` (in the pipeline
  core) narrows the source to that file inside the run. With `partitions: {by: file}`, the
  sensor also adds each new file to the pipeline's dynamic partitions, and its run is of
  that file's partition.
- Chained pipelines (`trigger: {after: [...]}`) run by Dagster's declarative automation:
  `chain_conditions` gives the pipeline's assets automation conditions (its raw assets: every
  upstream load materialized since they were last requested; the rest: their inputs are
  requested), and `chain_sensors` an automation-condition sensor per pipeline, running by
  default, whose runs carry the pipeline's tag. `upstream_loads` gives the upstream load
  asset keys, the raw assets' dependencies, so the chain shows as lineage.
- `non_overlapping_schedule`: a cron schedule that skips, and says why, while its pipeline
  still has a run queued or in progress. A partitioned pipeline's tick runs its latest
  complete partition.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
from functools import reduce

import dagster as dg

from connectors.sources.csv import CsvSource
from datapipe_assets.defs.live_runs import live_runs
from datapipe_assets.defs.partitions import file_partitions, latest_complete_partition
from datapipe_assets.defs.run_tags import pipeline_run_tags
from datapipe_assets.defs.sensor_interval import sensor_interval
from datapipe_assets.defs.usage import monthly_limit_reached, refused_by_limit
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.keys import dagster_name, full_reference, load_key
from datapipe_assets.pipeline.project import LoadedPipeline, Project
from datapipe_assets.pipeline.run_source import FILE_TAG


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
    """One run per file newly matched by the CSV source's path (of the file's partition, when
    the pipeline is partitioned by file).

    The cursor is the sorted JSON list of every file already requested, so the UI shows
    exactly what was seen. Each run key is the file itself: if the daemon stops between
    submitting runs and saving the cursor, the next tick asks again and Dagster drops the
    run keys it has already launched, so a file is neither missed nor run twice.
    """
    name = dagster_name(loaded.pipeline)
    source = watched_source(loaded)
    path = source.config.get("path")
    # With partitions by file, each file is a partition, and its run is of that partition.
    partitions = file_partitions(loaded.pipeline)

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
        # Dagster adds the partitions before it submits their runs.
        added = [] if partitions is None else [partitions.build_add_request(new)]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=file, tags={FILE_TAG: file}, partition_key=file if added else None
                )
                for file in new
            ],
            cursor=json.dumps(sorted(seen.union(new))),
            dynamic_partitions_requests=added,
        )

    return _new_files


def watched_source(loaded: LoadedPipeline) -> ConnectionSpec:
    """The CSV connection whose new files an on_new_file pipeline runs."""
    # Validation allows on_new_file only for a pipeline with one CSV source block.
    return loaded.table_connection(loaded.pipeline.table_names()[0])


def landed_files(source: ConnectionSpec) -> list[str]:
    """The files a CSV connection's path matches now, as `path` values (possibly none)."""
    csv = source.open_source()
    assert isinstance(csv, CsvSource), f"{source.name} is a {source.connector} connection"
    return csv.matching_files()


def upstream_loads(project: Project, loaded: LoadedPipeline) -> list[dg.AssetKey]:
    """The load assets of the pipelines named in `trigger.after`: a chained pipeline's deps.

    `after` names pipelines of the same org. Validation keeps only pipelines whose `after`
    names valid pipelines, so `project.get` finds each one.
    """
    pipeline = loaded.pipeline
    after = pipeline.trigger.after if pipeline.trigger else []
    return [
        dg.AssetKey(load_key(upstream.pipeline, target))
        for upstream in (project.get(full_reference(pipeline.org, name)) for name in after)
        for target in upstream.pipeline.target_tables().values()
    ]


def chain_conditions(
    project: Project, loaded: LoadedPipeline, assets: list[dg.AssetsDefinition]
) -> list[dg.AssetsDefinition]:
    """The pipeline's assets; a chained pipeline's with the conditions that run it whole.

    Its raw assets (those depending on upstream loads) start it; every other asset of it is
    requested on the same tick as its inputs, so one run materializes the whole pipeline,
    with its checks.
    """
    upstream = upstream_loads(project, loaded)
    if not upstream:
        return assets
    start = loads_arrived(upstream)
    follow = dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.will_be_requested()
    ).with_label("runs with its inputs")

    def with_condition(spec: dg.AssetSpec) -> dg.AssetSpec:
        is_root = any(dep.asset_key in upstream for dep in spec.deps)
        return spec.replace_attributes(automation_condition=start if is_root else follow)

    return list(dg.map_asset_specs(with_condition, assets))


def loads_arrived(upstream: list[dg.AssetKey]) -> dg.AutomationCondition:
    """True once every upstream load has materialized since the asset was last requested,
    while no run of the asset is in progress (it waits for that run instead of overlapping).

    Each load is followed through `asset_matches`, not `any_deps_match(...).allow(...)`:
    Dagster keys a condition's remembered state by its structure without the `allow`
    selection, so per-load `since` conditions of that form would share one state.
    """
    loaded_again = [
        dg.AutomationCondition.asset_matches(key, dg.AutomationCondition.newly_updated())
        .since(dg.AutomationCondition.newly_requested())
        .with_label(f"{key.to_user_string()} loaded since the last request")
        for key in upstream
    ]
    return (reduce(operator.and_, loaded_again) & ~dg.AutomationCondition.in_progress()).with_label(
        "every upstream load arrived, and no run of it in progress"
    )


def chain_sensors(project: Project) -> list[dg.AutomationConditionSensorDefinition]:
    """One automation-condition sensor per pipeline with `trigger.after`, running by default.

    A sensor of its own per pipeline, as run tags are per sensor: each run carries the
    pipeline's tag, which `datapipe status`, the run queue's per-pipeline limit and the alert
    sensors go by. The runs are of Dagster's implicit asset job, not the pipeline's job.
    """
    return [
        dg.AutomationConditionSensorDefinition(
            f"{dagster_name(loaded.pipeline)}__after",
            target=dg.AssetSelection.groups(dagster_name(loaded.pipeline)),
            run_tags=pipeline_run_tags(loaded),
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=sensor_interval(),
            description=(
                f"Runs {loaded.pipeline.name} once "
                f"{', '.join(key.to_user_string() for key in upstream_loads(project, loaded))} "
                "have all loaded again."
            ),
            # One run per tick for the whole pipeline; a backfill is for partitions.
            emit_backfills=False,
        )
        for loaded in project.pipelines
        if loaded.pipeline.trigger is not None and loaded.pipeline.trigger.after
    ]


def non_overlapping_schedule(
    loaded: LoadedPipeline, job: dg.UnresolvedAssetJobDefinition, cron: str, tz: str
) -> dg.ScheduleDefinition:
    """The pipeline's cron schedule; a tick is skipped while a run of the pipeline is unfinished,
    and once a run was refused by its org's monthly row limit, until that limit allows again.

    Runs are matched by the pipeline's tag (`datapipe/pipeline`), which the full-refresh job
    and `datapipe run` carry too, so a manual run also holds the schedule back; a run whose
    process died is marked failed first, so it holds nothing back.
    """
    name, label = dagster_name(loaded.pipeline), loaded.pipeline.name

    @dg.schedule(
        name=f"{name}__schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=tz,
        # Declaring a schedule in the pipeline file is asking for it to run.
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def _evaluate(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        running = live_runs(context.instance, name)
        if running:
            run = running[0]
            return dg.SkipReason(
                f"pipeline {label!r} has an unfinished run ({run.run_id}, {run.status.value}); "
                "skipped this tick so two runs never overlap"
            )
        limited = monthly_limit_reached(context.instance, loaded)
        if limited is not None and refused_by_limit(context.instance, name):
            # The refused run alerted once; a run each tick until the month ends would
            # only repeat that alert.
            return dg.SkipReason(limited)
        if loaded.pipeline.partitions is None:
            return dg.RunRequest()
        # A partitioned pipeline's tick materializes the latest partition that has ended.
        now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        partition = latest_complete_partition(loaded.pipeline, now)
        if partition is None:
            return dg.SkipReason(
                f"pipeline {label!r} has no complete partition yet (partitions start "
                f"{loaded.pipeline.partitions.start})"
            )
        return dg.RunRequest(partition_key=partition)

    return _evaluate
