"""Loads Arrow batches into PostgreSQL with binary COPY, through the ADBC PostgreSQL driver.

The driver encodes each batch into COPY's binary format in C++ and streams it, so no Python
runs per row and the server has no text to parse. The whole load (DDL, rows, cursor states)
runs on the one ADBC connection, inside one explicit transaction. The load semantics are
shared with DuckDB in `connectors.shared.sql_destination`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc_postgres
import duckdb
import pyarrow as pa
from psycopg.conninfo import make_conninfo

from connectors.base import ConnectorError
from connectors.config.postgres import PostgresConfig
from connectors.shared.refused_rows import write_isolating
from connectors.shared.sql_destination import (
    RowRefused,
    SqlDestination,
    SqlSession,
    StagedRows,
    TableRef,
    quote,
)
from connectors.shared.sql_types import (
    POSTGRES,
    Family,
    SqlType,
    from_arrow,
    is_json,
    parse_sql_type,
)
from connectors.sources.postgres import connect_problem, libpq_args, server_message

_STAGE = TableRef("pg_temp", "_datapipe_stage")
_STAGE_POSITION = "_datapipe_position"
# Rows whose columns binary COPY cannot write as the target's types land here first.
_CAST_STAGE = TableRef("pg_temp", "_datapipe_cast")
# The SQLSTATE classes of a refused value: data exceptions (a value its type cannot hold)
# and integrity constraint violations (NOT NULL, CHECK, UNIQUE, FOREIGN KEY).
_REFUSED_CLASSES = ("22", "23")

Converter = Callable[[pa.Array], pa.Array]
# Types the driver has no writer for, and the type each is cast to exactly (uint64 as the
# NUMERIC(20,0) a created table gives it).
_EXACT_CASTS: tuple[tuple[Callable[[pa.DataType], bool], pa.DataType], ...] = (
    (pa.types.is_date64, pa.date32()),
    (pa.types.is_time32, pa.time64("us")),
    (pa.types.is_float16, pa.float32()),
    (pa.types.is_uint64, pa.decimal128(20, 0)),
)


class PostgresSession(SqlSession):
    dialect = POSTGRES

    def __init__(self, conn: adbc_postgres.Connection, where: str) -> None:
        self._conn = conn
        self._cursor = conn.cursor()
        self._where = where

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, params or None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql, params or None)
        return self._cursor.fetchall()

    def execute_count(self, sql: str) -> int:
        self._cursor.execute(sql)
        return self._cursor.rowcount

    def hold(self, name: str) -> None:
        # A transaction-level advisory lock: released by COMMIT or ROLLBACK, and by the
        # server when a killed client's connection drops.
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", (name,))

    def columns(self, table: TableRef) -> dict[str, str] | None:
        # format_type() spells types with their modifiers, e.g. numeric(12,2).
        rows = self.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table.schema, table.name),
        )
        return dict(rows) or None

    def tables(self, schema: str) -> list[str]:
        rows = self.query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY c.relname",
            (schema,),
        )
        return [name for (name,) in rows]

    def insert(
        self, data: pa.RecordBatchReader, target: TableRef, column_types: Mapping[str, str]
    ) -> int:
        data = _wire_reader(data)
        declared = {name: parse_sql_type(column_types[name]) for name in data.schema.names}
        if all(_copied_as(f.type, declared[f.name]) for f in data.schema):
            return self._copy(data, target, "append")
        # Binary COPY sends values in the data's own types, which the server does not convert.
        # So the rows go into a temporary table of those types first, and reach the target
        # through their text form, parsed by the column type's own input function: the values
        # and the errors (naming a value the column cannot hold) are those of a text COPY.
        # Text going into a text column is assigned as it is: an explicit CAST to VARCHAR(n)
        # would cut an overlong value short, where the assignment refuses it, as COPY does.
        # ctid keeps the order the rows arrived in, which an upsert's stage relies on.
        self._copy(data, _CAST_STAGE, "create")
        columns = ", ".join(quote(name) for name in data.schema.names)
        values = ", ".join(
            quote(f.name)
            if _copied_as(f.type, declared[f.name]) and declared[f.name].family is Family.TEXT
            else f"CAST(CAST({quote(f.name)} AS TEXT) AS {column_types[f.name]})"
            for f in data.schema
        )
        rows = self.execute_count(
            f"INSERT INTO {target.sql} ({columns}) "
            f"SELECT {values} FROM {_CAST_STAGE.sql} ORDER BY ctid"
        )
        self.execute(f"DROP TABLE {_CAST_STAGE.sql}")
        return rows

    def insert_refusing(
        self,
        data: pa.RecordBatchReader,
        target: TableRef,
        column_types: Mapping[str, str],
        refused: RowRefused,
    ) -> int:
        # One write per batch, each under a savepoint: a refused value then takes back only
        # its batch, which is still at hand to halve; the batches before it stay written.
        rows = 0
        for batch in data:
            if not batch.num_rows:
                continue

            def write(start: int, stop: int, batch: pa.RecordBatch = batch) -> int:
                part = batch.slice(start, stop - start)
                reader = pa.RecordBatchReader.from_batches(part.schema, [part])
                return self.insert(reader, target, column_types)

            def refused_at(index: int, message: str, batch: pa.RecordBatch = batch) -> None:
                refused(batch.slice(index, 1).to_pylist()[0], message)

            rows += write_isolating(self, write, (0, batch.num_rows), _refusal, refused_at)
        return rows

    def move_refusing(
        self, rows: StagedRows, move: Callable[[int, int], int], refused: RowRefused
    ) -> int:
        names = list(rows.column_types)

        def refused_at(at: int, message: str) -> None:
            [row] = self.query(
                f"SELECT {rows.columns()} FROM {rows.stage.sql} WHERE {rows.position} = {at}"
            )
            refused(dict(zip(names, row, strict=True)), message)

        return write_isolating(self, move, rows.span, _refusal, refused_at)

    def _copy(self, data: pa.RecordBatchReader, target: TableRef, mode: str) -> int:
        # `create` makes a temporary table typed by the data; `append` names the columns, so
        # the target may hold others and in any order.
        temporary = mode == "create"
        return self._cursor.adbc_ingest(
            target.name,
            data,
            mode=mode,
            db_schema_name=None if temporary else target.schema,
            temporary=temporary,
        )

    def create_stage(self, column_types: Mapping[str, str]) -> tuple[TableRef, str]:
        definitions = [f"{quote(name)} {kind}" for name, kind in column_types.items()]
        definitions.append(f"{quote(_STAGE_POSITION)} BIGINT GENERATED ALWAYS AS IDENTITY")
        self.execute(f"CREATE TEMP TABLE {_STAGE.sql} ({', '.join(definitions)}) ON COMMIT DROP")
        return _STAGE, quote(_STAGE_POSITION)

    def describe(self) -> str:
        # SHOW cannot run inside the COPY the driver wraps every query in.
        version = self.query("SELECT current_setting('server_version_num')::int")[0][0]
        return f"PostgreSQL {version // 10000}.{version % 10000} at {self._where}"

    def close(self) -> None:
        self._cursor.close()
        self._conn.close()


def _refusal(exc: Exception) -> str | None:
    """The server's message when it refused a value; None for any other error."""
    if not isinstance(exc, adbc_driver_manager.Error):
        return None
    if (exc.sqlstate or "")[:2] not in _REFUSED_CLASSES:
        return None
    return server_message(exc)


