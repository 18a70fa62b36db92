"""Writing Arrow batches into parquet files: zstd, in row groups sized for DuckDB."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema))
        writer.add_key_value_metadata(file_metadata())


# How many batches the background writer may fall behind the consumer of `written_aside`.
WRITER_QUEUE_BATCHES = 4
_END = object()


def written_aside(
    path: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    file_metadata: Callable[[], dict[str, str]] = dict,
) -> Iterator[pa.RecordBatch]:
    """Each batch, passed on as it is handed to a parquet writer on a thread of its own, so
    encoding and compressing the file overlaps whatever the consumer does with the batches;
    at most WRITER_QUEUE_BATCHES batches wait for the writer. When the batches end, the file
    is complete (see write_parquet) before this ends."""
    pending: queue.Queue[Any] = queue.Queue(maxsize=WRITER_QUEUE_BATCHES)
    failed: list[BaseException] = []

    def queued() -> Iterator[pa.RecordBatch]:
        while (batch := pending.get()) is not _END:
            yield batch

    def write() -> None:
        try:
            write_parquet(path, schema, queued(), file_metadata)
        except BaseException as error:
            failed.append(error)
            # Drain, so the producer never blocks on a writer that has stopped.
            while pending.get() is not _END:
                pass

    writer = threading.Thread(target=write, name="parquet-writer", daemon=True)
    writer.start()
    try:
        for batch in batches:
            if failed:
                break
            pending.put(batch)
            yield batch
    finally:
        pending.put(_END)
        writer.join()
    if failed:
        raise failed[0]
