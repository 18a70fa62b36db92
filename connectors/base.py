"""The connector contract every source and destination follows.

Connectors are plain Python with no Dagster import, so they can be used by the CLI, the
benchmarks and tests alike. Data always moves as Arrow record batches: no connector ever
holds a whole table in memory.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from connectors.config.model import ConnectorConfig
from connectors.config.problems import error_text, validate
from connectors.shared.rejects import RejectLog

# Rows per Arrow record batch that sources aim for: large enough to amortise per-batch
# overhead, small enough that a batch of wide rows stays a few tens of megabytes.
BATCH_ROWS = 65_536


class ConnectorError(Exception):
    """A one-line, secret-free error that names the connection and says what to fix.

    `transient` marks a failure that a later try can get past where no exception says so,
    such as an HTTP answer of 503 (see connectors.shared.transient, which decides).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def connection_error(connection: str, message: str) -> ConnectorError:
    """A ConnectorError whose message starts with the connection's name."""
    return ConnectorError(f"connection {connection!r}: {message}")


def checked_settings(
    model: type[ConnectorConfig], connection: str, config: Mapping[str, Any]
) -> ConnectorConfig:
    """A resolved config validated through its model; one ConnectorError if it is invalid."""
    settings, problems = validate(model, connection, config, resolved=True)
    if settings is None:
        raise ConnectorError(error_text(problems))
    return settings


class LoadMode(StrEnum):
    APPEND = "append"
    REPLACE = "replace"
    UPSERT = "upsert"


@dataclass(frozen=True)
class TableSchema:
    """A table a connection can read or write, with its columns as an Arrow schema."""

    name: str
    schema: pa.Schema


