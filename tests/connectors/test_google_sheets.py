"""Service-account auth, the Google Sheets source and destination, against a local Google."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pytest
import yaml

from connectors.base import ConnectorError, CursorState, LoadMode, LoadRequest, StateUpdate
from connectors.destinations.google_sheets import GoogleSheetsDestination
from connectors.shared.google_auth import ServiceAccountAuth, service_account_info
from connectors.shared.http import api_client
from connectors.sources.google_sheets import GoogleSheetsSource
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.fake_google import (
    CLIENT_EMAIL,
    SPREADSHEET_ID,
    fake_google,
    private_key_pem,
    quota_exhausted,
)
from tests.support.fake_http import Response

EXAMPLES = Path(__file__).parents[2] / "pipelines" / "examples"
SHARE_HINT = f"check service_account_json, and that the spreadsheet is shared with {CLIENT_EMAIL}"


@pytest.fixture
def google():
    with fake_google() as server:
        yield server


def config(google, **overrides):
    return {
        "spreadsheet_id": SPREADSHEET_ID,
        "service_account_json": json.dumps(google.service_account()),
        "base_url": google.url,
        "requests_per_second": 1000,
        **overrides,
    }


def assert_no_key(text: str) -> None:
    """Not a line of the private key's body is in the text."""
    body = [line for line in private_key_pem().splitlines() if "PRIVATE KEY" not in line]
    assert not any(line in text for line in body)


def read(source, table):
    return source.read(table).read_all().to_pylist()


def ranges(google):
    """The A1 ranges of the values requests the fake received, in order."""
    return [
        unquote(r.path.split("/values/")[1]) for r in google.api_requests() if "/values/" in r.path
    ]


# Service-account tokens.


def test_token_exchange_sends_a_jwt_signed_by_the_key_for_the_token_uri(google):
    auth = ServiceAccountAuth("sa", google.service_account(), ["scope-a", "scope-b"])
    assert auth.token() == "ya29.token-1"
    (claims,) = google.assertions
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["scope"] == "scope-a scope-b"
    assert claims["aud"] == google.token_uri
    assert claims["exp"] - claims["iat"] == 3600
    assert auth.token() == "ya29.token-1"  # cached while valid
    assert len(google.token_requests()) == 1


def test_token_is_refreshed_once_it_expires(google):
    now = [1_700_000_000.0]
    google.clock = lambda: now[0]
    auth = ServiceAccountAuth("expiry", google.service_account(), ["s"], clock=google.clock)
    google.add_sheet("Sheet1")
    with api_client("expiry", google.url, auth=auth, requests_per_second=1000) as http:
        path = f"/v4/spreadsheets/{SPREADSHEET_ID}"
        for step in (0, 3000, 540):  # the last lands within a minute of expiry
            now[0] += step
            http.get(path, params={"fields": "sheets.properties"})
    tokens = [r.headers["authorization"] for r in google.api_requests()]
    assert tokens == ["Bearer ya29.token-1", "Bearer ya29.token-1", "Bearer ya29.token-2"]
    assert len(google.token_requests()) == 2


def test_a_revoked_token_is_replaced_after_one_401(google):
    google.add_sheet("Sheet1")
    source = GoogleSheetsSource("revoked", config(google))
    source.check()
    google.revoke_tokens()
    assert source.check() == f"spreadsheet {SPREADSHEET_ID} has 1 sheet(s): Sheet1"
    statuses = [r.headers["authorization"] for r in google.api_requests()]
    assert statuses == ["Bearer ya29.token-1", "Bearer ya29.token-1", "Bearer ya29.token-2"]


def test_credentials_refused_twice_name_the_account_to_share_with(google):
    google.accept_tokens = False
    source = GoogleSheetsSource("sheet", config(google))
    with pytest.raises(ConnectorError) as error:
        source.check()
    assert str(error.value) == (
        f"credentials rejected for connection 'sheet' (HTTP 401 on GET /v4/spreadsheets/"
        f"{SPREADSHEET_ID}); {SHARE_HINT}"
    )
    assert len(google.api_requests()) == 2  # the first try, then one with a new token
    assert_no_key(str(error.value))


def test_a_key_that_does_not_match_is_refused_by_the_token_endpoint(google):
    other = google.service_account() | {"client_email": "someone@else.iam.gserviceaccount.com"}
    source = GoogleSheetsSource("wrong", config(google, service_account_json=other))
    with pytest.raises(ConnectorError) as error:
        source.check()
    assert str(error.value) == (
        "connection 'wrong': POST /token failed with HTTP 400 (Invalid JWT Signature.); "
        "check the connection's settings"
    )


