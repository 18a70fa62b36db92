"""CsvSource against real files on disk and on a real S3 store (SeaweedFS)."""

from __future__ import annotations

import datetime as dt
import decimal
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
    assert str(bad_delimiter.value) == "connection 'c': delimiter ';;' must be a single character"

    with pytest.raises(ConnectorError) as bad_type:
        CsvSource("c", {"path": "a.csv", "columns": {"x": "MONEY"}})
    assert str(bad_type.value).startswith(
        "connection 'c': columns: unknown column type 'MONEY'; use one of VARCHAR, TEXT"
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
        "fix the value or set columns: {id: VARCHAR} (or another type that fits)"
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
        "connection 'orders_csv': no table 'customers'; this CSV connection offers only 'orders'"
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


def s3_filesystem(s3: S3Server) -> fs.S3FileSystem:
    return fs.S3FileSystem(
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        endpoint_override=s3.endpoint_url,
        region=s3.region,
    )


def test_reads_a_glob_from_s3(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    bucket = s3.create_bucket()
    store = s3_filesystem(s3)
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
    missing = CsvSource("one", {"path": f"s3://{bucket}/exports/2025-01.csv"})
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
