"""PostgreSQL as a source, through psycopg 3.

Tables stream through a server-side (named) cursor, BATCH_ROWS rows per fetch, and every
fetch becomes one Arrow record batch built column by column. Error messages are composed
here rather than passed on from libpq, so a password can never reach a log.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from connectors.base import BATCH_ROWS, ConnectorError, Source, TableSchema

CONNECT_TIMEOUT_SECONDS = 10

# Unconstrained `numeric` has no fixed scale; it is read rounded to 9 decimal places into
# the widest decimal128 (38 digits), which covers money and measurements alike. Columns
# that need more should declare numeric(p,s).
UNCONSTRAINED_PRECISION, UNCONSTRAINED_SCALE = 38, 9
# Above this precision even decimal256 cannot hold the value, so it is read as text.
MAX_DECIMAL_PRECISION = 76

_FIXED_TYPES: dict[str, pa.DataType] = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "bytea": pa.binary(),
}

# Types psycopg already returns as str; every other type read as text is cast in SQL, so
# uuid, json and the rest arrive as their text form rather than as parsed Python objects.
_NATIVE_TEXT = {"text", "character varying", "character"}

_COLUMNS_QUERY = """
    select c.table_name, c.column_name, c.data_type, c.numeric_precision, c.numeric_scale
    from information_schema.columns c
    join information_schema.tables t
      on t.table_schema = c.table_schema and t.table_name = c.table_name
    where c.table_schema = %(schema)s
      and t.table_type in ('BASE TABLE', 'VIEW')
      and (%(table)s::text is null or c.table_name = %(table)s::text)
    order by c.table_name, c.ordinal_position
