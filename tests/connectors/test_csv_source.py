"""CsvSource against real files on disk and on a real S3 store (SeaweedFS)."""

from __future__ import annotations

import datetime as dt
import decimal
import glob
from pathlib import Path

import pyarrow as pa
import pytest
from pyarrow import fs

from connectors.base import BATCH_ROWS, ConnectorError, TableSchema
from connectors.sources.csv import BLOCK_SIZE, CsvSource, default_table_name
from tests.support.services import S3Server


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rows(reader: pa.RecordBatchReader) -> list[dict]:
    return reader.read_all().to_pylist()


ORDERS = (
    "id,amount,customer,paid,ordered_on,updated_at\n"
    "1,10.5,ann,true,2024-01-01,2024-01-01 10:00:00\n"
    "2,7.25,bob,false,2024-01-02,2024-01-02 11:30:00\n"
    "3,,cy,true,2024-01-03,2024-01-03 12:00:00\n"
)


def test_sniffs_types_and_reads_exact_rows(tmp_path: Path) -> None:
    write(tmp_path / "orders.csv", ORDERS)
    source = CsvSource("orders_csv", {"path": "orders.csv", "base_dir": str(tmp_path)})

    expected = pa.schema(
        [
            ("id", pa.int64()),
            ("amount", pa.float64()),
            ("customer", pa.string()),
            ("paid", pa.bool_()),
            ("ordered_on", pa.date32()),
            ("updated_at", pa.timestamp("us")),
        ]
    )
    assert source.check() == "found 1 file (orders.csv)"
    assert source.discover() == [TableSchema("orders", expected)]
    reader = source.read("orders")
    assert reader.schema == expected
    assert rows(reader) == [
        {
            "id": 1,
            "amount": 10.5,
            "customer": "ann",
            "paid": True,
            "ordered_on": dt.date(2024, 1, 1),
            "updated_at": dt.datetime(2024, 1, 1, 10, 0),
        },
        {
            "id": 2,
            "amount": 7.25,
            "customer": "bob",
            "paid": False,
            "ordered_on": dt.date(2024, 1, 2),
            "updated_at": dt.datetime(2024, 1, 2, 11, 30),
        },
        {
            "id": 3,
            "amount": None,
            "customer": "cy",
            "paid": True,
            "ordered_on": dt.date(2024, 1, 3),
            "updated_at": dt.datetime(2024, 1, 3, 12, 0),
        },
    ]


def test_delimiter_and_no_header(tmp_path: Path) -> None:
    write(tmp_path / "people.tsv", "1;ann;3.5\n2;bob;4\n")
    # Env-resolved config may carry the flag as text.
    source = CsvSource(
        "people", {"path": str(tmp_path / "people.tsv"), "delimiter": ";", "header": "false"}
    )

    reader = source.read("people")
    assert reader.schema == pa.schema(
        [("column_1", pa.int64()), ("column_2", pa.string()), ("column_3", pa.float64())]
    )
    assert rows(reader) == [
        {"column_1": 1, "column_2": "ann", "column_3": 3.5},
        {"column_1": 2, "column_2": "bob", "column_3": 4.0},
    ]


def test_column_type_overrides(tmp_path: Path) -> None:
    write(tmp_path / "codes.csv", "code,price,active,seen\n007,12.30,1,2024-05-01\n010,0.05,0,\n")
    source = CsvSource(
        "codes",
        {
            "path": str(tmp_path / "codes.csv"),
            "table": "product_codes",
            "columns": {"code": "varchar", "price": "DECIMAL(10, 2)", "seen": "TIMESTAMP"},
        },
    )

    assert source.discover()[0].name == "product_codes"
    reader = source.read("product_codes")
    assert reader.schema == pa.schema(
        [
            ("code", pa.string()),
            ("price", pa.decimal128(10, 2)),
            ("active", pa.int64()),
            ("seen", pa.timestamp("us")),
        ]
    )
    assert rows(reader) == [
        {
            "code": "007",
            "price": decimal.Decimal("12.30"),
            "active": 1,
            "seen": dt.datetime(2024, 5, 1),
        },
        {"code": "010", "price": decimal.Decimal("0.05"), "active": 0, "seen": None},
    ]


