"""Checks and notes on a pipeline's `partitions:` block (PartitionsSpec in pipeline/spec.py)."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.problems import Problem, timezone_problems
from datapipe_assets.pipeline.spec import PartitionsSpec, Pipeline

# The destinations that delete a window's rows and insert its new ones in one transaction:
# the SQL destinations (connectors/shared/sql_destination.py).
WINDOW_DESTINATIONS = ("duckdb", "postgres")
# Nodes whose result depends on rows of other partitions, were they there.
ACROSS_ROWS = ("aggregate", "deduplicate")


def partition_problems(
    pipeline: Pipeline,
    connections: Mapping[str, ConnectionSpec],
    schemas: Mapping[str, pa.Schema],
    loaded: Mapping[str, pa.Schema | None],
) -> list[Problem]:
    """What stops the pipeline's partitions: `schemas` are the known source table schemas,
    `loaded` the known schemas of what a transform loads."""
    spec = pipeline.partitions
    if spec is None:
        return []
    problems = _file_problems(pipeline, spec) if spec.by_file else _window_problems(pipeline, spec)
    problems += _destination_problems(pipeline, connections) + _trigger_problems(pipeline, spec)
    if spec.column is None or spec.by_file:
        return problems
    for table in pipeline.source_tables():
        schema = schemas.get(table.name)
        if schema is not None:
            problems += _column_problems(spec, f"table {table.name!r}", schema)
    if pipeline.transform is not None:
        for schema in loaded.values():
            if schema is not None and spec.column not in schema.names:
                problems.append(
                    Problem(
                        "partitions.column",
                        f"the loaded data has no column {spec.column!r}",
                        "a partition's load replaces the rows of its window in that column; keep "
                        f"it in the data the transform loads (it has: {', '.join(schema.names)})",
                    )
                )
    return problems


def _window_problems(pipeline: Pipeline, spec: PartitionsSpec) -> list[Problem]:
    """Time windows need a column and a start, in a known time zone."""
    problems = timezone_problems("partitions.timezone", spec.timezone)
    if spec.column is None:
        problems.append(
            Problem(
                "partitions.column",
                f"partitions by {spec.by} need a column",
                f"add the date or timestamp column that puts each row in its {spec.by}",
            )
        )
    if spec.start is None:
        problems.append(
            Problem(
                "partitions.start",
                f"partitions by {spec.by} need a start",
                "add the first partition's start, like 2024-01-01",
            )
        )
    return problems + _incremental_problems(
        pipeline,
        f"each run replaces one {spec.by} of {spec.column}, and a backfill reloads any",
    )


def _file_problems(pipeline: Pipeline, spec: PartitionsSpec) -> list[Problem]:
    """A file partition is a file the on_new_file trigger saw arrive: nothing to set."""
    problems = []
    given = [key for key in ("column", "start", "timezone") if key in spec.model_fields_set]
    if given:
        problems.append(
            Problem(
                "partitions",
                f"partitions by file take no {_listed(given, 'or')}: each arrived file is one "
                "partition, whatever dates its rows hold",
                f"remove {_listed(given, 'and')}, or partition by hour, day, week or month",
            )
        )
    trigger = pipeline.trigger
    if trigger is None or not trigger.on_new_file:
        problems.append(
            Problem(
                "partitions.by",
                "partitions by file are the files the on_new_file trigger sees arrive, and "
                "this pipeline has no such trigger",
                "add trigger: {on_new_file: true}, or partition by hour, day, week or month",
            )
        )
    if pipeline.schedule is not None:
        problems.append(
            Problem(
                "schedule",
                "a pipeline partitioned by file runs once per arrived file, so a schedule has "
                "no partition to run",
                "remove schedule (the on_new_file trigger runs each new file), or partition by "
                "hour, day, week or month",
            )
        )
    return problems + _incremental_problems(
        pipeline, "each run replaces the rows of one arrived file, and any file can run again"
    )


def _listed(words: list[str], last: str) -> str:
    """`column, start or timezone`."""
    return f" {last} ".join(filter(None, [", ".join(words[:-1]), words[-1]]))


def _incremental_problems(pipeline: Pipeline, partitions_do: str) -> list[Problem]:
    incremental = [table.name for table in pipeline.source_tables() if table.incremental]
    if not incremental:
        return []
    return [
        Problem(
            "partitions",
            "partitions and sync_mode: incremental both choose which rows a run reads "
            f"(incremental: {', '.join(incremental)})",
            f"choose one: keep partitions ({partitions_do}) and use sync_mode: full, or remove "
            "partitions (each run reads the rows since the last cursor)",
        )
    ]


def _destination_problems(
    pipeline: Pipeline, connections: Mapping[str, ConnectionSpec]
) -> list[Problem]:
    destination = pipeline.destination
    named = connections.get(destination.connection) if destination.connection else None
    connector = named.connector if named is not None else destination.connector
    if connector is None or connector in WINDOW_DESTINATIONS:
        return []
    return [
        Problem(
            "partitions",
            f"destination connector {connector!r} cannot replace one partition's rows "
            "in a transaction yet",
            f"load partitions into {' or '.join(WINDOW_DESTINATIONS)}, or remove partitions",
        )
    ]


def _trigger_problems(pipeline: Pipeline, spec: PartitionsSpec) -> list[Problem]:
    trigger = pipeline.trigger
    problems = []
    if trigger is not None and trigger.on_new_file and not spec.by_file:
        problems.append(
            Problem(
                "partitions",
                "trigger on_new_file runs once per arrived file, not per time partition",
                "use partitions: {by: file} (one partition per arrived file), or remove "
                "partitions or the on_new_file trigger",
            )
        )
    if trigger is not None and trigger.after:
        problems.append(
            Problem(
                "partitions",
                "trigger after runs the whole pipeline once the pipelines it names have loaded, "
                "and a partitioned pipeline runs one partition at a time",
                "remove partitions or trigger.after"
                + ("" if spec.by_file else ", or give this pipeline a schedule"),
            )
        )
    return problems


def _column_problems(spec: PartitionsSpec, what: str, schema: pa.Schema) -> list[Problem]:
    """The partition column must be a date or timestamp column of each known source table."""
    if spec.column not in schema.names:
        return [
            Problem(
                "partitions.column",
                f"{what} has no column {spec.column!r}",
                f"use one of: {', '.join(schema.names)}",
            )
        ]
    column_type = schema.field(spec.column).type
    if pa.types.is_timestamp(column_type) or (pa.types.is_date(column_type) and spec.by != "hour"):
        return []
    wanted = "a timestamp" if spec.by == "hour" else "a date or timestamp"
    return [
        Problem(
            "partitions.column",
            f"column {spec.column!r} of {what} is {column_type}",
            f"partitions by {spec.by} need {wanted} column",
        )
    ]


def partition_notes(pipeline: Pipeline) -> list[str]:
    """What a reader should know of nodes that work on many rows in a partitioned pipeline."""
    spec, transform = pipeline.partitions, pipeline.transform
    if spec is None or transform is None:
        return []
    partition = "one arrived file" if spec.by_file else f"one {spec.by} of {spec.column}"
    return [
        f"pipeline {pipeline.name!r}, node {node.id!r} ({node.type}): works within one partition "
        f"({partition}), not across partitions; to {node.type} "
        f"across all of them, read the loaded table in an unpartitioned pipeline with "
        f"trigger: {{after: [{pipeline.name}]}}"
        for node in transform.nodes
        if node.type in ACROSS_ROWS
    ]
