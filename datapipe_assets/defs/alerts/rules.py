"""Alert rules, and the events they fire on, read from Dagster's run and event-log records.

A pipeline's rules are its own `alerts` plus its org's defaults from alerts.yaml (a mapping
org -> list of alert specs, next to connections.yaml). Events are plain values, so the
sensors in alert_sensors.py only fetch records, match rules and deliver.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import yaml
from pydantic import TypeAdapter, ValidationError

from connectors.shared.durations import duration_seconds
from connectors.shared.secrets import SECRET_REFERENCE
from datapipe_assets.defs.errors import failure_message
from datapipe_assets.defs.usage import is_usage_limit
from datapipe_assets.pipeline.check_rules import SCHEMA_CHECK_NAME
from datapipe_assets.pipeline.connections import ConnectionSpec, secrets_of
from datapipe_assets.pipeline.keys import (
    LOAD,
    PIPELINE_TAG,
    dagster_name,
    key_stage,
    load_key,
    node_key,
    raw_key,
)
from datapipe_assets.pipeline.project import Project, secrets_file
from datapipe_assets.pipeline.secret_store import reveal
from datapipe_assets.pipeline.spec import AlertSpec, Pipeline
from datapipe_assets.pipeline.spec_files import (
    display_path,
    parse_error,
    pydantic_errors,
    read_document,
)
from resources.notifications import Message

ALERTS_FILES = ("alerts.yaml", "alerts.yml")
DEFAULT_UI_URL = "http://127.0.0.1:3000"
ERROR_LINES = 5
ERROR_CHARS = 1000
TITLES = {
    "failure": "run failed",
    "check_failed": "check failed",
    "zero_rows": "loaded 0 rows",
    "slow_run": "slow run",
    "schema_change": "schema changed",
    "usage_limit": "monthly limit reached",
}
_ORG_DEFAULTS = TypeAdapter(dict[str, list[AlertSpec]])


@dataclass(frozen=True)
class AlertRule:
    spec: AlertSpec
    origin: str  # "pipeline" (its own file) or "org" (alerts.yaml)
    index: int

    @property
    def name(self) -> str:
        """Stable and tag-safe: names the rule in run tags and alert records."""
        return f"{self.origin}-{self.index}-{self.spec.channel}"

    @property
    def slow_after(self) -> timedelta | None:
        if "slow_run" not in self.spec.on or self.spec.slow_run_after is None:
            return None
        return timedelta(seconds=duration_seconds(self.spec.slow_run_after))


@dataclass(frozen=True)
class AlertEvent:
    """Something that happened to a pipeline, for every rule that listens to it."""

    # Most specific first: a schema check's failure is a schema_change and a check_failed.
    kinds: tuple[str, ...]
    org: str
    pipeline: str
    stage: str
    error: str
    run_id: str | None
    link: str


@dataclass(frozen=True)
class PipelineAlerts:
    pipeline: Pipeline
    rules: tuple[AlertRule, ...]
    # Their secrets are masked out of every alert text.
    connections: tuple[ConnectionSpec, ...]
    # Where a rule's `url` reads `${secret:NAME}` from: the project's secrets file.
    secrets_file: Path

    def channel_url(self, url: str | None) -> str | None:
        """A rule's url with each `${secret:NAME}` filled in from the secrets file, at send
        time only; its `${NAME}`s the notifier reads from the environment. SecretStoreError
        when a secret is unknown or cannot be decrypted."""
        if url is None:
            return None
        return SECRET_REFERENCE.sub(lambda found: reveal(self.secrets_file, found[1]), url)

    def matching(self, event: AlertEvent) -> list[tuple[AlertRule, str]]:
        """Each rule that listens to the event, with the event kind it is told as."""
        matches = []
        for rule in self.rules:
            kind = next((k for k in event.kinds if k in rule.spec.on), None)
            if kind is not None:
                matches.append((rule, kind))
        return matches

    def secrets(self) -> list[str]:
        return secrets_of(self.connections)


# By the pipelines' Dagster names, which their runs carry as a tag.
AlertRules = dict[str, PipelineAlerts]


def load_alert_rules(project: Project) -> AlertRules:
    """Every valid pipeline's rules, org defaults appended; alerts.yaml errors go to project."""
    defaults = _org_defaults(project)
    rules: AlertRules = {}
    for loaded in project.pipelines:
        pipeline = loaded.pipeline
        own = [AlertRule(spec, "pipeline", i) for i, spec in enumerate(pipeline.alerts)]
        org = [AlertRule(spec, "org", i) for i, spec in enumerate(defaults.get(pipeline.org, []))]
        if own or org:
            rules[dagster_name(pipeline)] = PipelineAlerts(
                pipeline, tuple(own + org), loaded.connections(), secrets_file(project.directory)
            )
    return rules


