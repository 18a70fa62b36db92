"""Sensors that turn pipeline events into alerts, each event alerted once.

- Failed runs: `dg.run_failure_sensor`; Dagster's own cursor visits each failure once.
- Zero-row loads and failed checks: a `dg.sensor` whose cursor is the last event-log storage id
  read per load asset (its materializations) and per finished-run status (the status changes,
  whose runs' check evaluations it reads). A failed check does not fail its run, so it needs
  this watch. Only Dagster's public instance APIs are used.
- Slow runs: a `dg.sensor` over running and just-finished runs. A run stays slow through many
  ticks, so a run tag per rule marks it alerted (and shows that on the run's page).

Cursors persist with each tick, so a restarted daemon resumes where it stopped. Every alert
sent or failed is logged to the tick's log and returned as an `AssetObservation` on the
pipeline's `[org, pipeline, "_alerts"]` key, which the daemon records: the asset's page in
the UI lists the pipeline's alert history with event, channel, status, error and run link.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg

from connectors.shared.secrets import mask
from datapipe_assets.defs.alerts.rules import (
    AlertEvent,
    AlertRule,
    AlertRules,
    PipelineAlerts,
    alert_log_key,
    check_event,
    failure_event,
    failure_streak_reached,
    load_keys,
    render,
    slow_run_event,
    zero_rows_event,
)
from datapipe_assets.defs.sensor_interval import sensor_interval
from datapipe_assets.pipeline.keys import PIPELINE_TAG, qualified_name
from datapipe_assets.pipeline.secret_store import SecretStoreError
from resources.notifications import NotificationError, Notifier, channel_secrets, target_label

BATCH = 100
FINISHED = [
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
]
FINISHED_STATUSES = [
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
]
SLOW_RUN_TAG = "datapipe/slow_run_alert.{rule}"


def alert_sensors(rules: AlertRules, notifier: Notifier | None = None) -> list[dg.SensorDefinition]:
    """The sensors the rules need; none when no pipeline has alerts."""
    notifier = notifier or Notifier()
    events = {kind for alerts in rules.values() for rule in alerts.rules for kind in rule.spec.on}
    sensors = []
    if events & {"failure", "usage_limit"}:
        sensors.append(run_failure_alerts(rules, notifier))
    if events & {"zero_rows", "check_failed", "schema_change"}:
        sensors.append(event_alerts(rules, notifier))
    if "slow_run" in events:
        sensors.append(slow_run_alerts(rules, notifier))
    return sensors


def _alert_sensor(name: str, description: str) -> Callable[..., dg.SensorDefinition]:
    # Declaring an alert in a pipeline file is asking for it to be watched: running by default.
    return dg.sensor(
        name=f"datapipe_alerts__{name}",
        description=description,
        minimum_interval_seconds=sensor_interval(),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


def run_failure_alerts(rules: AlertRules, notifier: Notifier) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="datapipe_alerts__run_failure",
        description="Alerts on failed pipeline runs (`on: [failure]`) and runs refused by "
        "their org's monthly row limit (`on: [usage_limit]`).",
        minimum_interval_seconds=sensor_interval(),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _alert(context: dg.RunFailureSensorContext) -> dg.SensorResult | dg.SkipReason:
        run = context.dagster_run
        alerts = rules.get(run.tags.get(PIPELINE_TAG, ""))
        if alerts is None:
            return dg.SkipReason(f"run {run.run_id} is not of a pipeline with alerts")
        event = failure_event(
            alerts.pipeline, run, context.failure_event, context.get_step_failure_events()
        )
        matches = [
            (rule, kind)
            for rule, kind in alerts.matching(event)
            if failure_streak_reached(context.instance, run, rule.spec.after_consecutive_failures)
        ]
        observations = deliver(context.log, alerts, event, matches, notifier)
        if not observations:
            return dg.SkipReason(f"no rule of {alerts.pipeline.name} alerts on this failure yet")
        return dg.SensorResult(asset_events=observations)

    return _alert


def event_alerts(rules: AlertRules, notifier: Notifier) -> dg.SensorDefinition:
    @_alert_sensor("events", "Alerts on zero-row loads, failed checks and schema changes.")
    def _alert(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        # One cursor per watched stream: the storage id of the last record read of it.
        cursor: dict[str, int] = json.loads(context.cursor or "{}")
        observations: list[dg.AssetObservation] = []
        for name, fetch in _watched(context.instance, rules):
            # A stream not watched before (a new sensor, a pipeline given alerts) starts at
            # its newest record: alerting on its history would flood.
            starting = name not in cursor
            found = fetch(cursor.get(name))
            cursor[name] = found[-1][0] if found else cursor.get(name, -1)
            for event in [] if starting else [e for _, events in found for e in events]:
                alerts = rules.get(qualified_name(event.org, event.pipeline))
                if alerts is not None:
                    observations += deliver(
                        context.log, alerts, event, alerts.matching(event), notifier
                    )
        return dg.SensorResult(
            asset_events=observations,
            cursor=json.dumps(cursor),
            skip_reason=None if observations else "no new event to alert on",
        )

    return _alert


# Reads a watched stream after a storage id, oldest first (given None, only its newest
# record, to start from): each record's storage id with the alert events it holds.
Fetch = Callable[[int | None], list[tuple[int, list[AlertEvent]]]]


def _watched(instance: dg.DagsterInstance, rules: AlertRules) -> list[tuple[str, Fetch]]:
    """The load assets of pipelines with alerts, and the runs that finished, with their fetch."""
    watched = [
        (key.to_user_string(), _zero_row_loads(instance, key))
        for alerts in rules.values()
        for key in load_keys(alerts.pipeline)
    ]
    watched += [(f"runs/{status.value}", _failed_checks(instance, status)) for status in FINISHED]
    return watched


def _zero_row_loads(instance: dg.DagsterInstance, key: dg.AssetKey) -> Fetch:
    def fetch(after: int | None) -> list[tuple[int, list[AlertEvent]]]:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
            limit=1 if after is None else BATCH,
            ascending=after is not None,
        ).records
        return [(r.storage_id, _present([zero_rows_event(r.event_log_entry)])) for r in records]

    return fetch


def _failed_checks(instance: dg.DagsterInstance, status: dg.DagsterEventType) -> Fetch:
    """The failed asset checks of each run that finished with `status`, as the run ends.

    Runs are read by the storage id of their status change, an id unique across runs on
    every storage; a check evaluation's own id is per run on SQLite storage.
    """

    def fetch(after: int | None) -> list[tuple[int, list[AlertEvent]]]:
        changes = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=status, after_storage_id=after),
            limit=1 if after is None else BATCH,
            ascending=after is not None,
        ).records
        return [(c.storage_id, _run_check_events(instance, c.run_id)) for c in changes]

    return fetch


def _run_check_events(instance: dg.DagsterInstance, run_id: str) -> list[AlertEvent]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    return _present([check_event(record.event_log_entry) for record in records])


def _present(events: list[AlertEvent | None]) -> list[AlertEvent]:
    return [event for event in events if event is not None]


def slow_run_alerts(rules: AlertRules, notifier: Notifier) -> dg.SensorDefinition:
    @_alert_sensor("slow_runs", "Alerts on runs slower than their `slow_run_after`.")
    def _alert(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = time.time()
        # The cursor is when the last tick looked: runs that finished since then are checked.
        since = datetime.fromtimestamp(float(context.cursor or now), tz=UTC)
        instance = context.instance
        records = [
            *instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])),
            *instance.get_run_records(
                dg.RunsFilter(statuses=FINISHED_STATUSES, updated_after=since)
            ),
        ]
        observations: list[dg.AssetObservation] = []
        for record in records:
            run = record.dagster_run
            alerts = rules.get(run.tags.get(PIPELINE_TAG, ""))
            for rule in alerts.rules if alerts is not None else ():
                tag = SLOW_RUN_TAG.format(rule=rule.name)
                event = (
                    None if tag in run.tags else slow_run_event(alerts.pipeline, record, rule, now)
                )
                if event is None:
                    continue
                sent = deliver(context.log, alerts, event, [(rule, "slow_run")], notifier)
                instance.add_run_tags(run.run_id, {tag: str(sent[0].metadata["status"].value)})
                observations += sent
        return dg.SensorResult(
            asset_events=observations,
            cursor=str(now),
            skip_reason=None if observations else "no run slower than its slow_run_after",
        )

    return _alert


def _channel_urls(alerts: PipelineAlerts) -> dict[str, str | SecretStoreError | None]:
    """Each rule's url (by rule name) with its secrets read, once per delivery: decrypting
    derives the master key, which is slow. A secret that cannot be read stands as its error,
    which fails that rule's alert alone."""
    urls: dict[str, str | SecretStoreError | None] = {}
    for rule in alerts.rules:
        try:
            urls[rule.name] = alerts.channel_url(rule.spec.url)
        except SecretStoreError as error:
            urls[rule.name] = error
    return urls