def test_invalid_settings(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x\n1\n")
    with pytest.raises(ConnectorError) as bad_delimiter:
        CsvSource("c", {"path": "a.csv", "delimiter": ";;"})
    assert str(bad_delimiter.value) == (
        "connection 'c': delimiter ';;' must be a single character; use one such as , ; | or a tab"
    )

    with pytest.raises(ConnectorError) as bad_type:
        CsvSource("c", {"path": "a.csv", "columns": {"x": "MONEY"}})
    assert str(bad_type.value) == (
        "connection 'c': columns.x: unknown column type 'MONEY'; use one of VARCHAR, TEXT, "
        "STRING, BIGINT, INTEGER, INT, SMALLINT, DOUBLE, FLOAT, REAL, BOOLEAN, BOOL, DATE, "
        "TIMESTAMP, TIMESTAMPTZ or DECIMAL(p,s)"
    )

    with pytest.raises(ConnectorError) as bad_flag:
        CsvSource("c", {"path": "a.csv", "header": "sometimes"})
    assert str(bad_flag.value) == (
        "connection 'c': header must be true or false, not 'sometimes'; fix the value"
    )

    source = CsvSource("c", {"path": "a.csv", "base_dir": str(tmp_path), "columns": {"y": "INT"}})
    with pytest.raises(ConnectorError) as bad_column:
        source.discover()
    assert str(bad_column.value) == (
        "connection 'c': columns names y, not in a.csv (its columns are x); fix the columns mapping"
    )


def test_glob_reads_files_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "data" / "orders_b.csv", "id,name\n3,c\n4,d\n")
    write(tmp_path / "data" / "orders_a.csv", "id,name\n1,a\n2,b\n")
    write(tmp_path / "data" / "orders_c.csv", "id,name\n5,e\n")
    write(tmp_path / "data" / "notes.txt", "not a csv\n")
    source = CsvSource("orders", {"path": "data/orders_*.csv", "base_dir": str(tmp_path)})

    assert source.check() == "found 3 files"
    assert source.discover()[0].name == "orders"
    assert [r["id"] for r in rows(source.read("orders"))] == [1, 2, 3, 4, 5]
    assert [r["name"] for r in rows(source.read("orders"))] == ["a", "b", "c", "d", "e"]


def test_glob_files_must_share_the_header(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "id,name\n1,a\n")
    write(tmp_path / "b.csv", "id,title\n2,b\n")
    source = CsvSource("parts", {"path": str(tmp_path / "*.csv")})

    with pytest.raises(ConnectorError) as error:
        rows(source.read(source.table))
    assert str(error.value) == (
        f"connection 'parts': {tmp_path}/b.csv has columns id, title but {tmp_path}/a.csv "
        "has id, name; every file matched by path must share the same header"
    )


def test_incremental_cursor_keeps_rows_at_or_after_it(tmp_path: Path) -> None:
    write(tmp_path / "orders.csv", ORDERS)
    source = CsvSource("orders_csv", {"path": str(tmp_path / "orders.csv")})

    by_id = source.read("orders", "id", 2)
    assert [r["id"] for r in rows(by_id)] == [2, 3]
    by_time = source.read("orders", "updated_at", dt.datetime(2024, 1, 2, 11, 30))
    assert [r["id"] for r in rows(by_time)] == [2, 3]
    by_text = source.read("orders", "ordered_on", "2024-01-03")
    assert [r["id"] for r in rows(by_text)] == [3]


def test_incremental_key_must_be_a_column(tmp_path: Path) -> None:
    write(tmp_path / "orders.csv", ORDERS)
    source = CsvSource("orders_csv", {"path": str(tmp_path / "orders.csv")})

    with pytest.raises(ConnectorError) as error:
        source.read("orders", "changed", 1)
    assert str(error.value) == (
        "connection 'orders_csv': table 'orders' has no column 'changed' to use as "
        "incremental_key; pick one of id, amount, customer, paid, ordered_on, updated_at"
    )


