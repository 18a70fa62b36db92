"""CSV text as typed Arrow columns: every column is parsed as text (or bytes) and the typed
ones are _converted here, batch by batch, so a quoted NULL marker and a bad value can each be
told apart and reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


class BadValue(Exception):
    """A value that does not convert to its column's type, at a row of a batch."""

    def __init__(self, index: int, offset: int | None, value: str | None) -> None:
        super().__init__(index)
        self.index, self.offset, self.value = index, offset, value


def as_text(schema: pa.Schema, as_bytes: bool = False) -> pa.Schema:
    """The schema with every column as text (or the bytes of it): how the reader parses,
    before typed."""
    kind = pa.binary() if as_bytes else pa.string()
    return pa.schema(pa.field(name, kind) for name in schema.names)


def typed(batch: pa.RecordBatch, schema: pa.Schema, markers: pa.Array) -> pa.RecordBatch:
    """A batch parsed as text, with each non-text column _converted to its fixed type.

    Unquoted markers are already NULL. In a typed column a quoted marker ("") means NULL as
    well, and surrounding spaces are dropped, as pyarrow's own number parsing does.
    """
    columns = []
    for index, (column, target) in enumerate(zip(batch.columns, schema.types, strict=True)):
        if not pa.types.is_string(target):
            column = _converted(index, column, target, markers)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _converted(index: int, column: pa.Array, target: pa.DataType, markers: pa.Array) -> pa.Array:
    if not any(_casts(marker, target) for marker in markers.to_pylist()):
        # Clean data converts in one step; only a failure (a quoted marker, spaces, a bad
        # value) takes the slower path. Not when a marker itself converts (a "0" marker in
        # a number column): then it must become NULL first, whatever the rest holds.
        try:
            return column.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    trimmed = _cast_ready(column, markers)
    try:
        return trimmed.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for offset, value in enumerate(trimmed.to_pylist()):
            if value is not None and not _casts(value, target):
                raise BadValue(index, offset, column[offset].as_py()) from None
        raise BadValue(index, None, None) from None


def _cast_ready(column: pa.Array, markers: pa.Array) -> pa.Array:
    """A text column as a typed column converts it: trimmed, quoted markers as NULL."""
    trimmed = pc.utf8_trim_whitespace(column)
    is_marker = pc.is_in(trimmed, value_set=markers)
    if pc.any(is_marker).as_py():
        trimmed = pc.if_else(is_marker, pa.scalar(None, pa.string()), trimmed)
    return trimmed


def sorted_out(
    batch: pa.RecordBatch, schema: pa.Schema, markers: pa.Array, encoding: str
) -> tuple[pa.RecordBatch, dict[int, str]]:
    """A batch read as bytes, typed, _without the rows that do not decode or convert; and
    the reason of each row left out, by its offset in the batch (its first problem)."""
    try:
        return typed(_decoded(batch), schema, markers), {}
    except (BadValue, pa.ArrowInvalid):
        pass  # some row is bad: find which, below
    reasons: dict[int, str] = {}
    for name, column in zip(schema.names, batch.columns, strict=True):
        for offset in _failing_rows(column, lambda part: part.cast(pa.string())):
            reasons.setdefault(offset, f"column {name!r} is not valid {encoding} text")
    kept = _without(batch, reasons)
    text = _decoded(batch.filter(kept))
    positions = pc.indices_nonzero(kept).to_pylist()
    for name, column, target in zip(schema.names, text.columns, schema.types, strict=True):
        if pa.types.is_string(target):
            continue
        prepared = _cast_ready(column, markers)
        for offset in _failing_rows(prepared, lambda part, to=target: part.cast(to)):
            value = column[offset].as_py()
            reasons.setdefault(
                positions[offset], f"column {name!r} value {value!r} is not {target}"
            )
    return typed(_decoded(batch.filter(_without(batch, reasons))), schema, markers), reasons


def _decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch read as bytes, as text; ArrowInvalid if some value does not decode."""
    return pa.RecordBatch.from_arrays(
        [column.cast(pa.string()) for column in batch.columns], names=batch.schema.names
    )


def _without(batch: pa.RecordBatch, offsets: Mapping[int, str]) -> pa.Array:
    """A filter mask keeping every row of a batch but those at `offsets`."""
    keep = [True] * batch.num_rows
    for offset in offsets:
        keep[offset] = False
    return pa.array(keep, pa.bool_())


def _failing_rows(column: pa.Array, convert: Any) -> list[int]:
    """The offsets of the values `convert` refuses, found by halving the column: only
    vectorised conversions, about log2(rows) of them per refused value."""
    try:
        convert(column)
        return []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(column) == 1:
            return [0]
    half = len(column) // 2
    later = _failing_rows(column[half:], convert)
    return _failing_rows(column[:half], convert) + [half + offset for offset in later]


def settle(sniffed: pa.DataType) -> pa.DataType:
    """The type a sniffed column is fixed to for the rest of the stream."""
    if pa.types.is_null(sniffed):
        # No value in the first block (or a header-only file): text is the safe choice.
        return pa.string()
    if pa.types.is_timestamp(sniffed):
        # Sniffing whole seconds must not reject a later value with fractional seconds.
        return pa.timestamp("us", tz=sniffed.tz)
    return sniffed


def _casts(value: str, target: pa.DataType) -> bool:
    try:
        pa.scalar(value).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True
