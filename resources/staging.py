"""The parquet staging IO manager: every asset's data, per run, in a folder or on S3.

Layout: `{DATAPIPE_STAGING_URL}/{run_id}/{asset key parts}.parquet`. Keeping each run's
files is the audit trail, and it is what lets a downstream asset read exactly the upstream
version its own run produced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow import fs

from connectors.base import BATCH_ROWS
from connectors.object_store import filesystem_for, url_for

PREVIEW_ROWS = 10
STAGED_PATH = "staged_path"


@dataclass
class BatchStream:
    """What an asset hands to the IO manager: batches to stage, consumed exactly once.

    Some facts (an extract's new cursor, say) are known only once every batch has passed,
    so file metadata and Dagster metadata are asked for after the last batch.
    """

    schema: pa.Schema
    batches: Iterable[pa.RecordBatch]
    file_metadata: Callable[[], dict[str, str]] = dict
    metadata: Callable[[], dict[str, Any]] = dict

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return iter(self.batches)


@dataclass(frozen=True)
class StagedTable:
    """What a downstream asset receives: a staged parquet file, read lazily in batches."""

    filesystem: fs.FileSystem
    path: str
    url: str
    _file_metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, url: str) -> StagedTable:
        filesystem, path = filesystem_for(url)
        with filesystem.open_input_file(path) as handle:
            raw = pq.ParquetFile(handle).metadata.metadata or {}
        decoded = {k.decode(): v.decode() for k, v in raw.items() if k != b"ARROW:schema"}
        return cls(filesystem, path, url, decoded)

    def dataset(self) -> ds.Dataset:
        return ds.dataset(self.path, filesystem=self.filesystem, format="parquet")

    @property
    def schema(self) -> pa.Schema:
        return self.dataset().schema

    def reader(self) -> pa.RecordBatchReader:
        return self.dataset().scanner(batch_size=BATCH_ROWS).to_reader()

    def file_metadata(self, key: str) -> Any:
        value = self._file_metadata.get(key)
        return json.loads(value) if value is not None else None


class ParquetStagingIOManager(dg.ConfigurableIOManager):
    """Stages asset data as zstd parquet, written atomically, under the run's id."""

    base_url: str

    def _location(self, run_id: str, asset_key: dg.AssetKey) -> tuple[fs.FileSystem, str]:
        filesystem, base = filesystem_for(self.base_url)
        return filesystem, "/".join([base, run_id, *asset_key.path]) + ".parquet"

    def handle_output(self, context: dg.OutputContext, obj: BatchStream) -> None:
        with self._storage_errors():
            self._write(context, obj)

    def _write(self, context: dg.OutputContext, obj: BatchStream) -> None:
        filesystem, path = self._location(context.run_id, context.asset_key)
        parent = path.rsplit("/", 1)[0]
        # Written under a temporary name and moved into place once complete, so no reader
        # ever sees a half-written file (an S3 object appears only when its upload ends).
        incomplete = f"{parent}/_incomplete-{uuid.uuid4().hex}.parquet"
        filesystem.create_dir(parent, recursive=True)
        rows, preview = 0, []
        try:
            with (
                filesystem.open_output_stream(incomplete) as sink,
                pq.ParquetWriter(sink, obj.schema, compression="zstd") as writer,
            ):
                for batch in obj:
                    writer.write_batch(batch)
                    if rows < PREVIEW_ROWS:
                        preview.append(batch.slice(0, PREVIEW_ROWS - rows))
                    rows += batch.num_rows
                writer.add_key_value_metadata(obj.file_metadata())
            filesystem.move(incomplete, path)
        finally:
            if filesystem.get_file_info(incomplete).type != fs.FileType.NotFound:
                filesystem.delete_file(incomplete)
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(rows),
                "dagster/column_schema": dg.MetadataValue.table_schema(table_schema(obj.schema)),
                "staged_bytes": dg.MetadataValue.int(filesystem.get_file_info(path).size),
                STAGED_PATH: dg.MetadataValue.path(url_for(filesystem, path)),
                "preview": dg.MetadataValue.md(markdown_preview(obj.schema, preview)),
                **obj.metadata(),
            }
        )

    def load_input(self, context: dg.InputContext) -> StagedTable:
        with self._storage_errors():
            return self._read(context)

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Storage failures (unreachable S3, no permission) as one clear line."""
        try:
            yield
        except OSError as error:
            reason = " ".join(str(error).split())
            raise dg.Failure(
                f"staging at {self.base_url} failed: {reason}; check DATAPIPE_STAGING_URL, "
                "AWS_ENDPOINT_URL and the credentials",
                allow_retries=True,
            ) from None

    def _read(self, context: dg.InputContext) -> StagedTable:
        asset_key = context.asset_key
        filesystem, path = self._location(context.step_context.run_id, asset_key)
        if filesystem.get_file_info(path).type == fs.FileType.File:
            return StagedTable.open(url_for(filesystem, path))
        # The upstream asset was not materialized in this run: read its latest version.
        event = context.instance.get_latest_materialization_event(asset_key)
        staged = event.asset_materialization.metadata.get(STAGED_PATH) if event else None
        if staged is None:
            raise dg.Failure(
                f"asset {asset_key.to_user_string()} has no staged data yet; materialize it "
                "first (or run the whole pipeline)",
                allow_retries=False,
            )
        return StagedTable.open(str(staged.value))


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=f.name, type=str(f.type), constraints=_nullable(f)) for f in schema
        ]
    )


def _nullable(arrow_field: pa.Field) -> dg.TableColumnConstraints:
    return dg.TableColumnConstraints(nullable=arrow_field.nullable)


def markdown_preview(schema: pa.Schema, batches: list[pa.RecordBatch]) -> str:
    """The first rows as a markdown table."""
    rows = pa.Table.from_batches(batches, schema=schema).to_pylist() if batches else []
    header = "| " + " | ".join(_cell(name) for name in schema.names) + " |"
    rule = "|" + "---|" * len(schema.names)
    lines = [header, rule]
    lines += ["| " + " | ".join(_cell(row[n]) for n in schema.names) + " |" for row in rows]
    return "\n".join(lines) if schema.names else "(no columns)"


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")
