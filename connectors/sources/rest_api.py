"""A generic JSON REST API as a source: each declared endpoint is one table.

Config: `base_url` (required); `auth_type` none (default) | bearer | api_key | basic, with
`api_key` (bearer and api_key), `api_key_header` (default X-API-Key) or `api_key_param` (send
the key as that query parameter instead), `username`/`password` (basic); `headers` (extra
headers); `requests_per_second` (default 5); and `endpoints`, table name -> endpoint:

    endpoints:
      users:
        path: /users                    # default /<table name>
        params: {status: active}        # sent with every page
        data_path: data.items           # dotted path to the record list; empty = the body
        pagination: {type: cursor, cursor_path: meta.next, cursor_param: cursor}
        incremental: {cursor_param: updated_since, cursor_field: updated_at}
        window: {start_param: since, end_param: until, format: iso, field: updated_at}
        schema: {id: BIGINT, updated_at: TIMESTAMPTZ}   # optional; else sampled
        primary_key: [id]               # informational: pipelines set source.primary_key

Pagination `type`: none (default); next_link (`next_path`, a dotted body path to the next
URL, or else the `Link: <...>; rel="next"` header); cursor (`cursor_path`, `cursor_param`);
page_number (`page_param`, `start_page`, `page_size_param`, `page_size`); offset
(`offset_param`, `limit_param`, `limit`). Paging stops at an empty page, a missing next
link/cursor, or a request already made (a loop guard against APIs that repeat themselves).

Incremental reads send the committed cursor as `incremental.cursor_param`; the API must then
return every record whose `cursor_field` is >= that value. Rows are also filtered here, so
an API that ignores the parameter costs a full read but never loads stale rows.

A partition's read sends its window as `window.start_param` and `window.end_param` (formatted
by `window.format`) when the pipeline partitions by `window.field`; rows are filtered to the
window here too, as APIs often include records at the end bound. An endpoint without
`window`, or one filtering another field, is read whole and filtered.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyarrow as pa

from connectors.base import (
    ConnectorError,
    Source,
    TableSchema,
    Window,
    connection_error,
    rows_since,
)
from connectors.config import rest_api as api_config
from connectors.shared.column_types import parse_type
from connectors.shared.http import Backoff, api_client
from connectors.shared.records import flatten, infer_schema, to_batches
from connectors.shared.windows import formatted_bounds

log = logging.getLogger(__name__)

Record = dict[str, Any]


@dataclass(frozen=True)
class PageRequest:
    """One page to fetch: a path (or an absolute next link) and its query parameters."""

    url: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What makes two requests the same, for the loop guard."""
        return self.url, tuple(sorted((k, str(v)) for k, v in self.params.items()))

    def with_params(self, **params: Any) -> PageRequest:
        return PageRequest(self.url, {**self.params, **params})


@dataclass(frozen=True)
class Page:
    """A fetched page: what was asked, what came back, and the records in it."""

    request: PageRequest
    response: httpx.Response
    body: Any
    records: list[Record]


class LookupFailed(LookupError):
    """A dotted path that does not exist in a response body."""


def dig(body: Any, path: str) -> Any:
    """The value at a dotted path such as `data.items`; the empty path is the body itself."""
    value = body
    for step in path.split(".") if path else ():
        if not isinstance(value, dict):
            raise LookupFailed(f"{step!r} is under {_json_kind(value)}, not an object")
        if step not in value:
            keys = ", ".join(value) or "none"
            raise LookupFailed(f"no key {step!r}; the keys there are {keys}")
        value = value[step]
    return value


def dig_optional(body: Any, path: str) -> Any:
    """The value at a dotted path, or None where the path ends early (the last page)."""
    try:
        return dig(body, path)
    except LookupFailed:
        return None


def _json_kind(value: Any) -> str:
    """`an object`, `a list` ...: what a JSON value is, for messages."""
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a scalar")


# Pagination styles. Each turns the page just fetched into the next request, or None.


@dataclass(frozen=True)
class NoPagination:
    def first(self, request: PageRequest) -> PageRequest:
        return request

    def next(self, page: Page) -> PageRequest | None:
        return None


@dataclass(frozen=True)
class NextLinkPagination(NoPagination):
    next_path: str = ""  # empty: the Link header's rel="next"

    def next(self, page: Page) -> PageRequest | None:
        if self.next_path:
            link = dig_optional(page.body, self.next_path)
        else:
            link = page.response.links.get("next", {}).get("url")
        if not link:
            return None
        # A link carries its own query, so the first request's params are not re-sent.
        return PageRequest(str(page.response.url.join(str(link))))


