"""Google Ads as a source: campaigns, ad groups, ads and daily campaign metrics.

Every table is one GAQL query sent to the REST `googleAds:search` endpoint and read page by
page (`nextPageToken`; the API fixes the page size at 10,000 rows). Result rows arrive
nested (`{"campaign": {"id": "1"}, "metrics": {"clicks": "3"}}`) and are flattened to
columns such as `campaign_id` and `metrics_clicks`, with int64 values (which the REST API
sends as strings) converted to integers.

Incremental sync exists only for `campaign_daily_metrics`, on `date`, and it is a lookback
re-read: Google Ads keeps revising recent days (late conversions, invalid-click credits),
so a run with a cursor re-reads `segments.date BETWEEN cursor - lookback_days AND today`.
Load it with upsert on (campaign_id, date) so the re-read days replace the earlier rows;
leave primary_key unset so the rows of the cursor day itself are re-loaded too. A partition
of it by day, week or month on `date` reads `segments.date BETWEEN` the window's first and
last day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow as pa

from connectors.base import Source, TableSchema, Window, connection_error
from connectors.config.google_ads import DEFAULT_HISTORY_DAYS, GoogleAdsConfig
from connectors.shared.http import RefreshingTokenAuth, api_client
from connectors.shared.records import as_date, to_batches
from connectors.shared.windows import report_days

DEFAULT_BASE_URL = "https://googleads.googleapis.com"
API_CREDENTIALS = "developer_token and the OAuth client"
TOKEN_CREDENTIALS = "client_id, client_secret and refresh_token"


@dataclass(frozen=True)
class Column:
    """One selected GAQL field and the column it becomes."""

    field: str  # GAQL path, e.g. metrics.cost_micros
    type: pa.DataType
    name: str = ""

    @property
    def column(self) -> str:
        # Segments are plain dimensions (date, device): `date` reads better than segments_date.
        return self.name or self.field.removeprefix("segments.").replace(".", "_")

    @property
    def json_path(self) -> tuple[str, ...]:
        """Where the REST response puts the field: the same path in lowerCamelCase."""
        return tuple(_camel(part) for part in self.field.split("."))


@dataclass(frozen=True)
class AdsTable:
    """A table offered by the connector: the GAQL resource and fields it reads."""

    resource: str
    columns: tuple[Column, ...]
    date_segmented: bool = False

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(c.column, c.type) for c in self.columns])

    def query(self, since: dt.date | None, until: dt.date) -> str:
        fields = ", ".join(c.field for c in self.columns)
        gaql = f"SELECT {fields} FROM {self.resource}"
        if self.date_segmented and since is not None:
            gaql += f" WHERE segments.date BETWEEN '{since.isoformat()}' AND '{until.isoformat()}'"
        return gaql

    def row(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """One flattened row, with values converted to the column types."""
        return {c.column: _convert(_lookup(result, c.json_path), c.type) for c in self.columns}


_STR, _INT, _FLOAT = pa.string(), pa.int64(), pa.float64()
TABLES: dict[str, AdsTable] = {
    "campaigns": AdsTable(
        "campaign",
        (
            Column("campaign.id", _INT),
            Column("campaign.name", _STR),
            Column("campaign.status", _STR),
            Column("campaign.advertising_channel_type", _STR),
            Column("campaign.start_date", pa.date32()),
            Column("campaign.end_date", pa.date32()),
            Column("campaign.campaign_budget", _STR),
        ),
    ),
    "ad_groups": AdsTable(
        "ad_group",
        (
            Column("ad_group.id", _INT),
            Column("ad_group.name", _STR),
            Column("ad_group.status", _STR),
            Column("ad_group.type", _STR),
            Column("ad_group.cpc_bid_micros", _INT),
            Column("campaign.id", _INT),
        ),
    ),
    "ads": AdsTable(
        "ad_group_ad",
        (
            Column("ad_group_ad.ad.id", _INT, "ad_id"),
            Column("ad_group_ad.ad.name", _STR, "ad_name"),
            Column("ad_group_ad.ad.type", _STR, "ad_type"),
            Column("ad_group_ad.ad.final_urls", _STR, "ad_final_urls"),
            Column("ad_group_ad.status", _STR, "status"),
            Column("ad_group.id", _INT),
            Column("campaign.id", _INT),
        ),
    ),
    "campaign_daily_metrics": AdsTable(
        "campaign",
        (
            Column("segments.date", pa.date32()),
            Column("campaign.id", _INT),
            Column("campaign.name", _STR),
            Column("metrics.impressions", _INT),
            Column("metrics.clicks", _INT),
            Column("metrics.cost_micros", _INT),
            Column("metrics.conversions", _FLOAT),
        ),
        date_segmented=True,
    ),
}


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _lookup(result: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = result
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _convert(value: Any, arrow_type: pa.DataType) -> Any:
    """A JSON value as the column's type: proto3 JSON writes int64 as a string."""
    if value is None or isinstance(value, list | dict):
        return value  # lists (final_urls) become JSON text in to_batches
    if arrow_type == _INT:
        return int(value)
    if arrow_type == _FLOAT:
        return float(value)
    if pa.types.is_date32(arrow_type):
        return dt.date.fromisoformat(value)
    return value


