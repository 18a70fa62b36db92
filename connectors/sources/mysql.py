"""MySQL and MariaDB as a source, through pymysql.

Tables stream through an unbuffered server-side cursor (SSCursor), BATCH_ROWS rows per
fetch, so memory stays bounded whatever the table's size; every fetch becomes one Arrow
record batch built column by column. Error messages are composed here from the server's
error codes rather than passed on, so a password can never reach a log.

ConnectorX 0.4.6, a columnar reader, was tried and not taken. It reads 3x faster, but its
`arrow_stream` reads ahead of a slow consumer without bound: at batch_size 8192, tables of
131, 262 and 524 MB peaked 75, 88 and 162 MB above the process's start. It also panics on a
DECIMAL wider than 28 digits (unless read as text), and retries a refused connection for 30
seconds, logging each try to stderr. arrow-odbc 10.6 over MariaDB Connector/ODBC 3.1 (Debian's
unixodbc and odbc-mariadb) was tried too: 3x faster, but memory grew with the result (262k
and 1M rows of 500 bytes peaked 135 and 552 MB above the start, with NO_CACHE=1 and
FORWARDONLY=1), and unsigned integers arrived as signed (65535 as -1). DuckDB's MySQL
extension on PyPI is built for DuckDB 1.5, not the 2.0 used here, and PyPI has no ADBC MySQL
driver.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pyarrow as pa
import pymysql
from pymysql.constants import ER, FIELD_TYPE
from pymysql.converters import conversions, escape_datetime
from pymysql.cursors import SSCursor

from connectors.base import BATCH_ROWS, ConnectorError
from connectors.config.mysql import MySQLConfig
from connectors.shared.secrets import mask
from connectors.shared.sql_source import Column, SqlSource, listing, quoted, unreachable_reason
from connectors.shared.sql_types import decimal_type

# Schemas every server has; they are not offered when a database name is wrong.
SYSTEM_DATABASES = {"information_schema", "mysql", "performance_schema", "sys"}

# These values stay the text the server sent: Arrow parses a whole column of it far faster
# than pymysql builds one Decimal or datetime per value, and TIME (-838:59:59 to
# 838:59:59, a duration rather than a time of day) is read as that text.
_KEPT_AS_TEXT = {
    FIELD_TYPE.DECIMAL,
    FIELD_TYPE.NEWDECIMAL,
    FIELD_TYPE.DATE,
    FIELD_TYPE.DATETIME,
    FIELD_TYPE.TIMESTAMP,
    FIELD_TYPE.TIME,
}


def _escape_datetime(value: dt.datetime, mapping: Any = None) -> str:
    """pymysql writes a datetime's wall time and drops its zone; the session is in UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return escape_datetime(value, mapping)


_CONVERSIONS: dict[Any, Any] = {
    **{key: value for key, value in conversions.items() if key not in _KEPT_AS_TEXT},
    dt.datetime: _escape_datetime,
}

# (signed, unsigned). Unsigned BIGINT is uint64: exact, and destinations without unsigned
# integers store it as DECIMAL(20).
_INTEGERS: dict[str, tuple[pa.DataType, pa.DataType]] = {
    "tinyint": (pa.int8(), pa.uint8()),
    "smallint": (pa.int16(), pa.uint16()),
    "mediumint": (pa.int32(), pa.uint32()),
    "int": (pa.int32(), pa.uint32()),
    "bigint": (pa.int64(), pa.uint64()),
}
_TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set")
# Bytes as stored, BIT(n) values and geometries (the server's WKB-with-SRID form) included.
_BINARY_TYPES = (
    *("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit"),
    *("geometry", "point", "linestring", "polygon", "multipoint", "multilinestring"),
    *("multipolygon", "geometrycollection"),
)
_FIXED_TYPES: dict[str, pa.DataType] = {
    "float": pa.float32(),
    "double": pa.float64(),
    "year": pa.int16(),
    # MySQL's JSON arrives as text; MariaDB's JSON is a LONGTEXT already.
    "json": pa.string(),
    "time": pa.string(),
    **dict.fromkeys(_TEXT_TYPES, pa.string()),
    **dict.fromkeys(_BINARY_TYPES, pa.binary()),
}
# Types whose text the server sends is parsed by Arrow (see _KEPT_AS_TEXT).
_PARSED_TYPES: dict[str, pa.DataType] = {
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    # TIMESTAMP is stored in UTC and the session time zone is UTC (see _connect_args).
    "timestamp": pa.timestamp("us", tz="UTC"),
}

