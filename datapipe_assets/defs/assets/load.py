"""Load assets: one per destination table, loaded all-or-nothing with its cursors."""

import time
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import pyarrow as pa

from connectors.base import (
    CursorState,
    ExtractStart,
    LoadMode,
    LoadRequest,
    LoadResult,
    StateUpdate,
)
from connectors.shared.rejects import RejectLimitExceeded, RejectLog
from datapipe_assets.defs import cursors
from datapipe_assets.defs.errors import step_failures
from datapipe_assets.defs.partitions import partitions_definition, replaced_file, run_window
from datapipe_assets.defs.rejects import (
    Tally,
    decode_tallies,
    limit_failure,
    published,
    reject_log,
    rejects_metadata,
    total,
)
from datapipe_assets.defs.retries import transient_retries
from datapipe_assets.defs.run_rows import check_run_rows, raw_keys, shares_run_limit
from datapipe_assets.defs.stage_metadata import seconds_since
from datapipe_assets.defs.usage_recording import Usage, record_usage
from datapipe_assets.pipeline.keys import dagster_name, load_key
from datapipe_assets.pipeline.project import LoadedPipeline
from resources.staging import ParquetStagingIOManager, StagedTable, table_schema


def load_asset(
    loaded: LoadedPipeline, input_key: dg.AssetKey, target_table: str
) -> dg.AssetsDefinition:
    """The load of one staged asset into a destination table, as a step of its own."""
    pipeline, destination = loaded.pipeline, loaded.destination
    # Tables sharing a row limit: the load waits for every extract, to check their total.
    shared = shares_run_limit(loaded)
    waits_for = [key for key in raw_keys(loaded) if key != input_key] if shared else []

    @dg.asset(
        key=load_key(pipeline, target_table),
        ins={"data": dg.AssetIn(key=input_key)},
        deps=waits_for,
        group_name=dagster_name(pipeline),
        kinds={destination.connector},
        description=load_description(loaded, target_table),
        metadata={"connection": destination.name, "target_table": target_table},
        code_version=loaded.version,
        required_resource_keys={"staging"},
        partitions_def=partitions_definition(pipeline),
    )
    def _load(context: dg.AssetExecutionContext, data: StagedTable) -> dg.MaterializeResult:
        staging = Staging(context.resources.staging, context.run_id)
        if shared:
            check_run_rows(context, loaded)
        with transient_retries(context, pipeline.retries):
            metadata, line = load_staged(loaded, target_table, context.run.tags, data, staging)
        context.log.info(line)
        rows = int(metadata["rows_loaded"].value)
        record_usage(context, loaded, Usage(target_table, loaded=rows))
        return dg.MaterializeResult(metadata=metadata)

    return _load


class Staging:
    """Where a step's run publishes files: the staging IO manager, under the run's id."""

    def __init__(self, io_manager: ParquetStagingIOManager, run_id: str) -> None:
        self.io_manager, self.run_id = io_manager, run_id


def load_staged(
    loaded: LoadedPipeline,
    target_table: str,
    tags: Mapping[str, str],
    data: StagedTable,
    staging: Staging,
) -> tuple[dict[str, Any], str]:
    """Load staged data, with the cursor states it carries; the load's metadata and log line."""
    # Only incremental tables' extracts carry a state: a full extract has none to commit.
    states = cursors.decode_states(data)
    earlier = total(decode_tallies(data))
    rejects = reject_log(loaded, lambda: earlier)
    request = load_request(loaded, target_table, tags, states, cursors.decode_starts(data), rejects)
    started = time.perf_counter()
    with step_failures(load_where(loaded, target_table), loaded.connections()):
        result, rejected = load_rejecting(loaded, request, data.reader(), staging, lambda: earlier)
    metadata = load_metadata(request, result, data.schema, data.url, states, started)
    return {**metadata, **rejected}, loaded_line(target_table, request, result)


