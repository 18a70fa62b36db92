"""What every SQL database source shares, whatever its driver.

A subclass says how to connect, how to list columns, how to map a column's type, how to
quote a name and how to word a driver's error; this module turns that into the Source
contract: discovery, the checks that give a clear message before any row is read, the
select (with the incremental filter), and the subclass's Arrow batches cast to the table's
schema, column by column.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connectors.base import ConnectorError, Source, TableSchema, Window
from connectors.shared.rejects import RejectLog

# What a key column is used as, for messages.
INCREMENTAL = "incremental_key"
PARTITION = "the partition column"

# How many names an error message lists before it shortens the list with "...".
LISTED_NAMES = 5

# Driver error texts (lower-cased) that mean the server could not be reached, and how a
# message says so. libpq and Python's socket errors word them alike.
UNREACHABLE_MARKERS = (
    ("connection refused", "connection refused"),
    ("timeout expired", "timed out"),
    ("timed out", "timed out"),
    ("could not translate host name", "unknown host"),
    ("name or service not known", "unknown host"),
    ("no route to host", "no route to host"),
)


@dataclass(frozen=True)
class Column:
    """A table column: its Arrow field and the SQL expression that selects it.

    With `arrives_as`, a row-based driver's values are first built as that Arrow type;
    every column is then cast to its field's type (text parsed as decimals, say).
    """

    field: pa.Field
    select: str
    arrives_as: pa.DataType | None = None


def listing(names: Sequence[str]) -> str:
    """The first few names, comma-separated, with "..." when there are more."""
    more = ", ..." if len(names) > LISTED_NAMES else ""
    return ", ".join(names[:LISTED_NAMES]) + more


def quoted(identifier: str, mark: str) -> str:
    """An identifier between quote marks, with its own marks doubled, and its % doubled
    too: both drivers %-format a query that has parameters."""
    return mark + identifier.replace(mark, mark * 2).replace("%", "%%") + mark


def unreachable_reason(driver_message: str) -> str | None:
    """Why the server could not be reached, if the driver's message says so."""
    text = driver_message.lower()
    return next((reason for marker, reason in UNREACHABLE_MARKERS if marker in text), None)


