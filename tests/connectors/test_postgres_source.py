"""PostgresSource against a real PostgreSQL 15 server (one fresh database per test)."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from connectors.base import ConnectorError, TableSchema
from connectors.sources.postgres import BATCH_BYTES, PostgresSource
from tests.support.project_files import postgres_config
from tests.support.services import PG_PASSWORD, PostgresServer, free_port, hang_up_server

# The test server checks passwords; the real one must still never leak into a message.
PASSWORD = PG_PASSWORD
UTC = dt.UTC


def config(server: PostgresServer, database: str, **overrides: Any) -> dict[str, Any]:
    return {**postgres_config(server, database), **overrides}


def run(server: PostgresServer, database: str, *statements: str) -> None:
    with psycopg.connect(server.url(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def rows(reader: pa.RecordBatchReader) -> list[dict]:
    return reader.read_all().to_pylist()


def error_of(call: Any, *args: Any) -> str:
    with pytest.raises(ConnectorError) as error:
        result = call(*args)
        if isinstance(result, pa.RecordBatchReader):
            result.read_all()
    message = str(error.value)
    assert PASSWORD not in message
    return message


EVERYTHING = """
    create table everything (
        small smallint, regular integer, big bigint, r real, d double precision,
        price numeric(12, 2), loose numeric, words text, short varchar(10), code char(3),
        id uuid, doc json, docb jsonb, flag boolean, day date, at timestamp,
        at_tz timestamptz, raw bytea, span interval
    )
