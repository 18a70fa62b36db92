"""The column type names a config may use (CSV and Sheets `columns`, REST `schema`).

Kept free of pyarrow so that config models can check a type name without importing a
connector; `connectors.shared.column_types.parse_type` maps each name to its Arrow type.
"""

from __future__ import annotations

import re

# Type name -> the kind of Arrow type it reads as.
TYPE_NAMES: dict[str, str] = {
    **dict.fromkeys(("VARCHAR", "TEXT", "STRING"), "string"),
    # Every integer name reads as int64: a text value can never overflow it, and the
    # destination can still narrow the column.
    **dict.fromkeys(("BIGINT", "INTEGER", "INT", "SMALLINT"), "int64"),
    **dict.fromkeys(("DOUBLE", "FLOAT", "REAL"), "float64"),
    **dict.fromkeys(("BOOLEAN", "BOOL"), "bool"),
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMPTZ": "timestamptz",
}
DECIMAL = re.compile(r"(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def type_kind(name: str) -> str | tuple[int, int]:
    """A type name's kind, or (precision, scale) for DECIMAL(p,s); ValueError if unknown."""
    text = name.strip().upper()
    if text in TYPE_NAMES:
        return TYPE_NAMES[text]
    match = DECIMAL.fullmatch(text)
    if match:
        return int(match[1]), int(match[2])
    raise ValueError(
        f"unknown column type {name!r}; use one of {', '.join(TYPE_NAMES)} or DECIMAL(p,s)"
    )
