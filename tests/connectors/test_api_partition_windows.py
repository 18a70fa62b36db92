"""One time partition's rows from the API sources: the window goes to the API's own date
filter (checked in the request the fake server received), and exactly the window's rows
come back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from connectors.base import ConnectorError, Window
from connectors.shared.http import Backoff
from connectors.sources.ga4 import Ga4Source
from connectors.sources.google_ads import GoogleAdsSource
from connectors.sources.hubspot import HubSpotSource
from connectors.sources.rest_api import RestApiSource
from connectors.sources.shopify import ShopifySource
from tests.support.fake_google import PROPERTY_ID, FakeGoogle, fake_google
from tests.support.fake_google_ads import FakeGoogleAds
from tests.support.fake_http import FakeServer, Request, Response, serve
from tests.support.fake_hubspot import FakeHubSpot, crm_object, when
from tests.support.fake_shopify import FakeShopify
from tests.support.fake_shopify import when as shopify_when

UTC = dt.UTC


def window(column: str, start: dt.datetime, hours: int = 24) -> Window:
    """The window of `hours` from `start` (a day by default) over `column`."""
    return Window(column, start, start + dt.timedelta(hours=hours))


def column(reader: pa.RecordBatchReader, name: str = "id") -> list:
    """One column of everything read, sorted."""
    return sorted(reader.read_all().column(name).to_pylist())


# REST API: events either side of the bounds of 2024-01-02 (UTC).
EVENTS = [
    {"id": 1, "updated_at": "2024-01-01T23:59:59Z"},
    {"id": 2, "updated_at": "2024-01-02T00:00:00Z"},
    {"id": 3, "updated_at": "2024-01-02T23:59:59Z"},
    {"id": 4, "updated_at": "2024-01-03T00:00:00Z"},
    {"id": 5, "updated_at": "2024-01-05T08:00:00Z"},
]
PARSERS = {
    "iso": lambda text: dt.datetime.fromisoformat(text),
    "date": lambda text: dt.datetime.fromisoformat(text).replace(tzinfo=UTC),
    "unix": lambda text: dt.datetime.fromtimestamp(int(text), UTC),
}


@pytest.fixture
def events_api() -> Iterator[FakeServer]:
    """An API whose `since` and `until` filters (in the format named by the `style` query
    parameter) are both inclusive, as many APIs' are."""
    server = FakeServer()

    @server.route("GET", "/events")
    def events(request: Request) -> Response:
        parse = PARSERS[request.param("style") or "iso"]
        since, until = request.param("since"), request.param("until")
        found = [
            event
            for event in EVENTS
            if (since is None or dt.datetime.fromisoformat(event["updated_at"]) >= parse(since))
            and (until is None or dt.datetime.fromisoformat(event["updated_at"]) <= parse(until))
        ]
        return Response(200, {"data": found})

    with serve(server):
        yield server


def rest_source(server: FakeServer, **endpoint: object) -> RestApiSource:
    events = {"data_path": "data", "schema": {"id": "BIGINT", "updated_at": "TIMESTAMPTZ"},
              **endpoint}  # fmt: skip
    config = {"base_url": server.url, "requests_per_second": 1000, "endpoints": {"events": events}}
    source = RestApiSource("events_api", config)
    source.backoff = Backoff(attempts=1, base_seconds=0.01)
    return source


@pytest.mark.parametrize(
    ("style", "sent"),
    [
        ("iso", {"since": ["2024-01-02T00:00:00Z"], "until": ["2024-01-03T00:00:00Z"]}),
        ("date", {"since": ["2024-01-02"], "until": ["2024-01-03"]}),
        ("unix", {"since": ["1704153600"], "until": ["1704240000"]}),
    ],
)
def test_rest_api_sends_the_window_and_keeps_exactly_its_rows(events_api, style, sent):
    """The API includes the record at `until` (id 4); it is dropped here."""
    pushdown = {"start_param": "since", "end_param": "until", "format": style}
    source = rest_source(events_api, params={"style": style}, window=pushdown)
    reader = source.read_window("events", window("updated_at", dt.datetime(2024, 1, 2, tzinfo=UTC)))
    assert column(reader) == [2, 3]
    assert [r.query for r in events_api.requests] == [{"style": [style], **sent}]