def _copied_as(arrow_type: pa.DataType, declared: SqlType) -> bool:
    """Whether binary COPY writes values of this Arrow type as the declared column type."""
    incoming = from_arrow(arrow_type)
    match incoming.family:
        case Family.NULL:
            return True
        case Family.INTEGER:
            # The driver writes 8-bit integers as smallint, PostgreSQL's narrowest.
            return declared.family is Family.INTEGER and declared.bits == max(16, incoming.bits)
        case Family.FLOAT:
            return declared == incoming
        case Family.TIMESTAMP | Family.TIMESTAMPTZ:
            # Both are microseconds since 2000-01-01 on the wire: tz-aware data lands as UTC
            # wall time in a TIMESTAMP column, as in DuckDB.
            return declared.family in (Family.TIMESTAMP, Family.TIMESTAMPTZ)
        case Family.JSON | Family.OTHER:
            # jsonb's binary form is not its text.
            return False
        case _:
            # Numerics carry their own scale, which the column's typmod then checks.
            return declared.family is incoming.family


def _wire_reader(data: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """The batches with every column in a type the driver writes (see `_wire_converter`)."""
    converters = [_wire_converter(field.type) for field in data.schema]
    if not any(converters):
        return data
    schema = pa.schema(
        field if convert is None else field.with_type(convert(pa.nulls(0, field.type)).type)
        for field, convert in zip(data.schema, converters, strict=True)
    )

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in data:
            columns = [
                column if convert is None else convert(column)
                for column, convert in zip(batch.columns, converters, strict=True)
            ]
            yield pa.record_batch(columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _wire_converter(arrow_type: pa.DataType) -> Converter | None:
    """How a column must change before the driver can write it; None when it can as it is."""
    if pa.types.is_dictionary(arrow_type):
        convert_values = _wire_converter(arrow_type.value_type)
        if convert_values is None:
            return lambda array: array.dictionary_decode()
        return lambda array: convert_values(array.dictionary_decode())
    if is_json(arrow_type):
        return _json_text
    wire_type = next((t for matches, t in _EXACT_CASTS if matches(arrow_type)), None)
    if wire_type is None:
        return None
    return lambda array: array.cast(wire_type)


def _json_text(array: pa.Array) -> pa.Array:
    """Nested values as JSON text, by DuckDB's `to_json` (as the DuckDB destination writes
    them), so no Python runs per value."""
    con = getattr(_json_writers, "connection", None)
    if con is None:
        # One per thread: a DuckDB connection is not for concurrent use, and loads run on
        # the threads of an extract step.
        con = _json_writers.connection = duckdb.connect(config={"threads": 1})
    con.register("nested", pa.table({"value": array}))
    try:
        text = con.sql("SELECT to_json(value)::VARCHAR AS value FROM nested").to_arrow_table()
    finally:
        con.unregister("nested")
    return text.column("value").combine_chunks()


_json_writers = threading.local()


class PostgresDestination(SqlDestination):
    """A PostgreSQL database.

    Config: see PostgresConfig.
    """

    dialect = POSTGRES
    config_model = PostgresConfig
    settings: PostgresConfig

    def _connect(self) -> SqlSession:
        settings = self.settings
        try:
            # Autocommit: a load sends its own BEGIN and COMMIT.
            conn = adbc_postgres.connect(make_conninfo(**libpq_args(settings)), autocommit=True)
        except adbc_driver_manager.Error as exc:
            # `from None`: the driver's own text stays out of tracebacks and logs too.
            raise ConnectorError(f"connection {self.connection!r}: {self._problem(exc)}") from None
        return PostgresSession(conn, f"{settings.host}:{settings.port}/{settings.database}")

    def _driver_error(self, exc: Exception) -> str | None:
        if not isinstance(exc, adbc_driver_manager.Error):
            return None
        return server_message(exc) or self._problem(exc)

    def _problem(self, exc: Exception) -> str:
        return connect_problem(exc, self.settings)
