"""Shared by the SQL destination tests: a destination with a way to query it, the all-types
table, `load` and a source that breaks mid-stream."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pytest

from connectors.base import Destination, LoadMode, LoadRequest, LoadResult
from connectors.destinations.duckdb import DuckDBDestination
from connectors.destinations.postgres import PostgresDestination
from connectors.registry import open_destination
from tests.support.project_files import postgres_config
from tests.support.services import PostgresServer

UTC = dt.UTC


@dataclass(frozen=True)
class Target:
    """A destination named 'warehouse' plus a way to run SQL against its database."""

    name: str
    dest: Destination
    query: Callable[[str], list[tuple]]
    column_types_sql: str
    config: dict[str, Any]

    def column_types(self, table: str = "revenue") -> list[tuple[str, str]]:
        return self.query(self.column_types_sql.format(table=table))

    def reopened(self) -> Destination:
        """Another destination object on the same database, as another run would open."""
        return open_destination(self.name, "warehouse", self.config)


def duckdb_target(tmp_path: Path) -> Target:
    config = {"path": "db/warehouse.duckdb", "base_dir": str(tmp_path)}
    dest = open_destination("duckdb", "warehouse", config)
    assert isinstance(dest, DuckDBDestination)
    dest.check()  # creates the database file, so tests can prepare tables in it

    def query(sql: str) -> list[tuple]:
        with duckdb.connect(str(dest.path)) as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(sql).fetchall()

    column_types_sql = (
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = '{table}' ORDER BY ordinal_position"
    )
    return Target("duckdb", dest, query, column_types_sql, config)


def postgres_target(server: PostgresServer, database: str) -> Target:
    config = postgres_config(server, database)
    dest = open_destination("postgres", "warehouse", config)
    assert isinstance(dest, PostgresDestination)

    def query(sql: str) -> list[tuple]:
        with psycopg.connect(server.url(database), autocommit=True) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    column_types_sql = (
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'public.{table}'::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum"
    )
    return Target("postgres", dest, query, column_types_sql, config)


def target_for(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """The target a `target` fixture parametrized by "duckdb" and "postgres" stands for."""
    if request.param == "duckdb":
        return duckdb_target(tmp_path)
    postgres = request.getfixturevalue("postgres")
    return postgres_target(postgres, request.getfixturevalue("pg_database"))


def load(
    dest: Destination, table: pa.Table, mode: LoadMode = LoadMode.APPEND, **kw: Any
) -> LoadResult:
    return dest.load(table.to_reader(), LoadRequest("revenue", mode, **kw))


def failing_reader(table: pa.Table) -> pa.RecordBatchReader:
    """A source that delivers one batch and then breaks."""

    def batches():
        yield from table.to_batches()
        raise RuntimeError("source went away")

    return pa.RecordBatchReader.from_batches(table.schema, batches())


def all_types_table(**extra: pa.Array) -> pa.Table:
    """One row with a column of each Arrow type the destinations map."""
    return pa.table(
        {
            "i8": pa.array([1], pa.int8()),
            "i16": pa.array([1], pa.int16()),
            "i32": pa.array([1], pa.int32()),
            "i64": pa.array([1], pa.int64()),
            "f32": pa.array([1.5], pa.float32()),
            "f64": pa.array([1.5], pa.float64()),
            "dec": pa.array([decimal.Decimal("1.25")], pa.decimal128(12, 2)),
            "s": pa.array(["x"], pa.string()),
            "ls": pa.array(["x"], pa.large_string()),
            "b": [True],
            "d": [dt.date(2024, 1, 2)],
            "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("us")),
            "tstz": pa.array([dt.datetime(2024, 1, 2, tzinfo=UTC)], pa.timestamp("us", "UTC")),
            "bin": [b"\x00\xff"],
            "lst": [[1, 2]],
            "st": [{"a": 1, "b": "x"}],
            **extra,
        }
    )


# The all-types row as both destinations read it back, up to the JSON columns lst and st.
ALL_TYPES_SCALARS = (
    1,
    1,
    1,
    1,
    1.5,
    1.5,
    decimal.Decimal("1.25"),
    "x",
    "x",
    True,
    dt.date(2024, 1, 2),
    dt.datetime(2024, 1, 2, 3, 4, 5),
    dt.datetime(2024, 1, 2, tzinfo=UTC),
    b"\x00\xff",
)
