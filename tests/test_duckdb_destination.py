"""DuckDBDestination against real DuckDB files: exact rows, exact types, exact errors."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from connectors import open_destination
from connectors.base import ConnectorError, CursorState, LoadMode, LoadRequest, StateUpdate
from connectors.duckdb_destination import DuckDBDestination

UTC = dt.UTC


@pytest.fixture
def dest(tmp_path: Path) -> DuckDBDestination:
    destination = open_destination(
        "duckdb", "warehouse", {"path": "db/warehouse.duckdb", "base_dir": str(tmp_path)}
    )
    assert isinstance(destination, DuckDBDestination)
    destination.check()  # creates the database file, so tests can prepare tables in it
    return destination


def query(dest: DuckDBDestination, sql: str) -> list[tuple]:
    with duckdb.connect(str(dest.path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def column_types(dest: DuckDBDestination, table: str) -> list[tuple[str, str]]:
    return query(
        dest,
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_name = '{table}' ORDER BY ordinal_position",
    )


def load(dest: DuckDBDestination, table: pa.Table, mode: LoadMode = LoadMode.APPEND, **kw):
    return dest.load(table.to_reader(), LoadRequest("revenue", mode, **kw))


def failing_reader(table: pa.Table) -> pa.RecordBatchReader:
    """A source that delivers one batch and then breaks."""

    def batches():
        yield from table.to_batches()
        raise RuntimeError("source went away")

    return pa.RecordBatchReader.from_batches(table.schema, batches())


def test_first_load_creates_table_with_mapped_types(dest):
    data = pa.table(
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
        }
    )
    result = load(dest, data)
    assert result.rows_loaded == 1
    assert result.table_created
    assert result.columns_added == ()
    assert column_types(dest, "revenue") == [
        ("i8", "SMALLINT"),
        ("i16", "SMALLINT"),
        ("i32", "INTEGER"),
        ("i64", "BIGINT"),
        ("f32", "DOUBLE"),
        ("f64", "DOUBLE"),
        ("dec", "DECIMAL(12,2)"),
        ("s", "VARCHAR"),
        ("ls", "VARCHAR"),
        ("b", "BOOLEAN"),
        ("d", "DATE"),
        ("ts", "TIMESTAMP"),
        ("tstz", "TIMESTAMP WITH TIME ZONE"),
        ("bin", "BLOB"),
        ("lst", "JSON"),
        ("st", "JSON"),
    ]
    assert query(dest, "SELECT * FROM revenue") == [
        (
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
            "[1,2]",
            '{"a":1,"b":"x"}',
        )
    ]


def test_relative_path_resolves_against_base_dir(dest, tmp_path):
    load(dest, pa.table({"id": [1]}))
    assert (tmp_path / "db" / "warehouse.duckdb").is_file()
    assert dest.check() == (
        f"connection 'warehouse': DuckDB {duckdb.__version__} database "
        f"'{tmp_path / 'db' / 'warehouse.duckdb'}'"
    )


def test_append_twice_keeps_all_rows(dest):
    load(dest, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    result = load(dest, pa.table({"id": [3], "name": ["c"]}))
    assert result == type(result)(rows_loaded=1, columns_added=(), table_created=False)
    assert query(dest, "SELECT * FROM revenue ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]


def test_replace_leaves_exactly_the_new_rows(dest):
    load(dest, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    result = load(dest, pa.table({"id": [7], "extra": [True]}), LoadMode.REPLACE)
    assert result.rows_loaded == 1
    assert result.columns_added == ("extra",)
    assert query(dest, "SELECT * FROM revenue") == [(7, None, True)]


def test_upsert_updates_inserts_and_keeps_last_duplicate(dest):
    load(dest, pa.table({"id": [1, 2], "name": ["a", "b"]}), LoadMode.UPSERT, upsert_key=["id"])
    data = pa.table({"id": [2, 3, 3, 2], "name": ["b1", "c1", "c2", "b2"]})
    result = load(dest, data, LoadMode.UPSERT, upsert_key=["id"])
    assert result.rows_loaded == 2
    assert query(dest, "SELECT * FROM revenue ORDER BY id") == [(1, "a"), (2, "b2"), (3, "c2")]


def test_created_upsert_table_has_primary_key(dest):
    load(dest, pa.table({"id": [1], "v": ["a"]}), LoadMode.UPSERT, upsert_key=["id"])
    assert query(
        dest,
        "SELECT constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = 'revenue' AND constraint_type = 'PRIMARY KEY'",
    ) == [(["id"],)]


def test_upsert_works_without_unique_constraint_and_composite_key(dest):
    load(dest, pa.table({"a": [1, 1, 2], "b": ["x", "y", "x"], "v": [1, 2, 3]}))
    data = pa.table({"a": [1, 2, 2], "b": ["y", "y", "y"], "v": [20, 30, 31]})
    load(dest, data, LoadMode.UPSERT, upsert_key=["a", "b"])
    assert query(dest, "SELECT * FROM revenue ORDER BY a, b") == [
        (1, "x", 1),
        (1, "y", 20),
        (2, "x", 3),
        (2, "y", 31),
    ]


def test_new_column_is_added_and_absent_columns_stay_null(dest):
    load(dest, pa.table({"id": [1], "name": ["a"]}))
    result = load(dest, pa.table({"id": [2], "score": [9.5]}))
    assert result.columns_added == ("score",)
    assert column_types(dest, "revenue") == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("score", "DOUBLE"),
    ]
    assert query(dest, "SELECT * FROM revenue ORDER BY id") == [(1, "a", None), (2, None, 9.5)]


def test_column_names_match_case_insensitively(dest):
    load(dest, pa.table({"Amount": [1]}))
    result = load(dest, pa.table({"amount": [2]}))
    assert result.columns_added == ()
    assert query(dest, "SELECT * FROM revenue ORDER BY 1") == [(1,), (2,)]


def test_compatible_types_are_accepted(dest):
    query(
        dest,
        "CREATE TABLE revenue (n DECIMAL(12,2), d DOUBLE, t TIMESTAMP, big BIGINT, f DECIMAL(5,2))",
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
    load(dest, data, create_table_if_missing=False)
    assert query(dest, "SELECT * FROM revenue") == [
        (decimal.Decimal("5.00"), 7.0, dt.datetime(2024, 1, 2), 3, decimal.Decimal("1.50"))
    ]


@pytest.mark.parametrize(
    ("column_type", "data", "message_types"),
    [
        ("INTEGER", pa.array(["12"]), "INTEGER but the data is VARCHAR"),
        ("BOOLEAN", pa.array([dt.datetime(2024, 1, 1)]), "BOOLEAN but the data is TIMESTAMP"),
        ("VARCHAR", pa.array([1]), "VARCHAR but the data is BIGINT"),
    ],
)
def test_type_conflict_fails_before_writing(dest, column_type, data, message_types):
    query(dest, f"CREATE TABLE revenue (id INTEGER, amount {column_type})")
    query(dest, "INSERT INTO revenue VALUES (1, NULL)")
    incoming = pa.table({"id": pa.array([2], pa.int32()), "new_col": ["x"], "amount": data})
    with pytest.raises(ConnectorError) as error:
        load(dest, incoming, state_updates=[StateUpdate("p", "s", CursorState(5))])
    assert str(error.value) == (
        f"connection 'warehouse': column 'amount' of table 'revenue' is {message_types}; "
        "change the column type or cast it in a computed step"
    )
    assert column_types(dest, "revenue")[-1][0] == "amount"
    assert query(dest, "SELECT * FROM revenue") == [(1, None)]
    assert dest.read_state("p", "s") is None


def test_missing_table_without_create_fails(dest):
    with pytest.raises(ConnectorError) as error:
        load(dest, pa.table({"id": [1]}), create_table_if_missing=False)
    assert str(error.value) == (
        "connection 'warehouse': table 'revenue' does not exist and create_table_if_missing "
        "is false; create it or set create_table_if_missing: true"
    )
    assert dest.discover() == []


def test_upsert_without_key_fails(dest):
    with pytest.raises(ConnectorError) as error:
        load(dest, pa.table({"id": [1]}), LoadMode.UPSERT)
    assert str(error.value) == (
        "connection 'warehouse': table 'revenue' is loaded with mode upsert but has no "
        "upsert_key; set upsert_key to the column(s) that identify a row"
    )


def test_upsert_key_missing_from_data_fails(dest):
    with pytest.raises(ConnectorError) as error:
        load(dest, pa.table({"id": [1], "v": [2]}), LoadMode.UPSERT, upsert_key=["key"])
    assert str(error.value) == (
        "connection 'warehouse': upsert_key column 'key' is not in the data loaded into "
        "table 'revenue'; use one of id, v"
    )


@pytest.mark.parametrize("mode", list(LoadMode))
def test_failure_mid_stream_rolls_back_rows_columns_and_state(dest, mode):
    first = LoadRequest(
        "revenue", mode, ["id"], state_updates=[StateUpdate("p", "s", CursorState(1))]
    )
    dest.load(pa.table({"id": [1], "name": ["a"]}).to_reader(), first)
    request = LoadRequest(
        "revenue", mode, ["id"], state_updates=[StateUpdate("p", "s", CursorState(99))]
    )
    data = pa.table({"id": [1, 2], "name": ["changed", "b"], "added": [1, 2]})
    with pytest.raises(RuntimeError, match=r"^source went away$"):
        dest.load(failing_reader(data), request)
    assert query(dest, "SELECT * FROM revenue") == [(1, "a")]
    assert dest.read_state("p", "s") == CursorState(1)


def test_failure_mid_stream_does_not_create_the_table(dest):
    request = LoadRequest(
        "revenue", LoadMode.APPEND, state_updates=[StateUpdate("p", "s", CursorState(9))]
    )
    with pytest.raises(RuntimeError, match=r"^source went away$"):
        dest.load(failing_reader(pa.table({"id": [1]})), request)
    assert dest.discover() == []
    assert dest.read_state("p", "s") is None


def test_bad_value_rolls_back_and_names_the_table(dest):
    query(dest, "CREATE TABLE revenue (id INTEGER NOT NULL, doc JSON)")
    with pytest.raises(ConnectorError) as error:
        load(dest, pa.table({"id": pa.array([1, 2], pa.int16()), "doc": ['{"a": 1}', "no"]}))
    assert str(error.value) == (
        "connection 'warehouse': loading table 'revenue' failed: Conversion Error: "
        'Malformed JSON at byte 0 of input: invalid literal.  Input: "no" when casting from '
        "source column doc"
    )
    assert query(dest, "SELECT count(*) FROM revenue") == [(0,)]


def test_state_updates_commit_with_rows_and_read_back(dest):
    assert dest.read_state("p", "orders") is None
    cursor = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    states = [
        StateUpdate("p", "orders", CursorState(cursor, ((1, "a"), (2, "b")))),
        StateUpdate("p", "events", CursorState(42, ((42,),))),
        StateUpdate("p", "days", CursorState(dt.date(2024, 1, 1))),
        StateUpdate("p", "money", CursorState(decimal.Decimal("10.50"))),
    ]
    load(dest, pa.table({"id": [1]}), state_updates=states)
    for update in states:
        assert dest.read_state("p", update.source_table) == update.state
    assert dest.read_state("other", "orders") is None

    load(dest, pa.table({"id": [2]}), state_updates=[StateUpdate("p", "events", CursorState(43))])
    assert dest.read_state("p", "events") == CursorState(43)
    assert query(dest, "SELECT count(*) FROM _datapipe_state") == [(4,)]
    assert [t.name for t in dest.discover()] == ["revenue"]


def test_null_and_empty_string_stay_distinct(dest):
    load(dest, pa.table({"id": [1, 2, 3], "s": ["", None, "x"]}))
    assert query(dest, "SELECT id, s, s IS NULL FROM revenue ORDER BY id") == [
        (1, "", False),
        (2, None, True),
        (3, "x", False),
    ]


def test_timestamps_with_time_zone(dest):
    paris = pa.timestamp("us", tz="Europe/Paris")
    moment = dt.datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    load(dest, pa.table({"at": pa.array([moment], paris), "naive": pa.array([moment], paris)}))
    query(dest, "ALTER TABLE revenue ALTER naive TYPE TIMESTAMP")
    load(dest, pa.table({"at": pa.array([moment], paris), "naive": pa.array([moment], paris)}))
    # The zone-less column stores UTC wall time.
    assert query(dest, "SELECT * FROM revenue") == [
        (moment, dt.datetime(2024, 7, 1, 12, 0)),
        (moment, dt.datetime(2024, 7, 1, 12, 0)),
    ]


def test_decimals_keep_exact_values(dest):
    values = [decimal.Decimal("12345678901234.5678"), decimal.Decimal("-0.0001"), None]
    load(dest, pa.table({"amount": pa.array(values, pa.decimal128(18, 4))}))
    assert column_types(dest, "revenue") == [("amount", "DECIMAL(18,4)")]
    assert query(dest, "SELECT amount FROM revenue") == [(v,) for v in values]


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
        DuckDBDestination("warehouse", {}).check()
    assert str(error.value) == (
        "connection 'warehouse': no path is set; set path to the DuckDB database file"
    )