def load_rejecting(
    loaded: LoadedPipeline,
    request: LoadRequest,
    data: pa.RecordBatchReader,
    staging: Staging,
    earlier: Callable[[], Tally],
) -> tuple[LoadResult, dict[str, object]]:
    """Load, publishing the rows the load rejected; its result and `rejected_rows` metadata.

    Over the pipeline's limit (rejects `earlier` on the way counting too) the destination
    has rolled back, and the failure names the rejects file.
    """
    key = dg.AssetKey(load_key(loaded.pipeline, request.table))
    try:
        result = loaded.destination.open_destination().load(data, request)
    except RejectLimitExceeded:
        rejects: RejectLog | None = request.rejects
        assert rejects is not None, "only a load with a reject log has a limit"
        url = published(staging.io_manager, staging.run_id, key, rejects)
        where = load_where(loaded, request.table)
        raise limit_failure(loaded, where, earlier() + Tally(0, len(rejects)), url) from None
    if request.rejects is None:
        return result, rejects_metadata(None, None)
    url = published(staging.io_manager, staging.run_id, key, request.rejects)
    return result, rejects_metadata(request.rejects, url, earlier().read)


def loaded_line(target_table: str, request: LoadRequest, result: LoadResult) -> str:
    """A load's line in the run's log."""
    return f"loaded {result.rows_loaded} rows into {target_table} ({request.mode})"


def load_description(loaded: LoadedPipeline, target_table: str) -> str:
    spec = loaded.pipeline.destination
    return (
        f"Table `{target_table}` in connection `{loaded.destination.name}`, loaded by "
        f"{spec.load_mode}" + (f" on {', '.join(spec.upsert_key)}" if spec.upsert_key else "") + "."
    )


def load_where(loaded: LoadedPipeline, target_table: str) -> str:
    """How a load's failure names it."""
    return (
        f"pipeline {loaded.pipeline.name!r}, load into {target_table!r} "
        f"(connection {loaded.destination.name!r})"
    )


def load_request(
    loaded: LoadedPipeline,
    target_table: str,
    tags: Mapping[str, str],
    states: Mapping[str, CursorState],
    starts: Mapping[str, ExtractStart],
    rejects: RejectLog | None = None,
) -> LoadRequest:
    spec, name = loaded.pipeline.destination, dagster_name(loaded.pipeline)
    full_refresh = tags.get(cursors.FULL_REFRESH_TAG) == "true"
    # A full refresh replaces the table, so another run's commit leaves nothing doubled.
    checked = {} if full_refresh else starts
    # A forced full refresh re-extracts everything, so the table is rebuilt from it.
    mode = LoadMode.REPLACE if full_refresh else LoadMode(spec.load_mode)
    return LoadRequest(
        table=target_table,
        mode=mode,
        upsert_key=spec.upsert_key,
        create_table_if_missing=spec.create_table_if_missing,
        state_updates=[StateUpdate(name, t, s, checked.get(t)) for t, s in states.items()],
        rejects=rejects,
        replace_window=run_window(loaded.pipeline, tags),
        replace_file=replaced_file(loaded.pipeline, tags),
    )


def load_metadata(
    request: LoadRequest,
    result: LoadResult,
    schema: pa.Schema,
    loaded_from: str,
    states: Mapping[str, CursorState],
    started: float,
) -> dict[str, Any]:
    """What every load records, whichever step ran it."""
    return {
        "dagster/row_count": dg.MetadataValue.int(result.table_rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(table_schema(schema)),
        "rows_loaded": dg.MetadataValue.int(result.rows_loaded),
        "duration_seconds": seconds_since(started),
        "load_mode": str(request.mode),
        "loaded_from": dg.MetadataValue.path(loaded_from),
        "table_created": result.table_created,
        "columns_added": ", ".join(result.columns_added) or "none",
        **{f"cursor/{t}": str(s.cursor) for t, s in states.items()},
    }
