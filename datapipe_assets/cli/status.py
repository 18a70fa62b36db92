"""`datapipe status`: run history per pipeline, from Dagster's own run storage and event log."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import dagster as dg

from datapipe_assets.cli.common import CommandError, cli_project, valid_pipeline
from datapipe_assets.cli.instance import dagster_instance
from datapipe_assets.defs.errors import failure_message
from datapipe_assets.defs.live_runs import fail_abandoned_runs
from datapipe_assets.defs.run_tags import VERSION_TAG
from datapipe_assets.pipeline.keys import (
    PIPELINE_TAG,
    dagster_name,
    key_stage,
    qualified_name,
)
from datapipe_assets.pipeline.project import Project, split_reference
from datapipe_assets.pipeline.spec import DEFAULT_ORG

STAGES = ("extracted", "transformed", "loaded")


@dataclass
class RunSummary:
    run_id: str
    status: str
    seconds: float | None
    # The content version of the pipeline file the run was started from.
    version: str = "-"
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    failing_checks: list[str] = field(default_factory=list)
    # The first failed step's message, for a failed run.
    failure: str | None = None


def recent_runs(instance: dg.DagsterInstance, pipeline: str, limit: int = 5) -> list[RunSummary]:
    """The pipeline's latest runs, newest first, with rows per stage and failing checks.

    Runs are the pipeline's by its tag, which its jobs and its chain sensor's runs (of
    Dagster's implicit asset job) all carry.
    """
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={PIPELINE_TAG: pipeline}), limit=limit
    )
    return [_summary(instance, record) for record in records]


def _summary(instance: dg.DagsterInstance, record: dg.RunRecord) -> RunSummary:
    run = record.dagster_run
    seconds = None
    if record.start_time is not None and record.end_time is not None:
        seconds = record.end_time - record.start_time
    summary = RunSummary(run.run_id, run.status.value, seconds, run.tags.get(VERSION_TAG, "-"))
    events = instance.get_records_for_run(
        run.run_id,
        of_type={
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
            dg.DagsterEventType.STEP_FAILURE,
            dg.DagsterEventType.RUN_FAILURE,
        },
    ).records
    for event_record in events:
        event = event_record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.is_step_failure:
            summary.failure = summary.failure or failure_message(event)
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE:
            # A failed step's reason says more than its run's "steps failed" message.
            summary.failure = summary.failure or event_record.event_log_entry.message
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            _count_rows(summary, event.step_materialization_data.materialization)
        else:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                summary.failing_checks.append(
                    f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
                )
    return summary


def _count_rows(summary: RunSummary, materialization: dg.AssetMaterialization) -> None:
    metadata = materialization.metadata
    stage = {"raw": "extracted", "load": "loaded"}.get(
        key_stage(materialization.asset_key.path), "transformed"
    )
    value = metadata.get("rows_loaded" if stage == "loaded" else "dagster/row_count")
    if value is not None:
        # A chain of transforms counts its last node's output, not the sum of its nodes.
        rows = int(value.value)
        summary.rows[stage] = rows if stage == "transformed" else summary.rows[stage] + rows


def format_runs(pipeline: str, runs: list[RunSummary]) -> str:
    if not runs:
        return f"{pipeline}: no runs yet"
    lines = [
        f"{pipeline}",
        f"  {'run':<10} {'status':<10} {'version':<12} {'seconds':>8} {'extracted':>10} "
        f"{'transformed':>12} "
        f"{'loaded':>10}  failing checks",
    ]
    for run in runs:
        seconds = f"{run.seconds:.1f}" if run.seconds is not None else "-"
        lines.append(
            f"  {run.run_id[:8]:<10} {run.status:<10} {run.version:<12} {seconds:>8} "
            f"{run.rows['extracted']:>10,} {run.rows['transformed']:>12,} "
            f"{run.rows['loaded']:>10,}  {', '.join(run.failing_checks) or '-'}"
        )
        if run.failure is not None:
            lines.append(f"             reason: {run.failure}")
    return "\n".join(lines)


def status_command(args: argparse.Namespace) -> int:
    project = cli_project()
    if args.pipeline:
        shown = [_named(project, args.pipeline)]
    else:
        shown = [(project.label(p.pipeline), dagster_name(p.pipeline)) for p in project.pipelines]
    with dagster_instance() as instance:
        fail_abandoned_runs(instance)
        for label, name in shown:
            runs = recent_runs(instance, name, args.limit)
            if not runs and args.pipeline:
                _check_known(project, args.pipeline)
            print(format_runs(label, runs))
    return 0


def _named(project: Project, reference: str) -> tuple[str, str]:
    """The label and Dagster name (its runs' tag) of the pipeline a command names: a valid
    pipeline's, else a removed pipeline's, whose runs are still shown."""
    found = project.named(reference)
    if len(found) > 1:
        valid_pipeline(project, reference)  # refuses a name several orgs use, listing them
    if found:
        return project.label(found[0].pipeline), dagster_name(found[0].pipeline)
    org, name = split_reference(reference)
    return reference, qualified_name(org or DEFAULT_ORG, name)


def _check_known(project: Project, reference: str) -> None:
    """A named pipeline without runs must be one of the folder's (a removed pipeline's runs
    are still shown)."""
    if not project.named(reference):
        valid = [project.label(p.pipeline) for p in project.pipelines]
        raise CommandError(
            f"no pipeline named {reference!r}, and no runs of one; pipelines: "
            + (", ".join(valid) or "none")
        )