@dataclass(frozen=True)
class CursorPagination(NoPagination):
    cursor_path: str = "next_cursor"
    cursor_param: str = "cursor"

    def next(self, page: Page) -> PageRequest | None:
        cursor = dig_optional(page.body, self.cursor_path)
        if cursor in (None, ""):
            return None
        return page.request.with_params(**{self.cursor_param: cursor})


@dataclass(frozen=True)
class PageNumberPagination(NoPagination):
    page_param: str = "page"
    start_page: int = 1
    page_size_param: str = "per_page"
    page_size: int | None = None  # unset: the API's default page size

    def first(self, request: PageRequest) -> PageRequest:
        sizing = {self.page_size_param: self.page_size} if self.page_size else {}
        return request.with_params(**{self.page_param: self.start_page}, **sizing)

    def next(self, page: Page) -> PageRequest | None:
        number = int(page.request.params[self.page_param]) + 1
        return page.request.with_params(**{self.page_param: number})


@dataclass(frozen=True)
class OffsetPagination(NoPagination):
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100

    def first(self, request: PageRequest) -> PageRequest:
        return request.with_params(**{self.offset_param: 0, self.limit_param: self.limit})

    def next(self, page: Page) -> PageRequest | None:
        # Advance by what arrived, not by `limit`: APIs may cap the page below it.
        offset = int(page.request.params[self.offset_param]) + len(page.records)
        return page.request.with_params(**{self.offset_param: offset})


PAGINATIONS: dict[str, type[NoPagination]] = {
    "none": NoPagination,
    "next_link": NextLinkPagination,
    "cursor": CursorPagination,
    "page_number": PageNumberPagination,
    "offset": OffsetPagination,
}


@dataclass(frozen=True)
class Incremental:
    cursor_param: str
    cursor_field: str | None = None  # unset: whatever the pipeline's incremental_key is


@dataclass(frozen=True)
class Endpoint:
    """One declared endpoint, validated."""

    name: str
    path: str
    params: Mapping[str, Any]
    data_path: str
    pagination: NoPagination
    incremental: Incremental | None
    window: api_config.WindowFilter | None
    schema: pa.Schema | None