def test_rest_api_window_bounds_in_another_time_zone_and_by_the_hour(events_api):
    berlin = dt.timezone(dt.timedelta(hours=1))  # January in Berlin
    source = rest_source(
        events_api, window={"start_param": "since", "end_param": "until", "field": "updated_at"}
    )
    day = window("updated_at", dt.datetime(2024, 1, 2, tzinfo=berlin))
    assert column(source.read_window("events", day)) == [1, 2]
    # Days in the partitions' zone: an hour asks for the whole day that holds it.
    by_date = {"start_param": "since", "end_param": "until", "format": "date"}
    dated = rest_source(events_api, params={"style": "date"}, window=by_date)
    hour = window("updated_at", dt.datetime(2024, 1, 2, 23, tzinfo=UTC), hours=1)
    assert column(dated.read_window("events", hour)) == [3]
    assert [r.query for r in events_api.requests] == [
        {"since": ["2024-01-01T23:00:00Z"], "until": ["2024-01-02T23:00:00Z"]},
        {"style": ["date"], "since": ["2024-01-02"], "until": ["2024-01-03"]},
    ]


def test_rest_api_without_an_end_param_or_on_another_field(events_api):
    """Only the start is sent when there is no end_param; an endpoint that filters another
    field than the partition column is read whole. Either way the rows are exact."""
    since_only = rest_source(events_api, window={"start_param": "since"})
    day = window("updated_at", dt.datetime(2024, 1, 2, tzinfo=UTC))
    assert column(since_only.read_window("events", day)) == [2, 3]
    other_field = rest_source(
        events_api, window={"start_param": "since", "end_param": "until", "field": "created_at"}
    )
    assert column(other_field.read_window("events", day)) == [2, 3]
    empty_day = window("updated_at", dt.datetime(2024, 1, 4, tzinfo=UTC))
    assert since_only.read_window("events", empty_day).read_all().num_rows == 0
    assert [r.query for r in events_api.requests] == [
        {"since": ["2024-01-02T00:00:00Z"]},
        {},
        {"since": ["2024-01-04T00:00:00Z"]},
    ]


@pytest.mark.parametrize(
    ("pushdown", "message"),
    [
        ({"end_param": "until"},
         "missing config key 'endpoints.events.window.start_param'; set it in the connection's "
         "config"),
        ({"start_param": "since", "format": "epoch"},
         "endpoints.events.window.format must be one of iso, date, unix, not 'epoch'; fix the "
         "value"),
        ({"start_param": "since", "end_parm": "until"},
         "unknown config key 'endpoints.events.window.end_parm'; did you mean 'end_param'? (keys: "
         "start_param, end_param, format, field)"),
    ],
)  # fmt: skip
def test_rest_api_window_config_mistakes_are_named(pushdown, message):
    with pytest.raises(ConnectorError) as error:
        rest_source(FakeServer(url="http://127.0.0.1:9"), window=pushdown)
    assert str(error.value) == f"connection 'events_api': {message}"


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    """GA4 sessions per day in March 2024: day `d` had `d` sessions."""
    with fake_google() as server:
        server.today = dt.date(2024, 3, 31)
        server.ga4_rows.extend(
            {"date": dt.date(2024, 3, d), "country": "DE", "sessions": d} for d in range(1, 32)
        )
        yield server


def ga4_source(google: FakeGoogle) -> Ga4Source:
    reports = {"daily": {"dimensions": ["date", "country"], "metrics": ["sessions"]}}
    config = {"property_id": PROPERTY_ID, "service_account_json": google.service_account(),
              "base_url": google.url, "reports": reports}  # fmt: skip
    return Ga4Source("ga4", config)


@pytest.mark.parametrize(
    ("start", "days", "date_range"),
    [
        (dt.datetime(2024, 3, 4, tzinfo=UTC), 1, ("2024-03-04", "2024-03-04")),
        (dt.datetime(2024, 3, 4, tzinfo=UTC), 7, ("2024-03-04", "2024-03-10")),
        (dt.datetime(2024, 3, 1, tzinfo=ZoneInfo("Europe/Berlin")), 31,
         ("2024-03-01", "2024-03-31")),
    ],
)  # fmt: skip
def test_ga4_asks_for_the_window_days_with_an_inclusive_end(google, start, days, date_range):
    """A day, a week and a month (which crosses a change of clocks in Berlin)."""
    end = (start.replace(tzinfo=None) + dt.timedelta(days=days)).replace(tzinfo=start.tzinfo)
    reader = ga4_source(google).read_window("daily", Window("date", start, end))
    first = int(date_range[0][-2:])
    assert column(reader, "sessions") == list(range(first, first + days))
    assert [body["dateRanges"] for body in google.ga4_requests] == [
        [{"startDate": date_range[0], "endDate": date_range[1]}]
    ]


