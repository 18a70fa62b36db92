"""A partitioned pipeline's Dagster partitions: one time window of its column per partition,
or one arrived file per partition.

The pipeline's raw, transform and load assets share one partitions definition, so its job is
partitioned, the UI offers its partitions (and backfills), and each run carries its partition
in the `dagster/partition` tag. The steps read the partition from that tag: extracts read only
the window's rows (or the file), loads replace only the window's rows (or the file's).

Partitions by file are a dynamic partitions definition named after the org and pipeline; the
pipeline's file-arrival sensor adds each new file to it as it requests the file's run, and
`datapipe run --file` adds the file it runs.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping

import dagster as dg

from connectors.base import Window
from datapipe_assets.pipeline.keys import cli_reference
from datapipe_assets.pipeline.run_source import FILE_TAG
from datapipe_assets.pipeline.spec import Pipeline

# The tag Dagster gives a run of one partition.
PARTITION_TAG = "dagster/partition"


def partitions_definition(pipeline: Pipeline) -> dg.PartitionsDefinition | None:
    """The pipeline's partitions, or None when it has none."""
    files = file_partitions(pipeline)
    return files if files is not None else time_partitions(pipeline)


def time_partitions(pipeline: Pipeline) -> dg.TimeWindowPartitionsDefinition | None:
    """The time windows of a pipeline partitioned by time, or None for any other pipeline."""
    spec = pipeline.partitions
    if spec is None or spec.by_file:
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


def file_partitions(pipeline: Pipeline) -> dg.DynamicPartitionsDefinition | None:
    """The arrived files of a pipeline partitioned by file, or None for any other pipeline.

    Its name holds the org: pipeline names are unique per org only, and the instance keeps
    one list of partitions per name.
    """
    if pipeline.partitions is None or not pipeline.partitions.by_file:
        return None
    return dg.DynamicPartitionsDefinition(name=f"{pipeline.org}__{pipeline.name}__files")


def run_window(pipeline: Pipeline, tags: Mapping[str, str]) -> Window | None:
    """The window a run of the pipeline reads and replaces; None unless it is partitioned by
    time."""
    spec, definition = pipeline.partitions, time_partitions(pipeline)
    if spec is None or definition is None:
        return None
    assert spec.column is not None, "validation requires the column of time windows"
    window = definition.time_window_for_partition_key(_partition_key(pipeline, tags))
    return Window(spec.column, window.start, window.end)


def run_file(pipeline: Pipeline, tags: Mapping[str, str]) -> str | None:
    """The one file a run reads (as a `path` value): its partition, when the pipeline is
    partitioned by file, or the file a file-arrival run names; None: every matched file."""
    if file_partitions(pipeline) is not None:
        return _partition_key(pipeline, tags)
    return tags.get(FILE_TAG)


def replaced_file(pipeline: Pipeline, tags: Mapping[str, str]) -> str | None:
    """The file whose rows a run's load replaces: its partition, when the pipeline is
    partitioned by file."""
    return _partition_key(pipeline, tags) if file_partitions(pipeline) is not None else None


def _partition_key(pipeline: Pipeline, tags: Mapping[str, str]) -> str:
    """The partition a run of a partitioned pipeline is of; a run without one fails, saying
    how to run partitions."""
    key = tags.get(PARTITION_TAG)
    if key is not None:
        return key
    name, spec = cli_reference(pipeline), pipeline.partitions
    assert spec is not None, "only a partitioned pipeline's runs have a partition"
    how = (
        f"run one file with datapipe run {name} --file PATH, or pick its partition in the UI"
        if spec.by_file
        else f"run partitions with datapipe backfill {name} --from DATE --to DATE, or pick "
        "them in the UI"
    )
    raise dg.Failure(
        f"pipeline {pipeline.name!r} is partitioned by {spec.by}, and this run names no "
        f"partition; {how}",
        allow_retries=False,
    )


def latest_complete_partition(pipeline: Pipeline, now: dt.datetime) -> str | None:
    """The last partition whose window has ended by `now`; None before the first has."""
    definition = time_partitions(pipeline)
    assert definition is not None, "only a pipeline partitioned by time has windows"
    keys = definition.get_partition_keys(current_time=now)
    return keys[-1] if keys else None


def partitions_starting(
    pipeline: Pipeline, first: dt.date, last: dt.date, now: dt.datetime
) -> list[str]:
    """The complete partitions that start on a day from `first` to `last` (both included,
    in the partitions' time zone), in order."""
    definition = time_partitions(pipeline)
    assert definition is not None and pipeline.partitions is not None, "partitioned by time"
    tz = zoneinfo.ZoneInfo(pipeline.partitions.timezone)
    days = dg.TimeWindow(
        dt.datetime.combine(first, dt.time(), tz),
        dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tz),
    )
    complete = set(definition.get_partition_keys(current_time=now))
    return [key for key in definition.get_partition_keys_in_time_window(days) if key in complete]
