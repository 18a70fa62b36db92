"""MySQLSource against a real MariaDB server (one fresh database per test)."""

from __future__ import annotations

import datetime as dt
import decimal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from connectors.base import BATCH_ROWS, ConnectorError, CursorState, TableSchema
from connectors.sources.mysql import MySQLSource
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.mariadb_server import MariaDBServer, mariadb_server
from tests.support.services import free_port, hang_up_server

EXAMPLE = Path(__file__).parents[2] / "pipelines" / "examples" / "mysql.yaml"
UTC = dt.UTC


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    with mariadb_server() as server:
        yield server


@pytest.fixture
def database(mariadb: MariaDBServer) -> str:
    """The name of a fresh database on the session's server."""
    return mariadb.create_database()


def source(server: MariaDBServer, database: str, **overrides: Any) -> MySQLSource:
    config = {"host": server.host, "port": server.port, "database": database,
              "username": server.user, "password": server.password}  # fmt: skip
    return MySQLSource("shop_mysql", {**config, **overrides})


def run(server: MariaDBServer, database: str, *statements: str) -> None:
    with server.admin(database) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def rows(reader: pa.RecordBatchReader) -> list[dict]:
    return reader.read_all().to_pylist()


def error_of(server: MariaDBServer, call: Any, *args: Any) -> str:
    with pytest.raises(ConnectorError) as error:
        result = call(*args)
        if isinstance(result, pa.RecordBatchReader):
            result.read_all()
    message = str(error.value)
    assert server.password not in message
    return message


EVERYTHING = """
    create table everything (
        flag bool, tiny tinyint, utiny tinyint unsigned, small smallint,
        usmall smallint unsigned, medium mediumint, umedium mediumint unsigned, regular int,
        uregular int unsigned, big bigint, ubig bigint unsigned, f float, d double,
        price decimal(12, 2), wide decimal(50, 4), code char(3), short varchar(10),
        words text, kind enum('a', 'b'), tags set('x', 'y'), doc json, day date,
        at datetime(6), stamp timestamp(6) null, span time, fixed binary(2),
        raw varbinary(4), picture blob, yr year
    )
"""

EVERYTHING_SCHEMA = pa.schema(
    [
        ("flag", pa.bool_()),
        ("tiny", pa.int8()),
        ("utiny", pa.uint8()),
        ("small", pa.int16()),
        ("usmall", pa.uint16()),
        ("medium", pa.int32()),
        ("umedium", pa.uint32()),
        ("regular", pa.int32()),
        ("uregular", pa.uint32()),
        ("big", pa.int64()),
        ("ubig", pa.uint64()),
        ("f", pa.float32()),
        ("d", pa.float64()),
        ("price", pa.decimal128(12, 2)),
        ("wide", pa.decimal256(50, 4)),
        ("code", pa.string()),
        ("short", pa.string()),
        ("words", pa.string()),
        ("kind", pa.string()),
        ("tags", pa.string()),
        ("doc", pa.string()),
        ("day", pa.date32()),
        ("at", pa.timestamp("us")),
        ("stamp", pa.timestamp("us", tz="UTC")),
        ("span", pa.string()),
        ("fixed", pa.binary()),
        ("raw", pa.binary()),
        ("picture", pa.binary()),
        ("yr", pa.int16()),
    ]
)


def test_check(mariadb: MariaDBServer, database: str) -> None:
    assert source(mariadb, database).check() == f"connected to database {database} as etl"


def test_discover_maps_every_type(mariadb: MariaDBServer, database: str) -> None:
    other = mariadb.create_database()
    run(mariadb, other, "create table hidden (x int)")
    run(
        mariadb,
        database,
        EVERYTHING,
        "create view recent as select flag, words, stamp from everything",
    )

    assert source(mariadb, database).discover() == [
        TableSchema("everything", EVERYTHING_SCHEMA),
        TableSchema(
            "recent",
            pa.schema(
                [
                    ("flag", pa.bool_()),
                    ("words", pa.string()),
                    ("stamp", pa.timestamp("us", tz="UTC")),
                ]
            ),
        ),
    ]
    assert source(mariadb, other).discover() == [
        TableSchema("hidden", pa.schema([("x", pa.int32())]))
    ]


