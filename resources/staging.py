"""The parquet staging IO manager: every asset's data, per run, in a folder or on S3.

Layout: `{DATAPIPE_STAGING_URL}/{run_id}/{asset key parts}.parquet`, and for a partition of a
partitioned asset `{run_id}/{asset key parts}/{partition}.parquet`: one file per partition
(percent-encoded, so a file partition's key, a path, is one name: `incoming%2Fa.csv`).
Keeping each run's files is the audit trail, and it is what lets a downstream asset read
exactly the upstream version (of its partition) its own run produced.

An asset writes its parquet file into a local scratch folder (`scratch_file`) and returns
it as a `StagedFile`; the IO manager publishes it to staging, atomically, and records its
metadata. Downstream assets receive a `StagedTable`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from connectors.base import BATCH_ROWS
from connectors.shared.object_store import filesystem_for, url_for
from connectors.shared.transient import is_transient

PREVIEW_ROWS = 10
STAGED_PATH = "staged_path"
PARQUET_FILE = "data.parquet"
# The folder of a run's rejected rows (see connectors/shared/rejects.py), beside its data.
REJECTS_FOLDER = "rejects"


@dataclass(frozen=True)
class StagedFile:
    """What an asset returns: a complete local parquet file for the IO manager to publish."""

    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedFile:
    """What an asset returns when its step published the file itself (see `publish`)."""

    metadata: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.metadata[STAGED_PATH].value)


# A step's scratch folder older than this belonged to a step that was killed.
STALE_SCRATCH_SECONDS = 24 * 60 * 60
SCRATCH_PREFIXES = ("datapipe-step-", "datapipe-input-")


@contextmanager
def scratch_file() -> Iterator[Path]:
    """A path for an asset's output file, in a private folder removed if the step fails.

    On success the folder is left for the IO manager, which removes it once published.
    """
    remove_stale_scratch()
    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIXES[0]))
    try:
        yield folder / PARQUET_FILE
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def remove_stale_scratch() -> list[Path]:
    """Remove the scratch folders of steps killed over a day ago (a kill -9 runs no cleanup)
    and return them."""
    stale = stale_scratch()
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def stale_scratch() -> list[Path]:
    """The scratch folders of steps killed over a day ago. Age is that of the newest of the
    folder and its files, which a live step keeps writing."""
    cutoff = time.time() - STALE_SCRATCH_SECONDS
    stale = []
    for prefix in SCRATCH_PREFIXES:
        for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
            try:
                newest = max(
                    [folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.iterdir())]
                )
            except OSError:
                continue  # removed meanwhile, or not ours to read
            if newest < cutoff:
                stale.append(folder)
    return stale


@dataclass(frozen=True)
class StagedTable:
    """What a downstream asset receives: a staged parquet file, read lazily."""

    filesystem: fs.FileSystem
    path: str
    url: str
    _file_metadata: dict[str, str]
    schema: pa.Schema

    @classmethod
    def open(cls, url: str) -> StagedTable:
        return cls.at(*filesystem_for(url), url)

    @classmethod
    def at(cls, filesystem: fs.FileSystem, path: str, url: str) -> StagedTable:
        """A staged file on a filesystem already open, reading only its footer."""
        with filesystem.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            raw = parquet.metadata.metadata or {}
            schema = parquet.schema_arrow
        decoded = {k.decode(): v.decode() for k, v in raw.items() if k != b"ARROW:schema"}
        return cls(filesystem, path, url, decoded, schema.remove_metadata())

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        # One row group at a time, nothing kept once read. A dataset scanner reads ahead of
        # a slower consumer (a load) without bound, and a pre-buffered file keeps every chunk
        # it has read, so either way memory grew with the file: a CSV -> PostgreSQL run of 2M
        # and 8M rows peaked at 426 and 869 MB.
        with self.filesystem.open_input_file(self.path) as handle:
            parquet = pq.ParquetFile(handle, pre_buffer=False)
            yield from parquet.iter_batches(batch_size=BATCH_ROWS)

    @contextmanager
    def local_path(self) -> Iterator[str]:
        """The file on local disk (downloaded for the duration when staging is remote)."""
        if isinstance(self.filesystem, fs.LocalFileSystem):
            yield self.path
            return
        folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIXES[1]))
        try:
            fs.copy_files(
                self.path,
                str(folder / PARQUET_FILE),
                source_filesystem=self.filesystem,
                destination_filesystem=fs.LocalFileSystem(),
            )
            yield str(folder / PARQUET_FILE)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def file_metadata(self, key: str) -> Any:
        value = self._file_metadata.get(key)
        return json.loads(value) if value is not None else None


class ParquetStagingIOManager(dg.ConfigurableIOManager):
    """Publishes asset data as zstd parquet, atomically, under the run's id."""

    base_url: str

    def _location(
        self, run_id: str, asset_key: dg.AssetKey, partition: str | None
    ) -> tuple[fs.FileSystem, str]:
        filesystem, base = filesystem_for(self.base_url)
        # A time partition's key stays as it is (`2024-01-01`, `2024-01-01-05:00`).
        named = [quote(partition, safe=":")] if partition is not None else []
        parts = [base, run_id, *asset_key.path, *named]
        return filesystem, "/".join(parts) + ".parquet"

    def handle_output(self, context: dg.OutputContext, obj: StagedFile | PublishedFile) -> None:
        if isinstance(obj, StagedFile):
            partition = context.asset_partition_key if context.has_asset_partitions else None
            obj = self.publish(context.run_id, context.asset_key, obj, partition)
        context.add_output_metadata(obj.metadata)

    def publish(
        self,
        run_id: str,
        asset_key: dg.AssetKey,
        file: StagedFile,
        partition: str | None = None,
    ) -> PublishedFile:
        """Publish a step's local file as the asset's data (or its partition's) in this run,
        then remove it.

        The IO manager does this for every output, unless the step did it first: a load in
        the extract's own step publishes the file before the load commits.
        """
        try:
            with self._storage_errors():
                filesystem, path = self._location(run_id, asset_key, partition)
                self._publish(file.path, filesystem, path)
                metadata = staged_metadata(file.path, url_for(filesystem, path))
                return PublishedFile({**metadata, **file.metadata})
        finally:
            shutil.rmtree(file.path.parent, ignore_errors=True)

    def publish_rejects(self, run_id: str, asset_key: dg.AssetKey, rejects: pa.Table) -> str:
        """Publish an asset's rejected rows in this run, as `{run_id}/rejects/{asset}.parquet`;
        return the file's URL."""
        with scratch_file() as local:
            pq.write_table(rejects, local, compression="zstd")
        try:
            with self._storage_errors():
                filesystem, base = filesystem_for(self.base_url)
                path = "/".join([base, run_id, REJECTS_FOLDER, *asset_key.path]) + ".parquet"
                self._publish(local, filesystem, path)
                return url_for(filesystem, path)
        finally:
            shutil.rmtree(local.parent, ignore_errors=True)

    def _publish(self, local: Path, filesystem: fs.FileSystem, path: str) -> None:
        """Copy under a temporary name, then move into place: no reader sees a partial file."""
        parent = path.rsplit("/", 1)[0]
        incomplete = f"{parent}/_incomplete-{uuid.uuid4().hex}.parquet"
        filesystem.create_dir(parent, recursive=True)
        try:
            fs.copy_files(
                str(local),
                incomplete,
                source_filesystem=fs.LocalFileSystem(),
                destination_filesystem=filesystem,
            )
            filesystem.move(incomplete, path)
        finally:
            if filesystem.get_file_info(incomplete).type != fs.FileType.NotFound:
                filesystem.delete_file(incomplete)

    def load_input(self, context: dg.InputContext) -> StagedTable:
        with self._storage_errors():
            return self._read(context)

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Storage failures (unreachable S3, no permission) as one clear line."""
        try:
            yield
        except OSError as error:
            raise dg.Failure(
                storage_error(self.base_url, error), allow_retries=is_transient(error)
            ) from None

    def _read(self, context: dg.InputContext) -> StagedTable:
        asset_key = context.asset_key
        # A partitioned input is read at the run's partition: a step of a partition reads the
        # same partition of its input (the assets share partitions), and so does a check, for
        # which Dagster maps the input to all of them.
        partitioned = context.has_asset_partitions and context.has_partition_key
        partition = context.partition_key if partitioned else None
        filesystem, path = self._location(context.step_context.run_id, asset_key, partition)
        if filesystem.get_file_info(path).type == fs.FileType.File:
            return StagedTable.at(filesystem, path, url_for(filesystem, path))
        # The upstream asset was not materialized in this run: read its latest version.
        return latest_staged(context.instance, asset_key, partition)


def storage_error(base_url: str, error: OSError) -> str:
    """A staging storage failure (unreachable S3, no permission) as one line."""
    reason = " ".join(str(error).split())
    return (
        f"staging at {base_url} failed: {reason}; check DATAPIPE_STAGING_URL, "
        "AWS_ENDPOINT_URL and the credentials"
    )


def latest_staged(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None = None
) -> StagedTable:
    """An asset's latest staged data (of one partition), whichever run materialized it."""
    if partition is None:
        event = instance.get_latest_materialization_event(asset_key)
        materialization = event.asset_materialization if event else None
    else:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
    staged = materialization.metadata.get(STAGED_PATH) if materialization else None
    if staged is None:
        of = f" partition {partition}" if partition is not None else ""
        raise dg.Failure(
            f"asset {asset_key.to_user_string()}{of} has no staged data yet; materialize it "
            "first (or run the whole pipeline)",
            allow_retries=False,
        )
    return StagedTable.open(str(staged.value))


