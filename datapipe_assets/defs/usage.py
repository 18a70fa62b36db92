"""Usage recorded as it happens, in Dagster's event storage, and the monthly row limit.

Every extract and every load records an `AssetObservation` on its org's `[org, "_usage"]`
asset: pipeline, table, month (UTC), run id, rows extracted and rows loaded. Why Dagster's
event storage and not a table in the org's destination: it is the storage every run already
writes to (SQLite locally, PostgreSQL in production), it is written in the step that did the
work (no second connection that could fail after the load committed), observations can be
read back by asset key and time window, and the asset's page in the UI lists them.

The monthly limit counts rows loaded (the rows synced the seed meters): when an org's rows
loaded this month have reached its `max_rows_per_month`, its pipelines' extracts refuse to
start, so `datapipe run`, schedules, sensors and the UI all obey.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import timedelta

import dagster as dg

from datapipe_assets.pipeline.keys import PIPELINE_TAG
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.usage import (
    USAGE_PART,
    UsageLine,
    month_of,
    month_start,
    monthly_limit_message,
    next_month,
    summed,
    usage_path,
)

# A step failure carrying this metadata key is a monthly limit, told as a `usage_limit` alert.
USAGE_LIMIT = "datapipe/usage_limit"
ROWS_EXTRACTED = "rows_extracted"
ROWS_LOADED = "rows_loaded"
PAGE = 1000
# Records are selected by time with this margin, then by the month they say they are of: a
# record written at a month's last instant may carry a timestamp of the next one.
MARGIN = timedelta(days=1)


def usage_key(org: str) -> dg.AssetKey:
    return dg.AssetKey(usage_path(org))


def usage_observation(
    loaded: LoadedPipeline,
    table: str,
    run_id: str,
    extracted: int = 0,
    loaded_rows: int = 0,
    billing: Mapping[str, str] | None = None,
) -> dg.AssetObservation:
    """The record of one table's extract or load in a run."""
    pipeline = loaded.pipeline
    return dg.AssetObservation(
        asset_key=usage_key(pipeline.org),
        description=f"{pipeline.name}, {table}: {extracted:,} rows extracted, "
        f"{loaded_rows:,} loaded",
        metadata={
            "pipeline": pipeline.name,
            "table": table,
            "month": month_of(time.time()),
            "run_id": run_id,
            ROWS_EXTRACTED: dg.MetadataValue.int(extracted),
            ROWS_LOADED: dg.MetadataValue.int(loaded_rows),
            **(billing or {}),
        },
    )


def org_records(
    instance: dg.DagsterInstance, org: str, after: float, before: float | None = None
) -> Iterator[dg.EventLogRecord]:
    """An org's usage records in a time window, oldest first, a page at a time."""
    cursor = None
    while True:
        result = instance.fetch_observations(
            dg.AssetRecordsFilter(
                asset_key=usage_key(org), after_timestamp=after, before_timestamp=before
            ),
            limit=PAGE,
            cursor=cursor,
            ascending=True,
        )
        yield from result.records
        if not result.has_more:
            return
        cursor = result.cursor


def metadata_values(record: dg.EventLogRecord) -> dict[str, object]:
    observation = record.asset_observation
    assert observation is not None, "usage records are observations"
    return {name: value.value for name, value in observation.metadata.items()}


def month_usage(instance: dg.DagsterInstance, org: str, month: str) -> list[UsageLine]:
    """An org's rows per pipeline in a month."""
    after = (month_start(month) - MARGIN).timestamp()
    before = (month_start(next_month(month)) + MARGIN).timestamp()
    lines = []
    for record in org_records(instance, org, after, before):
        values = metadata_values(record)
        if values.get("month") == month and ROWS_LOADED in values:
            extracted, loaded = values[ROWS_EXTRACTED], values[ROWS_LOADED]
            assert isinstance(extracted, int) and isinstance(loaded, int)
            lines.append(UsageLine(org, str(values["pipeline"]), month, extracted, loaded))
    return summed(lines)


def recorded_orgs(instance: dg.DagsterInstance) -> list[str]:
    """Every org that has usage recorded, in any month."""
    keys = instance.get_asset_keys()
    return sorted({k.path[0] for k in keys if len(k.path) == 2 and k.path[1] == USAGE_PART})


def monthly_limit_reached(instance: dg.DagsterInstance, loaded: LoadedPipeline) -> str | None:
    """Why the pipeline may not run, when its org has used its rows for this month."""
    org = loaded.pipeline.org
    limit = loaded.orgs.limits(org).max_rows_per_month
    if limit is None:
        return None
    month = month_of(time.time())
    used = sum(line.rows_loaded for line in month_usage(instance, org, month))
    if used < limit:
        return None
    return f"pipeline {loaded.pipeline.name!r}: {monthly_limit_message(org, used, limit, month)}"


def check_monthly_limit(instance: dg.DagsterInstance, loaded: LoadedPipeline) -> None:
    """Refuse to extract when the pipeline's org has used its rows for this month."""
    reason = monthly_limit_reached(instance, loaded)
    if reason is not None:
        raise dg.Failure(reason, metadata={USAGE_LIMIT: loaded.pipeline.org}, allow_retries=False)


def refused_by_limit(instance: dg.DagsterInstance, pipeline: str) -> bool:
    """Whether the pipeline's latest run was refused by its org's monthly limit."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={PIPELINE_TAG: pipeline}), limit=1)
    if not runs or runs[0].status != dg.DagsterRunStatus.FAILURE:
        return False
    failures = instance.get_records_for_run(
        runs[0].run_id, of_type=dg.DagsterEventType.STEP_FAILURE
    ).records
    events = [record.event_log_entry.dagster_event for record in failures]
    return any(event is not None and is_usage_limit(event) for event in events)


def is_usage_limit(event: dg.DagsterEvent) -> bool:
    """Whether a STEP_FAILURE event is a refusal by the monthly limit."""
    user = event.step_failure_data.user_failure_data
    return user is not None and USAGE_LIMIT in user.metadata