_COLUMNS_QUERY = """
    select c.table_name, c.column_name, c.data_type, c.column_type,
           c.numeric_precision, c.numeric_scale
    from information_schema.columns c
    join information_schema.tables t
      on t.table_schema = c.table_schema and t.table_name = c.table_name
    where c.table_schema = %s
      and t.table_type in ('BASE TABLE', 'SYSTEM VERSIONED', 'VIEW')
      and (%s is null or c.table_name = %s)
    order by c.table_name, c.ordinal_position
"""


def quote(identifier: str) -> str:
    """A backquoted identifier. Its % is doubled because pymysql %-formats every query."""
    return quoted(identifier, "`")


def column_for(
    name: str, data_type: str, column_type: str, precision: int | None, scale: int | None
) -> Column:
    """Map an information_schema column to Arrow, with the expression that reads it."""
    data_type, ident = data_type.lower(), quote(name)
    if column_type.lower() == "tinyint(1)":  # what BOOL and BOOLEAN are declared as
        return Column(pa.field(name, pa.bool_()), ident, arrives_as=pa.int8())
    if data_type in _INTEGERS:
        signed, unsigned = _INTEGERS[data_type]
        arrow_type = unsigned if "unsigned" in column_type.lower() else signed
        return Column(pa.field(name, arrow_type), ident)
    if data_type in _FIXED_TYPES:
        return Column(pa.field(name, _FIXED_TYPES[data_type]), ident)
    if data_type in _PARSED_TYPES:
        return _parsed_column(name, data_type, ident)
    if data_type == "decimal" and precision is not None:
        arrow_type = decimal_type(precision, scale or 0)
        return Column(pa.field(name, arrow_type), ident, arrives_as=pa.string())
    # MariaDB's inet4, inet6, uuid and anything newer: their text form.
    return Column(pa.field(name, pa.string()), f"cast({ident} as char)")


def _parsed_column(name: str, data_type: str, ident: str) -> Column:
    arrow_type = _PARSED_TYPES[data_type]
    # Arrow only parses text into a zoned timestamp when the text names its zone.
    select = f"concat({ident}, 'Z')" if data_type == "timestamp" else ident
    return Column(pa.field(name, arrow_type), select, arrives_as=pa.string())


