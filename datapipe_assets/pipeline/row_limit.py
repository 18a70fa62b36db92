"""The row limit per run a pipeline's org has (orgs.yaml), and what `on_limit` may ask for.

A run counts the rows of all its tables together. Each table's extract stops reading at the
limit (no table alone can pass it); a pipeline with several tables also has each load check
the run's total from the row counts its extracts staged before it commits anything (see
datapipe_assets/defs/run_rows.py). Both are exact without the steps of a run, which may run
in other processes or on other machines, having to share a counter while they read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from connectors.registry import SOURCES, source_class
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.orgs import OrgLimits
from datapipe_assets.pipeline.problems import Problem
from datapipe_assets.pipeline.spec import Pipeline

LIMIT_HINT = "raise max_rows_per_run in orgs.yaml, change the plan, or set on_limit: load_partial"


@dataclass(frozen=True)
class RunRowLimit:
    """The rows one run of a pipeline may extract, whose limit it is, and what a run that
    reaches it does."""

    pipeline: str
    org: str
    rows: int
    # Whose limit it is, for messages: "plan 'free' of org 'acme'" or "org 'acme'".
    owner: str
    load_partial: bool

    def reached(self, what: str) -> str:
        """The one-line failure of a run that `what` (e.g. "table 'orders'") took over it."""
        return (
            f"pipeline {self.pipeline!r} (org {self.org!r}): {what} reached the "
            f"{self.rows:,}-row limit per run of {self.owner}; nothing was loaded; {LIMIT_HINT}"
        )


def run_row_limit(pipeline: Pipeline, limits: OrgLimits) -> RunRowLimit | None:
    """The pipeline's limit per run; None when its org has none."""
    if limits.max_rows_per_run is None:
        return None
    return RunRowLimit(
        pipeline.name,
        limits.org,
        limits.max_rows_per_run,
        limits.run_limit_source(),
        pipeline.on_limit == "load_partial",
    )


def on_limit_problems(
    pipeline: Pipeline, connections: Mapping[str, ConnectionSpec]
) -> list[Problem]:
    """Where `on_limit: load_partial` could not load exactly the rows up to the limit.

    A cut extract continues from its cursor only if its rows came in incremental-key order,
    which SQL sources give (they read ORDER BY the key) and API and file sources do not:
    sorting them would mean reading every row the limit is there to leave unread. Rows sharing
    the cut's key value are told apart by their primary key, so the next run skips exactly the
    ones loaded. And with several tables, which table's rows to leave out to fit the run's
    total would be arbitrary.
    """
    if pipeline.on_limit != "load_partial":
        return []
    tables = pipeline.source_tables()
    if len(tables) > 1:
        return [
            Problem(
                "on_limit",
                f"load_partial needs a pipeline with one source table; this one has "
                f"{len(tables)}, which share the run's row limit",
                "use on_limit: fail, or give each table a pipeline of its own",
            )
        ]
    problems = []
    for table in tables:
        if not table.incremental:
            continue
        if not table.primary_key:
            problems.append(
                Problem(
                    "on_limit",
                    f"load_partial of incremental table {table.name!r} needs a primary_key: "
                    f"without one, the rows sharing the cut's {table.incremental_key!r} value "
                    "are read again by the next run",
                    "give the table a primary_key, or use on_limit: fail",
                )
            )
        block = pipeline.source_blocks()[table.block][1]
        named = connections.get(block.connection) if block.connection else None
        connector = named.connector if named is not None else block.connector
        if connector not in SOURCES:
            continue
        if not source_class(connector, pipeline.connection_name(table.block)).reads_in_key_order:
            problems.append(
                Problem(
                    "on_limit",
                    f"load_partial cannot cut incremental table {table.name!r} exactly: "
                    f"connector {connector!r} reads rows in no order of "
                    f"{table.incremental_key!r}, so its cursor could skip rows",
                    "use on_limit: fail, or sync_mode: full for that table",
                )
            )
    return problems
