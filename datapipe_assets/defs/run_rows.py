"""The run's total rows against its row limit, for a limited pipeline with several tables.

Each table's extract stops at the limit on its own (assets/raw.py), but tables extracted in
separate steps (other processes, other Celery workers) cannot share a counter while they
read. So in such a pipeline no load is fused into an extract, every load waits for all the
pipeline's extracts, and before it commits it adds up the rows the run's extracts staged: a
run whose tables together passed the limit fails there, with nothing loaded.
"""

from __future__ import annotations

import dagster as dg

from datapipe_assets.pipeline.keys import raw_key
from datapipe_assets.pipeline.project import LoadedPipeline


def shares_run_limit(loaded: LoadedPipeline) -> bool:
    """Whether the pipeline's tables share a row limit that loads must check."""
    return loaded.row_limit is not None and len(loaded.pipeline.source_tables()) > 1


def raw_keys(loaded: LoadedPipeline) -> list[dg.AssetKey]:
    """Every raw table of the pipeline, in the file's order."""
    pipeline = loaded.pipeline
    return [dg.AssetKey(raw_key(pipeline, t.name)) for t in pipeline.source_tables()]


def check_run_rows(context: dg.AssetExecutionContext, loaded: LoadedPipeline) -> None:
    """Fail the load if the tables this run extracted passed the limit together.

    A table counts when its latest extract belongs to this run, or to the run this one
    re-executes (whose staged files it loads).
    """
    limit = loaded.row_limit
    if limit is None:
        return
    run = context.run
    runs = {run.run_id, run.parent_run_id, run.root_run_id} - {None}
    counted: dict[str, int] = {}
    for table, key in zip(loaded.pipeline.source_tables(), raw_keys(loaded), strict=True):
        event = context.instance.get_latest_materialization_event(key)
        if event is None or event.run_id not in runs or event.asset_materialization is None:
            continue
        rows = event.asset_materialization.metadata["dagster/row_count"].value
        counted[table.name] = int(rows)  # type: ignore[arg-type]
    total = sum(counted.values())
    if total > limit.rows:
        names = ", ".join(f"{name!r} ({rows:,} rows)" for name, rows in counted.items())
        raise dg.Failure(limit.reached(f"tables {names} together"), allow_retries=False)
