"""Loads Arrow batches into a DuckDB database file.

DuckDB scans the RecordBatchReader itself (`register`), so batches stream straight from the
source into the table without a copy through Python. The load semantics are shared with
PostgreSQL in `connectors.shared.sql_types`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from connectors.base import ConnectorError
from connectors.config.duckdb import DuckDBConfig
from connectors.destinations.duckdb_refusals import (
    POSITION,
    Incoming,
    Refusals,
    error_line,
    incoming_column,
    positioned,
    without,
)
from connectors.shared.sql_destination import (
    RowRefused,
    SqlDestination,
    SqlSession,
    StagedRows,
    TableRef,
    quote,
)
from connectors.shared.sql_types import DUCKDB, is_json

# The name the incoming batches are visible under while they are inserted.
_INCOMING = "_datapipe_incoming"
# The name a batch is visible under while its refused rows are looked for.
_CHECKED = "_datapipe_checked"
_STAGE = TableRef("temp", "_datapipe_stage")
# How long a session waits for another process's session on the same file to end.
LOCK_WAIT_SECONDS = 300


class _FileLocks:
    """One lock per database file, held by the session open on it in this process.

    A step extracts and loads several tables on threads of its own (see the raw assets), and
    DuckDB's Python client loses the Arrow scan of one connection's load when another
    connection to the same file opens and closes meanwhile ("Table Function with name
    python_arrow_scan does not exist"). A file takes one writer at a time anyway.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Path, threading.RLock] = {}

    def of(self, path: Path) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(path, threading.RLock())


_FILE_LOCKS = _FileLocks()


class DuckDBSession(SqlSession):
    dialect = DUCKDB

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, lock: threading.RLock) -> None:
        self._con = con
        self._path = path
        self._lock = lock

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._con.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._con.execute(sql, params).fetchall()

    def execute_count(self, sql: str) -> int:
        row = self._con.execute(sql).fetchone()
        return int(row[0]) if row else 0

    def columns(self, table: TableRef) -> dict[str, str] | None:
        # Compared case-insensitively because DuckDB resolves identifiers that way.
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND lower(table_schema) = lower(?) "
            "AND lower(table_name) = lower(?) ORDER BY ordinal_position",
            (table.schema, table.name),
        )
        return dict(rows) or None

    def tables(self, schema: str) -> list[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND lower(table_schema) = lower(?) "
            "AND table_type = 'BASE TABLE' ORDER BY table_name",
            (schema,),
        )
        return [name for (name,) in rows]

    def insert(
        self, data: pa.RecordBatchReader, target: TableRef, column_types: Mapping[str, str]
    ) -> int:
        # DuckDB casts the scanned Arrow columns to the target's types itself.
        columns = ", ".join(quote(name) for name in data.schema.names)
        values = ", ".join(_value_expression(field) for field in data.schema)
        self._con.register(_INCOMING, data)
        rows = self.execute_count(
            f"INSERT INTO {target.sql} ({columns}) SELECT {values} FROM {_INCOMING}"
        )
        # Not in a `finally`: after a failed insert the transaction is aborted, unregistering
        # would fail and hide the real error; closing the connection drops the view anyway.
        self._con.unregister(_INCOMING)
        return rows

    def insert_refusing(
        self,
        data: pa.RecordBatchReader,
        target: TableRef,
        column_types: Mapping[str, str],
        refused: RowRefused,
    ) -> int:
        # DuckDB cannot take back part of a transaction: the refused rows are found first
        # (see duckdb_refusals), batch by batch, and only the others are inserted.
        written = [
            incoming_column(f, _value_expression(f), column_types[f.name]) for f in data.schema
        ]
        with Refusals(self._con, target, written) as refusals:
            if not refusals.any:
                return self.insert(data, target, column_types)
            rows = 0
            for batch in data:
                self._con.register(_CHECKED, positioned(batch))
                found = list(refusals.refused(self._con, _CHECKED, quote(POSITION), batch.take))
                self._con.unregister(_CHECKED)
                for _, row, message in found:
                    refused(row, message)
                kept = without(batch, [at for at, _, _ in found])
                reader = pa.RecordBatchReader.from_batches(kept.schema, [kept])
                rows += self.insert(reader, target, column_types)
        return rows

    def move_refusing(
        self, rows: StagedRows, move: Callable[[int, int], int], refused: RowRefused
    ) -> int:
        stage, position = rows.stage.sql, rows.position
        # The staged values already have the table's types: only its constraints may refuse.
        moved = [
            Incoming(name, quote(name), kind, False) for name, kind in rows.column_types.items()
        ]

        def rows_at(positions: list[int]) -> pa.Table:
            listed = ", ".join(map(str, positions))
            return self._con.sql(
                f"SELECT {rows.columns()} FROM {stage} WHERE {position} IN ({listed}) "
                f"ORDER BY {position}"
            ).to_arrow_table()

        with Refusals(self._con, rows.target, moved) as refusals:
            found = list(refusals.refused(self._con, stage, position, rows_at))
        for _, row, message in found:
            refused(row, message)
        if found:
            listed = ", ".join(str(at) for at, _, _ in found)
            self.execute(f"DELETE FROM {stage} WHERE {position} IN ({listed})")
        return move(*rows.span)

    def create_stage(self, column_types: Mapping[str, str]) -> tuple[TableRef, str]:
        definitions = ", ".join(f"{quote(name)} {kind}" for name, kind in column_types.items())
        self.execute(f"CREATE TEMP TABLE {_STAGE.sql} ({definitions})")
        # A DuckDB table's rowid follows insertion order, and the arrow scan keeps batch order.
        return _STAGE, "rowid"

    def hold(self, name: str) -> None:
        # Nothing more to take: the session already holds the database file alone, against
        # this process's threads (its file lock) and other processes (DuckDB's own lock).
        pass

    def describe(self) -> str:
        return f"DuckDB {duckdb.__version__} database {str(self._path)!r}"

    def close(self) -> None:
        try:
            self._con.close()
        finally:
            self._lock.release()


def _value_expression(field: pa.Field) -> str:
    """How an incoming column is selected: nested values become JSON text."""
    return f"to_json({quote(field.name)})" if is_json(field.type) else quote(field.name)


class DuckDBDestination(SqlDestination):
    """A DuckDB database file. Config: see DuckDBConfig (`path` is relative to `base_dir`)."""

    dialect = DUCKDB
    config_model = DuckDBConfig
    settings: DuckDBConfig

    @property
    def path(self) -> Path:
        path = Path(self.settings.path).expanduser()
        return Path(self.settings.base_dir or ".") / path

    def _connect(self) -> SqlSession:
        path = self.path.resolve()
        lock = _FILE_LOCKS.of(path)
        lock.acquire()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            con = _connect_when_free(path)
            # Fixed so that tz-aware data loaded into a TIMESTAMP column lands as UTC.
            con.execute("SET TimeZone = 'UTC'")
        except (OSError, duckdb.Error) as exc:
            lock.release()
            raise ConnectorError(
                f"connection {self.connection!r}: cannot open DuckDB database {str(path)!r} "
                f"({error_line(exc)}); check path and that no other process holds it open"
            ) from exc
        return DuckDBSession(con, path, lock)

    def _driver_error(self, exc: Exception) -> str | None:
        return error_line(exc) if isinstance(exc, duckdb.Error) else None


def _connect_when_free(path: Path) -> duckdb.DuckDBPyConnection:
    """Connect, waiting while another process has the file open: DuckDB lets one process
    at a time write a database file, and a run's load holds it for the load's length."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "Could not set lock" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
