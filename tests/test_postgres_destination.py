"""PostgresDestination against a real PostgreSQL server: exact rows, types and errors."""

from __future__ import annotations

import datetime as dt
import decimal

import psycopg
import pyarrow as pa
import pytest

from connectors import open_destination
from connectors.base import (
    ConnectorError,
    CursorState,
    LoadMode,
    LoadRequest,
    LoadResult,
    StateUpdate,
)
from connectors.postgres_destination import PostgresDestination
from tests.services import PG_PASSWORD, free_port

UTC = dt.UTC
PASSWORD = PG_PASSWORD


@pytest.fixture
def config(postgres, pg_database) -> dict:
    return {
        "host": postgres.host,
        "port": postgres.port,
        "database": pg_database,
        "username": postgres.user,
        "password": PASSWORD,
    }


@pytest.fixture
def dest(config) -> PostgresDestination:
    destination = open_destination("postgres", "warehouse", config)
    assert isinstance(destination, PostgresDestination)
    return destination


@pytest.fixture
def query(postgres, pg_database):
    def run(sql: str) -> list[tuple]:
        with psycopg.connect(postgres.url(pg_database), autocommit=True) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    return run


def column_types(query, table: str = "revenue") -> list[tuple[str, str]]:
    return query(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        f"WHERE attrelid = 'public.{table}'::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum"
    )


def load(dest: PostgresDestination, table: pa.Table, mode: LoadMode = LoadMode.APPEND, **kw):
    return dest.load(table.to_reader(), LoadRequest("revenue", mode, **kw))


def failing_reader(table: pa.Table) -> pa.RecordBatchReader:
    """A source that delivers one batch and then breaks."""

    def batches():
        yield from table.to_batches()
        raise RuntimeError("source went away")

    return pa.RecordBatchReader.from_batches(table.schema, batches())


def test_first_load_creates_table_with_mapped_types(dest, query):
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
            "dict": pa.array(["red"]).dictionary_encode(),
        }
    )
    result = load(dest, data)
    assert result == LoadResult(rows_loaded=1, columns_added=(), table_created=True)
    assert column_types(query) == [
        ("i8", "smallint"),
        ("i16", "smallint"),
        ("i32", "integer"),
        ("i64", "bigint"),
        ("f32", "double precision"),
        ("f64", "double precision"),
        ("dec", "numeric(12,2)"),
        ("s", "text"),
        ("ls", "text"),
        ("b", "boolean"),
        ("d", "date"),
        ("ts", "timestamp without time zone"),
        ("tstz", "timestamp with time zone"),
        ("bin", "bytea"),
        ("lst", "jsonb"),
        ("st", "jsonb"),
        ("dict", "text"),
    ]
    assert query("SELECT * FROM revenue") == [
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
            [1, 2],
            {"a": 1, "b": "x"},
            "red",
        )
    ]


def test_check_reports_server(dest, postgres, pg_database):
    message = dest.check()
    assert message.startswith("connection 'warehouse': PostgreSQL 15.")
    assert message.endswith(f" at {postgres.host}:{postgres.port}/{pg_database}")


