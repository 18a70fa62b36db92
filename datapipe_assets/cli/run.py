"""`datapipe run`: materialize pipelines end to end in this process, printing progress.

A partitioned pipeline's run materializes its latest complete partition, as its schedule
does; `datapipe backfill` runs others. A pipeline partitioned by file runs each new file's
partition, or with `--file PATH` that one file's (see cli/file_runs.py).

The command fails (exit 1) when a run fails or a check of severity error fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import uuid

import dagster as dg

from datapipe_assets.cli.check_report import failed_error_checks, skipped_loads
from datapipe_assets.cli.common import CommandError, cli_project, valid_pipeline
from datapipe_assets.cli.file_runs import file_partition_keys
from datapipe_assets.cli.instance import dagster_instance
from datapipe_assets.cli.progress import printed_progress
from datapipe_assets.cli.timeout import run_timeout
from datapipe_assets.defs.cursors import FULL_REFRESH_TAG
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.defs.live_runs import live_runs, process_tags
from datapipe_assets.defs.partitions import latest_complete_partition
from datapipe_assets.defs.triggers import watched_source
from datapipe_assets.pipeline.executor import pipeline_executor
from datapipe_assets.pipeline.keys import dagster_name, full_reference
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.spec import Pipeline


def run_command(args: argparse.Namespace) -> int:
    project = cli_project()
    if not args.all and args.pipeline is None:
        raise CommandError("name a pipeline or pass --all")
    if args.all and args.file is not None:
        raise CommandError("--file names a file of one pipeline; give its name instead of --all")
    if args.all:
        for errors in project.errors.values():
            for error in errors:
                print(f"skipped: {error}", file=sys.stderr)
        # A name two files declare is ambiguous: neither runs (the error above names both).
        chosen = [
            p
            for p in project.pipelines
            if len(project.declared.get(full_reference(p.pipeline.org, p.pipeline.name), [])) <= 1
        ]
    else:
        chosen = [valid_pipeline(project, args.pipeline)]
    if args.file is not None:
        _check_file_option(chosen[0].pipeline, project.label(chosen[0].pipeline))
    definitions = build_definitions(project)
    tags = process_tags() | ({FULL_REFRESH_TAG: "true"} if args.full_refresh else {})
    failed = 0
    with dagster_instance() as instance:
        for loaded in chosen:
            pipeline = loaded.pipeline
            label = project.label(pipeline)
            if not args.force and (live := live_runs(instance, dagster_name(pipeline))):
                print(f"error: {overlap(label, live)}", file=sys.stderr)
                failed += 1
                continue
            if (note := executor_note(pipeline, label)) is not None:
                print(note, file=sys.stderr)
            try:
                partitions = _partitions(loaded, label, instance, args.file)
            except CommandError as error:
                print(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            for partition in partitions:
                print(f"running {label}{_of(partition)} ...", flush=True)
                failed += not execute_run(definitions, instance, pipeline, label, tags, partition)
    return 1 if failed else 0


def _check_file_option(pipeline: Pipeline, label: str) -> None:
    """`--file` runs one file of a pipeline partitioned by file."""
    if pipeline.partitions is None or not pipeline.partitions.by_file:
        raise CommandError(
            f"pipeline {label!r} is not partitioned by file; --file runs one arrived "
            "file of a pipeline with partitions: {by: file}"
        )


def _partitions(
    loaded: LoadedPipeline, label: str, instance: dg.DagsterInstance, file: str | None
) -> list[str | None]:
    """What this command runs of a pipeline: the whole of an unpartitioned one, the latest
    complete window of one partitioned by time, the files of one partitioned by file."""
    pipeline = loaded.pipeline
    if pipeline.partitions is None:
        return [None]
    if not pipeline.partitions.by_file:
        partition = latest_complete_partition(pipeline, dt.datetime.now(dt.UTC))
        if partition is None:
            raise CommandError(_no_partition_yet(pipeline, label))
        return [partition]
    files = file_partition_keys(loaded, instance, file)
    if not files:
        path = watched_source(loaded).config.get("path")
        print(
            f"{label}: no new file matches {path} (any it matches is a partition "
            f"already); run one again with datapipe run {label} --file PATH"
        )
    return list(files)


def execute_run(
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    pipeline: Pipeline,
    label: str,
    tags: dict[str, str],
    partition: str | None = None,
) -> bool:
    """Run the pipeline's job (for one partition) in this process, printing its progress and
    outcome under its label (`NAME` or `ORG/NAME`); whether all went well."""
    run_id = str(uuid.uuid4())
    with printed_progress(instance, run_id), run_timeout(instance, run_id, pipeline):
        result = definitions.resolve_job_def(dagster_name(pipeline)).execute_in_process(
            instance=instance,
            run_id=run_id,
            tags=tags,
            partition_key=partition,
            raise_on_error=False,
            # Progress and failures are printed from the event log, so Dagster's own
            # console log stays quiet.
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
    return report(pipeline, label, run_id, result)


def executor_note(pipeline: Pipeline, label: str) -> str | None:
    """Why a pipeline's executor does not apply here: it is for the runs Dagster launches
    (the UI, schedules, sensors); `datapipe run` runs every step in its own process."""
    executor = pipeline_executor(pipeline, os.environ).type
    if executor == "in_process":
        return None
    return (
        f"note: {label} runs its steps with the {executor} executor when "
        "Dagster launches it; `datapipe run` runs them in this process"
    )


def _of(partition: str | None) -> str:
    return f" partition {partition}" if partition is not None else ""


def _no_partition_yet(pipeline: Pipeline, label: str) -> str:
    assert pipeline.partitions is not None, "only a partitioned pipeline has partitions"
    return (
        f"pipeline {label!r} has no complete partition yet (partitions by "
        f"{pipeline.partitions.by} from {pipeline.partitions.start}); run it once one has ended"
    )


def overlap(name: str, live: list[dg.DagsterRun]) -> str:
    runs = ", ".join(f"{run.run_id} ({run.status.value})" for run in live)
    return (
        f"pipeline {name!r} is already running: {runs}; wait for it to finish, or pass "
        "--force to start another run alongside it"
    )


def report(pipeline: Pipeline, label: str, run_id: str, result: dg.ExecuteInProcessResult) -> bool:
    """Print the loads blocking checks skipped and the run's outcome; whether all went well.

    A failed check of severity error fails the command even when it did not fail the run
    (a check that does not block lets the load go ahead).
    """
    evaluations = result.get_asset_check_evaluations()
    materialized = {
        event.asset_key
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        and event.asset_key is not None
    }
    for line in skipped_loads(pipeline, evaluations, materialized):
        print(line)
    errors = failed_error_checks(evaluations)
    if not result.success:
        print(f"{label}: run {run_id} FAILED")
    elif errors:
        print(
            f"{label}: run {run_id} succeeded, but checks of severity error failed: "
            + ", ".join(errors)
        )
    else:
        print(f"{label}: run {run_id} succeeded")
    return result.success and not errors