def test_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    # Line 5 is the bad row; the blank line 3 must still be counted.
    write(tmp_path / "orders.csv", "id,name\n1,a\n\n2,b\n3,c,extra\n4,d\n")
    source = CsvSource("orders_csv", {"path": "orders.csv", "base_dir": str(tmp_path)})

    with pytest.raises(ConnectorError) as error:
        rows(source.read("orders"))
    assert str(error.value) == (
        "connection 'orders_csv': orders.csv line 5: expected 2 fields, found 3; "
        "fix the row or the delimiter (',')"
    )


def test_value_that_does_not_fit_the_sniffed_type_names_the_line(tmp_path: Path) -> None:
    # Enough rows that "oops" lands well after the first (sniffed) block.
    count = BLOCK_SIZE // 8 + 1000
    body = "".join(f"{i},x\n" for i in range(count))
    write(tmp_path / "big.csv", f"id,tag\n{body}oops,y\n")
    source = CsvSource("big", {"path": "big.csv", "base_dir": str(tmp_path)})

    assert source.discover()[0].schema.field("id").type == pa.int64()
    with pytest.raises(ConnectorError) as error:
        rows(source.read("big"))
    assert str(error.value) == (
        f"connection 'big': big.csv line {count + 2}: column 'id' value 'oops' is not int64; "
        "fix the value, list it in null_values if it means NULL, or set columns: "
        "{id: VARCHAR} (or another type that fits)"
    )


def test_missing_file_and_empty_glob(tmp_path: Path) -> None:
    missing = CsvSource("orders_csv", {"path": "orders.csv", "base_dir": str(tmp_path)})
    with pytest.raises(ConnectorError) as error:
        missing.check()
    assert str(error.value) == "connection 'orders_csv': no file found at orders.csv; check path"

    no_match = CsvSource("x", {"path": "data/*.csv", "base_dir": str(tmp_path)})
    with pytest.raises(ConnectorError) as error:
        no_match.read("data")
    assert str(error.value) == "connection 'x': no file matches data/*.csv; check path"


def test_read_of_another_table_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "orders.csv", ORDERS)
    source = CsvSource("orders_csv", {"path": str(tmp_path / "orders.csv")})

    with pytest.raises(ConnectorError) as error:
        source.read("customers")
    assert str(error.value) == (
        "connection 'orders_csv': no table 'customers'; this CSV connection offers orders"
    )


def test_header_only_file_has_schema_and_no_batches(tmp_path: Path) -> None:
    write(tmp_path / "empty.csv", "id,name,amount\n")
    source = CsvSource(
        "empty", {"path": str(tmp_path / "empty.csv"), "columns": {"amount": "DOUBLE"}}
    )

    reader = source.read("empty")
    assert reader.schema == pa.schema(
        [("id", pa.string()), ("name", pa.string()), ("amount", pa.float64())]
    )
    assert list(reader) == []


def test_zero_byte_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "blank.csv", "")
    source = CsvSource("blank", {"path": "blank.csv", "base_dir": str(tmp_path)})

    with pytest.raises(ConnectorError) as error:
        source.discover()
    assert str(error.value) == "connection 'blank': blank.csv is empty; it needs at least one line"


def test_large_file_streams_in_several_batches(tmp_path: Path) -> None:
    count = 300_000
    with (tmp_path / "events.csv").open("w") as out:
        out.write("id,kind,value\n")
        out.writelines(f"{i},click,{i * 0.5}\n" for i in range(count))
    source = CsvSource("events", {"path": str(tmp_path / "events.csv")})

    batches = list(source.read("events"))
    assert len(batches) > 1
    assert sum(batch.num_rows for batch in batches) == count
    assert max(batch.num_rows for batch in batches) <= 4 * BATCH_ROWS
    assert batches[-1].column("id")[-1].as_py() == count - 1