class SqlSource(Source):
    """Tables and views of one namespace (schema or database) of a SQL server.

    Tables are named `table` (in the configured namespace) or `namespace.table`.
    """

    # What the server calls the level tables live in, for messages: "schema", "database".
    namespace_kind = "schema"
    # Incremental reads are ordered by the key (on an indexed key, the index's own order).
    reads_in_key_order = True

    @property
    @abstractmethod
    def namespace(self) -> str:
        """The configured namespace: where unqualified table names are looked up."""

    # The base class of the driver's errors: the ones _query_error words.
    driver_error: type[Exception]

    @abstractmethod
    def _connect(self) -> AbstractContextManager[Any]:
        """A new connection that closes on leaving its `with` block."""

    @abstractmethod
    def _arrow_batches(
        self, query: str, params: tuple[Any, ...], columns: list[Column], table: str
    ) -> Iterator[pa.RecordBatch]:
        """The query's result as Arrow record batches, streamed from the server as they are
        asked for. The connection opens on the first batch, so a reader that is never
        iterated holds no connection."""

    @abstractmethod
    def _catalog(self, conn: Any, namespace: str, table: str | None) -> Iterable[tuple]:
        """Rows of (table, *column_for arguments) for every table and view of the
        namespace, or just one, in column order."""

    @staticmethod
    @abstractmethod
    def _column_for(*catalog_row: Any) -> Column:
        """A catalog row (less its table) as an Arrow field and the SQL that selects it."""

    @staticmethod
    @abstractmethod
    def _quote(identifier: str) -> str:
        """The identifier quoted for use in a query."""

    @abstractmethod
    def _query_error(self, action: str, exc: Exception) -> ConnectorError:
        """A driver error from a query, worded with nothing that could hold a secret."""

    def _location(self, namespace: str) -> str:
        """Where a namespace is, for messages: "schema 'public' of database 'shop'"."""
        return f"{self.namespace_kind} {namespace!r}"

    # The Source contract.

    def discover(self) -> list[TableSchema]:
        with self._connect() as conn:
            tables = self._columns(conn, self.namespace, None)
        return [
            TableSchema(name, pa.schema(column.field for column in columns))
            for name, columns in tables.items()
        ]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        namespace, table_name, columns = self._open_table(table, incremental_key, INCREMENTAL)
        query = self._query(namespace, table_name, columns, incremental_key, cursor is not None)
        params = (cursor,) if incremental_key is not None and cursor is not None else ()
        return self._reader(query, params, columns, table)

    def read_window(
        self, table: str, window: Window, rejects: RejectLog | None = None
    ) -> pa.RecordBatchReader:
        """The partition's rows, filtered by the server: `column >= start AND column < end`.

        A database hands over only rows it could type, so there is nothing to reject.
        """
        namespace, table_name, columns = self._open_table(table, window.column, PARTITION)
        field = next(c.field for c in columns if c.field.name == window.column)
        key = self._quote(window.column)
        query = f"{self._query(namespace, table_name, columns)} where {key} >= %s and "
        query += f"{key} < %s"
        return self._reader(query, window.bounds(field.type, self.connection), columns, table)

    def _open_table(self, table: str, key: str | None, role: str) -> tuple[str, str, list[Column]]:
        """The table's namespace, name and columns, checking that `key` is one of them.

        Problems with the table or key surface here, before the first batch is asked for.
        """
        namespace, table_name = self._split(table)
        with self._connect() as conn:
            columns = self._table_columns(conn, namespace, table_name, table)
        self._check_key(table_name, columns, key, role)
        return namespace, table_name, columns

    def _reader(
        self, query: str, params: tuple[Any, ...], columns: list[Column], table: str
    ) -> pa.RecordBatchReader:
        """The query's batches, cast to the table's schema, read as they are asked for."""
        schema = pa.schema(column.field for column in columns)
        batches = (
            self._conform(batch, columns, schema, table)
            for batch in self._arrow_batches(query, params, columns, table)
        )
        return pa.RecordBatchReader.from_batches(schema, batches)

    # Reading.

    def _split(self, table: str) -> tuple[str, str]:
        namespace, _, table_name = table.rpartition(".")
        return namespace or self.namespace, table_name

    def _columns(self, conn: Any, namespace: str, table: str | None) -> dict[str, list[Column]]:
        """Columns by table: every table and view of the namespace, or just one."""
        tables: dict[str, list[Column]] = {}
        try:
            for table_name, *column in self._catalog(conn, namespace, table):
                tables.setdefault(table_name, []).append(self._column_for(*column))
        except self.driver_error as exc:
            action = f"listing the tables of {self.namespace_kind} {namespace!r}"
            raise self._query_error(action, exc) from None
        return tables

    def _table_columns(
        self, conn: Any, namespace: str, table_name: str, table: str
    ) -> list[Column]:
        columns = self._columns(conn, namespace, table_name).get(table_name)
        if columns:
            return columns
        available = sorted(self._columns(conn, namespace, None))
        raise self._error(
            f"no table {table!r} in {self._location(namespace)}; "
            + (
                f"available: {listing(available)}"
                if available
                else f"that {self.namespace_kind} has no tables"
            )
        )

    def _check_key(
        self, table_name: str, columns: list[Column], key: str | None, role: str
    ) -> None:
        names = [column.field.name for column in columns]
        if key is not None and key not in names:
            raise self._error(
                f"table {table_name!r} has no column {key!r} to use as {role}; "
                f"pick one of {', '.join(names)}"
            )

    def _query(
        self,
        namespace: str,
        table: str,
        columns: list[Column],
        incremental_key: str | None = None,
        from_cursor: bool = False,
    ) -> str:
        """The select of the columns; with a key, in key order (also a first extract, so one
        cut at a row limit is a prefix), and from_cursor of rows >= one parameter."""
        select = ", ".join(column.select for column in columns)
        query = f"select {select} from {self._quote(namespace)}.{self._quote(table)}"
        if incremental_key is None:
            return query
        key = self._quote(incremental_key)
        where = f" where {key} >= %s" if from_cursor else ""
        return f"{query}{where} order by {key}"

    def _conform(
        self, batch: pa.RecordBatch, columns: list[Column], schema: pa.Schema, table: str
    ) -> pa.RecordBatch:
        """A batch as the driver built it, cast column by column to the table's schema."""
        arrays = [
            self._cast(column, array, table)
            for column, array in zip(columns, batch.columns, strict=True)
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _cast(self, column: Column, array: pa.Array, table: str) -> pa.Array:
        field = column.field
        if array.type == field.type:
            return array
        try:
            return array.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise self._misfit(table, field, exc) from None

    def _misfit(self, table: str, field: pa.Field, exc: Exception) -> ConnectorError:
        """A value the column's Arrow type cannot hold."""
        return self._error(
            f"table {table!r} column {field.name!r} has a value that does not fit "
            f"{field.type} ({str(exc).splitlines()[0]})"
        )

    def _error(self, message: str) -> ConnectorError:
        return ConnectorError(f"connection {self.connection!r}: {message}")
