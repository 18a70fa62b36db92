"""The Google Ads source against a local fake of the REST API and its OAuth token endpoint."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import yaml

from connectors.base import ConnectorError, CursorState
from connectors.sources.google_ads import GoogleAdsSource
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.fake_google_ads import (
    CLIENT_SECRET,
    DEVELOPER_TOKEN,
    REFRESH_TOKEN,
    FakeGoogleAds,
)
from tests.support.fake_http import Response, serve

SEARCH_PATH = "/v18/customers/1234567890/googleAds:search"
EXAMPLE = Path(__file__).parents[2] / "pipelines" / "examples" / "google_ads.yaml"


def metrics_row(day: int, campaign: int, clicks: int) -> dict:
    return {
        "campaign": {"resourceName": f"customers/1234567890/campaigns/{campaign}",
                     "id": str(campaign), "name": f"Campaign {campaign}"},
        "metrics": {"impressions": str(clicks * 10), "clicks": str(clicks),
                    "costMicros": str(clicks * 250_000), "conversions": clicks / 4},
        "segments": {"date": f"2026-01-{day:02d}"},
    }  # fmt: skip


def expected_row(day: int, campaign: int, clicks: int) -> dict:
    return {
        "date": dt.date(2026, 1, day), "campaign_id": campaign,
        "campaign_name": f"Campaign {campaign}",
        "metrics_impressions": clicks * 10, "metrics_clicks": clicks,
        "metrics_cost_micros": clicks * 250_000, "metrics_conversions": clicks / 4,
    }  # fmt: skip


FIVE_DAYS = [(day, 7, day * 3) for day in range(1, 6)]


@pytest.fixture
def ads():
    fake = FakeGoogleAds()
    fake.rows["campaign"] = [metrics_row(*r) for r in FIVE_DAYS]
    with serve(fake.server):
        yield fake


def source(ads, name="ads", **overrides):
    # The fake honours the date range; a fixed start keeps FIVE_DAYS in every full read.
    overrides.setdefault("start_date", "2026-01-01")
    return GoogleAdsSource(name, ads.config(requests_per_second=1000, **overrides))


def read_rows(src, table="campaign_daily_metrics", **kwargs):
    return src.read(table, **kwargs).read_all().to_pylist()


def search_bodies(ads):
    return [r.json() for r in ads.server.requests if r.path == SEARCH_PATH]


def test_pages_are_followed_and_rows_flattened_with_int64_strings_as_integers(ads):
    ads.page_size = 2
    src = source(ads, login_customer_id="111-222-3333", start_date="2026-01-01")
    assert read_rows(src) == [expected_row(*r) for r in FIVE_DAYS]
    assert [b.get("pageToken") for b in search_bodies(ads)] == [None, "2", "4"]
    assert all(set(b) <= {"query", "pageToken"} for b in search_bodies(ads))  # no pageSize
    search = next(r for r in ads.server.requests if r.path == SEARCH_PATH)
    assert search.headers["developer-token"] == DEVELOPER_TOKEN
    assert search.headers["login-customer-id"] == "1112223333"
    assert search.headers["authorization"] == "Bearer ya29.access-1"
    assert ads.tokens_issued == 1


def test_an_access_token_rejected_mid_sync_is_refreshed_and_the_sync_continues(ads):
    ads.page_size, ads.token_uses = 1, 2
    assert read_rows(source(ads)) == [expected_row(*r) for r in FIVE_DAYS]
    assert ads.tokens_issued == 3
    statuses = [r.headers["authorization"] for r in ads.server.requests if r.path == SEARCH_PATH]
    assert statuses == ["Bearer ya29.access-1"] * 3 + ["Bearer ya29.access-2"] * 3 + [
        "Bearer ya29.access-3"
    ]
    assert [b.get("pageToken") for b in search_bodies(ads)] == [
        None, "1", "2", "2", "3", "4", "4"
    ]  # fmt: skip


def test_a_token_about_to_expire_is_refreshed_before_the_request(ads):
    ads.page_size, ads.expires_in = 2, 30  # inside the 60 s safety margin
    assert len(read_rows(source(ads))) == 5
    assert ads.tokens_issued == 3
    assert [r.path for r in ads.server.requests] == ["/token", SEARCH_PATH] * 3


def test_incremental_daily_metrics_re_read_a_lookback_window_before_the_cursor(ads):
    src = source(ads, lookback_days=5)
    extraction = src.extract("campaign_daily_metrics", "date", CursorState(dt.date(2026, 1, 10)))
    assert [batch.column("date").to_pylist() for batch in extraction] == [[dt.date(2026, 1, 5)]]
    today = dt.date.today().isoformat()
    assert ads.queries == [
        "SELECT segments.date, campaign.id, campaign.name, metrics.impressions, metrics.clicks, "
        "metrics.cost_micros, metrics.conversions FROM campaign "
        f"WHERE segments.date BETWEEN '2026-01-05' AND '{today}'"
    ]
    read_rows(source(ads), incremental_key="date", cursor=dt.date(2026, 1, 10))  # default 3
    assert ads.queries[-1].endswith(f"BETWEEN '2026-01-07' AND '{today}'")


def test_full_sync_of_daily_metrics_starts_at_start_date_and_dimension_tables_have_no_where(ads):
    ads.rows["ad_group_ad"] = [
        {"adGroupAd": {"ad": {"id": "9", "name": "Spring", "type": "RESPONSIVE_SEARCH_AD",
                              "finalUrls": ["https://shop.example/a", "https://shop.example/b"]},
                       "status": "ENABLED"},
         "adGroup": {"id": "5"}, "campaign": {"id": "7"}}
    ]  # fmt: skip
    read_rows(source(ads, start_date="2025-06-01"))
    assert read_rows(source(ads), table="ads") == [
        {"ad_id": 9, "ad_name": "Spring", "ad_type": "RESPONSIVE_SEARCH_AD",
         "ad_final_urls": json.dumps(["https://shop.example/a", "https://shop.example/b"]),
         "status": "ENABLED", "ad_group_id": 5, "campaign_id": 7}
    ]  # fmt: skip
    assert ads.queries[0].endswith(f"BETWEEN '2025-06-01' AND '{dt.date.today().isoformat()}'")
    assert ads.queries[1] == (
        "SELECT ad_group_ad.ad.id, ad_group_ad.ad.name, ad_group_ad.ad.type, "
        "ad_group_ad.ad.final_urls, ad_group_ad.status, ad_group.id, campaign.id FROM ad_group_ad"
    )


def test_an_empty_report_is_an_empty_table_with_the_table_schema(ads):
    reader = source(ads).read("ad_groups")
    assert reader.read_all().num_rows == 0
    assert reader.schema.names == [
        "ad_group_id", "ad_group_name", "ad_group_status", "ad_group_type",
        "ad_group_cpc_bid_micros", "campaign_id",
    ]  # fmt: skip


def test_429_waits_for_retry_after_and_5xx_is_retried(ads):
    ads.server.interruptions.append(
        Response(429, {"error": {"status": "RESOURCE_EXHAUSTED"}}, {"Retry-After": "1"})
    )
    ads.server.interruptions.append(Response(503, {"error": {"status": "UNAVAILABLE"}}))
    started = time.monotonic()
    assert len(read_rows(source(ads))) == 5
    assert time.monotonic() - started >= 1.0
    # The first token request met the 429 and the 503; then one token, one search.
    assert [r.path for r in ads.server.requests] == ["/token"] * 3 + [SEARCH_PATH]


def test_a_revoked_refresh_token_is_a_clear_error_without_secrets(ads):
    with pytest.raises(ConnectorError) as error:
        read_rows(source(ads, refresh_token="1//revoked"))
    assert str(error.value) == (
        "credentials rejected for connection 'ads' (HTTP 401 on POST /token); "
        "check client_id, client_secret and refresh_token"
    )
    assert CLIENT_SECRET not in str(error.value) and "revoked" not in str(error.value)


def test_a_token_rejected_twice_is_reported_after_one_refresh(ads):
    ads.token_uses = 0
    with pytest.raises(ConnectorError) as error:
        read_rows(source(ads))
    assert str(error.value) == (
        f"credentials rejected for connection 'ads' (HTTP 401 on POST {SEARCH_PATH}); "
        "check developer_token and the OAuth client"
    )
    assert ads.tokens_issued == 2
    assert DEVELOPER_TOKEN not in str(error.value) and REFRESH_TOKEN not in str(error.value)


def test_check_names_the_customer(ads):
    ads.rows["customer"] = [{"customer": {"id": "1234567890", "descriptiveName": "Acme"}}]
    assert source(ads).check() == "connection 'ads': Google Ads customer 1234567890 (Acme)"
    assert ads.queries == ["SELECT customer.id, customer.descriptive_name FROM customer LIMIT 1"]


def test_config_and_table_mistakes_are_explained(ads):
    with pytest.raises(ConnectorError) as missing:
        GoogleAdsSource("ads", {**ads.config(), "developer_token": "", "refresh_token": None})
    assert str(missing.value) == (
        "connection 'ads': config keys developer_token, refresh_token are missing or empty; "
        "set them in the connection's config"
    )
    with pytest.raises(ConnectorError) as bad_id:
        source(ads, customer_id="12-34")
    assert str(bad_id.value) == (
        "connection 'ads': customer_id '12-34' is not a 10-digit Google Ads customer ID; "
        "use the ID shown in Google Ads, such as 123-456-7890"
    )
    with pytest.raises(ConnectorError) as error:
        source(ads).read("keywords")
    assert str(error.value) == (
        "connection 'ads': google_ads has no table 'keywords'; "
        "use one of campaigns, ad_groups, ads, campaign_daily_metrics"
    )
    with pytest.raises(ConnectorError, match="table 'campaigns' supports only full sync"):
        source(ads).read("campaigns", incremental_key="campaign_id", cursor=3)
    assert source(ads).discover()[3].schema.field("metrics_clicks").type == "int64"


def test_example_pipeline_parses():
    pipeline = Pipeline.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    assert pipeline.source.connector == "google_ads"
    assert pipeline.destination.connector == "duckdb"