class RefreshTokenAuth(RefreshingTokenAuth):
    """Bearer access tokens minted from an OAuth refresh token.

    Each token request opens its own short-lived `api_client`, so it is rate-limited and
    retried like the API calls and fails with the same one-line errors.
    """

    def __init__(
        self,
        connection: str,
        token_uri: str,
        form: Mapping[str, str],
        requests_per_second: float,
    ) -> None:
        super().__init__()
        self._connection = connection
        self._token_uri = token_uri
        self._form = dict(form)
        self._requests_per_second = requests_per_second

    def fetch_token(self) -> tuple[str, float]:
        with api_client(
            self._connection,
            "",
            requests_per_second=self._requests_per_second,
            credential_fields=TOKEN_CREDENTIALS,
        ) as http:
            body = http.post(
                self._token_uri, data={**self._form, "grant_type": "refresh_token"}
            ).json()
        return body["access_token"], float(body.get("expires_in", 3600))


class GoogleAdsSource(Source):
    """Reads GAQL reports of one Google Ads customer account."""

    offline_discovery = True
    config_model = GoogleAdsConfig
    settings: GoogleAdsConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.customer_id = self.settings.customer_id  # digits only: the model drops dashes
        self.api_version = self.settings.api_version
        self.lookback_days = self.settings.lookback_days
        self.requests_per_second = self.settings.requests_per_second

    def check(self) -> str:
        query = "SELECT customer.id, customer.descriptive_name FROM customer LIMIT 1"
        with _AdsSession(self) as session:
            results = session.send(query, None).get("results") or [{}]
        name = _lookup(results[0], ("customer", "descriptiveName")) or "(unnamed)"
        return f"connection {self.connection!r}: Google Ads customer {self.customer_id} ({name})"

    def discover(self) -> list[TableSchema]:
        return [TableSchema(name, table.schema) for name, table in TABLES.items()]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        spec = self._table(table)
        query = spec.query(self._since(table, spec, incremental_key, cursor), dt.date.today())
        return self._rows(table, spec, query)

    def narrowed(self, table: str, window: Window) -> pa.RecordBatchReader | None:
        """A partition of a date-segmented table on `date` asks only for the window's days
        (BETWEEN is inclusive: its first to its last)."""
        spec = self._table(table)
        if not spec.date_segmented or window.column != "date":
            return None
        return self._rows(table, spec, spec.query(*report_days(window, self.connection)))

    def _rows(self, table: str, spec: AdsTable, query: str) -> pa.RecordBatchReader:
        rows = (spec.row(result) for result in self._results(query))
        return to_batches(rows, self.connection, table, spec.schema)

    def _table(self, table: str) -> AdsTable:
        if table not in TABLES:
            raise connection_error(
                self.connection,
                f"google_ads has no table {table!r}; use one of {', '.join(TABLES)}",
            )
        return TABLES[table]

    def _since(
        self, table: str, spec: AdsTable, incremental_key: str | None, cursor: Any
    ) -> dt.date | None:
        """The first day to read: a lookback before the cursor, or the history start."""
        if not spec.date_segmented:
            if incremental_key is not None:
                raise connection_error(
                    self.connection,
                    f"table {table!r} supports only full sync; "
                    "incremental sync is available for campaign_daily_metrics on date",
                )
            return None
        if incremental_key not in (None, "date"):
            raise connection_error(
                self.connection,
                f"table {table!r} is incremental only on date; set incremental_key: date",
            )
        if cursor is not None:
            return as_date(cursor) - dt.timedelta(days=self.lookback_days)
        if self.settings.start_date is not None:
            return self.settings.start_date
        return dt.date.today() - dt.timedelta(days=DEFAULT_HISTORY_DAYS)

    @cached_property
    def _auth(self) -> RefreshTokenAuth:
        """Made on first use and kept, so every read and check shares one access token."""
        return RefreshTokenAuth(
            self.connection,
            self.settings.token_uri,
            {
                "client_id": self.settings.client_id,
                "client_secret": self.settings.client_secret,
                "refresh_token": self.settings.refresh_token,
            },
            self.requests_per_second,
        )

    def _results(self, query: str) -> Iterator[Mapping[str, Any]]:
        """Every result row of a query, one page in memory at a time."""
        with _AdsSession(self) as session:
            page_token: str | None = None
            while True:
                page = session.send(query, page_token)
                yield from page.get("results", ())
                page_token = page.get("nextPageToken")
                if not page_token:
                    return


class _AdsSession:
    """An open API client, with the source's token auth, for the queries of one read or check."""

    def __init__(self, source: GoogleAdsSource) -> None:
        self._source = source
        settings = source.settings
        headers = {"developer-token": settings.developer_token}
        if settings.login_customer_id:
            headers["login-customer-id"] = settings.login_customer_id
        self._client = api_client(
            source.connection,
            settings.base_url or DEFAULT_BASE_URL,
            headers=headers,
            auth=source._auth,
            requests_per_second=source.requests_per_second,
            credential_fields=API_CREDENTIALS,
        )
        self._path = f"/{source.api_version}/customers/{source.customer_id}/googleAds:search"

    def __enter__(self) -> _AdsSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def send(self, query: str, page_token: str | None) -> dict[str, Any]:
        """One page of results (pageSize is fixed by the API, so it is never sent)."""
        body = {"query": query, **({"pageToken": page_token} if page_token else {})}
        return self._client.post(self._path, json=body).json()
