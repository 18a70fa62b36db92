"""Column type names (BIGINT, DECIMAL(12,2), ...) as Arrow types, for config overrides."""

from __future__ import annotations

import pyarrow as pa

from connectors.shared.sql_types import decimal_type
from connectors.shared.type_names import type_kind

_ARROW: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def parse_type(name: str) -> pa.DataType:
    """The Arrow type for a DuckDB/SQL-ish type name; ValueError naming the valid ones."""
    kind = type_kind(name)
    if isinstance(kind, tuple):
        return decimal_type(*kind)
    return _ARROW[kind]
