"""Loads Arrow batches into PostgreSQL with COPY, batch by batch.

Each batch is rendered to CSV by Arrow's C++ writer and streamed through `COPY ... FROM
STDIN`, the fastest bulk path PostgreSQL offers that keeps Python out of the per-value work.
The load semantics are shared with DuckDB in `connectors.shared.sql_types`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.base import ConnectorError
from connectors.config.postgres import PostgresConfig
from connectors.shared.sql_destination import SqlDestination, SqlSession, TableRef, quote
from connectors.shared.sql_types import POSTGRES, is_json
from connectors.sources.postgres import connect_problem, libpq_args

_STAGE = 'pg_temp."_datapipe_stage"'
_STAGE_POSITION = "_datapipe_position"
# Arrow's default quoting puts every string in quotes, so for COPY's CSV format an unquoted
# empty field is NULL and a quoted one ("") an empty string.
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False)

Converter = Callable[[pa.Array], pa.Array]


class PostgresSession(SqlSession):
    dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection, where: str) -> None:
        self._conn = conn
        self._where = where

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, params or None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params or None).fetchall()

    def execute_count(self, sql: str) -> int:
        return self._conn.execute(sql).rowcount

    def columns(self, table: TableRef) -> dict[str, str] | None:
        # format_type() spells types with their modifiers, e.g. numeric(12,2).
        rows = self.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table.schema, table.name),
        )
        return dict(rows) or None

    def tables(self, schema: str) -> list[str]:
        rows = self.query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "ORDER BY c.relname",
            (schema,),
        )
        return [name for (name,) in rows]

    def insert(self, data: pa.RecordBatchReader, target: str) -> int:
        columns = ", ".join(quote(name) for name in data.schema.names)
        encode = _csv_encoder(data.schema)
        rows = 0
        with (
            self._conn.cursor() as cursor,
            cursor.copy(f"COPY {target} ({columns}) FROM STDIN (FORMAT csv)") as copy,
        ):
            for batch in data:
                copy.write(encode(batch))
                rows += batch.num_rows
        return rows

    def create_stage(self, column_types: Mapping[str, str]) -> tuple[str, str]:
        definitions = [f"{quote(name)} {kind}" for name, kind in column_types.items()]
        definitions.append(f"{quote(_STAGE_POSITION)} BIGINT GENERATED ALWAYS AS IDENTITY")
        self.execute(f"CREATE TEMP TABLE {_STAGE} ({', '.join(definitions)}) ON COMMIT DROP")
        return _STAGE, quote(_STAGE_POSITION)

    def describe(self) -> str:
        version = self._conn.info.server_version
        return f"PostgreSQL {version // 10000}.{version % 10000} at {self._where}"

    def close(self) -> None:
        self._conn.close()


def _csv_encoder(schema: pa.Schema) -> Callable[[pa.RecordBatch], bytes]:
    """A function rendering a batch of this schema as the CSV that COPY reads."""
    converters = [_csv_converter(field.type) for field in schema]

    def encode(batch: pa.RecordBatch) -> bytes:
        columns = [
            column if convert is None else convert(column)
            for column, convert in zip(batch.columns, converters, strict=True)
        ]
        sink = io.BytesIO()
        pacsv.write_csv(pa.record_batch(columns, names=schema.names), sink, _CSV_OPTIONS)
        return sink.getvalue()

    return encode


def _csv_converter(arrow_type: pa.DataType) -> Converter | None:
    """How a column must change before Arrow's CSV text is what PostgreSQL parses; None
    when it can be written as it is."""
    if pa.types.is_dictionary(arrow_type):
        convert_values = _csv_converter(arrow_type.value_type)
        if convert_values is None:
            return lambda array: array.dictionary_decode()
        return lambda array: convert_values(array.dictionary_decode())
    if is_json(arrow_type):
        return _json_text
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return _bytea_hex
    if pa.types.is_fixed_size_binary(arrow_type) or pa.types.is_binary_view(arrow_type):
        return _bytea_hex
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz:
        # COPY into a TIMESTAMP column ignores the UTC offset Arrow writes; writing UTC
        # makes tz-aware data land as UTC wall time there, as it does in DuckDB.
        utc = pa.timestamp(arrow_type.unit, tz="UTC")
        return lambda array: array.cast(utc)
    return None


def _json_text(array: pa.Array) -> pa.Array:
    values = array.to_pylist(maps_as_pydicts="lossy")
    return pa.array(
        [None if v is None else json.dumps(v, default=str, ensure_ascii=False) for v in values],
        pa.string(),
    )


def _bytea_hex(array: pa.Array) -> pa.Array:
    return pa.array(
        [None if v is None else "\\x" + v.hex() for v in array.to_pylist()], pa.string()
    )


class PostgresDestination(SqlDestination):
    """A PostgreSQL database.

    Config: see PostgresConfig.
    """

    dialect = POSTGRES
    config_model = PostgresConfig
    settings: PostgresConfig

    def _connect(self) -> SqlSession:
        settings = self.settings
        host, port, database, user = (
            settings.host,
            settings.port,
            settings.database,
            settings.username,
        )
        try:
            # Autocommit: a load sends its own BEGIN and COMMIT.
            conn = psycopg.connect(**libpq_args(settings), autocommit=True)
        except psycopg.Error as exc:
            # `from None`: the driver's own text stays out of tracebacks and logs too.
            raise ConnectorError(
                f"connection {self.connection!r}: "
                f"{connect_problem(exc, host, port, database, user)}"
            ) from None
        return PostgresSession(conn, f"{host}:{port}/{database}")

    def _driver_error(self, exc: Exception) -> str | None:
        if not isinstance(exc, psycopg.Error):
            return None
        # The server's primary message names the problem without any connection details.
        message = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
        return message.splitlines()[0]