def test_reads_every_type_exactly(mariadb: MariaDBServer, database: str) -> None:
    run(
        mariadb,
        database,
        EVERYTHING,
        # Written at +02:00, so reading it back as 10:00 UTC shows the session is in UTC.
        "set time_zone = '+02:00'",
        """
        insert into everything values (
            true, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
            -9223372036854775808, 18446744073709551615, 1.5, 2.25, 1234.56,
            123456789012345678901234567890123456789012345.6789, 'ab', 'short', 'héllo', 'b',
            'y,x', '{"a": 1}', '2024-02-29', '2024-01-01 10:00:00.123456',
            '2024-01-01 12:00:00.5', '-12:00:01', x'0102', x'03', x'0405', 2024
        )
        """,
        "insert into everything () values ()",
    )

    reader = source(mariadb, database).read("everything")
    assert reader.schema == EVERYTHING_SCHEMA
    assert rows(reader) == [
        {
            "flag": True,
            "tiny": -128,
            "utiny": 255,
            "small": -32768,
            "usmall": 65535,
            "medium": -8388608,
            "umedium": 16777215,
            "regular": -2147483648,
            "uregular": 4294967295,
            "big": -9223372036854775808,
            "ubig": 18446744073709551615,
            "f": 1.5,
            "d": 2.25,
            "price": decimal.Decimal("1234.56"),
            "wide": decimal.Decimal("123456789012345678901234567890123456789012345.6789"),
            "code": "ab",
            "short": "short",
            "words": "héllo",
            "kind": "b",
            "tags": "x,y",
            "doc": '{"a": 1}',
            "day": dt.date(2024, 2, 29),
            "at": dt.datetime(2024, 1, 1, 10, 0, 0, 123456),
            "stamp": dt.datetime(2024, 1, 1, 10, 0, 0, 500000, tzinfo=UTC),
            "span": "-12:00:01",
            "fixed": b"\x01\x02",
            "raw": b"\x03",
            "picture": b"\x04\x05",
            "yr": 2024,
        },
        dict.fromkeys(EVERYTHING_SCHEMA.names),
    ]


