"""Raw assets: one per source table, extracted as Arrow batches into staging."""

import time

import dagster as dg

from connectors.base import CursorState
from connectors.shared.parquet import write_parquet
from datapipe_assets.defs import cursors
from datapipe_assets.defs.errors import step_failures
from datapipe_assets.defs.stage_metadata import seconds_since
from datapipe_assets.pipeline.keys import raw_key
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.run_source import source_for_run
from resources.staging import StagedFile, scratch_file


def raw_asset(loaded: LoadedPipeline, table: str, after: list[dg.AssetKey]) -> dg.AssetsDefinition:
    pipeline, source = loaded.pipeline, loaded.source
    incremental = pipeline.source.sync_mode == "incremental"
    where = f"pipeline {pipeline.name!r}, table {table!r} (connection {source.name!r})"

    @dg.asset(
        key=raw_key(pipeline, table),
        deps=after,
        group_name=pipeline.name,
        kinds={source.connector},
        io_manager_key="staging",
        description=(
            f"Table `{table}` extracted from connection `{source.name}` "
            f"({pipeline.source.sync_mode} sync"
            + (f" on `{pipeline.source.incremental_key}`" if incremental else "")
            + ")."
        ),
        metadata={"connection": source.name, "source_table": table},
        retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    )
    def _extract(context: dg.AssetExecutionContext) -> dg.Output[StagedFile]:
        started = time.perf_counter()
        with step_failures(where, [loaded.source, loaded.destination]), scratch_file() as path:
            start = _committed_state(loaded, table, context) if incremental else None
            context.log.info(f"extracting {table} from cursor {cursors.describe(start)}")
            run_source = source_for_run(loaded, table, context.run.tags)
            extraction = run_source.open_source().extract(
                table,
                pipeline.source.incremental_key if incremental else None,
                start,
                pipeline.source.primary_key,
            )
            write_parquet(
                path,
                extraction.schema,
                extraction,
                lambda: cursors.encode_states({table: extraction.state}),
            )
        metadata: dict[str, object] = {"duration_seconds": seconds_since(started)}
        if incremental:
            metadata["cursor/start"] = cursors.describe(start)
            metadata["cursor/extracted_to"] = cursors.describe(extraction.state)
        return dg.Output(StagedFile(path, metadata))

    return _extract


def _committed_state(
    loaded: LoadedPipeline, table: str, context: dg.AssetExecutionContext
) -> CursorState | None:
    """The cursor the destination last committed, unless a full refresh was asked for."""
    if context.run.tags.get(cursors.FULL_REFRESH_TAG) == "true":
        return None
    return loaded.destination.open_destination().read_state(loaded.pipeline.name, table)
