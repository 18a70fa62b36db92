"""The GA4 Data API source against a local GA4 (runReport, metadata, token endpoint)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from connectors.base import ConnectorError, CursorState
from connectors.sources.ga4 import Ga4Source
from tests.support.fake_google import (
    CLIENT_EMAIL,
    PROPERTY_ID,
    fake_google,
    private_key_pem,
    quota_exhausted,
)


@pytest.fixture
def google():
    with fake_google() as server:
        day = dt.date(2024, 3, 1)
        for offset in range(10):  # 2024-03-01 .. 2024-03-10 (the fake's today)
            for country, sessions in (("DE", 10 + offset), ("FR", 1)):
                server.ga4_rows.append(
                    {
                        "date": day + dt.timedelta(days=offset),
                        "country": country,
                        "deviceCategory": "desktop",
                        "sessions": sessions,
                        "totalUsers": sessions - 1,
                        "bounceRate": 0.25,
                        "purchaseRevenue": 1.5,
                    }
                )
        yield server


def source(google, **overrides):
    config = {
        "property_id": f"properties/{PROPERTY_ID}",
        "service_account_json": google.service_account(),
        "base_url": google.url,
        **overrides,
    }
    return Ga4Source("ga4", config)


def daily(first: int, last: int) -> list[dict]:
    """Expected daily_sessions rows for March `first`..`last` 2024, DE and FR summed."""
    return [
        {"date": dt.date(2024, 3, d), "sessions": (9 + d) + 1, "totalUsers": (8 + d) + 0}
        for d in range(first, last + 1)
    ]


def test_discover_types_reports_from_the_property_metadata(google):
    reports = {
        "daily_sessions": {"dimensions": ["date"], "metrics": ["sessions", "totalUsers"]},
        "revenue": {"dimensions": ["country"], "metrics": ["purchaseRevenue", "bounceRate"]},
    }
    assert [(t.name, t.schema) for t in source(google, reports=reports).discover()] == [
        (
            "daily_sessions",
            pa.schema(
                [("date", pa.date32()), ("sessions", pa.int64()), ("totalUsers", pa.int64())]
            ),
        ),
        (
            "revenue",
            pa.schema(
                [
                    ("country", pa.string()),
                    ("purchaseRevenue", pa.float64()),
                    ("bounceRate", pa.float64()),
                ]
            ),
        ),
    ]


def test_unknown_metric_or_dimension_is_named(google):
    reports = {"bad": {"dimensions": ["date", "city"], "metrics": ["sesions"]}}
    with pytest.raises(ConnectorError) as error:
        source(google, reports=reports).check()
    assert str(error.value) == (
        "connection 'ga4': report 'bad' asks for city, sesions, which this GA4 property does "
        "not offer; use API names such as sessions, totalUsers, date"
    )


def test_full_sync_pages_through_the_report_by_offset(google):
    extraction = source(google, page_size=4).extract("daily_sessions")
    assert list(pa.Table.from_batches(extraction, extraction.schema).to_pylist()) == daily(1, 10)
    assert [(r["offset"], r["limit"]) for r in google.ga4_requests] == [(0, 4), (4, 4), (8, 4)]
    assert google.ga4_requests[0]["dateRanges"] == [{"startDate": "2015-08-14", "endDate": "today"}]
    assert google.ga4_requests[0]["metrics"] == [{"name": "sessions"}, {"name": "totalUsers"}]


def test_incremental_rereads_the_lookback_window_before_the_cursor(google):
    start = CursorState(dt.date(2024, 3, 8))
    extraction = source(google).extract("daily_sessions", "date", start)
    rows = pa.Table.from_batches(extraction, extraction.schema).to_pylist()
    assert rows == daily(5, 10)
    assert google.ga4_requests[0]["dateRanges"] == [{"startDate": "2024-03-05", "endDate": "today"}]
    assert extraction.state.cursor == dt.date(2024, 3, 10)


def test_metric_types_follow_the_metric_headers(google):
    reports = {"by_country": {"dimensions": ["country"], "metrics": ["sessions", "bounceRate"]}}
    table = source(google, reports=reports).read("by_country").read_all()
    assert table.schema == pa.schema(
        [("country", pa.string()), ("sessions", pa.int64()), ("bounceRate", pa.float64())]
    )
    assert table.to_pylist() == [
        {"country": "DE", "sessions": sum(range(10, 20)), "bounceRate": 2.5},
        {"country": "FR", "sessions": 10, "bounceRate": 2.5},
    ]


def test_an_empty_report_is_an_empty_typed_table(google):
    table = source(google, start_date="2030-01-01").read("daily_sessions").read_all()
    assert table.num_rows == 0
    assert table.schema == pa.schema(
        [("date", pa.date32()), ("sessions", pa.int64()), ("totalUsers", pa.int64())]
    )


def test_quota_errors_are_retried(google):
    ga4 = source(google)
    ga4.check()  # holds a token now, so the 429 hits runReport
    google.server.interruptions.append(quota_exhausted())
    assert ga4.read("daily_sessions").read_all().num_rows == 10
    assert [r.path.rsplit("/", 1)[1] for r in google.api_requests()] == [
        "metadata",
        f"{PROPERTY_ID}:runReport",
        f"{PROPERTY_ID}:runReport",
    ]


def test_refused_credentials_say_whom_to_give_access(google):
    google.accept_tokens = False
    with pytest.raises(ConnectorError) as error:
        source(google).read("daily_sessions")
    message = str(error.value)
    assert message == (
        f"credentials rejected for connection 'ga4' (HTTP 401 on POST /v1beta/properties/"
        f"{PROPERTY_ID}:runReport); check service_account_json, and that {CLIENT_EMAIL} is a "
        "Viewer of the GA4 property"
    )
    assert private_key_pem().splitlines()[1] not in message
    assert json.dumps(google.service_account()) not in message


def test_incremental_needs_the_date_dimension(google):
    reports = {"by_country": {"dimensions": ["country"], "metrics": ["sessions"]}}
    with pytest.raises(ConnectorError) as error:
        source(google, reports=reports).read("by_country", "date", dt.date(2024, 3, 1))
    assert str(error.value) == (
        "connection 'ga4': report 'by_country' has no date dimension to sync incrementally; "
        "add date to its dimensions or set sync_mode: full"
    )
    with pytest.raises(ConnectorError) as error:
        source(google).read("daily_sessions", "sessions", 3)
    assert str(error.value) == (
        "connection 'ga4': GA4 reports are incremental by date only, not 'sessions'; set "
        "incremental_key: date"
    )


def test_unknown_report_lists_the_declared_ones(google):
    with pytest.raises(ConnectorError) as error:
        source(google).read("pageviews")
    assert str(error.value) == (
        "connection 'ga4': no report 'pageviews'; this connection offers daily_sessions "
        "(declare it under reports)"
    )
