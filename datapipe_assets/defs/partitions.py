"""A partitioned pipeline's Dagster partitions: one time window of its column per partition.

The pipeline's raw, transform and load assets share one time-window partitions definition,
so its job is partitioned, the UI offers its partitions and backfills, and each run carries
its partition in the `dagster/partition` tag. The steps read the window from that tag:
extracts read only the window's rows, loads replace only the window's rows.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping

import dagster as dg

from connectors.base import Window
from datapipe_assets.pipeline.spec import Pipeline

# The tag Dagster gives a run of one partition.
PARTITION_TAG = "dagster/partition"


def partitions_definition(pipeline: Pipeline) -> dg.TimeWindowPartitionsDefinition | None:
    """The pipeline's partitions, or None when it has none."""
    spec = pipeline.partitions
    if spec is None:
        return None
    start, tz = spec.start_time(), spec.timezone
    if spec.by == "hour":
        return dg.HourlyPartitionsDefinition(start_date=start, timezone=tz)
    if spec.by == "day":
        return dg.DailyPartitionsDefinition(start_date=start, timezone=tz)
    if spec.by == "week":
        # Weeks start on Monday, as ISO 8601 has them (Dagster's default is Sunday).
        return dg.WeeklyPartitionsDefinition(start_date=start, timezone=tz, day_offset=1)
    return dg.MonthlyPartitionsDefinition(start_date=start, timezone=tz)


def run_window(pipeline: Pipeline, tags: Mapping[str, str]) -> Window | None:
    """The window a run of the pipeline reads and replaces; None when it is unpartitioned."""
    definition = partitions_definition(pipeline)
    if definition is None:
        return None
    assert pipeline.partitions is not None, "a partitions definition comes from the spec"
    key = tags.get(PARTITION_TAG)
    if key is None:
        raise dg.Failure(
            f"pipeline {pipeline.name!r} is partitioned by {pipeline.partitions.by}, and this "
            f"run names no partition; run partitions with datapipe backfill {pipeline.name} "
            "--from DATE --to DATE, or pick them in the UI",
            allow_retries=False,
        )
    window = definition.time_window_for_partition_key(key)
    return Window(pipeline.partitions.column, window.start, window.end)


def latest_complete_partition(pipeline: Pipeline, now: dt.datetime) -> str | None:
    """The last partition whose window has ended by `now`; None before the first has."""
    definition = partitions_definition(pipeline)
    assert definition is not None, "only a partitioned pipeline has partitions"
    keys = definition.get_partition_keys(current_time=now)
    return keys[-1] if keys else None


def partitions_starting(
    pipeline: Pipeline, first: dt.date, last: dt.date, now: dt.datetime
) -> list[str]:
    """The complete partitions that start on a day from `first` to `last` (both included,
    in the partitions' time zone), in order."""
    definition = partitions_definition(pipeline)
    assert definition is not None and pipeline.partitions is not None, "a partitioned pipeline"
    tz = zoneinfo.ZoneInfo(pipeline.partitions.timezone)
    days = dg.TimeWindow(
        dt.datetime.combine(first, dt.time(), tz),
        dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tz),
    )
    complete = set(definition.get_partition_keys(current_time=now))
    return [key for key in definition.get_partition_keys_in_time_window(days) if key in complete]
