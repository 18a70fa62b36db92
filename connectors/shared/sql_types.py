"""Arrow <-> SQL column types, and which existing column types accept which data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa


class Family(StrEnum):
    """What kind of values a column holds, independent of the database's spelling."""

    NULL = "null"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    DECIMAL = "decimal"
    FLOAT = "float"
    TEXT = "text"
    BINARY = "binary"
    DATE = "date"
    TIME = "time"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    JSON = "json"
    OTHER = "other"


@dataclass(frozen=True)
class SqlType:
    """A column type reduced to what matters for mapping and compatibility checks.

    `bits` is the storage width of integers and floats; `precision` is None for a NUMERIC
    without declared precision (PostgreSQL's arbitrary-precision numeric).
    """

    family: Family
    bits: int = 0
    precision: int | None = None
    scale: int = 0


# The most digits a decimal128 holds; wider decimals (up to 76 digits) need decimal256.
DECIMAL128_DIGITS = 38

_INTEGER_NAMES = {8: "SMALLINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}
_PLAIN_NAMES = {
    Family.BOOLEAN: "BOOLEAN",
    Family.DATE: "DATE",
    Family.TIME: "TIME",
    Family.TIMESTAMP: "TIMESTAMP",
    Family.TIMESTAMPTZ: "TIMESTAMPTZ",
}


@dataclass(frozen=True)
class Dialect:
    """The differences between the SQL of the supported destinations."""

    text: str
    double: str
    decimal: str
    binary: str
    json: str
    default_schema: str
    # DuckDB treats identifiers case-insensitively even when quoted; PostgreSQL does not.
    folds_case: bool

    def render(self, sql_type: SqlType) -> str:
        """The column type to declare for values of this type."""
        match sql_type.family:
            case Family.INTEGER:
                return _INTEGER_NAMES[sql_type.bits]
            case Family.DECIMAL:
                return f"{self.decimal}({sql_type.precision},{sql_type.scale})"
            case Family.FLOAT:
                return self.double
            case Family.TEXT | Family.NULL:
                # An all-null column has no type of its own; text accepts whatever comes later.
                return self.text
            case Family.BINARY:
                return self.binary
            case Family.JSON | Family.OTHER:
                return self.json
            case _:
                return _PLAIN_NAMES[sql_type.family]

    def key(self, identifier: str) -> str:
        """The form under which this database considers two identifiers the same."""
        return identifier.lower() if self.folds_case else identifier


DUCKDB = Dialect(
    text="VARCHAR",
    double="DOUBLE",
    decimal="DECIMAL",
    binary="BLOB",
    json="JSON",
    default_schema="main",
    folds_case=True,
)
POSTGRES = Dialect(
    text="TEXT",
    double="DOUBLE PRECISION",
    decimal="NUMERIC",
    binary="BYTEA",
    json="JSONB",
    default_schema="public",
    folds_case=False,
)


_TEXT_CHECKS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
_BINARY_CHECKS = (
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_binary_view,
    pa.types.is_fixed_size_binary,
)


def from_arrow(arrow_type: pa.DataType) -> SqlType:
    """The SQL type that holds values of an Arrow type without loss."""
    types = pa.types
    if types.is_dictionary(arrow_type):
        return from_arrow(arrow_type.value_type)
    if types.is_null(arrow_type):
        return SqlType(Family.NULL)
    if types.is_boolean(arrow_type):
        return SqlType(Family.BOOLEAN)
    if types.is_signed_integer(arrow_type):
        return SqlType(Family.INTEGER, arrow_type.bit_width)
    if types.is_unsigned_integer(arrow_type):
        # SQL has no unsigned integers: the next wider signed type holds every value.
        if arrow_type.bit_width < 64:
            return SqlType(Family.INTEGER, max(16, 2 * arrow_type.bit_width))
        return SqlType(Family.DECIMAL, precision=20)
    if types.is_floating(arrow_type):
        return SqlType(Family.FLOAT, arrow_type.bit_width)
    if types.is_decimal(arrow_type):
        return SqlType(Family.DECIMAL, precision=arrow_type.precision, scale=arrow_type.scale)
    if any(check(arrow_type) for check in _TEXT_CHECKS):
        return SqlType(Family.TEXT)
    if any(check(arrow_type) for check in _BINARY_CHECKS):
        return SqlType(Family.BINARY)
    if types.is_date(arrow_type):
        return SqlType(Family.DATE)
    if types.is_time(arrow_type):
        return SqlType(Family.TIME)
    if types.is_timestamp(arrow_type):
        return SqlType(Family.TIMESTAMPTZ if arrow_type.tz else Family.TIMESTAMP)
    # Lists, structs, maps and anything else SQL has no column type for travel as JSON text.
    return SqlType(Family.JSON)


def is_json(arrow_type: pa.DataType) -> bool:
    """Whether values of this Arrow type are written as JSON text."""
    return from_arrow(arrow_type).family is Family.JSON


def _named(family: Family, bits: int, *names: str) -> dict[str, SqlType]:
    return dict.fromkeys(names, SqlType(family, bits))


# Type names as DuckDB's information_schema and PostgreSQL's format_type() spell them, with
# any length or fractional-seconds precision removed.
_NAMED_TYPES: dict[str, SqlType] = {
    **_named(Family.INTEGER, 8, "TINYINT", "INT1"),
    **_named(Family.INTEGER, 16, "SMALLINT", "INT2", "SHORT"),
    **_named(Family.INTEGER, 32, "INTEGER", "INT", "INT4", "SIGNED"),
    **_named(Family.INTEGER, 64, "BIGINT", "INT8", "LONG"),
    **_named(Family.INTEGER, 128, "HUGEINT", "INT128"),
    **_named(Family.FLOAT, 32, "REAL", "FLOAT4", "FLOAT"),
    **_named(Family.FLOAT, 64, "DOUBLE", "DOUBLE PRECISION", "FLOAT8"),
    **_named(Family.TEXT, 0, "TEXT", "VARCHAR", "STRING", "CHARACTER VARYING", "CHARACTER"),
    **_named(Family.TEXT, 0, "CHAR", "BPCHAR", "NAME"),
    **_named(Family.BOOLEAN, 0, "BOOLEAN", "BOOL"),
    **_named(Family.DATE, 0, "DATE"),
    **_named(Family.TIME, 0, "TIME", "TIME WITHOUT TIME ZONE"),
    **_named(Family.TIMESTAMP, 0, "TIMESTAMP", "TIMESTAMP WITHOUT TIME ZONE", "DATETIME"),
    **_named(Family.TIMESTAMP, 0, "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_US", "TIMESTAMP_NS"),
    **_named(Family.TIMESTAMPTZ, 0, "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"),
    **_named(Family.BINARY, 0, "BYTEA", "BLOB", "BINARY", "VARBINARY"),
    **_named(Family.JSON, 0, "JSON", "JSONB"),
}
_DECIMAL_PATTERN = re.compile(r"(?:NUMERIC|DECIMAL)(?:\((\d+)(?:,(\d+))?\))?")
_LENGTH_PATTERN = re.compile(r"\(\d+\)")


def parse_sql_type(text: str) -> SqlType:
    """The SqlType of a column type as the database reports it (OTHER when unknown)."""
    normalized = " ".join(text.upper().split()).replace(", ", ",")
    decimal = _DECIMAL_PATTERN.fullmatch(normalized)
    if decimal:
        precision, scale = decimal.groups()
        if precision is None:
            return SqlType(Family.DECIMAL)
        return SqlType(Family.DECIMAL, precision=int(precision), scale=int(scale or 0))
    return _NAMED_TYPES.get(_LENGTH_PATTERN.sub("", normalized), SqlType(Family.OTHER))


def decimal_type(precision: int, scale: int = 0) -> pa.DataType:
    """The narrowest Arrow decimal of this precision: decimal128 up to 38 digits, then 256."""
    if precision > DECIMAL128_DIGITS:
        return pa.decimal256(precision, scale)
    return pa.decimal128(precision, scale)


def to_arrow(sql_type: SqlType) -> pa.DataType:
    """The Arrow type that reading a column of this SQL type produces."""
    match sql_type.family:
        case Family.INTEGER:
            return {8: pa.int8(), 16: pa.int16(), 32: pa.int32()}.get(
                sql_type.bits, pa.int64() if sql_type.bits == 64 else pa.decimal128(38, 0)
            )
        case Family.DECIMAL:
            if sql_type.precision is None:
                # Arrow decimals need a fixed scale; 38,9 keeps 29 integer digits and 9 decimals.
                return pa.decimal128(38, 9)
            return decimal_type(sql_type.precision, sql_type.scale)
        case Family.FLOAT:
            return pa.float32() if sql_type.bits == 32 else pa.float64()
        case Family.BOOLEAN:
            return pa.bool_()
        case Family.DATE:
            return pa.date32()
        case Family.TIME:
            return pa.time64("us")
        case Family.TIMESTAMP:
            return pa.timestamp("us")
        case Family.TIMESTAMPTZ:
            return pa.timestamp("us", tz="UTC")
        case Family.BINARY:
            return pa.binary()
        case Family.NULL:
            return pa.null()
        case _:
            return pa.string()


# Non-numeric families and the column families that take their values unchanged. Strings go
# into text, JSON, and types Arrow has no equivalent for (UUID, INTERVAL, enums...), which the
# database parses; anything that fails to parse aborts the whole load.
_ACCEPTED_BY: dict[Family, frozenset[Family]] = {
    Family.TEXT: frozenset({Family.TEXT, Family.JSON, Family.OTHER}),
    Family.DATE: frozenset({Family.DATE, Family.TIMESTAMP}),
    Family.TIMESTAMP: frozenset({Family.TIMESTAMP, Family.TIMESTAMPTZ}),
    Family.TIMESTAMPTZ: frozenset({Family.TIMESTAMP, Family.TIMESTAMPTZ}),
}
_NUMERIC = frozenset({Family.INTEGER, Family.DECIMAL, Family.FLOAT})


def is_compatible(incoming: SqlType, existing: SqlType) -> bool:
    """Whether values of type `incoming` belong in an `existing` column.

    Numbers go into any numeric column: a value the column cannot hold (an overflow) is
    refused by the database itself, inside the load's transaction, so nothing is written.
    """
    if incoming.family is Family.NULL:
        return True
    if incoming.family in _NUMERIC:
        return existing.family in _NUMERIC
    return existing.family in _ACCEPTED_BY.get(incoming.family, frozenset({incoming.family}))


def arrow_schema(columns: Mapping[str, str]) -> pa.Schema:
    """The Arrow schema of a table whose columns the database reports as name -> type."""
    return pa.schema([(name, to_arrow(parse_sql_type(text))) for name, text in columns.items()])
