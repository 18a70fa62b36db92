"""The `ga4` source's config."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import field_validator

from connectors.config.common import GoogleConfig
from connectors.config.model import ConfigModel, ConfigValueError, DateText, Rate, Text, option

# GA4 holds no data from before its launch; a full sync starts here unless told otherwise.
EARLIEST_DATE = "2015-08-14"
# runReport returns at most 250,000 rows a request.
MAX_PAGE_SIZE = 250_000
DEFAULT_REPORTS: Mapping[str, Mapping[str, list[str]]] = {
    "daily_sessions": {"dimensions": ["date"], "metrics": ["sessions", "totalUsers"]},
}


class Ga4Report(ConfigModel):
    """One report: a table of metrics by its dimensions."""

    dimensions: list[Text] = option([], "Dimension API names, such as date or country.")
    metrics: list[Text] = option(..., "Metric API names, such as sessions.", min_length=1)


class Ga4Config(GoogleConfig):
    """One Google Analytics 4 property, through the Data API."""

    notes = "incremental on `date`"

    property_id: Text = option(..., "The property's number, or properties/<number>.")
    reports: dict[str, Ga4Report] = option(
        DEFAULT_REPORTS,
        "Table name -> {dimensions, metrics}.",
        shown="`daily_sessions`",
        validate_default=True,
    )
    start_date: DateText = option(EARLIEST_DATE, "First day of a full sync (YYYY-MM-DD).")
    lookback_days: int = option(3, "Days before the cursor re-read on incremental syncs.", ge=0)
    page_size: int = option(10_000, "Rows a request.", ge=1, le=MAX_PAGE_SIZE)
    # GA4 quotas are per property (tokens an hour, 10 concurrent requests): ten a second.
    requests_per_second: Rate = option(10.0, "Requests a second this connection may send.")

    @field_validator("property_id")
    @classmethod
    def _property_number(cls, value: str) -> str:
        number = value.removeprefix("properties/")
        if not number.isdigit():
            raise ConfigValueError(
                f"{{key}} {value!r} is not a GA4 property number",
                "use the number from Admin > Property details, such as 123456789",
            )
        return number
