"""Raw assets: one per source table, extracted as Arrow batches into staging."""

from collections.abc import Iterator

import dagster as dg

from connectors.base import CursorState
from datapipe_assets import cursors
from datapipe_assets.errors import guarded_batches, step_failures
from datapipe_assets.keys import raw_key
from datapipe_assets.project import LoadedPipeline
from resources.staging import BatchStream


def raw_asset(loaded: LoadedPipeline, table: str) -> dg.AssetsDefinition:
    pipeline, source = loaded.pipeline, loaded.source
    incremental = pipeline.source.sync_mode == "incremental"
    where = f"pipeline {pipeline.name!r}, table {table!r} (connection {source.name!r})"
    connections = [loaded.source, loaded.destination]

    @dg.asset(
        key=raw_key(pipeline, table),
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
    def _extract(context: dg.AssetExecutionContext) -> Iterator[dg.Output[BatchStream]]:
        with step_failures(where, connections):
            start = _committed_state(loaded, table, context) if incremental else None
            extraction = source.open_source().extract(
                table,
                pipeline.source.incremental_key if incremental else None,
                start,
                pipeline.source.primary_key,
            )
        context.log.info(f"extracting {table} from cursor {cursors.describe(start)}")

        def cursor_metadata() -> dict[str, object]:
            if not incremental:
                return {}
            return {
                "cursor/start": cursors.describe(start),
                "cursor/extracted_to": cursors.describe(extraction.state),
            }

        yield dg.Output(
            BatchStream(
                schema=extraction.schema,
                batches=guarded_batches(extraction, where, connections),
                file_metadata=lambda: cursors.encode_states({table: extraction.state}),
                metadata=cursor_metadata,
            )
        )

    return _extract


def _committed_state(
    loaded: LoadedPipeline, table: str, context: dg.AssetExecutionContext
) -> CursorState | None:
    """The cursor the destination last committed, unless a full refresh was asked for."""
    if context.run.tags.get(cursors.FULL_REFRESH_TAG) == "true":
        return None
    return loaded.destination.open_destination().read_state(loaded.pipeline.name, table)
