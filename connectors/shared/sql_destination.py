"""The load semantics the SQL destinations (DuckDB, PostgreSQL) share.

DuckDB and PostgreSQL speak nearly the same SQL (transactional DDL, `ON CONFLICT`,
`DISTINCT ON`, `DELETE ... USING`), so one implementation of create / add-columns / append /
replace / upsert / cursor-state drives both. A destination only supplies a `SqlSession`: how
to connect, look up columns and bulk-write Arrow batches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from connectors.base import (
    ConnectorError,
    CursorState,
    Destination,
    LoadMode,
    LoadRequest,
    LoadResult,
    TableSchema,
    refuse_overtaken,
)
from connectors.shared.file_rows import FILE_COLUMN, stamped_with_file
from connectors.shared.rejects import Reject, RejectLog, row_json
from connectors.shared.sql_types import (
    Dialect,
    arrow_schema,
    from_arrow,
    is_compatible,
    parse_sql_type,
)

# Cursor states live next to the data so they commit in the same transaction as the rows.
STATE_TABLE = "_datapipe_state"

# Told of each row a destination refused: the row (column -> value) and the database's
# one-line message.
RowRefused = Callable[[Mapping[str, Any], str], None]


def quote(identifier: str) -> str:
    """An identifier quoted for SQL, so any name (keywords, capitals, quotes) is safe."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableRef:
    """A table in a schema, as named in load requests."""

    schema: str
    name: str

    @classmethod
    def parse(cls, table: str, default_schema: str) -> TableRef:
        """`table` or `schema.table`."""
        schema, _, name = table.rpartition(".")
        return cls(schema or default_schema, name)

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"


@dataclass(frozen=True)
class StagedRows:
    """An upsert's staged rows on their way into its table: the stage, the expression of a
    staged row's position and the span of the positions (start <= p < stop), the table and
    the columns moved (name -> declared type)."""

    stage: TableRef
    position: str
    span: tuple[int, int]
    target: TableRef
    column_types: Mapping[str, str]

    def columns(self) -> str:
        """The moved columns, for a SELECT list."""
        return _column_list(self.column_types)


