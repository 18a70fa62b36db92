"""Writing Arrow batches into parquet files: zstd, in row groups sized for DuckDB."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Rows per parquet row group. DuckDB reads and writes a file in parallel by row group, so
# its own default size keeps both cores busy; much smaller groups slow writing down.
ROW_GROUP_ROWS = 122_880
# ...but never buffer more than this many bytes of a group in memory.
ROW_GROUP_BYTES = 64 << 20
# zstd's fastest level: staging is written once and read once, so speed beats ratio.
ZSTD_LEVEL = 1


def write_parquet(
    path: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    file_metadata: Callable[[], dict[str, str]] = dict,
) -> None:
    """Stream batches into a zstd parquet file; file metadata is asked for after the last."""
    for _ in written(path, schema, batches, file_metadata):
        pass


def written(
    path: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    file_metadata: Callable[[], dict[str, str]] = dict,
) -> Iterator[pa.RecordBatch]:
    """Each batch, passed on once it is in the parquet file's writer; when the batches end,
    the file is complete (metadata asked for after the last batch) before this ends."""
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    # Dictionary-encode text only: for numbers and timestamps it costs far more time than
    # it saves space.
    text = [
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    with pq.ParquetWriter(
        path, schema, compression="zstd", compression_level=ZSTD_LEVEL, use_dictionary=text
    ) as writer:
        for batch in batches:
            pending.append(batch)
            rows, size = rows + batch.num_rows, size + batch.nbytes
            if rows >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_batches(pending, schema))
                pending, rows, size = [], 0, 0
            yield batch
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema))
        writer.add_key_value_metadata(file_metadata())
