"""The `hubspot` source's config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator

from connectors.config.common import HttpConfig
from connectors.config.model import ConfigValueError, Rate, Text, option

MAX_PAGE_SIZE = 100
# HubSpot's search endpoints stop at 10,000 results per query.
SEARCH_RESULT_CAP = 10_000
OBJECTS = ("contacts", "companies", "deals", "tickets")
TABLES = (*OBJECTS, "owners")


def _names(value: Any) -> Any:
    # One comma-separated string, as HubSpot itself writes property lists.
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


class HubSpotConfig(HttpConfig):
    """One HubSpot account's CRM."""

    notes = f"tables {', '.join(TABLES)}; incremental on the last-modified property"

    access_token: Text = option(..., "Private app access token (use ${HUBSPOT_ACCESS_TOKEN}).")
    page_size: int = option(MAX_PAGE_SIZE, "Records a page, 1 to 100.", ge=1, le=MAX_PAGE_SIZE)
    properties: dict[str, Annotated[list[str], BeforeValidator(_names)]] = option(
        {}, "Object -> property names to read (a list or comma-separated).", shown="per object"
    )
    search_result_cap: int = option(
        SEARCH_RESULT_CAP, "Results one search query can page through.", ge=1
    )
    # The search endpoints allow 5 requests a second per account, below the general limit.
    requests_per_second: Rate = option(5.0, "Requests a second this connection may send.")

    @field_validator("properties")
    @classmethod
    def _known_objects(cls, value: Mapping[str, list[str]]) -> Mapping[str, list[str]]:
        unknown = sorted(set(value) - set(OBJECTS))
        if unknown:
            raise ConfigValueError(
                f"{{key}} given for unknown object(s) {', '.join(unknown)}",
                f"use {', '.join(OBJECTS)}",
            )
        return value