"""

EVERYTHING_SCHEMA = pa.schema(
    [
        ("small", pa.int16()),
        ("regular", pa.int32()),
        ("big", pa.int64()),
        ("r", pa.float32()),
        ("d", pa.float64()),
        ("price", pa.decimal128(12, 2)),
        ("loose", pa.decimal128(38, 9)),
        ("words", pa.string()),
        ("short", pa.string()),
        ("code", pa.string()),
        ("id", pa.string()),
        ("doc", pa.string()),
        ("docb", pa.string()),
        ("flag", pa.bool_()),
        ("day", pa.date32()),
        ("at", pa.timestamp("us")),
        ("at_tz", pa.timestamp("us", tz="UTC")),
        ("raw", pa.binary()),
        ("span", pa.string()),
    ]
)


def test_check(postgres: PostgresServer, pg_database: str) -> None:
    source = PostgresSource("shop_db", config(postgres, pg_database))
    assert source.check() == f"connected to database {pg_database} as postgres"


def test_discover_maps_every_type(postgres: PostgresServer, pg_database: str) -> None:
    run(
        postgres,
        pg_database,
        EVERYTHING,
        "create view recent as select small, words, at_tz from everything",
        "create schema other",
        "create table other.hidden (x int)",
    )
    source = PostgresSource("shop_db", config(postgres, pg_database))

    assert source.discover() == [
        TableSchema("everything", EVERYTHING_SCHEMA),
        TableSchema(
            "recent",
            pa.schema(
                [
                    ("small", pa.int16()),
                    ("words", pa.string()),
                    ("at_tz", pa.timestamp("us", tz="UTC")),
                ]
            ),
        ),
    ]
    other = PostgresSource("shop_db", config(postgres, pg_database, schema="other"))
    assert other.discover() == [TableSchema("hidden", pa.schema([("x", pa.int32())]))]


def test_reads_every_type_exactly(postgres: PostgresServer, pg_database: str) -> None:
    run(
        postgres,
        pg_database,
        EVERYTHING,
        """
        insert into everything values (
            -3, 70000, 9000000000, 1.5, 2.25, 1234.56, 1.23456789012, 'héllo', 'short',
            'ab', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"a": 1}', '{"b": [1, 2]}', true,
            '2024-02-29', '2024-01-01 10:00:00.123456', '2024-01-01 12:00:00+02', '\\x0102',
            '1 day 02:00:00'
        )
        """,
        "insert into everything default values",
    )
    source = PostgresSource("shop_db", config(postgres, pg_database))

    reader = source.read("everything")
    assert reader.schema == EVERYTHING_SCHEMA
    assert rows(reader) == [
        {
            "small": -3,
            "regular": 70000,
            "big": 9_000_000_000,
            "r": 1.5,
            "d": 2.25,
            "price": decimal.Decimal("1234.56"),
            "loose": decimal.Decimal("1.234567890"),
            "words": "héllo",
            "short": "short",
            "code": "ab ",
            "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "doc": '{"a": 1}',
            "docb": '{"b": [1, 2]}',
            "flag": True,
            "day": dt.date(2024, 2, 29),
            "at": dt.datetime(2024, 1, 1, 10, 0, 0, 123456),
            "at_tz": dt.datetime(2024, 1, 1, 10, 0, tzinfo=UTC),
            "raw": b"\x01\x02",
            "span": "1 day 02:00:00",
        },
        dict.fromkeys(EVERYTHING_SCHEMA.names),
    ]


def test_wide_numerics_and_values_that_do_not_fit(
    postgres: PostgresServer, pg_database: str
) -> None:
    run(
        postgres,
        pg_database,
        "create table measures (wide numeric(50, 4), huge numeric(100, 0), loose numeric)",
        "insert into measures values (1.5, 12, 'NaN')",
    )
    source = PostgresSource("shop_db", config(postgres, pg_database))

    reader = source.read("measures")
    assert reader.schema == pa.schema(
        [("wide", pa.decimal256(50, 4)), ("huge", pa.string()), ("loose", pa.decimal128(38, 9))]
    )
    assert error_of(reader.read_all) == (
        "connection 'shop_db': table 'measures' column 'loose' has a value that does not fit "
        "decimal128(38, 9) (The string 'NaN' is not a valid decimal128 number)"
    )
    run(postgres, pg_database, "update measures set loose = 2")
    assert rows(source.read("measures")) == [
        {"wide": decimal.Decimal("1.5000"), "huge": "12", "loose": decimal.Decimal("2.000000000")}
    ]


def test_incremental_read_is_inclusive_and_ordered(
    postgres: PostgresServer, pg_database: str
) -> None:
    run(
        postgres,
        pg_database,
        "create schema sales",
        "create table sales.orders (id int primary key, updated_at timestamptz)",
        """
        insert into sales.orders values
            (4, '2024-01-04 00:00+00'), (1, '2024-01-01 00:00+00'),
            (3, '2024-01-02 00:00+00'), (2, '2024-01-02 00:00+00')
        """,
    )
    source = PostgresSource("shop_db", config(postgres, pg_database))

    by_id = source.read("sales.orders", "id", 2)
    assert [r["id"] for r in rows(by_id)] == [2, 3, 4]
    since = dt.datetime(2024, 1, 2, tzinfo=UTC)
    by_time = rows(source.read("sales.orders", "updated_at", since))
    assert sorted(r["id"] for r in by_time) == [2, 3, 4]
    assert [r["updated_at"] for r in by_time][-1] == dt.datetime(2024, 1, 4, tzinfo=UTC)
    without_cursor = source.read("sales.orders", "id", None)
    assert sorted(r["id"] for r in rows(without_cursor)) == [1, 2, 3, 4]


def test_cursor_is_quoted_into_the_copy_and_names_keep_their_percent(
    postgres: PostgresServer, pg_database: str
) -> None:
    # COPY takes no bound parameters: the cursor is written into the query as a literal.
    run(
        postgres,
        pg_database,
        'create table "100% orders" ("name%" text, "at" timestamp)',
        """
        insert into "100% orders" values
            ('o''a', '2024-01-01 00:00'), ('o''b', '2024-01-02 00:00'), ('p', null)
        """,
    )
    source = PostgresSource("shop_db", config(postgres, pg_database))

    assert rows(source.read("100% orders", "name%", "o'b")) == [
        {"name%": "o'b", "at": dt.datetime(2024, 1, 2)},
        {"name%": "p", "at": None},
    ]
    assert [
        r["name%"] for r in rows(source.read("100% orders", "at", dt.datetime(2024, 1, 2)))
    ] == ["o'b"]
    injected = '\'; drop table "100% orders"; --'
    assert rows(source.read("100% orders", "name%", injected)) == [
        {"name%": "o'a", "at": dt.datetime(2024, 1, 1)},
        {"name%": "o'b", "at": dt.datetime(2024, 1, 2)},
        {"name%": "p", "at": None},
    ]


def test_large_table_streams_in_batches(postgres: PostgresServer, pg_database: str) -> None:
    # Rows of about 500 bytes: the table is several batches, far more than the socket
    # buffers hold, so the server cannot send it ahead of the reader.
    total = 4 * BATCH_BYTES // 500
    run(
        postgres,
        pg_database,
        "create table events (id bigint, label text)",
        f"insert into events select n, repeat('x', 500) from generate_series(1, {total}) n",
    )
    reader = PostgresSource("shop_db", config(postgres, pg_database)).read("events")

    first = reader.read_next_batch()
    # A buffered read would have run the query to its end before the first batch.
    assert _running_queries(postgres, pg_database) == ['COPY (select "id", "label" from']
    batches = [first, *reader]
    assert len(batches) >= 4
    assert max(batch.nbytes for batch in batches) <= 2 * BATCH_BYTES
    table = pa.Table.from_batches(batches)
    assert table.column("id").to_pylist() == list(range(1, total + 1))
    assert set(table.column("label").to_pylist()) == {"x" * 500}
    assert _running_queries(postgres, pg_database) == []


def _running_queries(server: PostgresServer, database: str) -> list[str]:
    """The start of each statement another session runs in the database."""
    with psycopg.connect(server.url(database)) as conn:
        rows = conn.execute(
            "select left(query, 31) from pg_stat_activity "
            "where datname = %s and state = 'active' and pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return [query for (query,) in rows]


@pytest.mark.parametrize(
    ("override", "user"),
    [
        pytest.param({"username": "etl"}, "etl", id="unknown_user"),
        pytest.param({"password": "not-the-password"}, "postgres", id="wrong_password"),
    ],
)
def test_bad_credentials_are_an_authentication_failure(
    postgres: PostgresServer, pg_database: str, override: dict[str, str], user: str
) -> None:
    source = PostgresSource("shop_db", config(postgres, pg_database, **override))

    assert error_of(source.check) == (
        f"connection 'shop_db': authentication failed for user '{user}'; "
        "check username and password"
    )


def test_unknown_database(postgres: PostgresServer) -> None:
    source = PostgresSource("shop_db", config(postgres, "nope"))

    assert error_of(source.discover) == (
        f"connection 'shop_db': database 'nope' does not exist on "
        f"{postgres.host}:{postgres.port}; check database"
    )


def test_unreachable_port(postgres: PostgresServer, pg_database: str) -> None:
    port = free_port()
    source = PostgresSource("shop_db", config(postgres, pg_database, port=port))

    assert error_of(source.check) == (
        f"connection 'shop_db': cannot reach 127.0.0.1:{port} (connection refused); "
        "check host and port"
    )


def test_unknown_table_lists_available_ones(postgres: PostgresServer, pg_database: str) -> None:
    run(postgres, pg_database, *(f"create table t{i} (x int)" for i in range(1, 8)))
    source = PostgresSource("shop_db", config(postgres, pg_database))

    assert error_of(source.read, "orders") == (
        f"connection 'shop_db': no table 'orders' in schema 'public' of database "
        f"{pg_database!r}; available: t1, t2, t3, t4, t5, ..."
    )
    assert error_of(source.read, "empty_schema.orders") == (
        f"connection 'shop_db': no table 'empty_schema.orders' in schema 'empty_schema' of "
        f"database {pg_database!r}; that schema has no tables"
    )


def test_incremental_key_must_be_a_column(postgres: PostgresServer, pg_database: str) -> None:
    run(postgres, pg_database, "create table orders (id int)")
    source = PostgresSource("shop_db", config(postgres, pg_database))

    assert error_of(source.read, "orders", "changed_at", 5) == (
        "connection 'shop_db': table 'orders' has no column 'changed_at' to use as "
        "incremental_key; pick one of id"
    )


def test_query_failure_is_reported_without_secrets(
    postgres: PostgresServer, pg_database: str
) -> None:
    run(
        postgres,
        pg_database,
        "create table orders (id int, day date)",
        "insert into orders values (1, '2024-01-01')",
    )
    source = PostgresSource("shop_db", config(postgres, pg_database))

    assert error_of(source.read, "orders", "day", "not a date") == (
        "connection 'shop_db': reading 'orders' failed: "
        'invalid input syntax for type date: "not a date"'
    )


def test_an_unrecognized_connection_failure_gives_the_driver_s_words_without_the_password(
    postgres: PostgresServer, pg_database: str
) -> None:
    # libpq tries twice: with and without SSL.
    with hang_up_server(connections=2) as port:
        source = PostgresSource(
            "shop_db", config(postgres, pg_database, port=port, sslmode="disable")
        )
        message = error_of(source.check)
    assert message == (
        f"connection 'shop_db': cannot connect to 127.0.0.1:{port} (connection failed: "
        f'connection to server at "127.0.0.1", port {port} failed: server closed the '
        "connection unexpectedly); check the connection settings"
    )
