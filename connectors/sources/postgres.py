"""PostgreSQL as a source: the catalog through psycopg 3, the rows through ADBC.

A table streams as `COPY (SELECT ...) TO STDOUT (FORMAT binary)`, which the ADBC PostgreSQL
driver parses into Arrow record batches in C++: no Python runs per row or per value. Error
messages are composed here rather than passed on from libpq, so a password can never
reach a log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc_postgres
import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.conninfo import make_conninfo

from connectors.base import ConnectorError
from connectors.config.postgres import PostgresConfig
from connectors.shared.secrets import mask
from connectors.shared.sql_source import Column, SqlSource, quoted, unreachable_reason
from connectors.shared.sql_types import decimal_type

CONNECT_TIMEOUT_SECONDS = 10
# The driver ends a record batch once it holds about this many bytes: memory per batch is
# bounded whatever the width of the rows.
BATCH_BYTES = 8 * 1024 * 1024

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

# Types that arrive as text already; every other type read as text is cast in SQL, so uuid,
# json and the rest arrive as their text form.
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


def quote(identifier: str) -> str:
    """A double-quoted identifier, its % doubled because psycopg %-formats the query."""
    return quoted(identifier, '"')


def column_for(name: str, data_type: str, precision: int | None, scale: int | None) -> Column:
    """Map an information_schema column to Arrow, with the expression that reads it."""
    ident = quote(name)
    if data_type in _FIXED_TYPES:
        as_text = _FIXED_TYPES[data_type] == pa.string() and data_type not in _NATIVE_TEXT
        return Column(pa.field(name, _FIXED_TYPES[data_type]), _text(ident) if as_text else ident)
    if data_type == "numeric":
        return _numeric_column(name, ident, precision, scale)
    # uuid, json, jsonb, arrays, enums, intervals and anything else: their text form.
    return Column(pa.field(name, pa.string()), _text(ident))


def _numeric_column(name: str, ident: str, precision: int | None, scale: int | None) -> Column:
    """Numerics travel as text, which Arrow parses into decimals exactly."""
    if precision is None:
        select = f"round({ident}, {UNCONSTRAINED_SCALE})::text"
        arrow_type = decimal_type(UNCONSTRAINED_PRECISION, UNCONSTRAINED_SCALE)
        return Column(pa.field(name, arrow_type), select)
    if precision > MAX_DECIMAL_PRECISION:
        return Column(pa.field(name, pa.string()), _text(ident))
    arrow_type = decimal_type(precision, scale or 0)
    return Column(pa.field(name, arrow_type), _text(ident))


def _text(ident: str) -> str:
    return f"{ident}::text"


def libpq_args(settings: PostgresConfig) -> dict[str, Any]:
    """libpq's connection arguments for a PostgreSQL connection, source or destination."""
    return {
        "host": settings.host,
        "port": settings.port,
        "dbname": settings.database,
        "user": settings.username,
        "password": settings.password or None,
        "sslmode": settings.sslmode,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": "datapipe",
        # Session time zone UTC: timestamptz values read as text are written in UTC, and
        # naive timestamps mean the same everywhere.
        "options": "-c TimeZone=UTC",
    }


def connect_problem(exc: Exception, settings: PostgresConfig) -> str:
    """What a failed connection means to the user, for the PostgreSQL source and destination.

    Built from what failed where libpq's text is recognized; otherwise that text's first
    line, with the password masked.
    """
    host, port, database, user = (
        settings.host,
        settings.port,
        settings.database,
        settings.username,
    )
    text = str(exc).lower()
    address = f"{host}:{port}"
    if "password authentication failed" in text or ("role" in text and "does not exist" in text):
        return f"authentication failed for user {user!r}; check username and password"
    if "no password supplied" in text:
        return f"the server wants a password for user {user!r}; set password"
    if "database" in text and "does not exist" in text:
        return f"database {database!r} does not exist on {address}; check database"
    if "pg_hba.conf" in text:
        return (
            f"{address} does not accept user {user!r} from this host; check the server's "
            "pg_hba.conf or sslmode"
        )
    reason = unreachable_reason(text)
    if reason is not None:
        return f"cannot reach {address} ({reason}); check host and port"
    if "ssl" in text:
        return f"SSL negotiation with {address} failed; check sslmode"
    reason = driver_text(exc, settings)
    return f"cannot connect to {address} ({reason}); check the connection settings"


def driver_text(exc: Exception, settings: PostgresConfig) -> str:
    """The first line of a driver's message, with the password masked; its class name when
    it has none."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    return mask(lines[0], [settings.password] if settings.password else [])


def server_message(exc: adbc_driver_manager.Error) -> str | None:
    """The server's primary message for a statement that failed through ADBC; None when the
    server never answered (a failed connection: see connect_problem)."""
    primary = dict(exc.details or []).get(b"PG_DIAG_MESSAGE_PRIMARY")
    return None if primary is None else primary.decode(errors="replace").splitlines()[0]


class PostgresSource(SqlSource):
    """Tables and views of one PostgreSQL schema.

    Config: see PostgresConfig. Tables are named `table` (in the configured schema) or
    `schema.table`.
    """

    config_model = PostgresConfig
    settings: PostgresConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.host = self.settings.host
        self.port = self.settings.port
        self.database = self.settings.database
        self.username = self.settings.username
        self.schema = self.settings.schema_

    @property
    def namespace(self) -> str:
        return self.schema

    def check(self) -> str:
        with self._connect() as conn:
            conn.execute("select 1")
        return f"connected to database {self.database} as {self.username}"

    # The SqlSource hooks.

    driver_error = psycopg.Error
    _column_for = staticmethod(column_for)
    _quote = staticmethod(quote)

    def _location(self, namespace: str) -> str:
        return f"schema {namespace!r} of database {self.database!r}"

    def _catalog(
        self, conn: psycopg.Connection, namespace: str, table: str | None
    ) -> Iterable[tuple]:
        return conn.execute(_COLUMNS_QUERY, {"schema": namespace, "table": table})

    def _arrow_batches(
        self, query: str, params: tuple[Any, ...], columns: list[Column], table: str
    ) -> Iterator[pa.RecordBatch]:
        # The driver streams a query through COPY only when it has no bound parameters, so
        # the cursor value is written into the query as a literal, quoted by psycopg; `%`
        # then turns the query's %% back into %, as psycopg's own formatting would.
        statement = query % tuple(sql.Literal(value).as_string(None) for value in params)
        try:
            with (
                adbc_postgres.connect(make_conninfo(**libpq_args(self.settings))) as conn,
                conn.cursor() as cursor,
            ):
                cursor.adbc_statement.set_options(
                    **{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)}
                )
                cursor.execute(statement)
                yield from cursor.fetch_record_batch()
        except adbc_driver_manager.Error as exc:
            raise self._adbc_error(f"reading {table!r}", exc) from None

    # Connecting and errors.

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(**libpq_args(self.settings))
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None

    def _connect_error(self, exc: Exception) -> ConnectorError:
        return self._error(connect_problem(exc, self.settings))

    def _adbc_error(self, action: str, exc: adbc_driver_manager.Error) -> ConnectorError:
        message = server_message(exc)
        if message is None:
            return self._connect_error(exc)
        return self._error(f"{action} failed: {message}")

    def _query_error(self, action: str, exc: psycopg.Error) -> ConnectorError:
        # Server-side errors carry a primary message that never holds connection details.
        diag = getattr(exc, "diag", None)
        primary = diag.message_primary if diag is not None else None
        reason = primary or driver_text(exc, self.settings)
        return self._error(f"{action} failed: {reason}")