class MySQLSource(SqlSource):
    """Tables and views of one MySQL or MariaDB database.

    Config: see MySQLConfig. Tables are named `table` (in the configured database) or
    `database.table`.
    """

    namespace_kind = "database"
    config_model = MySQLConfig
    settings: MySQLConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.host = self.settings.host
        self.port = self.settings.port
        self.database = self.settings.database
        self.username = self.settings.username
        self.connect_timeout = self.settings.connect_timeout

    @property
    def namespace(self) -> str:
        return self.database

    def check(self) -> str:
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("select 1")
        return f"connected to database {self.database} as {self.username}"

    # The SqlSource hooks.

    driver_error = pymysql.MySQLError
    _column_for = staticmethod(column_for)
    _quote = staticmethod(quote)

    def _catalog(
        self, conn: pymysql.Connection, namespace: str, table: str | None
    ) -> Iterable[tuple]:
        with conn.cursor() as cur:
            cur.execute(_COLUMNS_QUERY, (namespace, table, table))
            return cur.fetchall()

    def _arrow_batches(
        self, query: str, params: tuple[Any, ...], columns: list[Column], table: str
    ) -> Iterator[pa.RecordBatch]:
        with self._connect() as conn, self._server_cursor(conn) as cursor:
            try:
                cursor.execute(query, params)
                while rows := cursor.fetchmany(BATCH_ROWS):
                    yield self._to_batch(rows, columns, table)
            except pymysql.MySQLError as exc:
                raise self._query_error(f"reading {table!r}", exc) from None

    def _to_batch(self, rows: list[tuple], columns: list[Column], table: str) -> pa.RecordBatch:
        """Rows to a record batch: transposed, so each column converts in a single call."""
        arrays = []
        for column, values in zip(columns, zip(*rows, strict=True), strict=True):
            try:
                arrays.append(pa.array(values, type=column.arrives_as or column.field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                raise self._misfit(table, column.field, exc) from None
        return pa.record_batch(arrays, names=[column.field.name for column in columns])

    @contextlib.contextmanager
    def _server_cursor(self, conn: pymysql.Connection) -> Iterator[SSCursor]:
        """An unbuffered cursor. The connection's closing ends it: closing the cursor
        first would make it receive whatever rows the server has yet to send."""
        cursor = conn.cursor(SSCursor)
        try:
            yield cursor
        except GeneratorExit:
            self._abandon(conn, cursor)
            raise

    def _abandon(self, conn: pymysql.Connection, cursor: SSCursor) -> None:
        """End a read its reader left early: otherwise closing the unbuffered cursor would
        first receive every row the server has yet to send, the rest of the table."""
        with self._connect() as other, other.cursor() as cur:
            cur.execute("kill query %s", (conn.thread_id(),))
        # The server now ends the result with an "interrupted" error, which is expected.
        with contextlib.suppress(pymysql.MySQLError):
            cursor.close()

    # Connecting and errors.

    def _connect(self) -> pymysql.Connection:
        try:
            return pymysql.connect(**self._connect_args(), database=self.database)
        except pymysql.MySQLError as exc:
            raise self._connect_error(exc) from None

    def _connect_args(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.username,
            "password": self.settings.password or "",
            "connect_timeout": self.connect_timeout,
            "charset": "utf8mb4",
            "conv": _CONVERSIONS,
            # Session time zone UTC: TIMESTAMP values arrive, and are compared, in UTC.
            "init_command": "set time_zone = '+00:00'",
            "program_name": "datapipe",
        }

    def _connect_error(self, exc: pymysql.MySQLError) -> ConnectorError:
        """A message built from the error code; the server's own text is never repeated."""
        code = exc.args[0] if exc.args else None
        address = f"{self.host}:{self.port}"
        if code == ER.ACCESS_DENIED_ERROR:
            return self._error(
                f"authentication failed for user {self.username!r}; check username and password"
            )
        if code == ER.BAD_DB_ERROR:
            return self._error(
                f"database {self.database!r} does not exist on {address}; "
                + self._available_databases()
            )
        if code == ER.DBACCESS_DENIED_ERROR:
            return self._error(
                f"user {self.username!r} may not use database {self.database!r} on {address}; "
                + self._available_databases()
            )
        if code == ER.HOST_NOT_PRIVILEGED:
            return self._error(
                f"{address} does not accept user {self.username!r} from this host; check "
                "the host part of the user's grants"
            )
        reason = unreachable_reason(str(exc))
        if reason is not None:
            return self._error(f"cannot reach {address} ({reason}); check host and port")
        # The client's own words (error 2013, "Lost connection ..."), the password masked.
        words = str(exc.args[1]) if len(exc.args) > 1 else type(exc).__name__
        secrets = [self.settings.password] if self.settings.password else []
        return self._error(
            f"cannot connect to {address} (error {code}: {mask(words, secrets)}); "
            "check the connection settings"
        )

    def _available_databases(self) -> str:
        """The databases this user can see, for a message about a wrong database name."""
        try:
            with pymysql.connect(**self._connect_args()) as conn, conn.cursor() as cur:
                cur.execute("show databases")
                names = sorted(name for (name,) in cur if name not in SYSTEM_DATABASES)
        except pymysql.MySQLError:
            return "check database"
        if not names:
            return f"user {self.username!r} can see no databases there"
        return f"available: {listing(names)}"

    def _query_error(self, action: str, exc: pymysql.MySQLError) -> ConnectorError:
        # The server's message for a failed statement holds no connection details.
        reason = exc.args[1] if len(exc.args) > 1 else type(exc).__name__
        return self._error(f"{action} failed: {reason}")