@dataclass(frozen=True)
class CursorState:
    """How far an incremental table has been committed to its destination.

    `cursor` is the largest incremental-key value loaded so far. Extraction restarts at
    `>= cursor` so rows that share the boundary value are never lost; `boundary_keys` (the
    primary keys of the rows already loaded at exactly that value) stop them being doubled.
    """

    cursor: Any
    boundary_keys: tuple[tuple[Any, ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "cursor": encode_value(self.cursor),
            "boundary_keys": [[encode_value(v) for v in key] for key in self.boundary_keys],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CursorState:
        return cls(
            cursor=decode_value(data["cursor"]),
            boundary_keys=tuple(
                tuple(decode_value(v) for v in key) for key in data.get("boundary_keys", [])
            ),
        )


def encode_value(value: Any) -> Any:
    """A cursor or key value as JSON, keeping its type so it compares correctly later."""
    if isinstance(value, dt.datetime):
        return {"type": "timestamp", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        kind, text = value["type"], value["value"]
        if kind == "timestamp":
            return dt.datetime.fromisoformat(text)
        if kind == "date":
            return dt.date.fromisoformat(text)
        if kind == "decimal":
            return decimal.Decimal(text)
        raise ValueError(f"unknown cursor value type {kind!r}")
    return value


def rows_since(
    reader: pa.RecordBatchReader, key: str, cursor: Any, connection: str
) -> pa.RecordBatchReader:
    """Only the rows whose key is >= cursor, for sources that cannot filter server-side.

    Rows with a NULL key are dropped: they can never be placed after a cursor.
    """
    key_type = reader.schema.field(key).type
    try:
        bound = pa.scalar(cursor).cast(key_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        raise ConnectorError(
            f"connection {connection!r}: cursor {cursor!r} cannot be compared with column "
            f"{key!r} ({key_type}); run the pipeline's __full_refresh job or fix the column type"
        ) from None
    batches = (batch.filter(pc.greater_equal(batch.column(key), bound)) for batch in reader)
    return pa.RecordBatchReader.from_batches(reader.schema, (b for b in batches if b.num_rows))


@dataclass(frozen=True)
class Window:
    """One time partition's rows: those whose `column` is >= start and < end.

    `start` and `end` are aware datetimes in the partition's time zone. A column without a
    time zone (a naive timestamp, a date) holds wall-clock times of that zone.
    """

    column: str
    start: dt.datetime
    end: dt.datetime

    def bounds(self, column_type: pa.DataType, connection: str) -> tuple[Any, Any]:
        """The window's start and end as values a column of this Arrow type compares with."""
        if pa.types.is_timestamp(column_type):
            if column_type.tz is not None:
                return self.start.astimezone(dt.UTC), self.end.astimezone(dt.UTC)
            return self.start.replace(tzinfo=None), self.end.replace(tzinfo=None)
        if pa.types.is_date(column_type) and self.start.time() == dt.time():
            return self.start.date(), self.end.date()
        wanted = "a timestamp" if pa.types.is_date(column_type) else "a date or timestamp"
        raise ConnectorError(
            f"connection {connection!r}: partition column {self.column!r} is {column_type}; "
            f"partitions by this period need {wanted} column"
        )

    def describe(self) -> str:
        """`created_at in [2024-01-01 00:00:00+00:00, 2024-01-02 00:00:00+00:00)`."""
        return f"{self.column} in [{self.start}, {self.end})"


def rows_in_window(
    reader: pa.RecordBatchReader, window: Window, connection: str
) -> pa.RecordBatchReader:
    """Only the rows in the window, for sources that cannot filter server-side.

    Rows with a NULL in the column belong to no partition and are dropped.
    """
    if window.column not in reader.schema.names:
        raise ConnectorError(
            f"connection {connection!r}: there is no column {window.column!r} to partition by; "
            f"pick one of {', '.join(reader.schema.names)}"
        )
    column_type = reader.schema.field(window.column).type
    start, end = (pa.scalar(b, column_type) for b in window.bounds(column_type, connection))

    def inside(batch: pa.RecordBatch) -> pa.RecordBatch:
        values = batch.column(window.column)
        return batch.filter(
            pc.and_(pc.greater_equal(values, start), pc.less(values, end)),
            null_selection_behavior="drop",
        )

    batches = (inside(batch) for batch in reader)
    return pa.RecordBatchReader.from_batches(reader.schema, (b for b in batches if b.num_rows))


class RowLimitReached(ConnectorError):
    """An extract found more rows than its RowLimit allows, and the limit says to fail."""


@dataclass(frozen=True)
class RowLimit:
    """At most `rows` rows of one extract. With `failure`, finding more raises
    RowLimitReached with that message; without, the extract ends after `rows` rows."""

    rows: int
    failure: str | None = None


class Extraction:
    """The batches of one extract, tracking the cursor state they advance to.

    Iterate it once; afterwards `state` is the cursor state to commit with the load (or the
    starting state when no rows arrived), `rows` the number of rows passed on, and `limited`
    whether a RowLimit left rows unread.
    """

    def __init__(
        self,
        reader: pa.RecordBatchReader,
        incremental_key: str | None = None,
        start: CursorState | None = None,
        primary_key: Sequence[str] = (),
        limit: RowLimit | None = None,
    ) -> None:
        self.schema = reader.schema
        self.rows = 0
        self.state = start
        self.limited = False
        self._reader: pa.RecordBatchReader | None = reader
        self._key = incremental_key
        self._start = start
        self._primary_key = tuple(primary_key)
        self._limit = limit

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while self._reader is not None:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                return
            if self._key is not None and self._start is not None:
                batch = self._drop_already_loaded(batch)
            if self._key is not None and self._limit is not None and self._limit.failure is None:
                # A cut extract continues from its cursor, where a NULL key has no place (and
                # sorts first on some servers, last on others): such rows are left out.
                batch = batch.filter(pc.is_valid(batch.column(self._key)))
            if batch.num_rows == 0:
                continue
            if self._limit is not None and self.rows + batch.num_rows > self._limit.rows:
                # One row past the limit is how a limit is known to be reached (a table of
                # exactly `rows` rows fits); the source is read no further.
                self.limited = True
                self._stop_reading()
                if self._limit.failure is not None:
                    raise RowLimitReached(self._limit.failure)
                batch = batch.slice(0, self._limit.rows - self.rows)
                if batch.num_rows == 0:
                    return
            if self._key is not None:
                # Rows arrive in key order (see Source.reads_in_key_order), so the state of
                # a cut extract is that of its last row.
                self._advance(batch)
            self.rows += batch.num_rows
            yield batch

    def _stop_reading(self) -> None:
        # Dropping the reader ends the source's own generator (a database cursor, an API's
        # pagination) now, not whenever this extraction is collected.
        assert self._reader is not None
        self._reader.close()
        self._reader = None

    def _drop_already_loaded(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        assert self._start is not None and self._key is not None
        if not self._primary_key or not self._start.boundary_keys:
            return batch
        at_boundary = pc.fill_null(
            pc.equal(batch.column(self._key), pa.scalar(self._start.cursor)), False
        )
        if not pc.any(at_boundary).as_py():
            return batch
        # Only the rows at the boundary value become Python keys: usually a handful.
        seen = set(self._start.boundary_keys)
        boundary = batch.filter(at_boundary)
        keys = zip(*(boundary.column(k).to_pylist() for k in self._primary_key), strict=True)
        kept_at_boundary = pa.array([key not in seen for key in keys], pa.bool_())
        keep = pc.replace_with_mask(pc.invert(at_boundary), at_boundary, kept_at_boundary)
        return batch.filter(keep)

    def _advance(self, batch: pa.RecordBatch) -> None:
        assert self._key is not None
        column = batch.column(self._key)
        batch_max = pc.max(column).as_py()
        if batch_max is None:
            return
        current = self.state.cursor if self.state is not None else None
        if current is not None and batch_max < current:
            return
        at_max = pc.fill_null(pc.equal(column, pa.scalar(batch_max, type=column.type)), False)
        keys: tuple[tuple[Any, ...], ...] = ()
        if self._primary_key:
            rows = batch.filter(at_max)
            keys = tuple(zip(*(rows.column(k).to_pylist() for k in self._primary_key), strict=True))
        if current is not None and batch_max == current:
            keys = tuple(dict.fromkeys((*self.state.boundary_keys, *keys)))  # type: ignore[union-attr]
        self.state = CursorState(cursor=batch_max, boundary_keys=keys)


@dataclass(frozen=True)
class LoadResult:
    rows_loaded: int  # rows written by this load (after upsert-key de-duplication)
    table_rows: int  # rows in the table once the load committed
    columns_added: tuple[str, ...] = ()
    table_created: bool = False


@dataclass(frozen=True)
class ExtractStart:
    """The committed cursor state an extract started from: None when there was none."""

    state: CursorState | None


@dataclass(frozen=True)
class StateUpdate:
    """A cursor state committed in the same destination transaction as the rows it covers.

    With `started_from`, the load commits only if the destination's committed state is still
    the one the extract started from: had another run committed since, its rows would be
    loaded twice. None skips the check (a full refresh replaces whatever was committed).
    """

    pipeline: str
    source_table: str
    state: CursorState
    started_from: ExtractStart | None = None

    def overtaken(self, committed: CursorState | None) -> bool:
        """Whether another run committed this table after the extract started."""
        if self.started_from is None:
            return False
        return _as_json(committed) != _as_json(self.started_from.state)


def refuse_overtaken(
    updates: Sequence[StateUpdate], read_committed: Callable[[str], Iterable[tuple[str, str]]]
) -> None:
    """Raise if another run committed one of these tables after its extract started.

    `read_committed(pipeline)` gives the destination's (source_table, state JSON) rows.
    """
    checked = [update for update in updates if update.started_from is not None]
    if not checked:
        return
    committed = {
        table: CursorState.from_json(json.loads(state))
        for table, state in read_committed(checked[0].pipeline)
    }
    for update in checked:
        if update.overtaken(committed.get(update.source_table)):
            raise ConnectorError(
                f"another run of pipeline {update.pipeline!r} committed table "
                f"{update.source_table!r} after this run started; nothing was loaded; run again"
            )


def _as_json(state: CursorState | None) -> str | None:
    return None if state is None else json.dumps(state.to_json(), sort_keys=True)


@dataclass
class LoadRequest:
    table: str
    mode: LoadMode
    upsert_key: Sequence[str] = ()
    create_table_if_missing: bool = True
    state_updates: Sequence[StateUpdate] = field(default_factory=tuple)
    # With a log, a row the destination refuses is rejected into it instead of failing the
    # load, and the log's limit is enforced before the load commits.
    rejects: RejectLog | None = None
    # A partition's load: the rows already in its window are deleted before the rows are
    # inserted, in the same transaction, and a replace load truncates nothing else.
    replace_window: Window | None = None
    # A file partition's load: every row is stamped with the file it came from (column
    # `_datapipe_file`, see connectors/shared/file_rows.py), and the rows already stamped
    # with it are deleted before the rows are inserted, in the same transaction; a replace
    # load truncates nothing else.
    replace_file: str | None = None


class Source(ABC):
    """A connection that tables are read from."""

    # True when discover() answers from the connector's own table definitions, needing
    # neither the network nor any secret: pipelines can then be checked column by column
    # while definitions load.
    offline_discovery: ClassVar[bool] = False
    # Every key the connector accepts; a config is validated through it when opened.
    config_model: ClassVar[type[ConnectorConfig]]
    # True when an incremental read returns rows in incremental-key order: only then is an
    # extract cut at a row limit a prefix that a cursor can continue from exactly.
    reads_in_key_order: ClassVar[bool] = False

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        self.connection = connection
        self.config = dict(config)
        self.settings = checked_settings(self.config_model, connection, config)

    @abstractmethod
    def check(self) -> str:
        """Test the connection; return a short success message or raise ConnectorError."""

    @abstractmethod
    def discover(self) -> list[TableSchema]:
        """The tables this connection offers, with their columns and types."""

    @abstractmethod
    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        """Stream a table; with a cursor, only rows whose incremental_key is >= cursor."""

    def read_rejecting(
        self, table: str, incremental_key: str | None, cursor: Any, rejects: RejectLog
    ) -> pa.RecordBatchReader:
        """Like `read`, but a row that cannot be read is added to `rejects` and left out.

        Sources that receive typed rows (APIs, databases) have no such rows: they read.
        """
        return self.read(table, incremental_key, cursor)

    def read_window(
        self, table: str, window: Window, rejects: RejectLog | None = None
    ) -> pa.RecordBatchReader:
        """Only the rows of one time partition: those the source's own date filter narrows
        the table to (see `narrowed`), else the whole table, filtered here to exactly
        `[start, end)` either way, since APIs differ on whether their end bound is inclusive
        and on the precision they compare at. A source whose query is exact (SQL) overrides
        this."""
        reader = self.narrowed(table, window)
        if reader is None:
            if rejects is None:
                reader = self.read(table)
            else:
                reader = self.read_rejecting(table, None, None, rejects)
        return rows_in_window(reader, window, self.connection)

    def narrowed(self, table: str, window: Window) -> pa.RecordBatchReader | None:
        """The table's rows as the source's own filter narrows them to about the window (an
        API's date parameters); None where it has no filter on the window's column."""
        return None

    def extract(
        self,
        table: str,
        incremental_key: str | None = None,
        start: CursorState | None = None,
        primary_key: Sequence[str] = (),
        rejects: RejectLog | None = None,
        window: Window | None = None,
        limit: RowLimit | None = None,
    ) -> Extraction:
        """Stream a table from a committed cursor state, tracking the state it reaches.

        With `rejects`, rows that cannot be read are rejected into it (see read_rejecting).
        With `window`, only that time partition's rows are read (a partitioned pipeline has
        no cursor). With `limit`, reading stops at that many rows (see RowLimit).
        """
        cursor = start.cursor if start is not None else None
        if window is not None:
            reader = self.read_window(table, window, rejects)
        elif rejects is None:
            reader = self.read(table, incremental_key, cursor)
        else:
            reader = self.read_rejecting(table, incremental_key, cursor, rejects)
        if incremental_key is not None and incremental_key not in reader.schema.names:
            raise ConnectorError(
                f"connection {self.connection!r}: table {table!r} has no column "
                f"{incremental_key!r} to use as incremental_key; pick one of "
                f"{', '.join(reader.schema.names)}"
            )
        return Extraction(reader, incremental_key, start, primary_key, limit)


class Destination(ABC):
    """A connection that tables are loaded into, all-or-nothing."""

    # Every key the connector accepts; a config is validated through it when opened.
    config_model: ClassVar[type[ConnectorConfig]]

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        self.connection = connection
        self.config = dict(config)
        self.settings = checked_settings(self.config_model, connection, config)

    @abstractmethod
    def check(self) -> str:
        """Test the connection; return a short success message or raise ConnectorError."""

    @abstractmethod
    def discover(self) -> list[TableSchema]:
        """The tables already in the destination."""

    @abstractmethod
    def load(self, data: pa.RecordBatchReader, request: LoadRequest) -> LoadResult:
        """Load the batches in one transaction, together with the request's cursor states.

        On any error the destination (table and cursor states) is left exactly as it was.
        """

    @abstractmethod
    def read_state(self, pipeline: str, source_table: str) -> CursorState | None:
        """The cursor state last committed for a pipeline's source table, if any."""