def test_service_account_json_can_be_a_path_relative_to_base_dir(google, tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sa.json").write_text(json.dumps(google.service_account()))
    settings = {"service_account_json": "keys/sa.json", "base_dir": str(tmp_path)}
    assert service_account_info("file", settings)["client_email"] == CLIENT_EMAIL


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "not/here.json",
            "service_account_json is neither JSON nor the path of a readable file; give the key "
            "file's contents or its path (relative to the connection's folder)",
        ),
        (
            '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEv',
            "service_account_json is not valid JSON (line 1 column 17); use the key file "
            "exactly as downloaded",
        ),
        (
            {"type": "authorized_user", "client_email": "x", "private_key": "y"},
            "service_account_json is a 'authorized_user' key, not a service account key; create "
            "a key for a service account in the Google Cloud console",
        ),
        (
            {"client_email": CLIENT_EMAIL},
            "service_account_json has no private_key; use the whole JSON key file",
        ),
        (
            {"client_email": CLIENT_EMAIL, "private_key": private_key_pem()[:300]},
            "service_account_json has a private_key that is not a PEM RSA key; use the key "
            "file exactly as downloaded",
        ),
    ],
)
def test_bad_key_files_are_named_without_echoing_them(tmp_path, value, message):
    settings = {
        "spreadsheet_id": "x",
        "service_account_json": value,
        "base_dir": str(tmp_path),
    }
    with pytest.raises(ConnectorError) as error:
        GoogleSheetsSource("keys", settings)
    assert str(error.value) == f"connection 'keys': {message}"
    assert_no_key(str(error.value))


# The source.

ORDERS = [
    ["id", "customer", "amount", "paid", "ordered_on", "updated_at", "note"],
    [1, "Ada", 12.5, True, "2024-01-05", "2024-01-05 10:00:00", "first"],
    [2, "Grace", 7, False, "2024-01-06", "2024-01-06T11:30:00", ""],
    [],  # a blank row is no data
    [3, "Linus", 3.25, True, "2024-01-07", "2024-01-07", 42],
]


def test_discover_offers_the_configured_sheets_with_sniffed_types(google):
    google.add_sheet("Q1 Orders", ORDERS)
    google.add_sheet("Other", [["a"], [1]])
    source = GoogleSheetsSource("sheet", config(google, sheet_name="Q1 Orders"))
    (table,) = source.discover()
    assert table.name == "Q1_Orders"
    assert table.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("customer", pa.string()),
            ("amount", pa.float64()),
            ("paid", pa.bool_()),
            ("ordered_on", pa.date32()),
            ("updated_at", pa.timestamp("us")),
            ("note", pa.string()),
        ]
    )
    assert source.check() == f"spreadsheet {SPREADSHEET_ID} has 2 sheet(s): Q1 Orders, Other"


def test_full_read_converts_every_cell_and_skips_blank_rows(google):
    google.add_sheet("Sheet1", ORDERS)
    source = GoogleSheetsSource("sheet", config(google))
    assert read(source, "Sheet1") == [
        {
            "id": 1,
            "customer": "Ada",
            "amount": 12.5,
            "paid": True,
            "ordered_on": dt.date(2024, 1, 5),
            "updated_at": dt.datetime(2024, 1, 5, 10),
            "note": "first",
        },
        {
            "id": 2,
            "customer": "Grace",
            "amount": 7.0,
            "paid": False,
            "ordered_on": dt.date(2024, 1, 6),
            "updated_at": dt.datetime(2024, 1, 6, 11, 30),
            "note": None,
        },
        {
            "id": 3,
            "customer": "Linus",
            "amount": 3.25,
            "paid": True,
            "ordered_on": dt.date(2024, 1, 7),
            "updated_at": dt.datetime(2024, 1, 7),
            "note": "42",
        },
    ]
    (values,) = [r for r in google.api_requests() if "/values/" in r.path]
    assert values.query["valueRenderOption"] == ["UNFORMATTED_VALUE"]
    assert values.query["dateTimeRenderOption"] == ["FORMATTED_STRING"]


def test_pages_are_read_by_row_ranges_up_to_the_grid(google):
    rows = [["n", "word"]] + [[i, f"w{i}"] for i in range(1, 8)]
    google.add_sheet("Sheet1", rows, row_count=9)
    source = GoogleSheetsSource("sheet", config(google, page_rows=3))
    assert read(source, "Sheet1") == [{"n": i, "word": f"w{i}"} for i in range(1, 8)]
    assert ranges(google) == ["'Sheet1'!1:3", "'Sheet1'!4:6", "'Sheet1'!7:9"]


