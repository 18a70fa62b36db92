"""Reading a staged file streams it: memory does not grow with the file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.base import BATCH_ROWS
from resources.staging import StagedTable

ROWS = 48 * BATCH_ROWS
ROWS_PER_GROUP = BATCH_ROWS // 4
VALUE_BYTES = 16


def test_reader_holds_a_few_row_groups_not_the_file(tmp_path: Path) -> None:
    # Random bytes do not compress: the file is about 75 MB in 192 row groups.
    values = [os.urandom(VALUE_BYTES) for _ in range(ROWS)]
    path = tmp_path / "data.parquet"
    pq.write_table(
        pa.table({"id": range(len(values)), "payload": values}),
        path,
        row_group_size=ROWS_PER_GROUP,
        compression="zstd",
    )
    file_bytes = path.stat().st_size

    before = pa.total_allocated_bytes()
    most, rows = 0, 0
    for batch in StagedTable.open(str(path)).reader():
        rows += batch.num_rows
        most = max(most, pa.total_allocated_bytes() - before)
        del batch
        time.sleep(0.01)  # a consumer slower than the reader, as a load is

    assert rows == ROWS
    # A reader that read ahead of its consumer, or kept what it had read, would end up
    # holding more than the whole file.
    assert most < file_bytes / 4, (most, file_bytes)