def test_incremental_read_is_inclusive_and_ordered(mariadb: MariaDBServer, database: str) -> None:
    run(
        mariadb,
        database,
        "create table orders (id int primary key, updated_at timestamp null)",
        """
        insert into orders values
            (4, '2024-01-04 00:00'), (1, '2024-01-01 00:00'),
            (3, '2024-01-02 00:00'), (2, '2024-01-02 00:00')
        """,
    )
    orders = source(mariadb, database)

    assert [r["id"] for r in rows(orders.read("orders", "id", 2))] == [2, 3, 4]
    # 02:00 at +02:00 is midnight UTC: the cursor is compared in UTC whatever its zone.
    since = dt.datetime(2024, 1, 2, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    by_time = rows(orders.read(f"{database}.orders", "updated_at", since))
    assert sorted(r["id"] for r in by_time) == [2, 3, 4]
    assert by_time[-1]["updated_at"] == dt.datetime(2024, 1, 4, tzinfo=UTC)
    assert sorted(r["id"] for r in rows(orders.read("orders", "id", None))) == [1, 2, 3, 4]


def test_extract_picks_up_new_and_changed_rows(mariadb: MariaDBServer, database: str) -> None:
    run(
        mariadb,
        database,
        "create table orders (id int primary key, amount int, updated_at datetime(6))",
        """
        insert into orders values
            (1, 10, '2024-01-01 00:00'), (2, 20, '2024-01-02 00:00'),
            (3, 30, '2024-01-03 00:00'), (4, 40, '2024-01-03 00:00')
        """,
    )
    orders = source(mariadb, database)
    first = orders.extract("orders", "updated_at", None, primary_key=["id"])
    assert sorted(r["id"] for r in pa.Table.from_batches(first).to_pylist()) == [1, 2, 3, 4]
    assert first.state == CursorState(dt.datetime(2024, 1, 3), boundary_keys=((3,), (4,)))

    run(
        mariadb,
        database,
        "update orders set amount = 21, updated_at = '2024-01-05 00:00' where id = 2",
        "insert into orders values (5, 50, '2024-01-03 00:00'), (6, 60, '2024-01-04 00:00')",
    )
    start = CursorState(cursor=dt.datetime(2024, 1, 3), boundary_keys=((3,), (4,)))
    second = orders.extract("orders", "updated_at", start=start, primary_key=["id"])

    assert pa.Table.from_batches(second).to_pylist() == [
        {"id": 5, "amount": 50, "updated_at": dt.datetime(2024, 1, 3)},
        {"id": 6, "amount": 60, "updated_at": dt.datetime(2024, 1, 4)},
        {"id": 2, "amount": 21, "updated_at": dt.datetime(2024, 1, 5)},
    ]
    assert second.rows == 3
    assert second.state == CursorState(dt.datetime(2024, 1, 5), boundary_keys=((2,),))


def test_large_table_streams_in_batches(mariadb: MariaDBServer, database: str) -> None:
    total = 2 * BATCH_ROWS + 10
    _create_events(mariadb, database, total)
    reader = source(mariadb, database).read("events")

    first = reader.read_next_batch()
    # A buffered read would have run the query to its end before the first batch.
    assert _running_queries(mariadb, database) == ["select `id`, `label` from"]
    batches = [first, *reader]
    assert [batch.num_rows for batch in batches] == [BATCH_ROWS, BATCH_ROWS, 10]
    table = pa.Table.from_batches(batches)
    assert table.column("id").to_pylist() == list(range(1, total + 1))
    assert set(table.column("label").to_pylist()) == {"x" * 500}
    assert _running_queries(mariadb, database) == []


def test_reader_left_early_stops_the_query(mariadb: MariaDBServer, database: str) -> None:
    _create_events(mariadb, database, 4 * BATCH_ROWS)
    reader = source(mariadb, database).read("events")
    assert reader.read_next_batch().num_rows == BATCH_ROWS

    started = time.monotonic()
    del reader  # what a failed load does: drops the reader, which closes its batches
    assert _running_queries(mariadb, database) == []
    assert time.monotonic() - started < 5


def _create_events(server: MariaDBServer, database: str, total: int) -> None:
    """Rows of about 500 bytes: a few batches are far more than the socket buffers hold,
    so the server cannot send the table ahead of the reader."""
    run(
        server,
        database,
        "create table events (id bigint primary key, label varchar(500))",
        f"insert into events select seq, repeat('x', 500) from seq_1_to_{total}",
    )


def _running_queries(server: MariaDBServer, database: str) -> list[str]:
    """The start of each statement the etl user is running in the database."""
    with server.admin() as conn, conn.cursor() as cur:
        cur.execute(
            "select left(info, 25) from information_schema.processlist "
            "where user = %s and db = %s and command = 'Query'",
            (server.user, database),
        )
        return [info for (info,) in cur]


def test_empty_table(mariadb: MariaDBServer, database: str) -> None:
    run(mariadb, database, "create table orders (id int, updated_at datetime)")

    reader = source(mariadb, database).read("orders")
    assert reader.schema == pa.schema([("id", pa.int32()), ("updated_at", pa.timestamp("us"))])
    assert reader.read_all().num_rows == 0
    extraction = source(mariadb, database).extract("orders", "updated_at", None)
    assert list(extraction) == []
    assert extraction.state is None


@pytest.mark.parametrize(
    ("override", "user"),
    [
        pytest.param({"username": "nobody"}, "nobody", id="unknown_user"),
        pytest.param({"password": "not-the-password"}, "etl", id="wrong_password"),
    ],
)
def test_bad_credentials_are_an_authentication_failure(
    mariadb: MariaDBServer, database: str, override: dict[str, str], user: str
) -> None:
    bad = source(mariadb, database, **override)

    assert error_of(mariadb, bad.check) == (
        f"connection 'shop_mysql': authentication failed for user '{user}'; "
        "check username and password"
    )


def test_unknown_database_lists_available_ones(mariadb: MariaDBServer) -> None:
    for _ in range(6):
        mariadb.create_database()
    with mariadb.admin() as conn, conn.cursor() as cur:
        cur.execute("show databases")
        first_five = sorted(name for (name,) in cur if name.startswith("t_"))[:5]

    assert error_of(mariadb, source(mariadb, "nope").discover) == (
        f"connection 'shop_mysql': database 'nope' does not exist on "
        f"{mariadb.host}:{mariadb.port}; available: {', '.join(first_five)}, ..."
    )


def test_unreachable_port(mariadb: MariaDBServer, database: str) -> None:
    port = free_port()
    unreachable = source(mariadb, database, port=port)

    assert error_of(mariadb, unreachable.check) == (
        f"connection 'shop_mysql': cannot reach 127.0.0.1:{port} (connection refused); "
        "check host and port"
    )


def test_unknown_table_lists_available_ones(mariadb: MariaDBServer, database: str) -> None:
    run(mariadb, database, *(f"create table t{i} (x int)" for i in range(1, 8)))
    shop = source(mariadb, database)

    assert error_of(mariadb, shop.read, "orders") == (
        f"connection 'shop_mysql': no table 'orders' in database {database!r}; "
        "available: t1, t2, t3, t4, t5, ..."
    )
    assert error_of(mariadb, shop.read, "nowhere.orders") == (
        "connection 'shop_mysql': no table 'nowhere.orders' in database 'nowhere'; "
        "that database has no tables"
    )


def test_incremental_key_must_be_a_column(mariadb: MariaDBServer, database: str) -> None:
    run(mariadb, database, "create table orders (id int)")

    assert error_of(mariadb, source(mariadb, database).read, "orders", "changed_at", 5) == (
        "connection 'shop_mysql': table 'orders' has no column 'changed_at' to use as "
        "incremental_key; pick one of id"
    )


def test_zero_dates_do_not_fit(mariadb: MariaDBServer, database: str) -> None:
    run(
        mariadb,
        database,
        "set sql_mode = ''",
        "create table orders (id int, day date)",
        "insert into orders values (1, '0000-00-00')",
    )

    # MySQL's "no date" has no Arrow value; the read stops rather than invent one.
    assert error_of(mariadb, source(mariadb, database).read, "orders") == (
        "connection 'shop_mysql': table 'orders' column 'day' has a value that does not fit "
        "date32[day] (Failed to parse string: '0000-00-00' as a scalar of type date32[day])"
    )


def test_example_pipeline_parses() -> None:
    pipeline = Pipeline.model_validate(yaml.safe_load(EXAMPLE.read_text()))

    assert pipeline.source.connector == "mysql"
    assert pipeline.source.config is not None
    assert pipeline.source.config["password"] == "${MYSQL_PASSWORD}"
    assert pipeline.source.incremental_key == "updated_at"
    assert pipeline.destination.connector == "duckdb"


def test_an_unrecognized_connection_failure_gives_the_client_s_words(
    mariadb: MariaDBServer, database: str
) -> None:
    with hang_up_server() as port:
        message = error_of(mariadb, source(mariadb, database, port=port).check)
    assert message == (
        f"connection 'shop_mysql': cannot connect to 127.0.0.1:{port} (error 2013: Lost "
        "connection to MySQL server during query); check the connection settings"
    )