def test_several_sheets_are_each_a_table_with_their_own_column_types(google):
    google.add_sheet("Customers", [["id", "zip"], [1, 2134], [2, 10115]])
    google.add_sheet("It's a sheet", [["x"], [True]])
    sheets = ["It's a sheet", {"name": "Customers", "columns": {"zip": "VARCHAR"}}]
    source = GoogleSheetsSource("sheet", config(google, sheets=sheets))
    assert [t.name for t in source.discover()] == ["It_s_a_sheet", "Customers"]
    assert read(source, "Customers") == [{"id": 1, "zip": "2134"}, {"id": 2, "zip": "10115"}]
    assert read(source, "It_s_a_sheet") == [{"x": True}]


def test_header_only_sheet_is_an_empty_table_and_an_empty_sheet_an_error(google):
    google.add_sheet("Sheet1", [["id", "", "id"]])
    google.add_sheet("Blank")
    source = GoogleSheetsSource("sheet", config(google, sheets=["Sheet1", "Blank"]))
    table = source.read("Sheet1").read_all()
    assert table.num_rows == 0
    assert table.schema.names == ["id", "column_2", "id_2"]
    with pytest.raises(ConnectorError) as error:
        source.read("Blank")
    assert str(error.value) == (
        "connection 'sheet': sheet 'Blank' is empty; its first row must be the header"
    )


def test_a_value_that_does_not_fit_its_column_names_the_row(google):
    google.add_sheet("Sheet1", [["amount"], [1], [2], ["n/a"]])
    source = GoogleSheetsSource("sheet", config(google, page_rows=3))
    with pytest.raises(ConnectorError) as error:
        read(source, "Sheet1")
    assert str(error.value) == (
        "connection 'sheet': sheet 'Sheet1' row 4: column 'amount' value 'n/a' is not int64; "
        "fix the cell or set columns: {amount: VARCHAR} (or another type that fits)"
    )


def test_missing_sheet_lists_the_sheets_there_are(google):
    google.add_sheet("Orders", ORDERS)
    source = GoogleSheetsSource("sheet", config(google))
    with pytest.raises(ConnectorError) as error:
        source.discover()
    assert str(error.value) == (
        f"connection 'sheet': spreadsheet {SPREADSHEET_ID} has no sheet 'Sheet1'; its sheets "
        "are Orders"
    )


def test_incremental_read_is_refused(google):
    source = GoogleSheetsSource("sheet", config(google))
    with pytest.raises(ConnectorError) as error:
        source.extract("Sheet1", "id", CursorState(1))
    assert str(error.value) == (
        "connection 'sheet': Google Sheets supports full sync only (table 'Sheet1'); set "
        "sync_mode: full"
    )


def test_429_and_5xx_are_retried(google):
    google.add_sheet("Sheet1", [["a"], [1]])
    source = GoogleSheetsSource("sheet", config(google))
    source.check()  # holds a token now, so the interruptions hit API calls
    quota = quota_exhausted()
    quota.headers["Retry-After"] = "0"
    google.server.interruptions.extend([quota, Response(503, {"error": {"message": "busy"}})])
    assert read(source, "Sheet1") == [{"a": 1}]
    assert len(google.api_requests()) == 1 + 2 + 2


# The destination.


def orders_table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "at": pa.array([dt.datetime(2024, 1, 5, 10), None], pa.timestamp("us")),
            "on": pa.array([dt.date(2024, 1, 5), dt.date(2024, 1, 6)]),
            "paid": [True, None],
            "amount": pa.array(
                [decimal.Decimal("12.50"), decimal.Decimal("7")], pa.decimal128(9, 2)
            ),
        }
    )


def load(google, table, mode, name="orders", **settings):
    destination = GoogleSheetsDestination("out", config(google, **settings))
    request = LoadRequest(table=name, mode=mode)
    return destination.load(
        pa.RecordBatchReader.from_batches(table.schema, table.to_batches()), request
    )


def test_replace_clears_the_sheet_fits_the_grid_and_writes_header_and_rows(google):
    google.add_sheet("orders", [["old", "junk"]] + [["x", "y"]] * 5)
    result = load(google, orders_table(), LoadMode.REPLACE)
    assert (result.rows_loaded, result.table_rows, result.table_created) == (2, 2, False)
    sheet = google.sheets["orders"]
    assert sheet.values() == [
        ["id", "at", "on", "paid", "amount"],
        [1, "2024-01-05T10:00:00", "2024-01-05", True, 12.5],
        [2, "", "2024-01-06", "", 7.0],
    ]
    assert (sheet.row_count, sheet.column_count) == (3, 5)