def test_default_table_names() -> None:
    assert default_table_name("data/orders.csv") == "orders"
    assert default_table_name("data/orders.csv.gz") == "orders"
    assert default_table_name("data/orders_*.csv") == "orders"
    assert default_table_name("s3://bucket/exports/*.csv") == "exports"
    assert default_table_name("part-[0-9]?.csv") == "part"


def test_reads_a_glob_from_s3(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    bucket = s3.create_bucket()
    store = s3.filesystem()
    for key, text in {
        "exports/2024-02.csv": "id,total\n3,30.5\n",
        "exports/2024-01.csv": "id,total\n1,10.0\n2,20.25\n",
        "exports/old/2023-12.csv": "id,total\n0,0\n",
    }.items():
        with store.open_output_stream(f"{bucket}/{key}") as out:
            out.write(text.encode())

    source = CsvSource("s3_exports", {"path": f"s3://{bucket}/exports/*.csv"})

    assert source.check() == "found 2 files"
    assert source.discover() == [
        TableSchema("exports", pa.schema([("id", pa.int64()), ("total", pa.float64())]))
    ]
    assert rows(source.read("exports")) == [
        {"id": 1, "total": 10.0},
        {"id": 2, "total": 20.25},
        {"id": 3, "total": 30.5},
    ]
    single = CsvSource("one", {"path": f"s3://{bucket}/exports/2024-02.csv", "table": "feb"})
    assert rows(single.read("feb")) == [{"id": 3, "total": 30.5}]
    missing = CsvSource("one", {"path": f"s3://{bucket}/exports/2025-01.csv", "table": "jan"})
    with pytest.raises(ConnectorError) as error:
        missing.check()
    assert str(error.value) == (
        f"connection 'one': no file found at s3://{bucket}/exports/2025-01.csv; check path"
    )


def test_unreachable_s3_endpoint(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    source = CsvSource(
        "lake", {"path": "s3://bucket/orders.csv", "endpoint_url": "http://127.0.0.1:9"}
    )

    with pytest.raises(ConnectorError) as error:
        source.check()
    message = str(error.value)
    assert message == (
        "connection 'lake': cannot reach the S3 endpoint http://127.0.0.1:9 to read "
        "s3://bucket/orders.csv; check endpoint_url or AWS_ENDPOINT_URL"
    )
    assert s3.secret_key not in message


# Several tables from one connection.

CUSTOMERS = "id,name\n1,ann\n2,bob\n"
ORDERS_JAN = "id,customer_id,total\n10,1,5.5\n"
ORDERS_FEB = "id,customer_id,total\n11,2,7.25\n12,1,1.0\n"


def put(store: fs.S3FileSystem, bucket: str, files: dict[str, str]) -> None:
    for key, text in files.items():
        with store.open_output_stream(f"{bucket}/{key}") as out:
            out.write(text.encode())


def use_s3(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """The S3 server's settings in the environment, and a fresh bucket's name."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3.create_bucket()


def test_tables_maps_names_to_files_globs_and_s3(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = use_s3(s3, monkeypatch)
    put(s3.filesystem(), bucket, {"raw/payments/p1.csv": "order_id,amount\n10,5.5\n"})
    write(tmp_path / "data" / "customers.csv", CUSTOMERS)
    write(tmp_path / "data" / "orders_2024-02.csv", ORDERS_FEB)
    write(tmp_path / "data" / "orders_2024-01.csv", ORDERS_JAN)
    source = CsvSource(
        "shop_files",
        {
            "tables": {
                "customers": "data/customers.csv",
                "orders": "data/orders_*.csv",
                "payments": f"s3://{bucket}/raw/payments/*.csv",
            },
            "base_dir": str(tmp_path),
        },
    )

    assert source.check() == "found 4 files for 3 tables"
    assert source.discover() == [
        TableSchema("customers", pa.schema([("id", pa.int64()), ("name", pa.string())])),
        TableSchema(
            "orders",
            pa.schema([("id", pa.int64()), ("customer_id", pa.int64()), ("total", pa.float64())]),
        ),
        TableSchema("payments", pa.schema([("order_id", pa.int64()), ("amount", pa.float64())])),
    ]
    assert rows(source.read("customers")) == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
    # A glob stays one table of all its files, in sorted order.
    assert rows(source.read("orders")) == [
        {"id": 10, "customer_id": 1, "total": 5.5},
        {"id": 11, "customer_id": 2, "total": 7.25},
        {"id": 12, "customer_id": 1, "total": 1.0},
    ]
    assert rows(source.read("payments")) == [{"order_id": 10, "amount": 5.5}]
    assert source.matching_files() == [
        "data/customers.csv",
        "data/orders_2024-01.csv",
        "data/orders_2024-02.csv",
        f"s3://{bucket}/raw/payments/p1.csv",
    ]


def test_tables_take_their_own_column_types(tmp_path: Path) -> None:
    write(tmp_path / "customers.csv", "id,code\n1,007\n")
    write(tmp_path / "orders.csv", "id,total\n1,5.50\n")
    source = CsvSource(
        "shop_files",
        {
            "tables": {
                "customers": "customers.csv",
                "orders": {"path": "orders.csv", "columns": {"total": "DECIMAL(10,2)"}},
            },
            # Connection-wide types apply to the tables that have the column.
            "columns": {"code": "VARCHAR"},
            "base_dir": str(tmp_path),
        },
    )

    assert rows(source.read("customers")) == [{"id": 1, "code": "007"}]
    assert rows(source.read("orders")) == [{"id": 1, "total": decimal.Decimal("5.50")}]
    wrong = CsvSource(
        "shop_files",
        {
            "tables": {"orders": {"path": "orders.csv", "columns": {"amount": "DOUBLE"}}},
            "base_dir": str(tmp_path),
        },
    )
    with pytest.raises(ConnectorError) as error:
        wrong.discover()
    assert str(error.value) == (
        "connection 'shop_files': columns names amount, not in orders.csv (its columns are "
        "id, total); fix the tables.orders.columns mapping"
    )


def test_unknown_table_names_the_tables_offered(tmp_path: Path) -> None:
    write(tmp_path / "customers.csv", CUSTOMERS)
    source = CsvSource(
        "shop_files",
        {
            "tables": {"customers": "customers.csv", "orders": "o_*.csv", "payments": "p.csv"},
            "base_dir": str(tmp_path),
        },
    )

    with pytest.raises(ConnectorError) as error:
        source.read("orderz")
    assert str(error.value) == (
        "connection 'shop_files': no table 'orderz'; this CSV connection offers customers, "
        "orders, payments"
    )
    with pytest.raises(ConnectorError) as missing:
        source.read("orders")
    assert (
        str(missing.value)
        == "connection 'shop_files': no file matches o_*.csv; check tables.orders"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"path": "a.csv", "tables": {"a": "a.csv"}},
            "set either path or tables, not both; use tables: {name: path, ...} alone for "
            "several tables",
        ),
        (
            {"delimiter": ";"},
            "the config needs path or tables; set path (a file, a glob or an s3:// URL) or "
            "tables: {name: path, ...}",
        ),
        (
            {"tables": {"a": "a.csv"}, "table_per_file": True},
            "table_per_file cannot be used with tables; tables already names each table",
        ),
        (
            {"path": "*.csv", "table_per_file": True, "table": "x"},
            "table cannot be used with table_per_file; table_per_file names each table after "
            "its file; remove table",
        ),
        (
            {"tables": {"la-riots": "la-riots.csv"}},
            "tables: 'la-riots' is not a valid table name; use letters, digits and _, not "
            "starting with a digit",
        ),
        (
            {"path": "a.csv", "table": "2024"},
            "table '2024' is not a valid table name; use letters, digits and _, not starting "
            "with a digit",
        ),
    ],
)
def test_table_layout_mistakes(config: dict, message: str) -> None:
    with pytest.raises(ConnectorError) as error:
        CsvSource("shop_files", config)
    assert str(error.value) == f"connection 'shop_files': {message}"


def test_table_per_file_offers_one_table_per_file(tmp_path: Path) -> None:
    write(tmp_path / "data" / "customers.csv", CUSTOMERS)
    with pa.CompressedOutputStream(str(tmp_path / "data" / "orders.csv.gz"), "gzip") as out:
        out.write(ORDERS_JAN.encode())
    source = CsvSource(
        "files", {"path": "data/*.csv*", "table_per_file": True, "base_dir": str(tmp_path)}
    )

    assert source.check() == "found 2 files for 2 tables"
    assert [t.name for t in source.discover()] == ["customers", "orders"]
    assert rows(source.read("orders")) == [{"id": 10, "customer_id": 1, "total": 5.5}]
    assert rows(source.read("customers")) == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
    with pytest.raises(ConnectorError) as error:
        source.read("payments")
    assert str(error.value) == (
        "connection 'files': no table 'payments'; this CSV connection offers customers, orders"
    )
    # Without the flag a glob stays one table, named after the folder here.
    one = CsvSource("files", {"path": "data/*.csv", "base_dir": str(tmp_path)})
    assert [t.name for t in one.discover()] == ["data"]


def test_table_per_file_on_s3(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = use_s3(s3, monkeypatch)
    put(
        s3.filesystem(),
        bucket,
        {"raw/customers.csv": CUSTOMERS, "raw/orders.csv": ORDERS_FEB, "raw/old/x.csv": "a\n1\n"},
    )
    source = CsvSource("lake", {"path": f"s3://{bucket}/raw/*.csv", "table_per_file": True})

    assert source.check() == "found 2 files for 2 tables"
    assert [t.name for t in source.discover()] == ["customers", "orders"]
    assert [r["id"] for r in rows(source.read("orders"))] == [11, 12]


def test_file_names_that_are_not_table_names_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "data" / "la-riots.csv", "id\n1\n")
    write(tmp_path / "data" / "ok.csv", "id\n1\n")
    with pytest.raises(ConnectorError) as single:
        CsvSource("x", {"path": "data/la-riots.csv", "base_dir": str(tmp_path)})
    assert str(single.value) == (
        "connection 'x': file data/la-riots.csv gives the table name 'la-riots', which is not "
        "a valid table name; map it to one with tables: {la_riots: data/la-riots.csv} "
        "(or table: la_riots)"
    )

    per_file = CsvSource(
        "x", {"path": "data/*.csv", "table_per_file": True, "base_dir": str(tmp_path)}
    )
    with pytest.raises(ConnectorError) as listed:
        per_file.discover()
    assert str(listed.value) == (
        "connection 'x': file data/la-riots.csv gives the table name 'la-riots', which is not "
        "a valid table name; map it to one with tables: {la_riots: data/la-riots.csv} "
        "(or rename the file)"
    )

    named = CsvSource(
        "x", {"path": "data/la-riots.csv", "table": "la_riots", "base_dir": str(tmp_path)}
    )
    assert rows(named.read("la_riots")) == [{"id": 1}]


def test_a_file_arrival_run_reads_only_its_file(tmp_path: Path) -> None:
    write(tmp_path / "in" / "orders_[1].csv", ORDERS_JAN)
    write(tmp_path / "in" / "orders_2.csv", ORDERS_FEB)
    watched = CsvSource("drop", {"path": "in/orders_*.csv", "base_dir": str(tmp_path)})
    assert watched.matching_files() == ["in/orders_2.csv", "in/orders_[1].csv"]

    # What the file-arrival sensor's run does: the one file, glob-escaped, and the table.
    narrowed = CsvSource(
        "drop",
        {"path": glob.escape("in/orders_[1].csv"), "table": "orders", "base_dir": str(tmp_path)},
    )
    assert [r["id"] for r in rows(narrowed.read("orders"))] == [10]


# NULLs.


def test_an_unquoted_empty_field_is_null_and_a_quoted_one_is_text(tmp_path: Path) -> None:
    write(
        tmp_path / "people.csv",
        'id,name,born,note\n1,ann,2001-02-03,""\n,,,\n3,"",,x\n"",bob,"",\n',
    )
    source = CsvSource("people", {"path": "people.csv", "base_dir": str(tmp_path)})

    reader = source.read("people")
    assert reader.schema == pa.schema(
        [("id", pa.int64()), ("name", pa.string()), ("born", pa.date32()), ("note", pa.string())]
    )
    assert rows(reader) == [
        {"id": 1, "name": "ann", "born": dt.date(2001, 2, 3), "note": ""},
        {"id": None, "name": None, "born": None, "note": None},
        {"id": 3, "name": "", "born": None, "note": "x"},
        # A quoted "" cannot be a number or a date: NULL there too.
        {"id": None, "name": "bob", "born": None, "note": None},
    ]


def test_null_values_are_null_in_every_column_unless_quoted(tmp_path: Path) -> None:
    write(
        tmp_path / "scores.csv",
        'id,player,score,day\n1,NA,10,NULL\n2,"NA",NA,2024-01-02\nNULL,,"NULL",\n',
    )
    source = CsvSource(
        "scores",
        {"path": "scores.csv", "base_dir": str(tmp_path), "null_values": ["", "NA", "NULL"]},
    )

    reader = source.read("scores")
    assert reader.schema == pa.schema(
        [("id", pa.int64()), ("player", pa.string()), ("score", pa.int64()), ("day", pa.date32())]
    )
    assert rows(reader) == [
        {"id": 1, "player": None, "score": 10, "day": None},
        {"id": 2, "player": "NA", "score": None, "day": dt.date(2024, 1, 2)},
        {"id": None, "player": None, "score": None, "day": None},
    ]
    # By default only the empty field is NULL: NA stays text, and makes the column text.
    default = CsvSource("scores", {"path": "scores.csv", "base_dir": str(tmp_path)})
    assert default.discover()[0].schema.field("score").type == pa.string()
    assert [r["player"] for r in rows(default.read("scores"))] == ["NA", "NA", None]


def test_a_null_marker_after_the_sniffed_block_is_null_not_an_error(tmp_path: Path) -> None:
    count = BLOCK_SIZE // 8 + 1000
    body = "".join(f"{i},x\n" for i in range(count))
    write(tmp_path / "big.csv", f"id,tag\n{body}NULL,y\n -\t,z\n")
    source = CsvSource(
        "big", {"path": "big.csv", "base_dir": str(tmp_path), "null_values": ["", "NULL", "-"]}
    )

    table = source.read("big").read_all()
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").to_pylist()[-3:] == [count - 1, None, None]


def test_s3_credentials_from_the_config(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = use_s3(s3, monkeypatch)
    put(s3.filesystem(), bucket, {"in/orders.csv": ORDERS_JAN})
    # The environment's keys are wrong: the connection's own are used.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    config = {
        "path": f"s3://{bucket}/in/orders.csv",
        "aws_access_key_id": s3.access_key,
        "aws_secret_access_key": s3.secret_key,
    }

    assert rows(CsvSource("lake", config).read("orders")) == [
        {"id": 10, "customer_id": 1, "total": 5.5}
    ]
    refused = CsvSource("lake", {**config, "aws_secret_access_key": "not-the-secret"})
    with pytest.raises(ConnectorError) as error:
        refused.check()
    assert str(error.value) == (
        f"connection 'lake': S3 refused access to s3://{bucket}/in/orders.csv; check "
        "aws_access_key_id and aws_secret_access_key"
    )
    with pytest.raises(ConnectorError) as half:
        CsvSource("lake", {"path": "a.csv", "aws_access_key_id": "k"})
    assert str(half.value) == (
        "connection 'lake': aws_access_key_id and aws_secret_access_key go together; set "
        "both, or neither to use the AWS environment variables"
    )


def test_a_null_marker_that_looks_like_a_number_is_null_quoted_or_not(tmp_path: Path) -> None:
    write(tmp_path / "stock.csv", 'sku,count\na,0\nb,"0"\nc, 7 \nd,""\n')
    source = CsvSource(
        "stock", {"path": "stock.csv", "base_dir": str(tmp_path), "null_values": ["", "0"]}
    )

    assert rows(source.read("stock")) == [
        {"sku": "a", "count": None},
        {"sku": "b", "count": None},
        {"sku": "c", "count": 7},
        {"sku": "d", "count": None},
    ]


LATIN_1 = "id,name\n1,café\n2,naïve\n".encode("latin-1")


def test_an_encoding_other_than_utf8_is_read_as_text(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_bytes(LATIN_1)
    source = CsvSource(
        "files", {"path": "people.csv", "base_dir": str(tmp_path), "encoding": "latin-1"}
    )
    assert rows(source.read("people")) == [{"id": 1, "name": "café"}, {"id": 2, "name": "naïve"}]


@pytest.mark.parametrize("plain_rows", [0, 600_000], ids=["first_block", "later_block"])
def test_text_that_is_not_utf8_names_the_line_and_says_to_set_encoding(
    tmp_path: Path, plain_rows: int
) -> None:
    plain = "".join(f"{i},plain\n" for i in range(plain_rows)).encode()
    (tmp_path / "people.csv").write_bytes(b"id,name\n" + plain + LATIN_1.split(b"\n", 1)[1])
    assert (tmp_path / "people.csv").stat().st_size > BLOCK_SIZE or plain_rows == 0
    source = CsvSource("files", {"path": "people.csv", "base_dir": str(tmp_path)})
    with pytest.raises(ConnectorError) as error:
        rows(source.read("people"))
    assert str(error.value) == (
        f"connection 'files': people.csv line {plain_rows + 2} is not valid utf-8 text; set "
        "encoding in the connection's config to the file's encoding (such as latin-1 or cp1252)"
    )


def test_an_unknown_encoding_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError) as error:
        CsvSource("files", {"path": "a.csv", "encoding": "klingon"})
    assert str(error.value) == (
        "connection 'files': encoding 'klingon' is not a known text encoding; use a name such "
        "as utf-8, latin-1 or cp1252"
    )


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("id,name,id", "the header names column 'id' twice; rename one"),
        ("id,,name", "column 2 of the header has no name; name it"),
    ],
)
def test_a_header_needs_a_distinct_name_per_column(
    tmp_path: Path, header: str, problem: str
) -> None:
    write(tmp_path / "people.csv", f"{header}\n1,a,b\n")
    source = CsvSource("files", {"path": "people.csv", "base_dir": str(tmp_path)})
    with pytest.raises(ConnectorError) as error:
        source.discover()
    assert str(error.value) == f"connection 'files': people.csv: {problem}"


def test_a_header_longer_than_a_block_names_it_and_the_block_size_that_fits(
    tmp_path: Path,
) -> None:
    columns = ",".join(f"column_with_a_long_name_{i:06}" for i in range(200_000))
    write(tmp_path / "wide.csv", f"{columns}\n" + ",".join(["1"] * 200_000) + "\n")
    source = CsvSource("files", {"path": "wide.csv", "base_dir": str(tmp_path)})
    with pytest.raises(ConnectorError) as error:
        source.discover()
    assert str(error.value) == (
        f"connection 'files': wide.csv line 1 is a row of {len(columns) + 1:,} bytes, longer "
        "than the 4 MB blocks the file is parsed in; set block_size_mb to 10 or more"
    )
    roomy = CsvSource("files", {"path": "wide.csv", "base_dir": str(tmp_path), "block_size_mb": 10})
    assert len(roomy.discover()[0].schema) == 200_000


def test_block_size_is_bounded() -> None:
    with pytest.raises(ConnectorError) as error:
        CsvSource("files", {"path": "a.csv", "block_size_mb": 2048})
    assert str(error.value) == (
        "connection 'files': block_size_mb 2048 is out of range; use 1 to 1024 (megabytes)"
    )
