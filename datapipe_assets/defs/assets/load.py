"""Load assets: one per destination table, loaded all-or-nothing with its cursors."""

import time

import dagster as dg

from connectors.base import LoadMode, LoadRequest, StateUpdate
from datapipe_assets.defs import cursors
from datapipe_assets.defs.errors import CONNECTION_RETRY_POLICY, step_failures
from datapipe_assets.defs.stage_metadata import seconds_since
from datapipe_assets.pipeline.keys import load_key
from datapipe_assets.pipeline.project import LoadedPipeline
from resources.staging import StagedTable, table_schema


def load_asset(
    loaded: LoadedPipeline, input_key: dg.AssetKey, target_table: str
) -> dg.AssetsDefinition:
    pipeline, destination = loaded.pipeline, loaded.destination
    spec = pipeline.destination
    where = (
        f"pipeline {pipeline.name!r}, load into {target_table!r} (connection {destination.name!r})"
    )

    @dg.asset(
        key=load_key(pipeline, target_table),
        ins={"data": dg.AssetIn(key=input_key)},
        group_name=pipeline.name,
        kinds={destination.connector},
        description=(
            f"Table `{target_table}` in connection `{destination.name}`, loaded by "
            f"{spec.load_mode}"
            + (f" on {', '.join(spec.upsert_key)}" if spec.upsert_key else "")
            + "."
        ),
        metadata={"connection": destination.name, "target_table": target_table},
        retry_policy=CONNECTION_RETRY_POLICY,
    )
    def _load(context: dg.AssetExecutionContext, data: StagedTable) -> dg.MaterializeResult:
        full_refresh = context.run.tags.get(cursors.FULL_REFRESH_TAG) == "true"
        # A forced full refresh re-extracts everything, so the table is rebuilt from it.
        mode = LoadMode.REPLACE if full_refresh else LoadMode(spec.load_mode)
        # Only incremental tables' extracts carry a state: a full extract has none to commit.
        states = cursors.decode_states(data)
        request = LoadRequest(
            table=target_table,
            mode=mode,
            upsert_key=spec.upsert_key,
            create_table_if_missing=spec.create_table_if_missing,
            state_updates=[StateUpdate(pipeline.name, t, s) for t, s in states.items()],
        )
        started = time.perf_counter()
        with step_failures(where, loaded.connections()):
            result = destination.open_destination().load(data.reader(), request)
        context.log.info(f"loaded {result.rows_loaded} rows into {target_table} ({mode})")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(result.table_rows),
                "dagster/column_schema": dg.MetadataValue.table_schema(table_schema(data.schema)),
                "rows_loaded": dg.MetadataValue.int(result.rows_loaded),
                "duration_seconds": seconds_since(started),
                "load_mode": str(mode),
                "loaded_from": dg.MetadataValue.path(data.url),
                "table_created": result.table_created,
                "columns_added": ", ".join(result.columns_added) or "none",
                **{f"cursor/{t}": str(s.cursor) for t, s in states.items()},
            }
        )

    return _load