def test_replace_writes_in_chunks_into_a_new_sheet(google, monkeypatch):
    monkeypatch.setattr("connectors.destinations.google_sheets.WRITE_ROWS", 2)
    table = pa.table({"n": list(range(5))})
    result = load(google, table, LoadMode.REPLACE, name="numbers")
    assert (result.table_rows, result.table_created) == (5, True)
    assert google.sheets["numbers"].values() == [["n"], [0], [1], [2], [3], [4]]
    puts = [r for r in google.api_requests() if r.method == "PUT"]
    assert [unquote(r.path.split("/values/")[1]) for r in puts] == [
        "'numbers'!A1",
        "'numbers'!A2",
        "'numbers'!A4",
        "'numbers'!A6",
    ]
    assert all(r.query["valueInputOption"] == ["RAW"] for r in puts)


def test_append_writes_the_header_only_into_an_empty_sheet_and_adds_new_columns(google):
    google.add_sheet("orders")
    first = load(google, pa.table({"id": [1], "name": ["a"]}), LoadMode.APPEND)
    assert (first.rows_loaded, first.table_rows, first.columns_added) == (1, 1, ())
    second = load(google, pa.table({"name": ["b"], "id": [2], "vip": [True]}), LoadMode.APPEND)
    assert (second.rows_loaded, second.table_rows, second.columns_added) == (1, 2, ("vip",))
    assert google.sheets["orders"].values() == [
        ["id", "name", "vip"],
        [1, "a"],
        [2, "b", True],
    ]


def test_appending_no_rows_counts_the_rows_already_there(google):
    google.add_sheet("orders", [["id"], [1], [2]])
    result = load(google, pa.table({"id": pa.array([], pa.int64())}), LoadMode.APPEND)
    assert (result.rows_loaded, result.table_rows) == (0, 2)


def test_a_table_over_the_cell_limit_is_refused_before_anything_is_written(google):
    table = pa.table({c: list(range(4)) for c in "abcd"})  # (4 rows + header) x 4 columns
    with pytest.raises(ConnectorError) as error:
        load(google, table, LoadMode.REPLACE, cell_limit=19)
    assert str(error.value) == (
        "connection 'out': table 'orders' has 20 cells, over the Google Sheets limit of 19; "
        "load it to a database destination or filter it first"
    )
    assert google.server.requests == []
    load(google, table, LoadMode.REPLACE, cell_limit=20)
    assert len(google.sheets["orders"].values()) == 5


def test_upsert_and_incremental_append_are_refused(google):
    destination = GoogleSheetsDestination("out", config(google))
    empty = pa.table({"id": pa.array([], pa.int64())})
    with pytest.raises(ConnectorError) as error:
        destination.load(empty.to_reader(), LoadRequest("orders", LoadMode.UPSERT, ["id"]))
    assert str(error.value) == (
        "connection 'out': Google Sheets cannot upsert (table 'orders'); use load_mode: "
        "replace or append"
    )
    state = [StateUpdate("p", "orders", CursorState(1))]
    request = LoadRequest("orders", LoadMode.APPEND, state_updates=state)
    with pytest.raises(ConnectorError) as error:
        destination.load(empty.to_reader(), request)
    assert str(error.value) == (
        "connection 'out': Google Sheets keeps no cursor state, so an incremental append into "
        "'orders' would re-append every row each run; use sync_mode: full or load_mode: replace"
    )
    assert destination.read_state("p", "orders") is None
    assert google.server.requests == []


def test_destination_discovers_every_sheet_by_its_header(google):
    google.add_sheet("orders", [["id", "name"], [1, "a"]])
    google.add_sheet("empty")
    destination = GoogleSheetsDestination("out", config(google))
    assert [(t.name, t.schema.names) for t in destination.discover()] == [
        ("orders", ["id", "name"]),
        ("empty", []),
    ]


def test_missing_sheet_without_create_table_if_missing_is_an_error(google):
    destination = GoogleSheetsDestination("out", config(google))
    table = pa.table({"id": [1]})
    request = LoadRequest("orders", LoadMode.REPLACE, create_table_if_missing=False)
    with pytest.raises(ConnectorError) as error:
        destination.load(table.to_reader(), request)
    assert str(error.value) == (
        f"connection 'out': spreadsheet {SPREADSHEET_ID} has no sheet 'orders'; add it or set "
        "create_table_if_missing: true"
    )


# Example pipelines.


@pytest.mark.parametrize("name", ["google_sheets.yaml", "ga4.yaml"])
def test_example_pipelines_parse(name):
    pipeline = Pipeline.model_validate(yaml.safe_load((EXAMPLES / name).read_text()))
    assert pipeline.source.config["service_account_json"] == "${GOOGLE_SERVICE_ACCOUNT_JSON}"
    assert pipeline.destination.connector == "duckdb"