def run_rejects(
    base_url: str, run_id: str, prefix: tuple[str, ...]
) -> dict[str, tuple[str, pa.Table]]:
    """The rejects files a run published for assets whose keys start with `prefix`: by the
    rest of the key (`raw/orders`), in key order, each with its URL and rows."""
    filesystem, base = filesystem_for(base_url)
    folder = "/".join([base, run_id, REJECTS_FOLDER, *prefix])
    selector = fs.FileSelector(folder, recursive=True, allow_not_found=True)
    found = {}
    for info in sorted(filesystem.get_file_info(selector), key=lambda i: i.path):
        if info.is_file and info.extension == "parquet" and not info.base_name.startswith("_"):
            with filesystem.open_input_file(info.path) as handle:
                rows = pq.read_table(handle)
            found[info.path[len(folder) + 1 : -len(".parquet")]] = (
                url_for(filesystem, info.path),
                rows,
            )
    return found


def staged_metadata(local: Path, url: str) -> dict[str, Any]:
    """Row count, schema, size, location and a preview, from the parquet file itself."""
    parquet = pq.ParquetFile(local)
    schema = parquet.schema_arrow
    first = next(parquet.iter_batches(batch_size=PREVIEW_ROWS), None)
    return {
        "dagster/row_count": dg.MetadataValue.int(parquet.metadata.num_rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(table_schema(schema)),
        "staged_bytes": dg.MetadataValue.int(local.stat().st_size),
        STAGED_PATH: dg.MetadataValue.path(url),
        "preview": dg.MetadataValue.md(markdown_preview(schema, first)),
    }


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    # No nullability: DuckDB marks a column required whenever one file has no NULL in it,
    # which says nothing about the asset's next materialization.
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema])


def markdown_preview(schema: pa.Schema, batch: pa.RecordBatch | None) -> str:
    """The first rows as a markdown table."""
    if not schema.names:
        return "(no columns)"
    rows = batch.to_pylist() if batch is not None else []
    lines = [
        "| " + " | ".join(_cell(name) for name in schema.names) + " |",
        "|" + "---|" * len(schema.names),
    ]
    lines += ["| " + " | ".join(_cell(row[n]) for n in schema.names) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")