"""


@dataclass(frozen=True)
class Column:
    """A table column: its Arrow field and the SQL expression that selects it.

    With `parse_text`, the expression yields text that Arrow parses into the field's type.
    """

    field: pa.Field
    select: sql.Composable
    parse_text: bool = False


def column_for(name: str, data_type: str, precision: int | None, scale: int | None) -> Column:
    """Map an information_schema column to Arrow, with the expression that reads it."""
    ident = sql.Identifier(name)
    if data_type in _FIXED_TYPES:
        as_text = _FIXED_TYPES[data_type] == pa.string() and data_type not in _NATIVE_TEXT
        return Column(pa.field(name, _FIXED_TYPES[data_type]), _text(ident) if as_text else ident)
    if data_type == "numeric":
        return _numeric_column(name, ident, precision, scale)
    # uuid, json, jsonb, arrays, enums, intervals and anything else: their text form.
    return Column(pa.field(name, pa.string()), _text(ident))


def _numeric_column(
    name: str, ident: sql.Identifier, precision: int | None, scale: int | None
) -> Column:
    """Numerics travel as text: Arrow parses it about twice as fast as psycopg builds
    Decimal objects, and numeric columns dominate the cost of reading a table."""
    if precision is None:
        select = sql.SQL("round({}, {})::text").format(ident, sql.Literal(UNCONSTRAINED_SCALE))
        arrow_type = pa.decimal128(UNCONSTRAINED_PRECISION, UNCONSTRAINED_SCALE)
        return Column(pa.field(name, arrow_type), select, parse_text=True)
    if precision > MAX_DECIMAL_PRECISION:
        return Column(pa.field(name, pa.string()), _text(ident))
    decimal_type = pa.decimal128 if precision <= 38 else pa.decimal256
    return Column(pa.field(name, decimal_type(precision, scale or 0)), _text(ident), True)


def _text(ident: sql.Identifier) -> sql.Composable:
    return sql.SQL("{}::text").format(ident)


class PostgresSource(Source):
    """Tables and views of one PostgreSQL schema.

    Config: host, port (5432), database, username, password, sslmode ("prefer") and
    schema ("public"). Tables are named `table` (in the configured schema) or
    `schema.table`.
    """

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.host: str = str(self.config.get("host") or "localhost")
        self.port: int = int(self.config.get("port") or 5432)
        self.database: str = str(self.config.get("database") or "")
        self.username: str = str(self.config.get("username") or "")
        self.schema: str = str(self.config.get("schema") or "public")

    # The Source contract.

    def check(self) -> str:
        with self._connect() as conn:
            conn.execute("select 1")
        return f"connected to database {self.database} as {self.username}"

    def discover(self) -> list[TableSchema]:
        with self._connect() as conn:
            tables = self._columns(conn, self.schema, None)
        return [
            TableSchema(name, pa.schema(column.field for column in columns))
            for name, columns in tables.items()
        ]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        schema_name, table_name = self._split(table)
        # Problems with the table or key surface here, before the first batch is asked for.
        with self._connect() as conn:
            columns = self._table_columns(conn, schema_name, table_name, table)
        query = self._select(schema_name, table_name, columns, incremental_key, cursor)
        arrow_schema = pa.schema(column.field for column in columns)
        params = () if cursor is None or incremental_key is None else (cursor,)
        batches = self._batches(query, params, columns, arrow_schema, table)
        return pa.RecordBatchReader.from_batches(arrow_schema, batches)

    # Reading.

    def _split(self, table: str) -> tuple[str, str]:
        schema_name, _, table_name = table.rpartition(".")
        return schema_name or self.schema, table_name

    def _table_columns(
        self, conn: psycopg.Connection, schema_name: str, table_name: str, table: str
    ) -> list[Column]:
        columns = self._columns(conn, schema_name, table_name).get(table_name)
        if columns:
            return columns
        available = sorted(self._columns(conn, schema_name, None))
        listed = ", ".join(available[:5]) + (", ..." if len(available) > 5 else "")
        raise self._error(
            f"no table {table!r} in schema {schema_name!r} of database {self.database!r}; "
            + (f"available: {listed}" if available else "that schema has no tables")
        )

    def _select(
        self,
        schema_name: str,
        table_name: str,
        columns: list[Column],
        incremental_key: str | None,
        cursor: Any,
    ) -> sql.Composed:
        query = sql.SQL("select {} from {}").format(
            sql.SQL(", ").join(column.select for column in columns),
            sql.Identifier(schema_name, table_name),
        )
        if incremental_key is None:
            return query
        names = [column.field.name for column in columns]
        if incremental_key not in names:
            raise self._error(
                f"table {table_name!r} has no column {incremental_key!r} to use as "
                f"incremental_key; pick one of {', '.join(names)}"
            )
        if cursor is None:
            return query
        key = sql.Identifier(incremental_key)
        return sql.SQL("{} where {} >= %s order by {}").format(query, key, key)

    def _batches(
        self,
        query: sql.Composed,
        params: tuple[Any, ...],
        columns: list[Column],
        schema: pa.Schema,
        table: str,
    ) -> Iterator[pa.RecordBatch]:
        """Fetch BATCH_ROWS rows at a time from a server-side cursor.

        The connection opens on the first batch asked for, so a reader that is never
        iterated holds no connection.
        """
        # Binary results: psycopg loads integers, floats and timestamps faster from them.
        with self._connect() as conn, conn.cursor(name="datapipe_read", binary=True) as cur:
            cur.itersize = BATCH_ROWS
            try:
                cur.execute(query, params)
                while rows := cur.fetchmany(BATCH_ROWS):
                    yield self._to_batch(rows, columns, schema, table)
            except psycopg.Error as exc:
                raise self._query_error(f"reading {table!r}", exc) from None

    def _to_batch(
        self, rows: list[tuple[Any, ...]], columns: list[Column], schema: pa.Schema, table: str
    ) -> pa.RecordBatch:
        """Rows to a record batch: transposed, so each column converts in a single call."""
        values_by_column = zip(*rows, strict=True)
        arrays = [
            self._to_array(column, values, table)
            for column, values in zip(columns, values_by_column, strict=True)
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _to_array(self, column: Column, values: tuple[Any, ...], table: str) -> pa.Array:
        field = column.field
        try:
            if column.parse_text:
                return pa.array(values, type=pa.string()).cast(field.type)
            return pa.array(values, type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise self._error(
                f"table {table!r} column {field.name!r} has a value that does not fit "
                f"{field.type} ({str(exc).splitlines()[0]})"
            ) from None

    # Metadata.

    def _columns(
        self, conn: psycopg.Connection, schema_name: str, table_name: str | None
    ) -> dict[str, list[Column]]:
        """Columns by table (all tables and views of the schema, or just one)."""
        tables: dict[str, list[Column]] = {}
        try:
            result = conn.execute(_COLUMNS_QUERY, {"schema": schema_name, "table": table_name})
            for table, name, data_type, precision, scale in result:
                tables.setdefault(table, []).append(column_for(name, data_type, precision, scale))
        except psycopg.Error as exc:
            raise self._query_error(f"listing the tables of schema {schema_name!r}", exc) from None
        return tables

    # Connecting and errors.

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(
                host=self.host,
                port=self.port,
                dbname=self.database,
                user=self.username,
                password=self.config.get("password") or None,
                sslmode=self.config.get("sslmode") or "prefer",
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name="datapipe",
                # Session time zone UTC: timestamptz values arrive already in UTC.
                options="-c TimeZone=UTC",
            )
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None

    def _connect_error(self, exc: psycopg.Error) -> ConnectorError:
        """A message built from what failed; libpq's own text is matched, never repeated."""
        text = str(exc).lower()
        address = f"{self.host}:{self.port}"
        if "password authentication failed" in text or (
            "role" in text and "does not exist" in text
        ):
            return self._error(
                f"authentication failed for user {self.username!r}; check username and password"
            )
        if "no password supplied" in text:
            return self._error(
                f"the server wants a password for user {self.username!r}; set password"
            )
        if "database" in text and "does not exist" in text:
            return self._error(
                f"database {self.database!r} does not exist on {address}; check database"
            )
        if "pg_hba.conf" in text:
            return self._error(
                f"{address} does not accept user {self.username!r} from this host; check "
                "the server's pg_hba.conf or sslmode"
            )
        for marker, reason in (
            ("connection refused", "connection refused"),
            ("timeout expired", "timed out"),
            ("could not translate host name", "unknown host"),
            ("name or service not known", "unknown host"),
            ("no route to host", "no route to host"),
        ):
            if marker in text:
                return self._error(f"cannot reach {address} ({reason}); check host and port")
        if "ssl" in text:
            return self._error(f"SSL negotiation with {address} failed; check sslmode")
        return self._error(
            f"cannot connect to {address} ({type(exc).__name__}); check the connection settings"
        )

    def _query_error(self, action: str, exc: psycopg.Error) -> ConnectorError:
        # Server-side errors carry a primary message that never holds connection details.
        diag = getattr(exc, "diag", None)
        primary = diag.message_primary if diag is not None else None
        reason = primary or type(exc).__name__
        return self._error(f"{action} failed: {reason}")

    def _error(self, message: str) -> ConnectorError:
        return ConnectorError(f"connection {self.connection!r}: {message}")