def deliver(
    log: dg.DagsterLogManager,
    alerts: PipelineAlerts,
    event: AlertEvent,
    matches: Sequence[tuple[AlertRule, str]],
    notifier: Notifier,
) -> list[dg.AssetObservation]:
    """Send the event through each matched rule's channel; one record per alert."""
    urls = _channel_urls(alerts)
    readable = [url for url in urls.values() if not isinstance(url, SecretStoreError)]
    secrets = alerts.secrets() + channel_secrets(readable)
    # Run errors are masked where they are raised; check descriptions are not, so mask again.
    event = replace(event, error=mask(event.error, secrets))
    observations = []
    for rule, kind in matches:
        spec = rule.spec
        target = target_label(spec.channel, spec.to, spec.url)
        summary = f"{kind} alert for {event.pipeline} via {spec.channel} to {target}"
        try:
            url = urls[rule.name]
            if isinstance(url, SecretStoreError):
                raise url
            notifier.send(spec.channel, spec.to, url, render(event, kind))
            status, error = "sent", ""
            log.info(f"{summary}: sent")
        except (NotificationError, SecretStoreError) as failure:
            status, error = "failed", str(failure)
            log.error(f"{summary}: failed: {error}")
        observations.append(
            dg.AssetObservation(
                asset_key=alert_log_key(alerts.pipeline),
                description=f"{summary}: {status}",
                metadata={
                    "status": status,
                    "event": kind,
                    "channel": spec.channel,
                    "rule": rule.name,
                    "target": target,
                    "stage": event.stage,
                    "run_id": event.run_id or "",
                    "run_url": dg.MetadataValue.url(event.link),
                    "error": error,
                },
            )
        )
    return observations