class SqlSession(ABC):
    """One open connection to a SQL destination, in the session time zone UTC."""

    dialect: ClassVar[Dialect]

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return all its rows."""

    @abstractmethod
    def execute_count(self, sql: str) -> int:
        """Run an INSERT/UPDATE/DELETE and return how many rows it changed."""

    @abstractmethod
    def columns(self, table: TableRef) -> dict[str, str] | None:
        """The table's columns in order, as name -> declared type; None if it doesn't exist."""

    @abstractmethod
    def tables(self, schema: str) -> list[str]:
        """The names of the tables in a schema."""

    @abstractmethod
    def insert(
        self, data: pa.RecordBatchReader, target: TableRef, column_types: Mapping[str, str]
    ) -> int:
        """Stream every batch into the columns of `target` named like the data's columns,
        whose declared types are `column_types`."""

    @abstractmethod
    def insert_refusing(
        self,
        data: pa.RecordBatchReader,
        target: TableRef,
        column_types: Mapping[str, str],
        refused: RowRefused,
    ) -> int:
        """Like `insert`, but a row the database refuses for one of its values (one the
        column's type cannot hold, or one breaking a constraint of `target`) is left out and
        passed to `refused`; the other rows are inserted. Rows are only worked on one by one
        when the database refuses some."""

    @abstractmethod
    def move_refusing(
        self, rows: StagedRows, move: Callable[[int, int], int], refused: RowRefused
    ) -> int:
        """Run `move(start, stop)`, which writes the staged rows at positions start <= p < stop
        into the target and returns how many it wrote, over the rows' span; a row the target
        refuses is left out and passed to `refused`, the others are written."""

    @abstractmethod
    def create_stage(self, column_types: Mapping[str, str]) -> tuple[TableRef, str]:
        """Create a temporary staging table with these columns, dropped by the transaction's
        end at the latest; return it and an expression giving each staged row's position in
        insertion order."""

    @abstractmethod
    def hold(self, name: str) -> None:
        """Wait for, then hold until the transaction ends, the lock called `name`: loads
        into one table from several processes run one after another."""

    @abstractmethod
    def describe(self) -> str:
        """What the session is connected to, for `check()`."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect."""


class SqlDestination(Destination):
    """The load semantics of every SQL destination; subclasses supply the session."""

    dialect: ClassVar[Dialect]

    @abstractmethod
    def _connect(self) -> SqlSession:
        """Open a session, raising a ConnectorError that says what to fix when that fails."""

    @abstractmethod
    def _driver_error(self, exc: Exception) -> str | None:
        """The one-line, secret-free text of a database error; None for any other error."""

    @property
    def schema(self) -> str:
        """The schema that unqualified tables and the cursor states live in."""
        return str(getattr(self.settings, "schema_", None) or self.dialect.default_schema)

    def check(self) -> str:
        with self._session() as session:
            return f"connection {self.connection!r}: {session.describe()}"

    def discover(self) -> list[TableSchema]:
        with self._session() as session:
            return [
                TableSchema(name, arrow_schema(session.columns(TableRef(self.schema, name)) or {}))
                for name in session.tables(self.schema)
                if name != STATE_TABLE
            ]

    def read_state(self, pipeline: str, source_table: str) -> CursorState | None:
        state_table = TableRef(self.schema, STATE_TABLE)
        with self._session() as session:
            if session.columns(state_table) is None:
                return None
            rows = session.query(
                f"SELECT state FROM {state_table.sql} WHERE pipeline = $1 AND source_table = $2",
                (pipeline, source_table),
            )
        return CursorState.from_json(json.loads(rows[0][0])) if rows else None

    def load(self, data: pa.RecordBatchReader, request: LoadRequest) -> LoadResult:
        check_upsert_key(self.connection, data.schema, request)
        if request.replace_file is not None:
            data = stamped_with_file(data, request.replace_file, self.connection, request.table)
        tracked = _TrackedReader(data)
        table_load = _TableLoad(
            connection=self.connection,
            table=TableRef.parse(request.table, self.schema),
            state_schema=self.schema,
            request=request,
        )
        with self._session() as session:
            session.execute("BEGIN")
            try:
                result = table_load.run(session, tracked.reader)
                if request.rejects is not None:
                    request.rejects.enforce()
                session.execute("COMMIT")
            except BaseException as exc:
                _rollback(session)
                # A database that reads the batches itself (DuckDB) reports the source's
                # failure as its own error; surface the source's error as it was raised.
                if tracked.error is not None:
                    raise tracked.error from None
                message = self._driver_error(exc) if isinstance(exc, Exception) else None
                if message is None:
                    raise
                raise ConnectorError(
                    f"connection {self.connection!r}: loading table {request.table!r} "
                    f"failed: {message}"
                ) from exc
        return result

    @contextlib.contextmanager
    def _session(self) -> Iterator[SqlSession]:
        """A session that is always closed and whose driver errors become ConnectorErrors."""
        session = self._connect()
        try:
            yield session
        except ConnectorError:
            raise
        except Exception as exc:
            message = self._driver_error(exc)
            if message is None:
                raise
            raise ConnectorError(f"connection {self.connection!r}: {message}") from exc
        finally:
            session.close()


def check_upsert_key(connection: str, schema: pa.Schema, request: LoadRequest) -> None:
    """An upsert needs an upsert_key whose columns are all in the data."""
    if request.mode is not LoadMode.UPSERT:
        return
    if not request.upsert_key:
        raise ConnectorError(
            f"connection {connection!r}: table {request.table!r} is loaded with mode upsert "
            "but has no upsert_key; set upsert_key to the column(s) that identify a row"
        )
    for key in request.upsert_key:
        if key not in schema.names:
            raise ConnectorError(
                f"connection {connection!r}: upsert_key column {key!r} is not in the data "
                f"loaded into table {request.table!r}; use one of {', '.join(schema.names)}"
            )


def _rollback(session: SqlSession) -> None:
    # The load's own error is the one worth reporting: if the connection is broken the
    # rollback fails too, and the server discards the open transaction anyway.
    with contextlib.suppress(Exception):
        session.execute("ROLLBACK")


class _TrackedReader:
    """Passes batches through, remembering the exception the source raised, if any."""

    def __init__(self, data: pa.RecordBatchReader) -> None:
        self.error: Exception | None = None
        self.reader = pa.RecordBatchReader.from_batches(data.schema, self._batches(data))

    def _batches(self, data: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        try:
            yield from data
        except Exception as exc:
            self.error = exc
            raise


@dataclass(frozen=True)
class _TableLoad:
    """One load request, run inside an open transaction."""

    connection: str
    table: TableRef
    state_schema: str
    request: LoadRequest

    def run(self, session: SqlSession, data: pa.RecordBatchReader) -> LoadResult:
        self._hold_table(session)
        existing = session.columns(self.table)
        if existing is None:
            column_types, added = self._create(session, data.schema), ()
        else:
            column_types, added = self._add_missing_columns(session, data.schema, existing)
            if self.request.replace_window is not None:
                self._delete_window(session, data.schema, column_types)
            elif self.request.replace_file is not None:
                self._delete_file(session, self.request.replace_file)
            elif self.request.mode is LoadMode.REPLACE:
                session.execute(f"TRUNCATE TABLE {self.table.sql}")
        if self.request.mode is LoadMode.UPSERT:
            rows = self._upsert(session, data, column_types)
        else:
            rows = self._insert(session, data, self.table, column_types)
        self._save_states(session)
        return LoadResult(
            rows_loaded=rows,
            table_rows=session.query(f"SELECT count(*) FROM {self.table.sql}")[0][0],
            columns_added=added,
            table_created=existing is None,
        )

    def _hold_table(self, session: SqlSession) -> None:
        """Take the table's load lock, then refuse a cursor another run committed since this
        run's extract started: both runs read from the same cursor, so loading this one too
        would double the rows between them."""
        session.hold(f"datapipe load {self.table.schema}.{self.table.name}")
        state_table = TableRef(self.state_schema, STATE_TABLE)

        def read_committed(pipeline: str) -> list[tuple[Any, ...]]:
            if session.columns(state_table) is None:
                return []
            sql = f"SELECT source_table, state FROM {state_table.sql} WHERE pipeline = $1"
            return session.query(sql, (pipeline,))

        refuse_overtaken(self.request.state_updates, read_committed)

    def _delete_window(
        self, session: SqlSession, schema: pa.Schema, column_types: Mapping[str, str]
    ) -> None:
        """Delete the partition's rows: the load then puts back exactly that window's rows,
        so loading a partition again changes nothing, and other partitions are untouched."""
        window = self.request.replace_window
        assert window is not None, "only a partition's load replaces a window"
        if window.column not in schema.names:
            raise ConnectorError(
                f"connection {self.connection!r}: the data loaded into table "
                f"{self.request.table!r} has no column {window.column!r}, which the pipeline "
                "is partitioned by; keep that column in the loaded data"
            )
        start, end = window.bounds(schema.field(window.column).type, self.connection)
        column, sql_type = quote(window.column), column_types[window.column]
        # The bounds go as text, cast by the column's type: the PostgreSQL driver (ADBC)
        # ends the open transaction when it binds a zoned datetime.
        session.execute(
            f"DELETE FROM {self.table.sql} WHERE {column} >= CAST($1 AS {sql_type}) "
            f"AND {column} < CAST($2 AS {sql_type})",
            (start.isoformat(), end.isoformat()),
        )

    def _delete_file(self, session: SqlSession, file: str) -> None:
        """Delete the rows an earlier load of this file put in: the load then puts back exactly
        the file's rows, so loading it again changes nothing, and other files' rows (and rows
        loaded before the table was partitioned by file, whose column is NULL) are untouched."""
        session.execute(f"DELETE FROM {self.table.sql} WHERE {quote(FILE_COLUMN)} = $1", (file,))

    def _create(self, session: SqlSession, schema: pa.Schema) -> dict[str, str]:
        """Create the table from the data's schema; return the declared column types."""
        if not self.request.create_table_if_missing:
            raise ConnectorError(
                f"connection {self.connection!r}: table {self.request.table!r} does not exist "
                "and create_table_if_missing is false; create it or set "
                "create_table_if_missing: true"
            )
        _ensure_schema(session, self.table.schema)
        types = {f.name: session.dialect.render(from_arrow(f.type)) for f in schema}
        definitions = [f"{quote(name)} {sql_type}" for name, sql_type in types.items()]
        if self.request.mode is LoadMode.UPSERT:
            definitions.append(f"PRIMARY KEY ({_column_list(self.request.upsert_key)})")
        session.execute(f"CREATE TABLE {self.table.sql} ({', '.join(definitions)})")
        return types

    def _add_missing_columns(
        self, session: SqlSession, schema: pa.Schema, existing: Mapping[str, str]
    ) -> tuple[dict[str, str], tuple[str, ...]]:
        """Check every incoming column against the table, then add the missing ones.

        Returns the column type of each incoming column and the names of those added.
        """
        dialect = session.dialect
        declared = {dialect.key(name): sql_type for name, sql_type in existing.items()}
        types: dict[str, str] = {}
        missing: list[str] = []
        for field in schema:
            current = declared.get(dialect.key(field.name))
            if current is None:
                types[field.name] = dialect.render(from_arrow(field.type))
                missing.append(field.name)
            else:
                self._check_compatible(dialect, field, current)
                types[field.name] = current
        # All checks come first, so a conflict is reported before the table is altered.
        for name in missing:
            session.execute(f"ALTER TABLE {self.table.sql} ADD COLUMN {quote(name)} {types[name]}")
        return types, tuple(missing)

    def _check_compatible(self, dialect: Dialect, field: pa.Field, current: str) -> None:
        incoming = from_arrow(field.type)
        if not is_compatible(incoming, parse_sql_type(current)):
            raise ConnectorError(
                f"connection {self.connection!r}: column {field.name!r} of table "
                f"{self.request.table!r} is {current.upper()} but the data is "
                f"{dialect.render(incoming)}; change the column type or cast it in a "
                "computed step"
            )

    def _insert(
        self,
        session: SqlSession,
        data: pa.RecordBatchReader,
        target: TableRef,
        column_types: Mapping[str, str],
    ) -> int:
        """Insert the rows; with a reject log, reject those the database refuses."""
        if self.request.rejects is None:
            return session.insert(data, target, column_types)
        return session.insert_refusing(data, target, column_types, self._refused)

    def _refused(self, row: Mapping[str, Any], message: str) -> None:
        assert self.request.rejects is not None, "only a load with a reject log refuses rows"
        self.request.rejects.add(Reject(message, None, None, row_json(dict(row))))

    def _upsert(
        self, session: SqlSession, data: pa.RecordBatchReader, column_types: Mapping[str, str]
    ) -> int:
        """Stage the rows, delete the target rows they replace, insert the last of each key.

        Delete-then-insert rather than ON CONFLICT, so tables without a unique constraint
        on the key are upserted too.
        """
        stage_table, position = session.create_stage(column_types)
        self._insert(session, data, stage_table, column_types)
        stage = stage_table.sql
        rejects = self.request.rejects
        if rejects is None:
            self._refuse_null_keys(session, stage)
            return self._move(session, stage, position, column_types, None)
        self._reject_bad_keys(session, stage, column_types, position, rejects)
        lowest, highest = session.query(f"SELECT min({position}), max({position}) FROM {stage}")[0]
        if lowest is None:
            return 0
        return session.move_refusing(
            StagedRows(stage_table, position, (lowest, highest + 1), self.table, column_types),
            lambda start, stop: self._move(session, stage, position, column_types, (start, stop)),
            self._refused,
        )

    def _move(
        self,
        session: SqlSession,
        stage: str,
        position: str,
        column_types: Mapping[str, str],
        span: tuple[int, int] | None,
    ) -> int:
        """Delete the target rows the staged rows replace, then insert the last staged row of
        each key; with a span, only the staged rows at positions start <= p < stop."""
        keys = _column_list(self.request.upsert_key)
        matches = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in self.request.upsert_key)
        if span is not None:
            matches += f" AND {_within(f's.{position}', span)}"
        session.execute(f"DELETE FROM {self.table.sql} AS t USING {stage} AS s WHERE {matches}")
        columns = _column_list(column_types)
        where = "" if span is None else f" WHERE {_within(position, span)}"
        return session.execute_count(
            f"INSERT INTO {self.table.sql} ({columns}) SELECT {columns} FROM "
            f"(SELECT DISTINCT ON ({keys}) * FROM {stage}{where} "
            f"ORDER BY {keys}, {position} DESC) AS latest"
        )

    def _refuse_null_keys(self, session: SqlSession, stage: str) -> None:
        """A NULL key matches no row, so upserting it would duplicate it on every load."""
        keys = self.request.upsert_key
        counts = ", ".join(f"count(*) FILTER (WHERE {quote(key)} IS NULL)" for key in keys)
        nulls_per_key = session.query(f"SELECT {counts} FROM {stage}")[0]
        for key, nulls in zip(keys, nulls_per_key, strict=True):
            if nulls:
                raise ConnectorError(
                    f"connection {self.connection!r}: upsert key {key!r} is NULL in {nulls} "
                    f"row(s) for table {self.request.table!r}; filter them out (is_not_null) "
                    "or choose another upsert_key"
                )

    def _reject_bad_keys(
        self,
        session: SqlSession,
        stage: str,
        column_types: Mapping[str, str],
        position: str,
        rejects: RejectLog,
    ) -> None:
        """Reject the staged rows with a NULL in the upsert key, and those whose key a later
        row of the load repeats (the last one is loaded, as without rejects), in load order."""
        keys = self.request.upsert_key
        any_null = " OR ".join(f"{quote(key)} IS NULL" for key in keys)
        key_names = ", ".join(keys)
        columns = _column_list(column_types)
        # Only the rejected rows reach Python.
        rejected = session.query(
            f"SELECT _datapipe_at, {columns} FROM (SELECT {position} AS _datapipe_at, {columns}, "
            f"row_number() OVER (PARTITION BY {_column_list(keys)} ORDER BY {position} DESC) "
            f"AS _datapipe_later FROM {stage}) AS ranked WHERE {any_null} OR _datapipe_later > 1 "
            "ORDER BY _datapipe_at"
        )
        for row in rejected:
            values = dict(zip(column_types, row[1:], strict=True))
            if any(values[key] is None for key in keys):
                reason = f"upsert key ({key_names}) has a NULL"
            else:
                shown = ", ".join(repr(values[key]) for key in keys)
                reason = (
                    f"upsert key ({key_names}) = ({shown}) is repeated later in the load, "
                    "which keeps the last row"
                )
            rejects.add(Reject(reason, None, None, row_json(values)))
        if rejected:
            positions = ", ".join(str(row[0]) for row in rejected)
            session.execute(f"DELETE FROM {stage} WHERE {position} IN ({positions})")

    def _save_states(self, session: SqlSession) -> None:
        if not self.request.state_updates:
            return
        _ensure_schema(session, self.state_schema)
        state_table = TableRef(self.state_schema, STATE_TABLE).sql
        text = session.dialect.text
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {state_table} (pipeline {text} NOT NULL, "
            f"source_table {text} NOT NULL, state {text} NOT NULL, "
            "committed_at TIMESTAMP NOT NULL, PRIMARY KEY (pipeline, source_table))"
        )
        committed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for update in self.request.state_updates:
            session.execute(
                f"INSERT INTO {state_table} (pipeline, source_table, state, committed_at) "
                "VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (pipeline, source_table) DO UPDATE "
                "SET state = excluded.state, committed_at = excluded.committed_at",
                (
                    update.pipeline,
                    update.source_table,
                    json.dumps(update.state.to_json()),
                    committed_at,
                ),
            )


def _ensure_schema(session: SqlSession, schema: str) -> None:
    # The default schema always exists, and creating it (even IF NOT EXISTS) can need a
    # privilege the loading user lacks.
    if schema != session.dialect.default_schema:
        session.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")


def _within(position: str, span: tuple[int, int]) -> str:
    """The condition that a staged row's position is in [start, stop)."""
    return f"{position} >= {span[0]} AND {position} < {span[1]}"


def _column_list(names: Iterable[str]) -> str:
    return ", ".join(quote(name) for name in names)
