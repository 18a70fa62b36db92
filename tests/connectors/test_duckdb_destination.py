"""DuckDBDestination against real DuckDB files: what only DuckDB does (the rest is in
test_sql_destinations.py)."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from connectors.base import ConnectorError, LoadMode, LoadRequest
from connectors.destinations.duckdb import DuckDBDestination
from tests.support.destination_cases import UTC, Target, duckdb_target, load


@pytest.fixture
def target(tmp_path: Path) -> Target:
    return duckdb_target(tmp_path)


def test_relative_path_resolves_against_base_dir(target, tmp_path):
    load(target.dest, pa.table({"id": [1]}))
    assert (tmp_path / "db" / "warehouse.duckdb").is_file()
    assert target.dest.check() == (
        f"connection 'warehouse': DuckDB {duckdb.__version__} database "
        f"'{tmp_path / 'db' / 'warehouse.duckdb'}'"
    )


def test_created_upsert_table_has_primary_key(target):
    load(target.dest, pa.table({"id": [1], "v": ["a"]}), LoadMode.UPSERT, upsert_key=["id"])
    assert target.query(
        "SELECT constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = 'revenue' AND constraint_type = 'PRIMARY KEY'"
    ) == [(["id"],)]


def test_column_names_match_case_insensitively(target):
    load(target.dest, pa.table({"Amount": [1]}))
    result = load(target.dest, pa.table({"amount": [2]}))
    assert result.columns_added == ()
    assert target.query("SELECT * FROM revenue ORDER BY 1") == [(1,), (2,)]


def test_compatible_types_are_accepted(target):
    target.query(
        "CREATE TABLE revenue (n DECIMAL(12,2), d DOUBLE, t TIMESTAMP, big BIGINT, f DECIMAL(5,2))"
    )
    data = pa.table(
        {
            "n": pa.array([5], pa.int16()),
            "f": pa.array([1.5]),
            "d": pa.array([7], pa.int32()),
            "t": [dt.date(2024, 1, 2)],
            "big": pa.array([3], pa.int8()),
        }
    )
    load(target.dest, data, create_table_if_missing=False)
    assert target.query("SELECT * FROM revenue") == [
        (decimal.Decimal("5.00"), 7.0, dt.datetime(2024, 1, 2), 3, decimal.Decimal("1.50"))
    ]


def test_upsert_key_missing_from_data_fails(target):
    with pytest.raises(ConnectorError) as error:
        load(target.dest, pa.table({"id": [1], "v": [2]}), LoadMode.UPSERT, upsert_key=["key"])
    assert str(error.value) == (
        "connection 'warehouse': upsert_key column 'key' is not in the data loaded into "
        "table 'revenue'; use one of id, v"
    )


def test_null_and_empty_string_stay_distinct(target):
    load(target.dest, pa.table({"id": [1, 2, 3], "s": ["", None, "x"]}))
    assert target.query("SELECT id, s, s IS NULL FROM revenue ORDER BY id") == [
        (1, "", False),
        (2, None, True),
        (3, "x", False),
    ]


def test_timestamps_with_time_zone(target):
    paris = pa.timestamp("us", tz="Europe/Paris")
    moment = dt.datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    load(
        target.dest, pa.table({"at": pa.array([moment], paris), "naive": pa.array([moment], paris)})
    )
    target.query("ALTER TABLE revenue ALTER naive TYPE TIMESTAMP")
    load(
        target.dest, pa.table({"at": pa.array([moment], paris), "naive": pa.array([moment], paris)})
    )
    # The zone-less column stores UTC wall time.
    assert target.query("SELECT * FROM revenue") == [
        (moment, dt.datetime(2024, 7, 1, 12, 0)),
        (moment, dt.datetime(2024, 7, 1, 12, 0)),
    ]


def test_named_schema_and_discover(tmp_path):
    dest = DuckDBDestination("warehouse", {"path": str(tmp_path / "w.duckdb"), "schema": "raw"})
    data = pa.table({"id": pa.array([1], pa.int32()), "at": [dt.date(2024, 1, 1)]})
    dest.load(data.to_reader(), LoadRequest("orders", LoadMode.APPEND))
    tables = dest.discover()
    assert [(t.name, t.schema) for t in tables] == [
        ("orders", pa.schema([("id", pa.int32()), ("at", pa.date32())]))
    ]


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(ConnectorError) as error:
        DuckDBDestination("warehouse", {})
    assert str(error.value) == (
        "connection 'warehouse': missing config key 'path'; set it in the connection's config"
    )


def test_a_second_session_on_the_file_waits_for_the_load_in_progress(target):
    """Loads of one step run on threads of their own; DuckDB's client loses a load's Arrow
    scan when another connection to the file opens and closes meanwhile."""
    mid_stream, checked = threading.Event(), threading.Event()
    checked_mid_stream: list[bool] = []

    def batches():
        yield pa.record_batch({"id": [1, 2]})
        mid_stream.set()
        # Far longer than a check takes when nothing holds it back.
        checked.wait(timeout=0.5)
        checked_mid_stream.append(checked.is_set())
        yield pa.record_batch({"id": [3]})

    def check() -> None:
        mid_stream.wait()
        target.dest.check()
        checked.set()

    checker = threading.Thread(target=check)
    checker.start()
    reader = pa.RecordBatchReader.from_batches(pa.schema([("id", pa.int64())]), batches())
    assert target.dest.load(reader, LoadRequest("revenue", LoadMode.REPLACE)).rows_loaded == 3
    checker.join(timeout=10)
    assert checked_mid_stream == [False]
    assert checked.is_set()
    assert target.query("SELECT id FROM revenue ORDER BY id") == [(1,), (2,), (3,)]