def _org_defaults(project: Project) -> dict[str, list[AlertSpec]]:
    folder = project.directory
    file = next((folder / n for n in ALERTS_FILES if (folder / n).exists()), None)
    if file is None:
        return {}
    try:
        document = read_document(file) or {}
        defaults = _ORG_DEFAULTS.validate_python(document)
    except yaml.YAMLError as error:
        project.errors[display_path(file)] = [parse_error(file, error)]
        return {}
    except ValidationError as error:
        project.errors[display_path(file)] = pydantic_errors(file, error)
        return {}
    return defaults


def ui_url() -> str:
    return os.environ.get("DATAPIPE_UI_URL", DEFAULT_UI_URL).rstrip("/")


def run_link(run_id: str) -> str:
    return f"{ui_url()}/runs/{run_id}"


def first_lines(text: str) -> str:
    """The first lines of an error: enough to recognise it, short enough for a chat message."""
    lines = [line.rstrip() for line in text.strip().splitlines()][:ERROR_LINES]
    joined = "\n".join(lines)
    return joined if len(joined) <= ERROR_CHARS else joined[: ERROR_CHARS - 3] + "..."


def alert_log_key(pipeline: Pipeline) -> dg.AssetKey:
    """Where a pipeline's sent and failed alerts are recorded, as asset observations.

    `_alerts` cannot clash with a node id, which starts with a letter.
    """
    return dg.AssetKey([pipeline.org, pipeline.name, "_alerts"])


def failure_event(
    pipeline: Pipeline,
    run: dg.DagsterRun,
    run_failure: dg.DagsterEvent,
    step_failures: Sequence[dg.DagsterEvent],
) -> AlertEvent:
    """A failed run: its failed steps as the stage (by asset key), their errors as the error.

    A run its org's monthly limit refused is a `usage_limit` as well as a failure.
    """
    steps = {key.to_python_identifier(): key for key in pipeline_keys(pipeline)}
    stages = [_key_text(steps[e.step_key]) if e.step_key in steps else str(e.step_key)
              for e in step_failures]  # fmt: skip
    errors = [failure_message(e) for e in step_failures] or [run_failure.message or "run failed"]
    limited = any(is_usage_limit(e) for e in step_failures)
    return AlertEvent(
        kinds=("usage_limit", "failure") if limited else ("failure",),
        org=pipeline.org,
        pipeline=pipeline.name,
        stage=", ".join(stages) or "run",
        error=first_lines("\n".join(errors)),
        run_id=run.run_id,
        link=run_link(run.run_id),
    )


def pipeline_keys(pipeline: Pipeline) -> list[dg.AssetKey]:
    """Every asset key of a pipeline: its raw tables, transform nodes and loads."""
    nodes = pipeline.transform.nodes if pipeline.transform is not None else []
    return [
        *(dg.AssetKey(raw_key(pipeline, table)) for table in pipeline.table_names()),
        *(
            dg.AssetKey(node_key(pipeline, n.id))
            for n in nodes
            if n.type not in ("source", "destination")
        ),
        *load_keys(pipeline),
    ]


def load_keys(pipeline: Pipeline) -> list[dg.AssetKey]:
    return [dg.AssetKey(load_key(pipeline, t)) for t in pipeline.target_tables().values()]


