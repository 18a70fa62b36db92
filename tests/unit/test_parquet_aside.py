"""written_aside: batches pass on while a thread of its own writes the parquet file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.shared.parquet import WRITER_QUEUE_BATCHES, written_aside

SCHEMA = pa.schema([("id", pa.int64())])


def _batches(count: int) -> list[pa.RecordBatch]:
    return [
        pa.record_batch([pa.array(range(i * 10, i * 10 + 10))], schema=SCHEMA) for i in range(count)
    ]


def test_every_batch_is_passed_on_and_the_file_is_complete_when_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    batches = _batches(3 * WRITER_QUEUE_BATCHES)
    passed = list(written_aside(path, SCHEMA, batches, lambda: {"done": "yes"}))
    assert passed == batches
    assert pq.read_table(path).column("id").to_pylist() == list(range(30 * WRITER_QUEUE_BATCHES))
    assert pq.read_metadata(path).metadata[b"done"] == b"yes"


def test_a_writer_that_fails_fails_the_stream_instead_of_blocking_it(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder" / "out.parquet"
    stream = written_aside(missing, SCHEMA, _batches(3 * WRITER_QUEUE_BATCHES))
    with pytest.raises(FileNotFoundError):
        list(stream)


def test_a_consumer_that_stops_early_ends_the_writer(tmp_path: Path) -> None:
    stream = written_aside(tmp_path / "out.parquet", SCHEMA, _batches(3 * WRITER_QUEUE_BATCHES))
    assert next(stream).num_rows == 10
    stream.close()  # returns only once the writer thread has ended
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 10
