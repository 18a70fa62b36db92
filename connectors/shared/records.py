"""JSON records from an API as Arrow record batches with one schema for the whole table.

The schema is taken from the first batch (or given by the connector); later batches are
converted to it, so a table's type can never change half-way through an extract. Nested
objects and lists become JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import pyarrow as pa

from connectors.base import BATCH_ROWS, ConnectorError


def flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    """Nested objects and lists as JSON text; scalars as they are."""
    return {
        key: json.dumps(value, sort_keys=True, default=str)
        if isinstance(value, dict | list)
        else value
        for key, value in record.items()
    }


def infer_schema(records: list[dict[str, Any]]) -> pa.Schema:
    """Column types from sample records; columns seen only as null become text."""
    names = list(dict.fromkeys(key for record in records for key in record))
    rows = [{name: record.get(name) for name in names} for record in records]
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    fields = []
    for name in names:
        kind = table.schema.field(name).type if name in table.schema.names else pa.null()
        fields.append(pa.field(name, pa.string() if pa.types.is_null(kind) else kind))
    return pa.schema(fields)


def to_batches(
    records: Iterable[Mapping[str, Any]],
    connection: str,
    table: str,
    schema: pa.Schema | None = None,
    batch_rows: int = BATCH_ROWS,
) -> pa.RecordBatchReader:
    """A reader over flattened records; the schema comes from the first batch if not given."""
    iterator = (flatten(record) for record in records)
    first = list(islice(iterator, batch_rows))
    schema = schema or infer_schema(first)

    def batches() -> Iterator[pa.RecordBatch]:
        chunk = first
        while chunk:
            yield _convert(chunk, schema, connection, table)
            chunk = list(islice(iterator, batch_rows))

    return pa.RecordBatchReader.from_batches(schema, batches())


def _convert(
    rows: list[dict[str, Any]], schema: pa.Schema, connection: str, table: str
) -> pa.RecordBatch:
    try:
        return pa.RecordBatch.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
        raise ConnectorError(
            f"connection {connection!r}: table {table!r} has a value that does not fit its "
            f"column types ({str(error).splitlines()[0]}); the API's data changed type"
        ) from None


def as_date(value: Any) -> dt.date:
    """A datetime, date or ISO 8601 text as a date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def as_utc(value: Any) -> dt.datetime:
    """An ISO 8601 text or datetime as an aware UTC datetime (naive means UTC)."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
