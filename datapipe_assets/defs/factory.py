"""Build Dagster definitions from the pipelines folder: assets, jobs and schedules."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg

from datapipe_assets.defs import cursors
from datapipe_assets.defs.alerts.rules import load_alert_rules
from datapipe_assets.defs.alerts.sensors import alert_sensors
from datapipe_assets.defs.assets.load import load_asset
from datapipe_assets.defs.assets.raw import raw_assets
from datapipe_assets.defs.assets.segment import segment_asset
from datapipe_assets.defs.checks import pipeline_checks
from datapipe_assets.defs.executors import job_executor
from datapipe_assets.defs.rejects_check import rejects_checks
from datapipe_assets.defs.run_rows import shares_run_limit
from datapipe_assets.defs.run_tags import pipeline_run_tags
from datapipe_assets.defs.staging_gc_job import staging_gc_job, staging_gc_schedule
from datapipe_assets.defs.triggers import (
    chain_conditions,
    chain_sensors,
    non_overlapping_schedule,
    pipeline_sensors,
    upstream_loads,
)
from datapipe_assets.pipeline.executor import deployment_executor, pipeline_executor
from datapipe_assets.pipeline.keys import dagster_name, raw_key, upstream_key
from datapipe_assets.pipeline.project import PROJECT_ROOT, LoadedPipeline, Project
from datapipe_assets.pipeline.segments import StagingMode, fused_loads, segments, staging_mode
from datapipe_assets.pipeline.spec_files import SpecError
from datapipe_assets.pipeline.validation import cron_expression
from resources.staging import ParquetStagingIOManager
from resources.transform_engine import TransformEngine

INVALID_GROUP = "invalid_pipelines"


def staging_url() -> str:
    return os.environ.get("DATAPIPE_STAGING_URL", str(PROJECT_ROOT / ".datapipe" / "staging"))


def pipeline_assets(project: Project, loaded: LoadedPipeline) -> list[dg.AssetsDefinition]:
    pipeline = loaded.pipeline
    # A chained pipeline's raw tables depend on the loads it waits for: lineage shows the chain.
    after = upstream_loads(project, loaded)
    staging = pipeline_staging(loaded)
    # One step per source connection extracts its tables concurrently, and loads those it
    # can in the same pass (see assets/raw.py).
    # Not where the tables share a row limit: each load checks the run's total first.
    fused = [] if shares_run_limit(loaded) else fused_loads(pipeline, staging)
    assets = raw_assets(loaded, after, fused)
    if pipeline.transform is None:
        return assets + [
            load_asset(loaded, dg.AssetKey(raw_key(pipeline, table)), target)
            for table, target in pipeline.target_tables().items()
            if table not in fused
        ]
    transform = pipeline.transform
    for node in transform.nodes:
        if node.type == "destination":
            input_key = dg.AssetKey(upstream_key(pipeline, transform.input_of(node.id)))
            assets.append(load_asset(loaded, input_key, pipeline.target_table_for_transform()))
    assets += [segment_asset(loaded, s) for s in segments(pipeline, staging)]
    return assets


def pipeline_staging(loaded: LoadedPipeline) -> StagingMode:
    """The pipeline's staging mode; a bad DATAPIPE_STAGING is logged and the file's used."""
    try:
        return staging_mode(loaded.pipeline, os.environ)
    except ValueError as error:
        dg.get_dagster_logger().error(f"{error}; using the pipeline's staging")
        return loaded.pipeline.staging


def pipeline_jobs(loaded: LoadedPipeline) -> list[dg.UnresolvedAssetJobDefinition]:
    name = dagster_name(loaded.pipeline)
    selection = dg.AssetSelection.groups(name)
    tags = pipeline_run_tags(loaded)
    executor = job_executor(pipeline_executor(loaded.pipeline, os.environ))
    return [
        dg.define_asset_job(
            name,
            selection=selection,
            description=loaded.pipeline.description,
            tags=tags,
            executor_def=executor,
        ),
        dg.define_asset_job(
            f"{name}__full_refresh",
            selection=selection,
            description=f"{name}: ignore incremental cursors, re-extract and replace the tables.",
            tags={**tags, cursors.FULL_REFRESH_TAG: "true"},
            executor_def=executor,
        ),
    ]


def invalid_pipeline_spec(file: str, errors: list[SpecError]) -> dg.AssetSpec:
    """A placeholder asset that shows a broken file's problems in the UI."""
    slug = re.sub(r"[^A-Za-z0-9_]", "_", Path(file).name)
    listing = "\n".join(f"- `{e.path or file}`: {e.message}; {e.hint}" for e in errors)
    return dg.AssetSpec(
        key=["datapipe", INVALID_GROUP, slug],
        group_name=INVALID_GROUP,
        description=f"**{file} is invalid and was not loaded.**\n\n{listing}",
        metadata={"file": file, "errors": dg.MetadataValue.md(listing)},
    )


def build_definitions(project: Project) -> dg.Definitions:
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = []
    checks: list[dg.AssetChecksDefinition] = []
    # Staging retention: the daily cleanup, whatever the pipelines.
    jobs: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = [staging_gc_job]
    schedules: list[dg.ScheduleDefinition] = [staging_gc_schedule]
    sensors: list[dg.SensorDefinition] = []
    for loaded in project.pipelines:
        pipeline = loaded.pipeline
        assets += chain_conditions(project, loaded, pipeline_assets(project, loaded))
        checks += pipeline_checks(loaded) + rejects_checks(loaded)
        pipeline_job, refresh_job = pipeline_jobs(loaded)
        jobs += [pipeline_job, refresh_job]
        sensors += pipeline_sensors(loaded, pipeline_job)
        if pipeline.schedule is not None:
            cron = cron_expression(pipeline.schedule)
            schedules.append(
                non_overlapping_schedule(loaded, pipeline_job, cron, pipeline.timezone)
            )
    sensors += chain_sensors(project)
    # Read before the errors are shown: a broken alerts.yaml is reported with them.
    sensors += alert_sensors(load_alert_rules(project))
    for file, errors in project.errors.items():
        dg.get_dagster_logger().error("\n".join(str(e) for e in errors))
        assets.append(invalid_pipeline_spec(file, errors))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={
            "staging": ParquetStagingIOManager(base_url=staging_url()),
            "engine": TransformEngine(),
        },
        # For jobs without an executor of their own (the staging cleanup, asset selections
        # materialized from the UI); each pipeline's jobs carry the pipeline's executor.
        executor=job_executor(deployment_executor(os.environ)),
    )
