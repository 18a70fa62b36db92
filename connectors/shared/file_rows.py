"""The rows of one arrived file in a destination: each carries the file in a column of its own.

A pipeline partitioned by file loads each file's rows stamped with the file's path, so that
loading the file again can delete exactly the rows it loaded before, whatever else the
table holds, and whatever the transform made of the file's rows (an aggregate of one file
is stamped with that file too).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from connectors.base import ConnectorError

FILE_COLUMN = "_datapipe_file"


def stamped_with_file(
    data: pa.RecordBatchReader, file: str, connection: str, table: str
) -> pa.RecordBatchReader:
    """The batches with one more column, FILE_COLUMN, holding `file` in every row."""
    if FILE_COLUMN in data.schema.names:
        raise ConnectorError(
            f"connection {connection!r}: the data loaded into table {table!r} has a column "
            f"{FILE_COLUMN!r}, where a file partition's load records each row's file; rename "
            "that column in the pipeline"
        )
    schema = data.schema.append(pa.field(FILE_COLUMN, pa.string()))

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in data:
            stamp = pa.repeat(pa.scalar(file, pa.string()), batch.num_rows)
            yield pa.RecordBatch.from_arrays([*batch.columns, stamp], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