def test_ga4_filters_other_columns_here_and_refuses_hours_on_a_date(google):
    source = ga4_source(google)
    with pytest.raises(ConnectorError) as error:
        source.read_window("daily", window("country", dt.datetime(2024, 3, 4, tzinfo=UTC)))
    assert str(error.value) == (
        "connection 'ga4': partition column 'country' is string; partitions by this period "
        "need a date or timestamp column"
    )
    # Read whole (from GA4's earliest date to today), then the column was found wanting.
    assert [body["dateRanges"] for body in google.ga4_requests] == [
        [{"startDate": "2015-08-14", "endDate": "today"}]
    ]
    with pytest.raises(ConnectorError) as error:
        source.read_window("daily", window("date", dt.datetime(2024, 3, 4, 5, tzinfo=UTC), 1))
    assert str(error.value) == (
        "connection 'ga4': partition column 'date' is date32[day]; partitions by this period "
        "need a timestamp column"
    )
    assert len(google.ga4_requests) == 1


def ads_row(day: int, campaign: int) -> dict:
    """A campaign_daily_metrics result row of January `day`, 2026, as the REST API nests it."""
    return {"campaign": {"id": str(campaign), "name": f"C{campaign}"},
            "metrics": {"impressions": "10", "clicks": str(day), "costMicros": "0",
                        "conversions": 0},
            "segments": {"date": f"2026-01-{day:02d}"}}  # fmt: skip


@pytest.fixture
def ads() -> Iterator[FakeGoogleAds]:
    fake = FakeGoogleAds()
    fake.rows["campaign"] = [ads_row(day, campaign) for day in range(1, 15) for campaign in (7, 8)]
    with serve(fake.server):
        yield fake


def test_google_ads_asks_for_the_window_days(ads):
    source = GoogleAdsSource("ads", ads.config(requests_per_second=1000))
    week = window("date", dt.datetime(2026, 1, 5, tzinfo=UTC), hours=7 * 24)
    reader = source.read_window("campaign_daily_metrics", week)
    assert column(reader, "metrics_clicks") == [day for day in range(5, 12) for _ in (7, 8)]
    assert ads.queries == [
        "SELECT segments.date, campaign.id, campaign.name, metrics.impressions, metrics.clicks, "
        "metrics.cost_micros, metrics.conversions FROM campaign "
        "WHERE segments.date BETWEEN '2026-01-05' AND '2026-01-11'"
    ]
    # A table without days is read whole and filtered here: campaigns on their start date.
    ads.rows["campaign"] = [
        {"campaign": {"id": str(n), "startDate": f"2026-01-0{n}"}} for n in (4, 5, 6)
    ]
    day = window("campaign_start_date", dt.datetime(2026, 1, 5, tzinfo=UTC))
    assert column(source.read_window("campaigns", day), "campaign_id") == [5]
    assert ads.queries[-1].endswith("FROM campaign")


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    """Deals created either side of the bounds of May 1, 2024 (UTC); minute 0 is midnight."""
    fake = FakeHubSpot()
    fake.objects["deals"] = [
        crm_object(n, "hs_lastmodifieddate", 3000, createdate=when(minute), dealname=f"D{n}")
        for n, minute in ((1, -1), (2, 0), (3, 700), (4, 1439), (5, 1440))
    ]
    with serve(fake.server):
        yield fake


def hubspot_source(fake: FakeHubSpot, **config: object) -> HubSpotSource:
    settings = {"access_token": fake.token, "base_url": fake.server.url,
                "requests_per_second": 1000, "page_size": 2, **config}  # fmt: skip
    return HubSpotSource("crm", settings)


def search_filters(fake: FakeHubSpot) -> list[list[tuple[str, str, str]]]:
    """The filters of each search query that starts a window (asked without `after`)."""
    bodies = [r.json() for r in fake.server.requests if r.path.endswith("/search")]
    return [
        [(f["propertyName"], f["operator"], f["value"]) for f in b["filterGroups"][0]["filters"]]
        for b in bodies
        if "after" not in b
    ]


MAY_1, MAY_2 = "1714521600000", "1714608000000"


