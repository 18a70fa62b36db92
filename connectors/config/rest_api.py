"""The `rest_api` source's config: a JSON API whose endpoints are the tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag, model_validator

from connectors.config.common import HttpConfig
from connectors.config.model import ColumnType, ConfigModel, ConfigValueError, Rate, Text, option


class NoPagination(ConfigModel):
    """One request per read."""

    type: Literal["none"] = option("none", "Pagination style.")


class NextLinkPagination(ConfigModel):
    """Follow a next-page URL from the body, or from the Link header's rel="next"."""

    type: Literal["next_link"] = option("next_link", "Pagination style.")
    next_path: str = option("", "Dotted body path to the next URL; empty: the Link header.")


class CursorPagination(ConfigModel):
    """Send the cursor the last page returned."""

    type: Literal["cursor"] = option("cursor", "Pagination style.")
    cursor_path: Text = option("next_cursor", "Dotted body path to the next cursor.")
    cursor_param: Text = option("cursor", "Query parameter the cursor is sent as.")


class PageNumberPagination(ConfigModel):
    """Count pages up from `start_page`."""

    type: Literal["page_number"] = option("page_number", "Pagination style.")
    page_param: Text = option("page", "Query parameter of the page number.")
    start_page: int = option(1, "Number of the first page.")
    page_size_param: Text = option("per_page", "Query parameter of the page size.")
    page_size: int | None = option(None, "Records a page.", shown="the API's", ge=1)


class OffsetPagination(ConfigModel):
    """Skip the records already read."""

    type: Literal["offset"] = option("offset", "Pagination style.")
    offset_param: Text = option("offset", "Query parameter of the offset.")
    limit_param: Text = option("limit", "Query parameter of the page size.")
    limit: int = option(100, "Records a page.", ge=1)


def _pagination_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("type", "none"))
    return str(getattr(value, "type", "none"))


Pagination = Annotated[
    Annotated[NoPagination, Tag("none")]
    | Annotated[NextLinkPagination, Tag("next_link")]
    | Annotated[CursorPagination, Tag("cursor")]
    | Annotated[PageNumberPagination, Tag("page_number")]
    | Annotated[OffsetPagination, Tag("offset")],
    Discriminator(_pagination_type),
]


class Incremental(ConfigModel):
    """How the API filters records changed since the cursor."""

    cursor_param: Text = option(..., "Query parameter the committed cursor is sent as.")
    cursor_field: str | None = option(
        None, "Record field the API filters on.", shown="the pipeline's incremental_key"
    )


class WindowFilter(ConfigModel):
    """How the API filters records by a time partition's window."""

    start_param: Text = option(..., "Query parameter the window's start is sent as.")
    end_param: str | None = option(
        None, "Query parameter the window's end is sent as.", shown="none: start only"
    )
    format: Literal["iso", "date", "unix"] = option(
        "iso",
        "How bounds are written: iso (UTC, 2024-01-02T00:00:00Z), date (2024-01-02, days in "
        "the partitions' timezone) or unix (seconds).",
    )
    field: str | None = option(
        None, "Record field the API filters on.", shown="the pipeline's partition column"
    )


class Endpoint(ConfigModel):
    """One endpoint: one table."""

    path: str | None = option(None, "Path under base_url.", shown="/<table name>")
    params: dict[str, Any] = option({}, "Query parameters sent with every page.")
    data_path: str = option("", "Dotted path to the record list; empty: the body itself.")
    pagination: Pagination = option(NoPagination(), "How to fetch the next page.")
    incremental: Incremental | None = option(None, "Server-side filtering by the cursor.")
    window: WindowFilter | None = option(None, "Server-side filtering by a partition's window.")
    schema_: dict[str, ColumnType] = option(
        {}, "Column name -> type; else sampled from page one.", alias="schema"
    )
    primary_key: list[str] = option([], "Informational: pipelines set source.primary_key.")


class RestApiConfig(HttpConfig):
    """A JSON REST API; each endpoint is a table."""

    notes = "each endpoint is a table (below)"

    base_url: Text = option(..., "The API's address, such as https://api.example.com/v1.")
    auth_type: Literal["none", "bearer", "api_key", "basic"] = option(
        "none", "How requests authenticate."
    )
    api_key: str | None = option(None, "Key or token for auth_type bearer and api_key.")
    api_key_header: Text = option("X-API-Key", "Header the key is sent in (auth_type api_key).")
    api_key_param: str | None = option(
        None, "Query parameter to send the key as instead of a header."
    )
    username: str | None = option(None, "User for auth_type basic.")
    password: str | None = option(None, "Password for auth_type basic.")
    headers: dict[str, str] = option({}, "Extra headers sent with every request.")
    endpoints: dict[str, Endpoint] = option(..., "Table name -> endpoint.", min_length=1)
    requests_per_second: Rate = option(5.0, "Requests a second this connection may send.")

    @model_validator(mode="after")
    def _credentials(self) -> RestApiConfig:
        needed = {
            "bearer": ("api_key",),
            "api_key": ("api_key",),
            "basic": ("username", "password"),
        }
        for key in needed.get(self.auth_type, ()):
            if not getattr(self, key):
                raise ConfigValueError(
                    f"auth_type {self.auth_type} needs {key}", "set it (e.g. to ${ENV_VAR})"
                )
        return self
