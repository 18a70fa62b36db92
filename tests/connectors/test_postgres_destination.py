"""PostgresDestination against a real PostgreSQL server: what only PostgreSQL does (the rest
is in test_sql_destinations.py)."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pytest

from connectors.base import ConnectorError, CursorState, LoadMode, LoadRequest, StateUpdate
from connectors.destinations.postgres import PostgresDestination
from tests.support.destination_cases import UTC, Target, load, postgres_target
from tests.support.services import PG_PASSWORD, free_port

PASSWORD = PG_PASSWORD


@pytest.fixture
def target(postgres, pg_database) -> Target:
    return postgres_target(postgres, pg_database)


@pytest.fixture
def config(target: Target) -> dict:
    return dict(target.config)


def test_check_reports_server(target, postgres, pg_database):
    message = target.dest.check()
    assert message.startswith("connection 'warehouse': PostgreSQL 15.")
    assert message.endswith(f" at {postgres.host}:{postgres.port}/{pg_database}")


@pytest.mark.parametrize(
    "create_sql",
    [
        pytest.param(None, id="binary_copy"),
        # An INTEGER key takes the int64 data through the text cast (see below).
        pytest.param("CREATE TABLE revenue (id INTEGER PRIMARY KEY, v BIGINT)", id="cast"),
    ],
)
def test_upsert_across_batches_keeps_last_occurrence(target, create_sql):
    if create_sql:
        target.query(create_sql)
    data = pa.table({"id": [1, 2, 1, 2, 1], "v": [1, 2, 3, 4, 5]})
    target.dest.load(
        data.to_reader(max_chunksize=2), LoadRequest("revenue", LoadMode.UPSERT, ["id"])
    )
    assert target.query("SELECT * FROM revenue ORDER BY id") == [(1, 5), (2, 4)]


def test_compatible_types_are_accepted(target):
    target.query(
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
    load(target.dest, data, create_table_if_missing=False)
    row = target.query("SELECT n, d, t, big, f, code, id::text FROM revenue")
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


def test_narrower_numeric_column_takes_values_that_fit_and_refuses_an_overflow(target):
    target.query("CREATE TABLE revenue (id INTEGER, amount NUMERIC(5,2))")
    fits = pa.table({"id": pa.array([1], pa.int64()), "amount": [12.5]})
    assert load(target.dest, fits).rows_loaded == 1
    overflow = pa.table({"id": pa.array([2, 3_000_000_000], pa.int64()), "amount": [1.0, 2.0]})
    with pytest.raises(ConnectorError) as error:
        load(target.dest, overflow)
    assert str(error.value) == (
        "connection 'warehouse': loading table 'revenue' failed: "
        'value "3000000000" is out of range for type integer'
    )
    assert target.query("SELECT id, amount FROM revenue") == [(1, decimal.Decimal("12.50"))]


def test_null_and_empty_string_stay_distinct_through_copy(target):
    texts = ["", None, "x", 'quote " comma , ', "line\nbreak", "\\.", "back\\slash", "ünï"]
    load(target.dest, pa.table({"id": list(range(len(texts))), "s": texts}))
    assert target.query("SELECT s, s IS NULL FROM revenue ORDER BY id") == [
        (text, text is None) for text in texts
    ]


def test_timestamps_with_time_zone(target):
    target.query("CREATE TABLE revenue (at TIMESTAMPTZ, naive TIMESTAMP)")
    paris = pa.timestamp("ns", tz="Europe/Paris")
    moment = dt.datetime(2024, 7, 1, 12, 0, 0, 250000, tzinfo=UTC)
    load(
        target.dest, pa.table({"at": pa.array([moment], paris), "naive": pa.array([moment], paris)})
    )
    # The zone-less column stores UTC wall time, as in DuckDB.
    assert target.query("SELECT * FROM revenue") == [(moment, moment.replace(tzinfo=None))]


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
        PostgresDestination("warehouse", config)
    assert str(error.value) == (
        "connection 'warehouse': missing config key 'database'; set it in the connection's config"
    )


def _copy_statement_seen(target: Target, table: pa.Table) -> str:
    """Load `table` in two batches; return the statement the load ran between them."""
    seen: list[str] = []

    def batches():
        first, second = table.slice(0, 1), table.slice(1)
        yield from first.to_batches()
        seen.extend(
            query
            for (query,) in target.query(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'datapipe' "
                "AND state = 'active' AND pid <> pg_backend_pid()"
            )
        )
        yield from second.to_batches()

    reader = pa.RecordBatchReader.from_batches(table.schema, batches())
    target.dest.load(reader, LoadRequest("revenue", LoadMode.APPEND))
    assert len(seen) == 1, seen
    return seen[0]


# Every Arrow type the driver writes straight into the column type a first load creates, with
# a NULL in each column.
BINARY_TYPES = {
    "i8": pa.array([1, None], pa.int8()),
    "i16": pa.array([-2, None], pa.int16()),
    "u16": pa.array([65535, None], pa.uint16()),
    "i32": pa.array([2**31 - 1, None], pa.int32()),
    "i64": pa.array([-(2**63), None], pa.int64()),
    "f64": pa.array([0.1, None], pa.float64()),
    "dec": pa.array([decimal.Decimal("-12345678901.25"), None], pa.decimal128(13, 2)),
    "wide": pa.array([decimal.Decimal("1" * 50 + ".5"), None], pa.decimal256(60, 1)),
    "s": pa.array(['a "q", \\ \n ü', None]),
    "ls": pa.array(["", None], pa.large_string()),
    "dict": pa.array(["red", None]).dictionary_encode(),
    "b": pa.array([False, None]),
    "d": pa.array([dt.date(1, 1, 1), None], pa.date32()),
    "d64": pa.array([dt.date(2024, 2, 29), None], pa.date64()),
    "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6), None], pa.timestamp("us")),
    "tstz": pa.array([dt.datetime(2024, 1, 2, tzinfo=UTC), None], pa.timestamp("ms", "UTC")),
    "bin": pa.array([b"\x00\xff\\", None]),
}


def test_matching_types_stream_through_binary_copy_into_the_table_exactly(target):
    data = pa.table(BINARY_TYPES)
    columns = ", ".join(f'"{name}"' for name in BINARY_TYPES)
    assert _copy_statement_seen(target, data) == (
        f'COPY "public" . "revenue" ({columns}) FROM STDIN WITH (FORMAT binary)'
    )
    rows = target.query(f"SELECT {columns} FROM revenue")
    assert rows == [tuple(data.column(name)[i].as_py() for name in BINARY_TYPES) for i in (0, 1)]


def test_types_binary_copy_cannot_write_go_through_text_like_a_text_copy(target):
    target.query("CREATE TABLE revenue (id BIGINT, doc JSONB, key UUID, n NUMERIC, f REAL)")
    data = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "doc": ['{"b": 1, "a": [true]}', None],
            "key": ["00000000-0000-0000-0000-00000000000a", None],
            "n": [0.1, None],
            "f": pa.array([1.5, None], pa.float64()),
        }
    )
    assert _copy_statement_seen(target, data) == (
        'COPY pg_temp . "_datapipe_cast" ("id", "doc", "key", "n", "f") '
        "FROM STDIN WITH (FORMAT binary)"
    )
    # A double's text is its shortest exact form, so 0.1 is 0.1 in a NUMERIC column.
    assert target.query("SELECT id, doc::text, key::text, n, f FROM revenue ORDER BY id") == [
        (1, '{"a": [true], "b": 1}', "00000000-0000-0000-0000-00000000000a",
         decimal.Decimal("0.1"), 1.5),
        (2, None, None, None, None),
    ]  # fmt: skip


def test_nested_values_become_json_as_in_duckdb(target):
    struct = {
        "n": decimal.Decimal("1.25"),
        "d": dt.date(2024, 1, 2),
        "t": dt.datetime(2024, 1, 2, 3, 4, 5),
        "tags": ["a", "b"],
    }
    data = pa.table(
        {
            "id": [1, 2],
            "doc": [struct, None],
            "counts": pa.array([[("x", 1)], None], pa.map_(pa.string(), pa.int64())),
        }
    )
    load(target.dest, data)
    assert target.query("SELECT id, doc::text, counts::text FROM revenue ORDER BY id") == [
        (
            1,
            '{"d": "2024-01-02", "n": 1.25, "t": "2024-01-02 03:04:05", "tags": ["a", "b"]}',
            '{"x": 1}',
        ),
        (2, None, None),
    ]