class RestApiSource(Source):
    """Tables from a JSON REST API; see the module docstring for the config."""

    # Retry policy of every request; tests shorten it.
    backoff: Backoff = Backoff()
    config_model = api_config.RestApiConfig
    settings: api_config.RestApiConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.base_url = self.settings.base_url
        self.headers, self.auth, self.credential_fields = self._authentication()
        self.requests_per_second = self.settings.requests_per_second
        self.endpoints = {
            name: self._endpoint(name, spec) for name, spec in self.settings.endpoints.items()
        }

    # The Source contract.

    def check(self) -> str:
        endpoint = next(iter(self.endpoints.values()))
        page = self._first_page(endpoint)
        return f"GET {endpoint.path} answered with {len(page.records)} record(s)"

    def discover(self) -> list[TableSchema]:
        return [
            TableSchema(endpoint.name, endpoint.schema or self._sample(endpoint))
            for endpoint in self.endpoints.values()
        ]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        endpoint = self._table(table)
        request = PageRequest(endpoint.path, endpoint.params)
        if incremental_key is not None and cursor is not None:
            request = request.with_params(**self._cursor_param(endpoint, incremental_key, cursor))
        reader = self._reader(endpoint, self._records(endpoint, request))
        if incremental_key is None:
            return reader
        if not reader.schema.names:
            # Nothing new and nothing declared: the key column alone lets the extract end
            # with zero rows instead of failing for a column it cannot see.
            return pa.RecordBatchReader.from_batches(
                pa.schema([(incremental_key, pa.string())]), []
            )
        if cursor is None or incremental_key not in reader.schema.names:
            return reader  # Source.extract names a missing key column
        return rows_since(reader, incremental_key, cursor, self.connection)

    def narrowed(self, table: str, window: Window) -> pa.RecordBatchReader | None:
        """The window's bounds as the endpoint's `window` parameters, if it filters on the
        partition column."""
        endpoint = self._table(table)
        pushdown = endpoint.window
        if pushdown is None or pushdown.field not in (None, window.column):
            return None
        start, end = formatted_bounds(window, pushdown.format)
        params = {pushdown.start_param: start}
        if pushdown.end_param:
            params[pushdown.end_param] = end
        request = PageRequest(endpoint.path, endpoint.params).with_params(**params)
        return self._reader(endpoint, self._records(endpoint, request))

    # Config.

    def _authentication(self) -> tuple[dict[str, str], httpx.Auth | None, str]:
        """Headers, httpx auth and the fields to blame on a 401, for `auth_type`.

        The config model has checked that the credentials auth_type needs are set.
        """
        settings = self.settings
        headers = dict(settings.headers)
        if settings.auth_type == "none":
            return headers, None, "auth_type and headers"
        if settings.auth_type == "basic":
            auth = httpx.BasicAuth(str(settings.username), str(settings.password))
            return headers, auth, "username and password"
        key = str(settings.api_key)
        if settings.auth_type == "bearer":
            return {**headers, "Authorization": f"Bearer {key}"}, None, "api_key"
        if settings.api_key_param:
            return headers, _QueryParamAuth(settings.api_key_param, key), "api_key"
        return {**headers, settings.api_key_header: key}, None, "api_key"

    def _endpoint(self, name: str, spec: api_config.Endpoint) -> Endpoint:
        pagination = spec.pagination.model_dump(exclude={"type"})
        incremental = spec.incremental
        return Endpoint(
            name=name,
            path=spec.path or f"/{name}",
            params=dict(spec.params),
            data_path=spec.data_path,
            pagination=PAGINATIONS[spec.pagination.type](**pagination),
            incremental=(
                Incremental(incremental.cursor_param, incremental.cursor_field)
                if incremental is not None
                else None
            ),
            window=spec.window,
            schema=(
                pa.schema((column, parse_type(kind)) for column, kind in spec.schema_.items())
                if spec.schema_
                else None
            ),
        )

    def _table(self, table: str) -> Endpoint:
        if table not in self.endpoints:
            raise connection_error(
                self.connection,
                f"no endpoint {table!r}; declared endpoints are {', '.join(self.endpoints)}",
            )
        return self.endpoints[table]

    def _cursor_param(self, endpoint: Endpoint, key: str, cursor: Any) -> dict[str, Any]:
        """The query parameter that asks the API for records changed since the cursor."""
        incremental = endpoint.incremental
        if incremental is None:
            return {}  # the API cannot filter: read everything, filter with rows_since
        if incremental.cursor_field not in (None, key):
            raise connection_error(
                self.connection,
                f"endpoint {endpoint.name!r} filters on {incremental.cursor_field!r} "
                f"(incremental.cursor_field) but the pipeline's incremental_key is {key!r}; "
                "make them the same",
            )
        value = cursor.isoformat() if isinstance(cursor, dt.date) else cursor
        return {incremental.cursor_param: value}

    # Fetching.

    def _client(self) -> httpx.Client:
        return api_client(
            self.connection,
            self.base_url,
            headers=self.headers,
            auth=self.auth,
            requests_per_second=self.requests_per_second,
            backoff=self.backoff,
            credential_fields=self.credential_fields,
        )

    def _first_page(self, endpoint: Endpoint) -> Page:
        request = endpoint.pagination.first(PageRequest(endpoint.path, endpoint.params))
        with self._client() as client:
            return self._fetch(client, endpoint, request)

    def _sample(self, endpoint: Endpoint) -> pa.Schema:
        """Column types from the first page's records."""
        return infer_schema([flatten(record) for record in self._first_page(endpoint).records])

    def _records(self, endpoint: Endpoint, request: PageRequest) -> Iterator[Record]:
        """Every page's records in order, one page in memory at a time.

        Stops at an empty page, at the last page, and (the loop guard) at a request already
        made or a page identical to the one before, as from an API ignoring the page param.
        """
        next_request: PageRequest | None = endpoint.pagination.first(request)
        seen: set[Any] = set()
        previous: list[Record] = []
        with self._client() as client:
            while next_request is not None:
                if next_request.key() in seen:
                    self._warn_repeated(endpoint)
                    return
                seen.add(next_request.key())
                page = self._fetch(client, endpoint, next_request)
                if not page.records:
                    return
                if page.records == previous:
                    self._warn_repeated(endpoint)
                    return
                yield from page.records
                previous = page.records
                next_request = endpoint.pagination.next(page)

    def _warn_repeated(self, endpoint: Endpoint) -> None:
        log.warning(
            "connection %r: endpoint %r repeated a page; stopping there (check its pagination)",
            self.connection,
            endpoint.name,
        )

    def _fetch(self, client: httpx.Client, endpoint: Endpoint, request: PageRequest) -> Page:
        self._check_origin(endpoint, request)
        # httpx replaces a URL's query with any params given, even none: a next link
        # (which carries its own query) must be sent without them.
        response = client.get(request.url, params=dict(request.params) or None)
        where = f"GET {response.request.url.path}"
        try:
            body = response.json()
        except ValueError:
            raise connection_error(
                self.connection,
                f"endpoint {endpoint.name!r}: {where} did not answer with JSON; "
                "check base_url and the endpoint's path",
            ) from None
        return Page(request, response, body, self._page_records(endpoint, body, where))

    def _check_origin(self, endpoint: Endpoint, request: PageRequest) -> None:
        """Refuse next links to another host: they would receive our credentials."""
        url, base = httpx.URL(request.url), httpx.URL(self.base_url)
        if url.is_absolute_url and (url.scheme, url.host, url.port) != (
            base.scheme,
            base.host,
            base.port,
        ):
            raise connection_error(
                self.connection,
                f"endpoint {endpoint.name!r}: the next-page link points to {url.host}, not "
                f"{base.host}; not following it, so credentials never leave base_url's host",
            )

    def _page_records(self, endpoint: Endpoint, body: Any, where: str) -> list[Record]:
        path = endpoint.data_path
        try:
            records = dig(body, path)
        except LookupFailed as error:
            raise self._data_path_error(endpoint, where, str(error)) from None
        if records is None:
            return []  # some APIs send null rather than [] for an empty page
        if not isinstance(records, list):
            keys = f" (keys: {', '.join(records)})" if isinstance(records, dict) else ""
            found = f"{_json_kind(records)}{keys}, not a list"
            raise self._data_path_error(endpoint, where, found)
        if not all(isinstance(record, dict) for record in records):
            raise self._data_path_error(endpoint, where, "a list of non-objects")
        return records

    def _data_path_error(self, endpoint: Endpoint, where: str, problem: str) -> ConnectorError:
        return connection_error(
            self.connection,
            f"endpoint {endpoint.name!r}: data_path {endpoint.data_path!r} does not lead to a "
            f"list of records in the response to {where} ({problem}); fix "
            f"endpoints.{endpoint.name}.data_path",
        )

    # Converting.

    def _reader(self, endpoint: Endpoint, records: Iterator[Record]) -> pa.RecordBatchReader:
        """Records as batches: with sampled types, or cast to the declared schema."""
        if endpoint.schema is None:
            return to_batches(records, self.connection, endpoint.name)
        # JSON carries dates, timestamps and decimals as text or floats, which Arrow will
        # not take as those types directly; everything goes through text and is cast.
        schema = endpoint.schema
        as_text = pa.schema((name, pa.string()) for name in schema.names)
        texts = to_batches(map(_as_text, records), self.connection, endpoint.name, as_text)
        batches = (self._cast(endpoint.name, schema, batch) for batch in texts)
        return pa.RecordBatchReader.from_batches(schema, batches)

    def _cast(self, table: str, schema: pa.Schema, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A batch of text columns as the declared types, naming a column that will not fit."""
        columns = []
        for column, target in zip(batch.columns, schema, strict=True):
            try:
                columns.append(column.cast(target.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise connection_error(
                    self.connection,
                    f"endpoint {table!r}: column {target.name!r} has a value that is not "
                    f"{target.type} ({str(error).splitlines()[0]}); fix its type in "
                    f"endpoints.{table}.schema",
                ) from None
        return pa.RecordBatch.from_arrays(columns, schema=schema)


class _QueryParamAuth(httpx.Auth):
    """Adds the API key as a query parameter to every request, next links included."""

    def __init__(self, param: str, key: str) -> None:
        self._param = param
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.url = request.url.copy_merge_params({self._param: self._key})
        yield request


def _as_text(record: Record) -> Record:
    """A record's values as text (JSON text for numbers and booleans), nulls kept."""
    return {
        key: value if value is None or isinstance(value, str) else json.dumps(value)
        for key, value in flatten(record).items()
    }
