"""One time partition's rows: read from SQL sources (filtered by the server) and CSV files
(filtered batch by batch), and replaced in the SQL destinations in one transaction."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from connectors.base import ConnectorError, LoadMode, LoadRequest, Window
from connectors.shared.rejects import RejectLog
from connectors.sources.csv import CsvSource
from connectors.sources.mysql import MySQLSource
from connectors.sources.postgres import PostgresSource
from tests.support.mariadb_server import MariaDBServer, mariadb_server
from tests.support.project_files import postgres_config

UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def day(number: int, tz: dt.tzinfo = UTC) -> Window:
    """The window of January `number`, 2024, in `tz`, over column `at`."""
    start = dt.datetime(2024, 1, number, tzinfo=tz)
    return Window("at", start, start + dt.timedelta(days=1))


# Rows on either side of each bound of January 2 (naive: wall-clock times of the window's
# zone), and one with no time at all.
TIMES = [
    (1, dt.datetime(2024, 1, 1, 23, 59, 59)),
    (2, dt.datetime(2024, 1, 2, 0, 0)),
    (3, dt.datetime(2024, 1, 2, 23, 59, 59)),
    (4, dt.datetime(2024, 1, 3, 0, 0)),
    (5, None),
]


def ids(reader: pa.RecordBatchReader) -> list[int]:
    return sorted(reader.read_all().column("id").to_pylist())


@pytest.fixture
def shop(postgres) -> str:
    database = postgres.create_database()
    with psycopg.connect(postgres.url(database), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id integer, at timestamp, at_tz timestamptz, d date)")
        conn.execute("SET TimeZone = 'UTC'")
        for row_id, at in TIMES:
            conn.execute(
                "INSERT INTO orders VALUES (%s, %s, %s, %s)",
                (row_id, at, at and at.replace(tzinfo=UTC), at and at.date()),
            )
    return database


@pytest.mark.parametrize(
    ("column", "tz", "expected"),
    [
        ("at", UTC, [2, 3]),
        # A zoned column compares instants: Berlin's January 2 is 23:00 UTC on the 1st on.
        ("at_tz", BERLIN, [1, 2]),
        # A column without a zone holds wall-clock times of the partitions' zone.
        ("at", BERLIN, [2, 3]),
        ("d", UTC, [2, 3]),
    ],
)
def test_postgres_reads_only_the_window(postgres, shop, column, tz, expected):
    source = PostgresSource("shop", postgres_config(postgres, shop))
    window = Window(column, day(2, tz).start, day(2, tz).end)
    assert ids(source.read_window("orders", window)) == expected
    extraction = source.extract("orders", window=window)
    assert ids(pa.RecordBatchReader.from_batches(extraction.schema, extraction)) == expected


def test_postgres_names_a_missing_partition_column(postgres, shop):
    source = PostgresSource("shop", postgres_config(postgres, shop))
    with pytest.raises(ConnectorError) as error:
        source.read_window("orders", Window("created_at", day(2).start, day(2).end))
    assert str(error.value) == (
        "connection 'shop': table 'orders' has no column 'created_at' to use as the partition "
        "column; pick one of id, at, at_tz, d"
    )


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDBServer]:
    with mariadb_server() as server:
        yield server


def test_mysql_reads_only_the_window(mariadb):
    database = mariadb.create_database()
    with mariadb.admin(database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (id int, at datetime, at_tz timestamp NULL)")
        cur.execute("SET time_zone = '+00:00'")
        for row_id, at in TIMES:
            cur.execute("INSERT INTO orders VALUES (%s, %s, %s)", (row_id, at, at))
    config = {"host": mariadb.host, "port": mariadb.port, "database": database,
              "username": mariadb.user, "password": mariadb.password}  # fmt: skip
    source = MySQLSource("shop_mysql", config)
    assert ids(source.read_window("orders", day(2))) == [2, 3]
    berlin = day(2, BERLIN)
    assert ids(source.read_window("orders", Window("at_tz", berlin.start, berlin.end))) == [1, 2]


CSV = "id,at,label\n1,2024-01-01 23:59:59,a\n2,2024-01-02 00:00:00,b\n3,2024-01-02 23:59:59,c\n"
CSV += "4,2024-01-03 00:00:00,d\n5,,e\n"


def test_csv_rows_are_filtered_to_the_window(tmp_path: Path):
    (tmp_path / "orders.csv").write_text(CSV)
    source = CsvSource("files", {"path": "orders.csv", "base_dir": str(tmp_path)})
    assert ids(source.read_window("orders", day(2))) == [2, 3]
    berlin = day(2, BERLIN)
    assert ids(source.read_window("orders", Window("at", berlin.start, berlin.end))) == [2, 3]
    # Read with a reject log, a row that cannot be read is rejected; the window still holds.
    with (tmp_path / "orders.csv").open("a") as file:
        file.write("6,2024-01-02 10:00:00\n")
    rejects = RejectLog()
    assert ids(source.read_window("orders", day(2), rejects)) == [2, 3]
    assert [(r.line, r.raw) for r in rejects.rows] == [(7, "6,2024-01-02 10:00:00")]


def test_csv_refuses_a_column_that_is_not_a_time(tmp_path: Path):
    (tmp_path / "orders.csv").write_text(CSV)
    source = CsvSource("files", {"path": "orders.csv", "base_dir": str(tmp_path)})
    with pytest.raises(ConnectorError) as error:
        source.read_window("orders", Window("label", day(2).start, day(2).end)).read_all()
    assert str(error.value) == (
        "connection 'files': partition column 'label' is string; partitions by this period "
        "need a date or timestamp column"
    )
    with pytest.raises(ConnectorError) as error:
        source.read_window("orders", Window("created_at", day(2).start, day(2).end))
    assert str(error.value) == (
        "connection 'files': there is no column 'created_at' to partition by; pick one of id, "
        "at, label"
    )


def test_an_hourly_window_needs_a_timestamp_not_a_date(postgres, shop):
    source = PostgresSource("shop", postgres_config(postgres, shop))
    start = dt.datetime(2024, 1, 2, 5, tzinfo=UTC)
    with pytest.raises(ConnectorError) as error:
        source.read_window("orders", Window("d", start, start + dt.timedelta(hours=1)))
    assert str(error.value) == (
        "connection 'shop': partition column 'd' is date32[day]; partitions by this period "
        "need a timestamp column"
    )


def _days(*rows: tuple[int, dt.datetime, str]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "at": pa.array([r[1] for r in rows], pa.timestamp("us", "UTC")),
            "v": [r[2] for r in rows],
        }
    )


def at(number: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2024, 1, number, hour, tzinfo=UTC)


@pytest.mark.parametrize("mode", [LoadMode.REPLACE, LoadMode.APPEND, LoadMode.UPSERT])
def test_a_partition_load_replaces_exactly_its_window(target, mode):
    dest = target.dest
    first = _days((1, at(1), "a"), (2, at(2), "b"), (3, at(2, 23), "c"), (4, at(3), "d"))
    dest.load(first.to_reader(), LoadRequest("revenue", LoadMode.APPEND))
    # Day 2 again: row 3 is gone from the source, row 2 changed, row 5 is new.
    again = _days((2, at(2), "b2"), (5, at(2, 0), "e"))
    request = LoadRequest("revenue", mode, upsert_key=["id"], replace_window=day(2))
    result = dest.load(again.to_reader(), request)
    assert (result.rows_loaded, result.table_rows) == (2, 4)
    expected = [(1, "a"), (2, "b2"), (4, "d"), (5, "e")]
    assert target.query("SELECT id, v FROM revenue ORDER BY id") == expected
    # Loading the same partition again changes nothing.
    dest.load(again.to_reader(), request)
    assert target.query("SELECT id, v FROM revenue ORDER BY id") == expected


def test_a_partition_load_of_data_without_the_column_fails_and_changes_nothing(target):
    dest = target.dest
    dest.load(_days((1, at(2), "a")).to_reader(), LoadRequest("revenue", LoadMode.APPEND))
    request = LoadRequest("revenue", LoadMode.REPLACE, replace_window=day(2))
    with pytest.raises(ConnectorError) as error:
        dest.load(pa.table({"id": [9]}).to_reader(), request)
    assert str(error.value) == (
        "connection 'warehouse': the data loaded into table 'revenue' has no column 'at', which "
        "the pipeline is partitioned by; keep that column in the loaded data"
    )
    assert target.query("SELECT id, v FROM revenue") == [(1, "a")]
