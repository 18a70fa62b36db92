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
    problems = _setting_problems(pipeline, spec, connections)
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


def _setting_problems(
    pipeline: Pipeline, spec: PartitionsSpec, connections: Mapping[str, ConnectionSpec]
) -> list[Problem]:
    problems = timezone_problems("partitions.timezone", spec.timezone)
    incremental = [table.name for table in pipeline.source_tables() if table.incremental]
    if incremental:
        problems.append(
            Problem(
                "partitions",
                "partitions and sync_mode: incremental both choose which rows a run reads "
                f"(incremental: {', '.join(incremental)})",
                f"choose one: keep partitions (each run replaces one {spec.by} of "
                f"{spec.column}, and a backfill reloads any) and use sync_mode: full, or remove "
                "partitions (each run reads the rows since the last cursor)",
            )
        )
    destination = pipeline.destination
    named = connections.get(destination.connection) if destination.connection else None
    connector = named.connector if named is not None else destination.connector
    if connector is not None and connector not in WINDOW_DESTINATIONS:
        problems.append(
            Problem(
                "partitions",
                f"destination connector {connector!r} cannot replace one partition's rows "
                "in a transaction yet",
                f"load partitions into {' or '.join(WINDOW_DESTINATIONS)}, or remove partitions",
            )
        )
    trigger = pipeline.trigger
    if trigger is not None and trigger.on_new_file:
        problems.append(
            Problem(
                "partitions",
                "trigger on_new_file runs once per arrived file, not per time partition",
                "remove partitions or the on_new_file trigger",
            )
        )
    if trigger is not None and trigger.after:
        problems.append(
            Problem(
                "partitions",
                "trigger after runs the whole pipeline once the pipelines it names have loaded, "
                "and a partitioned pipeline runs one partition at a time",
                "remove partitions or trigger.after, or give this pipeline a schedule",
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
    return [
        f"pipeline {pipeline.name!r}, node {node.id!r} ({node.type}): works within one partition "
        f"(one {spec.by} of {spec.column}), not across partitions; to {node.type} "
        f"across all of them, read the loaded table in an unpartitioned pipeline with "
        f"trigger: {{after: [{pipeline.name}]}}"
        for node in transform.nodes
        if node.type in ACROSS_ROWS
    ]