def test_append_twice_keeps_all_rows(dest, query):
    load(dest, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    result = load(dest, pa.table({"id": [3], "name": ["c"]}))
    assert result == LoadResult(rows_loaded=1, columns_added=(), table_created=False)
    assert query("SELECT * FROM revenue ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]


def test_replace_leaves_exactly_the_new_rows(dest, query):
    load(dest, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    result = load(dest, pa.table({"id": [7], "extra": [True]}), LoadMode.REPLACE)
    assert result == LoadResult(rows_loaded=1, columns_added=("extra",), table_created=False)
    assert query("SELECT * FROM revenue") == [(7, None, True)]


def test_upsert_updates_inserts_and_keeps_last_duplicate(dest, query):
    load(dest, pa.table({"id": [1, 2], "name": ["a", "b"]}), LoadMode.UPSERT, upsert_key=["id"])
    data = pa.table({"id": [2, 3, 3, 2], "name": ["b1", "c1", "c2", "b2"]})
    result = load(dest, data, LoadMode.UPSERT, upsert_key=["id"])
    assert result.rows_loaded == 2
    assert query("SELECT * FROM revenue ORDER BY id") == [(1, "a"), (2, "b2"), (3, "c2")]
    assert query(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'revenue'::regclass"
    ) == [("PRIMARY KEY (id)",)]


def test_upsert_across_batches_keeps_last_occurrence(dest, query):
    data = pa.table({"id": [1, 2, 1, 2, 1], "v": [1, 2, 3, 4, 5]})
    dest.load(data.to_reader(max_chunksize=2), LoadRequest("revenue", LoadMode.UPSERT, ["id"]))
    assert query("SELECT * FROM revenue ORDER BY id") == [(1, 5), (2, 4)]


def test_upsert_works_without_unique_constraint_and_composite_key(dest, query):
    load(dest, pa.table({"a": [1, 1, 2], "b": ["x", "y", "x"], "v": [1, 2, 3]}))
    data = pa.table({"a": [1, 2, 2], "b": ["y", "y", "y"], "v": [20, 30, 31]})
    load(dest, data, LoadMode.UPSERT, upsert_key=["a", "b"])
    assert query("SELECT * FROM revenue ORDER BY a, b") == [
        (1, "x", 1),
        (1, "y", 20),
        (2, "x", 3),
        (2, "y", 31),
    ]


def test_new_column_is_added_and_absent_columns_stay_null(dest, query):
    load(dest, pa.table({"id": [1], "name": ["a"]}))
    result = load(dest, pa.table({"id": [2], "score": [9.5]}))
    assert result.columns_added == ("score",)
    assert column_types(query) == [
        ("id", "bigint"),
        ("name", "text"),
        ("score", "double precision"),
    ]
    assert query("SELECT * FROM revenue ORDER BY id") == [(1, "a", None), (2, None, 9.5)]


def test_compatible_types_are_accepted(dest, query):
    query(
        "CREATE TABLE revenue (n NUMERIC(12,2), d DOUBLE PRECISION, t TIMESTAMP, "
        "big BIGINT, f NUMERIC, code VARCHAR(5), id UUID)"
    )
    data = pa.table(
        {
            "n": pa.array([5], pa.int16()),
            "d": pa.array([7], pa.int32()),
            "t": [dt.date(2024, 1, 2)],
            "big": pa.array([3], pa.int8()),
            "f": [1.5],
            "code": ["ab"],
            "id": ["00000000-0000-0000-0000-000000000001"],
        }
    )
    load(dest, data, create_table_if_missing=False)
    row = query("SELECT n, d, t, big, f, code, id::text FROM revenue")
    assert row == [
        (
            decimal.Decimal("5.00"),
            7.0,
            dt.datetime(2024, 1, 2),
            3,
            decimal.Decimal("1.5"),
            "ab",
            "00000000-0000-0000-0000-000000000001",
        )
    ]


@pytest.mark.parametrize(
    ("column_type", "data", "message_types"),
    [
        ("INTEGER", pa.array(["12"]), "INTEGER but the data is TEXT"),
        ("BOOLEAN", pa.array([dt.datetime(2024, 1, 1)]), "BOOLEAN but the data is TIMESTAMP"),
        ("TEXT", pa.array([1]), "TEXT but the data is BIGINT"),
        ("DATE", pa.array([dt.datetime(2024, 1, 1)]), "DATE but the data is TIMESTAMP"),
    ],
)
def test_type_conflict_fails_before_writing(dest, query, column_type, data, message_types):
    query(f"CREATE TABLE revenue (id INTEGER, amount {column_type})")
    query("INSERT INTO revenue VALUES (1, NULL)")
    incoming = pa.table({"id": pa.array([2], pa.int32()), "new_col": ["x"], "amount": data})
    with pytest.raises(ConnectorError) as error:
        load(dest, incoming, state_updates=[StateUpdate("p", "s", CursorState(5))])
    assert str(error.value) == (
        f"connection 'warehouse': column 'amount' of table 'revenue' is {message_types}; "
        "change the column type or cast it in a computed step"
    )
    assert [name for name, _ in column_types(query)] == ["id", "amount"]
    assert query("SELECT * FROM revenue") == [(1, None)]
    assert dest.read_state("p", "s") is None


def test_narrower_numeric_column_takes_values_that_fit_and_refuses_an_overflow(dest, query):
    query("CREATE TABLE revenue (id INTEGER, amount NUMERIC(5,2))")
    fits = pa.table({"id": pa.array([1], pa.int64()), "amount": [12.5]})
    assert load(dest, fits).rows_loaded == 1
    overflow = pa.table({"id": pa.array([2, 3_000_000_000], pa.int64()), "amount": [1.0, 2.0]})
    with pytest.raises(ConnectorError) as error:
        load(dest, overflow)
    assert str(error.value) == (
        "connection 'warehouse': loading table 'revenue' failed: "
        'value "3000000000" is out of range for type integer'
    )
    assert query("SELECT id, amount FROM revenue") == [(1, decimal.Decimal("12.50"))]


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


@pytest.mark.parametrize("mode", list(LoadMode))
def test_failure_mid_stream_rolls_back_rows_columns_and_state(dest, query, mode):
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
    assert query("SELECT * FROM revenue") == [(1, "a")]
    assert dest.read_state("p", "s") == CursorState(1)


def test_failure_mid_stream_does_not_create_the_table(dest):
    request = LoadRequest(
        "revenue", LoadMode.APPEND, state_updates=[StateUpdate("p", "s", CursorState(9))]
    )
    with pytest.raises(RuntimeError, match=r"^source went away$"):
        dest.load(failing_reader(pa.table({"id": [1]})), request)
    assert dest.discover() == []
    assert dest.read_state("p", "s") is None


def test_bad_value_rolls_back_and_names_the_table(dest, query):
    query("CREATE TABLE revenue (id INTEGER, code VARCHAR(3))")
    with pytest.raises(ConnectorError) as error:
        load(dest, pa.table({"id": pa.array([1, 2], pa.int32()), "code": ["abc", "abcd"]}))
    assert str(error.value) == (
        "connection 'warehouse': loading table 'revenue' failed: "
        "value too long for type character varying(3)"
    )
    assert query("SELECT count(*) FROM revenue") == [(0,)]


def test_state_updates_commit_with_rows_and_read_back(dest, query):
    assert dest.read_state("p", "orders") is None
    cursor = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    states = [
        StateUpdate("p", "orders", CursorState(cursor, ((1, "a"), (2, "b")))),
        StateUpdate("p", "events", CursorState(42, ((42,),))),
        StateUpdate("p", "aware", CursorState(dt.datetime(2024, 1, 1, tzinfo=UTC))),
        StateUpdate("p", "days", CursorState(dt.date(2024, 1, 1))),
        StateUpdate("p", "money", CursorState(decimal.Decimal("10.50"))),
    ]
    load(dest, pa.table({"id": [1]}), state_updates=states)
    for update in states:
        assert dest.read_state("p", update.source_table) == update.state
    assert dest.read_state("other", "orders") is None

    load(dest, pa.table({"id": [2]}), state_updates=[StateUpdate("p", "events", CursorState(43))])
    assert dest.read_state("p", "events") == CursorState(43)
    assert query("SELECT count(*) FROM _datapipe_state") == [(5,)]
    assert [t.name for t in dest.discover()] == ["revenue"]


def test_null_and_empty_string_stay_distinct_through_copy(dest, query):
    texts = ["", None, "x", 'quote " comma , ', "line\nbreak", "\\.", "back\\slash", "ünï"]
    load(dest, pa.table({"id": list(range(len(texts))), "s": texts}))
    assert query("SELECT s, s IS NULL FROM revenue ORDER BY id") == [
        (text, text is None) for text in texts
    ]


def test_timestamps_with_time_zone(dest, query):
    query("CREATE TABLE revenue (at TIMESTAMPTZ, naive TIMESTAMP)")
    paris = pa.timestamp("ns", tz="Europe/Paris")
    moment = dt.datetime(2024, 7, 1, 12, 0, 0, 250000, tzinfo=UTC)
    load(dest, pa.table({"at": pa.array([moment], paris), "naive": pa.array([moment], paris)}))
    # The zone-less column stores UTC wall time, as in DuckDB.
    assert query("SELECT * FROM revenue") == [(moment, moment.replace(tzinfo=None))]


def test_decimals_keep_exact_values(dest, query):
    values = [decimal.Decimal("12345678901234.5678"), decimal.Decimal("-0.0001"), None]
    load(dest, pa.table({"amount": pa.array(values, pa.decimal128(18, 4))}))
    assert column_types(query) == [("amount", "numeric(18,4)")]
    assert query("SELECT amount FROM revenue") == [(v,) for v in values]


def test_named_schema_and_discover(config):
    dest = PostgresDestination("warehouse", {**config, "schema": "raw"})
    data = pa.table({"id": pa.array([1], pa.int32()), "at": [dt.date(2024, 1, 1)]})
    state = StateUpdate("p", "orders", CursorState(1))
    dest.load(data.to_reader(), LoadRequest("orders", LoadMode.APPEND, state_updates=[state]))
    assert [(t.name, t.schema) for t in dest.discover()] == [
        ("orders", pa.schema([("id", pa.int32()), ("at", pa.date32())]))
    ]
    assert dest.read_state("p", "orders") == CursorState(1)


def test_unreachable_port_is_reported_without_password(config):
    port = free_port()
    dest = PostgresDestination("warehouse", {**config, "port": port})
    with pytest.raises(ConnectorError) as error:
        dest.check()
    assert str(error.value) == (
        f"connection 'warehouse': cannot reach 127.0.0.1:{port} (connection refused); "
        "check host and port"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"username": "nobody"},
            "authentication failed for user 'nobody'; check username and password",
        ),
        (
            {"database": "missing_db"},
            "database 'missing_db' does not exist on {where}; check database",
        ),
    ],
)
def test_connection_errors_never_contain_the_password(config, override, message):
    dest = PostgresDestination("warehouse", {**config, **override})
    with pytest.raises(ConnectorError) as error:
        dest.load(pa.table({"id": [1]}).to_reader(), LoadRequest("t", LoadMode.APPEND))
    where = f"{config['host']}:{config['port']}"
    assert str(error.value) == f"connection 'warehouse': {message.format(where=where)}"
    assert PASSWORD not in str(error.value)
    assert error.value.__suppress_context__  # the driver's text is not shown either


def test_missing_setting_is_reported(config):
    del config["database"]
    with pytest.raises(ConnectorError) as error:
        PostgresDestination("warehouse", config).check()
    assert str(error.value) == "connection 'warehouse': database is not set; set it"
