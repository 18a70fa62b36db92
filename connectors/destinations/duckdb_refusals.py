"""The rows a DuckDB table would refuse, found before they are written.

DuckDB has no savepoints, and a failed statement aborts the whole transaction: a load cannot
try rows and take back the refused ones, as the PostgreSQL destination does. So, when rows
are rejected rather than failing the load, the rows are checked first, in one query per
batch: a value its column's type cannot hold (TRY_CAST gives NULL), a NULL in a NOT NULL
column, a CHECK constraint that is false. The few rows it finds are then inserted one at a
time into a copy of the table in a private in-memory database, with the statement the load
runs, for DuckDB's own message (a row that goes in there is not refused after all).

Not looked for, so they fail the load as without rejects: PRIMARY KEY, UNIQUE and FOREIGN
KEY conflicts, a NOT NULL column the load leaves out, and a CHECK that reads one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from connectors.shared.sql_destination import TableRef, quote
from connectors.shared.sql_types import Family, from_arrow, parse_sql_type

POSITION = "_datapipe_position"
# The name a row being tried is visible under in the private database.
_TRIED = "_datapipe_tried"


@dataclass(frozen=True)
class Incoming:
    """A column written into the table: its name, the SQL giving its value, its declared
    type and whether the value is cast to that type on the way (and may not fit)."""

    name: str
    value: str
    declared: str
    cast: bool


def incoming_column(field: pa.Field, value: str, declared: str) -> Incoming:
    """A data column and how the load selects it (`value`), going into a `declared` column."""
    incoming, column = from_arrow(field.type), parse_sql_type(declared)
    return Incoming(
        field.name, value, declared, column.family is Family.OTHER or incoming != column
    )


class Refusals:
    """What one table refuses of the columns a load writes into it.

    Used in a `with` block, which closes the private database it may open.
    `refused(relation, position, rows_at)` finds the refused rows of a relation, each with
    DuckDB's message; `rows_at(positions)` gives the rows at those positions as Arrow.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, table: TableRef, columns: Sequence[Incoming]
    ) -> None:
        self._table = table
        self._columns = list(columns)
        # Only the written columns are looked at: a NOT NULL column the data lacks fails
        # every row, and a CHECK reading one would see its default, so those fail the load.
        written = {column.name.lower() for column in columns}
        not_null, checks = _constraints(con, table)
        self._not_null = {name.lower() for name in not_null} & written
        self._checks = [check for check, names in checks if {n.lower() for n in names} <= written]
        self._private: duckdb.DuckDBPyConnection | None = None

    @property
    def any(self) -> bool:
        """Whether the table may refuse a row at all; when not, nothing needs checking."""
        return bool(self._not_null or self._checks or any(c.cast for c in self._columns))

    def refused(
        self, con: duckdb.DuckDBPyConnection, relation: str, position: str,
        rows_at: Callable[[list[int]], pa.Table | pa.RecordBatch],
    ) -> Iterator[tuple[int, dict[str, object], str]]:  # fmt: skip
        """The refused rows of `relation`, in position order: position, row and message."""
        if not self.any:
            return
        found = [at for (at,) in con.execute(self._suspects_sql(relation, position)).fetchall()]
        if not found:
            return
        chosen = rows_at(found)
        for index, at in enumerate(found):
            row = chosen.slice(index, 1)
            message = self._message(row)
            if message is not None:
                yield at, row.to_pylist()[0], message

    def __enter__(self) -> Refusals:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._private is not None:
            self._private.close()

    def _suspects_sql(self, relation: str, position: str) -> str:
        """The positions of the rows the table may refuse (see the module's doc)."""
        values = [f"{position} AS {quote(POSITION)}"]
        unfit = []
        for column in self._columns:
            if column.cast:
                cast = f"TRY_CAST({column.value} AS {column.declared})"
                values.append(f"{cast} AS {quote(column.name)}")
                unfit.append(f"({column.value} IS NOT NULL AND {cast} IS NULL)")
            else:
                values.append(f"{column.value} AS {quote(column.name)}")
        values.append(f"({' OR '.join(unfit) or 'FALSE'}) AS _datapipe_unfit")
        refused = ["_datapipe_unfit"]
        refused += [f"{quote(c.name)} IS NULL" for c in self._columns if self._required(c)]
        refused += [f"({check}) IS FALSE" for check in self._checks]
        return (
            f"SELECT {quote(POSITION)} FROM (SELECT {', '.join(values)} FROM {relation}) "
            f"AS converted WHERE {' OR '.join(refused)} ORDER BY 1"
        )

    def _required(self, column: Incoming) -> bool:
        """Whether the column is NOT NULL."""
        return column.name.lower() in self._not_null

    def _message(self, row: pa.Table | pa.RecordBatch) -> str | None:
        """DuckDB's message for writing this row into a copy of the table; None if it fits."""
        private = self._private_table()
        private.register(_TRIED, row)
        try:
            private.execute(
                f"INSERT INTO {quote(self._table.name)} "
                f"({', '.join(quote(c.name) for c in self._columns)}) "
                f"SELECT {', '.join(c.value for c in self._columns)} FROM {_TRIED}"
            )
        except (duckdb.DataError, duckdb.IntegrityError) as exc:
            return error_line(exc)
        finally:
            private.unregister(_TRIED)
        private.execute(f"DELETE FROM {quote(self._table.name)}")
        return None

    def _private_table(self) -> duckdb.DuckDBPyConnection:
        """An in-memory database holding a table like this one: same name (DuckDB's messages
        name it), column types, NOT NULLs and CHECKs."""
        if self._private is None:
            definitions = [
                f"{quote(c.name)} {c.declared}" + (" NOT NULL" if self._required(c) else "")
                for c in self._columns
            ]
            definitions += [f"CHECK ({check})" for check in self._checks]
            self._private = duckdb.connect(config={"threads": 1})
            self._private.execute(
                f"CREATE TABLE {quote(self._table.name)} ({', '.join(definitions)})"
            )
        return self._private


def positioned(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with each row's position in it as a last column, for `Refusals.refused`."""
    return batch.append_column(POSITION, pa.array(np.arange(batch.num_rows, dtype=np.int64)))


def without(batch: pa.RecordBatch, positions: Sequence[int]) -> pa.RecordBatch:
    """The batch less the rows at these positions."""
    if not positions:
        return batch
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[list(positions)] = False
    return batch.filter(pa.array(keep))


def error_line(exc: BaseException) -> str:
    """A DuckDB error's first line: DuckDB appends the statement and a caret marker."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _constraints(
    con: duckdb.DuckDBPyConnection, table: TableRef
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The table's NOT NULL columns, and its CHECK expressions with the columns each reads."""
    rows = con.execute(
        "SELECT constraint_type, expression, constraint_column_names FROM duckdb_constraints() "
        "WHERE database_name = current_database() AND lower(schema_name) = lower(?) "
        "AND lower(table_name) = lower(?) AND constraint_type IN ('NOT NULL', 'CHECK') "
        "ORDER BY constraint_index",
        (table.schema, table.name),
    ).fetchall()
    not_null = [names[0] for kind, _, names in rows if kind == "NOT NULL"]
    checks = [(expression, names) for kind, expression, names in rows if kind == "CHECK"]
    return not_null, checks