def test_hubspot_searches_a_date_property_for_the_window(hubspot):
    may_1 = window("createdate", dt.datetime(2024, 5, 1, tzinfo=UTC))
    assert column(hubspot_source(hubspot).read_window("deals", may_1)) == ["2", "3", "4"]
    first = hubspot.server.requests[0]
    assert (first.method, first.path) == ("POST", "/crm/v3/objects/deals/search")
    assert first.json()["sorts"] == [{"propertyName": "createdate", "direction": "ASCENDING"}]
    assert search_filters(hubspot) == [[("createdate", "GTE", MAY_1), ("createdate", "LT", MAY_2)]]


def test_hubspot_window_searches_past_the_result_cap_keep_the_end(hubspot):
    may_1 = window("createdate", dt.datetime(2024, 5, 1, tzinfo=UTC))
    capped = hubspot_source(hubspot, search_result_cap=2)
    assert column(capped.read_window("deals", may_1)) == ["2", "3", "4"]
    assert search_filters(hubspot) == [
        [("createdate", "GTE", MAY_1), ("createdate", "LT", MAY_2)],
        # The second query starts at the last time the first one saw (minute 700).
        [("createdate", "GTE", "1714563600000"), ("createdate", "LT", MAY_2)],
    ]


def test_hubspot_filters_other_columns_after_a_full_read(hubspot):
    """createdAt is the record's own field, not a property search can filter on."""
    for deal, minute in zip(hubspot.objects["deals"], (-1, 0, 0, 1440, 1440), strict=True):
        deal["createdAt"] = when(minute)
    may_1 = window("createdAt", dt.datetime(2024, 5, 1, tzinfo=UTC))
    assert column(hubspot_source(hubspot).read_window("deals", may_1)) == ["2", "3"]
    assert {(r.method, r.path) for r in hubspot.server.requests} == {
        ("GET", "/crm/v3/objects/deals")
    }


def shop_order(order_id: int, created: str, updated: str) -> dict:
    return {"id": order_id, "name": f"#{order_id}", "created_at": created, "updated_at": updated,
            "closed_at": None, "cancelled_at": None}  # fmt: skip


@pytest.fixture
def shop() -> Iterator[FakeShopify]:
    """Orders created either side of the bounds of May 2, 2024 in UTC (the shop is at -04:00,
    so 20:00 there is midnight UTC), each with one transaction when its order was created."""
    fake = FakeShopify()
    created = [shopify_when(1, 19), shopify_when(1, 20), shopify_when(2, 19), shopify_when(2, 20)]
    fake.orders = [shop_order(n, at, shopify_when(9)) for n, at in enumerate(created, 1)]
    fake.transactions = [
        {"id": 10 + n, "order_id": n, "kind": "sale", "created_at": at}
        for n, at in enumerate(created, 1)
    ]
    with serve(fake.server):
        yield fake


def shopify_source(fake: FakeShopify) -> ShopifySource:
    config = {"shop_domain": "fake.myshopify.com", "access_token": fake.token,
              "base_url": fake.server.url, "requests_per_second": 1000}  # fmt: skip
    return ShopifySource("store", config)


def test_shopify_sends_min_and_max_and_drops_the_end_it_includes(shop):
    may_2 = window("created_at", dt.datetime(2024, 5, 2, tzinfo=UTC))
    assert column(shopify_source(shop).read_window("orders", may_2)) == [2, 3]
    assert [r.query for r in shop.server.requests] == [
        {"created_at_min": ["2024-05-02T00:00:00+00:00"],
         "created_at_max": ["2024-05-03T00:00:00+00:00"], "status": ["any"], "limit": ["250"]}
    ]  # fmt: skip


def test_shopify_transactions_come_from_orders_updated_since_the_start(shop):
    may_2 = window("created_at", dt.datetime(2024, 5, 2, tzinfo=UTC))
    assert column(shopify_source(shop).read_window("transactions", may_2)) == [12, 13]
    listing = shop.server.requests[0]
    assert (listing.path, listing.query) == (
        "/admin/api/2024-10/orders.json",
        {"updated_at_min": ["2024-05-02T00:00:00+00:00"], "status": ["any"], "limit": ["250"]},
    )


def test_shopify_reads_a_column_it_cannot_filter_whole(shop):
    for order, day in zip(shop.orders, (1, 2, 2, 3), strict=True):
        order["processed_at"] = shopify_when(day)
    may_2 = window("processed_at", dt.datetime(2024, 5, 2, 4, tzinfo=UTC))
    assert column(shopify_source(shop).read_window("orders", may_2)) == [2, 3]
    assert [r.query for r in shop.server.requests] == [{"status": ["any"], "limit": ["250"]}]
