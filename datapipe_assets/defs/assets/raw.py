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
from datapipe_assets.pipeline.spec import SourceTable
from resources.staging import StagedFile, scratch_file


def raw_asset(
    loaded: LoadedPipeline, table: SourceTable, after: list[dg.AssetKey]
) -> dg.AssetsDefinition:
    pipeline, source = loaded.pipeline, loaded.table_connection(table.name)
    where = f"pipeline {pipeline.name!r}, table {table.name!r} (connection {source.name!r})"
    named = f"`{table.source_name}`" + (
        f" (as `{table.name}`)" if table.name != table.source_name else ""
    )

    @dg.asset(
        key=raw_key(pipeline, table.name),
        deps=after,
        group_name=pipeline.name,
        kinds={source.connector},
        io_manager_key="staging",
        description=(
            f"Table {named} extracted from connection `{source.name}` "
            f"({table.sync_mode} sync"
            + (f" on `{table.incremental_key}`" if table.incremental else "")
            + ")."
        ),
        metadata={"connection": source.name, "source_table": table.source_name},
        retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    )
    def _extract(context: dg.AssetExecutionContext) -> dg.Output[StagedFile]:
        started = time.perf_counter()
        with step_failures(where, loaded.connections()), scratch_file() as path:
            start = _committed_state(loaded, table.name, context) if table.incremental else None
            context.log.info(f"extracting {table.name} from cursor {cursors.describe(start)}")
            run_source = source_for_run(loaded, table.name, context.run.tags)
            extraction = run_source.open_source().extract(
                table.source_name,
                table.incremental_key if table.incremental else None,
                start,
                table.primary_key,
            )
            # The cursor state travels under the table's name in the pipeline, unique in it.
            write_parquet(
                path,
                extraction.schema,
                extraction,
                lambda: cursors.encode_states({table.name: extraction.state}),
            )
        metadata: dict[str, object] = {"duration_seconds": seconds_since(started)}
        if table.incremental:
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