def failure_streak_reached(instance: dg.DagsterInstance, run: dg.DagsterRun, needed: int) -> bool:
    """Whether `run` is at least the `needed`-th failed run of its pipeline in a row."""
    if needed <= 1:
        return True
    earlier = instance.get_runs(
        filters=dg.RunsFilter(
            tags={PIPELINE_TAG: run.tags[PIPELINE_TAG]},
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
        ),
        cursor=run.run_id,  # runs created before this one, newest first
        limit=needed - 1,
    )
    return len(earlier) == needed - 1 and all(
        r.status == dg.DagsterRunStatus.FAILURE for r in earlier
    )


def zero_rows_event(entry: dg.EventLogEntry) -> AlertEvent | None:
    """A load (`[org, pipeline, "load", table]`) whose materialization loaded no row."""
    materialization = entry.asset_materialization
    if materialization is None or key_stage(materialization.asset_key.path) != LOAD:
        return None
    rows = materialization.metadata.get("rows_loaded")
    if rows is None or rows.value != 0:
        return None
    key = materialization.asset_key
    error = f"0 rows loaded into {_key_text(key)}"
    return _asset_event(("zero_rows",), key, _key_text(key), error, entry)


def check_event(entry: dg.EventLogEntry) -> AlertEvent | None:
    """A failed asset check; a column-schema-change check reports a schema change as well.

    Every schema check of a pipeline file is Dagster's column-schema-change check, and so
    is any other built by `dg.build_column_schema_change_checks`: its name tells.
    """
    event = entry.dagster_event
    if event is None or event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        return None
    evaluation = event.asset_check_evaluation_data
    if evaluation.passed:
        return None
    path = evaluation.asset_key.path
    if len(path) < 3:
        return None
    name = evaluation.check_name
    kinds = ("schema_change", "check_failed") if name == SCHEMA_CHECK_NAME else ("check_failed",)
    error = f"check {name} failed (severity {evaluation.severity.value})"
    if evaluation.description:
        error += f": {evaluation.description}"
    stage = f"{_key_text(evaluation.asset_key)} check {name}"
    return _asset_event(kinds, evaluation.asset_key, stage, first_lines(error), entry)


def slow_run_event(
    pipeline: Pipeline, record: dg.RunRecord, rule: AlertRule, now: float
) -> AlertEvent | None:
    """A run that took, or has been running, longer than `limit`."""
    start, end, limit = record.start_time, record.end_time, rule.slow_after
    elapsed = (end if end is not None else now) - start if start is not None else 0.0
    if limit is None or elapsed <= limit.total_seconds():
        return None
    run = record.dagster_run
    verb = "took" if end is not None else "has been running for"
    return AlertEvent(
        kinds=("slow_run",),
        org=pipeline.org,
        pipeline=pipeline.name,
        stage="run",
        error=f"the run {verb} {round(elapsed)}s, longer than slow_run_after "
        f"{rule.spec.slow_run_after}",
        run_id=run.run_id,
        link=run_link(run.run_id),
    )


def render(event: AlertEvent, kind: str) -> Message:
    """The alert's subject, text (email and Slack) and fields (the webhook's JSON body)."""
    subject = f"[DataPipe] {event.pipeline}: {TITLES[kind]} at {event.stage}"
    error = "\n".join(f"  {line}" for line in event.error.splitlines())
    text = (
        f"Pipeline: {event.pipeline} (org {event.org})\n"
        f"Event: {kind}\n"
        f"Stage: {event.stage}\n"
        f"Error:\n{error}\n"
        f"Run: {event.link}\n"
    )
    fields = {
        "event": kind,
        "org": event.org,
        "pipeline": event.pipeline,
        "run_id": event.run_id,
        "stage": event.stage,
        "error": event.error,
        "run_url": event.link,
    }
    return Message(subject, text, fields)


def _asset_event(
    kinds: tuple[str, ...], key: dg.AssetKey, stage: str, error: str, entry: dg.EventLogEntry
) -> AlertEvent:
    """An event on an asset `[org, pipeline, ...]`, linked to its run or else its asset page."""
    run_id = entry.run_id or None  # runless events (reported from outside a run) have none
    link = run_link(run_id) if run_id else f"{ui_url()}/assets/{_key_text(key)}"
    return AlertEvent(kinds, key.path[0], key.path[1], stage, error, run_id, link)


def _key_text(key: dg.AssetKey) -> str:
    return "/".join(key.path)
