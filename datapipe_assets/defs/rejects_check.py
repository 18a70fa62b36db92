"""The built-in `rejected_rows` check of a pipeline that rejects bad rows.

A pipeline with `on_bad_rows: {action: reject}` loads its good rows and keeps the others
(see datapipe_assets/defs/rejects.py). The load succeeds, so a check on each raw and load
asset is what makes the rejects seen: it fails (severity WARN: the pipeline chose to go on)
when the asset's materialization rejected rows, shows the first ones, and so reaches the
`check_failed` alerts like any other failed check.

No `from __future__ import annotations`: Dagster reads the check function's annotations.
"""

import dagster as dg
import pyarrow.parquet as pq

from connectors.shared.object_store import filesystem_for
from connectors.shared.secrets import mask
from datapipe_assets.defs.rejects import REJECTED_ROWS, REJECTS_PATH, ROWS_READ
from datapipe_assets.pipeline.connections import secrets_of
from datapipe_assets.pipeline.keys import load_key, raw_key
from datapipe_assets.pipeline.project import LoadedPipeline
from resources.staging import markdown_preview

CHECK_NAME = "rejected_rows"
SHOWN_REJECTS = 5


def rejects_checks(loaded: LoadedPipeline) -> list[dg.AssetChecksDefinition]:
    """A rejected_rows check on every raw and load asset, if the pipeline rejects rows."""
    pipeline = loaded.pipeline
    if not pipeline.on_bad_rows.rejects:
        return []
    keys = [raw_key(pipeline, table) for table in pipeline.table_names()]
    keys += [load_key(pipeline, target) for target in pipeline.target_tables().values()]
    return [_check(loaded, dg.AssetKey(key)) for key in keys]


def _check(loaded: LoadedPipeline, key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key,
        name=CHECK_NAME,
        description="Fails when rows were rejected (on_bad_rows: reject); shows the first ones.",
        metadata={"check_type": CHECK_NAME},
    )
    def _rejected_rows(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        recorded = event.asset_materialization.metadata
        rejected = int(recorded[REJECTED_ROWS].value)
        # The figures and table every row check records, so they show alike everywhere.
        metadata: dict[str, object] = {
            "rows_checked": dg.MetadataValue.int(int(recorded[ROWS_READ].value)),
            "rows_failed": dg.MetadataValue.int(rejected),
        }
        if not rejected:
            return dg.AssetCheckResult(passed=True, metadata=metadata)
        url = str(recorded[REJECTS_PATH].value)
        filesystem, path = filesystem_for(url)
        with filesystem.open_input_file(path) as handle:
            first = pq.ParquetFile(handle).read_row_group(0).slice(0, SHOWN_REJECTS)
        # Rejected rows are user data: a secret that reached a column must not leave the step.
        secrets = secrets_of(loaded.connections())
        shown = markdown_preview(first.schema, first.combine_chunks().to_batches()[0])
        metadata["failing_rows"] = dg.MetadataValue.md(mask(shown, secrets))
        metadata[REJECTS_PATH] = dg.MetadataValue.path(url)
        [reject] = first.slice(0, 1).to_pylist()
        origin = f"{reject['file']} line {reject['line']}: " if reject["file"] else ""
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=mask(
                f"{_rows(rejected)} rejected; first {origin}{reject['reason']}", secrets
            ),
        )

    return _rejected_rows


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"
