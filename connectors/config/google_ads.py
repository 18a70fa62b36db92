"""The `google_ads` source's config."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import field_validator

from connectors.config.common import HttpConfig
from connectors.config.model import ConfigValueError, Rate, Text, option

DEFAULT_API_VERSION = "v18"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_LOOKBACK_DAYS = 3
# A full sync of daily metrics needs a start: GAQL refuses segments.date without a range.
DEFAULT_HISTORY_DAYS = 365
TABLES = ("campaigns", "ad_groups", "ads", "campaign_daily_metrics")


class GoogleAdsConfig(HttpConfig):
    """One Google Ads customer account, through the REST API with an OAuth refresh token."""

    notes = f"tables {', '.join(TABLES)}; incremental on `date` (campaign_daily_metrics)"

    customer_id: Text = option(..., "The 10-digit customer ID (dashes allowed).")
    developer_token: Text = option(..., "The Google Ads API developer token.")
    client_id: Text = option(..., "OAuth client ID.")
    client_secret: Text = option(..., "OAuth client secret.")
    refresh_token: Text = option(..., "OAuth refresh token of a user with access to the account.")
    login_customer_id: str | None = option(
        None, "Manager account ID, when access goes through one."
    )
    api_version: Text = option(DEFAULT_API_VERSION, "Google Ads API version.")
    lookback_days: int = option(
        DEFAULT_LOOKBACK_DAYS, "Days before the cursor re-read on incremental syncs.", ge=0
    )
    start_date: dt.date | None = option(
        None, "First day of a full sync of daily metrics.", shown="365 days ago"
    )
    token_uri: Text = option(DEFAULT_TOKEN_URI, "OAuth token endpoint.")
    requests_per_second: Rate = option(10.0, "Requests a second this connection may send.")

    @field_validator("customer_id", "login_customer_id")
    @classmethod
    def _customer_id(cls, value: str | None) -> str | None:
        if not value:
            return None  # an empty login_customer_id, e.g. from an unset-but-empty variable
        digits = value.replace("-", "")
        if not re.fullmatch(r"\d{10}", digits):
            raise ConfigValueError(
                f"{{key}} {value!r} is not a 10-digit Google Ads customer ID",
                "use the ID shown in Google Ads, such as 123-456-7890",
            )
        return digits
