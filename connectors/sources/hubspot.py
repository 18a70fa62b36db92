"""HubSpot as a source, through the CRM v3 API.

Connection config: `access_token` (a private-app or OAuth token, sent as a Bearer token),
`base_url` (https://api.hubapi.com), `requests_per_second` (5: the search endpoints' limit),
`page_size` (100, the list endpoint's maximum), `properties` (per object, a list of property
names replacing the defaults below) and `search_result_cap` (10000, HubSpot's search limit;
lower only to test windowing).

Tables: contacts, companies, deals and tickets (columns id, createdAt, updatedAt, archived and
one text column per requested property; date properties become timestamps), and owners.

A full read pages through `GET /crm/v3/objects/{object}`. An incremental read, on the
object's last-modified property (`lastmodifieddate` for contacts, `hs_lastmodifieddate` for
the others), uses the search endpoint sorted by that property. Search stops at 10,000 results
per query, so a read that reaches the cap starts a new query from the last modified time it
saw, skipping the records it already passed on at exactly that time. Owners have no
modified-date filter and are few, so they are read in full only.

A partition on one of an object's date properties (createdate, closedate, the modified one)
is a search with a GTE and an LT filter on it, windowed past the cap the same way; other
columns (createdAt, updatedAt too, which imports can set apart from the properties) are
filtered after a full read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyarrow as pa

from connectors.base import Source, TableSchema, Window, connection_error
from connectors.config.hubspot import HubSpotConfig
from connectors.shared.http import api_client
from connectors.shared.records import as_utc, to_batches

DEFAULT_BASE_URL = "https://api.hubapi.com"

# The last-modified property of each CRM object: the incremental key and search filter.
MODIFIED_PROPERTY: dict[str, str] = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
    "tickets": "hs_lastmodifieddate",
}
DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("email", "firstname", "lastname", "phone", "company", "lifecyclestage",
                 "hubspot_owner_id", "createdate"),
    "companies": ("name", "domain", "industry", "city", "country", "phone",
                  "hubspot_owner_id", "createdate"),
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate",
              "hubspot_owner_id", "createdate"),
    "tickets": ("subject", "content", "hs_pipeline", "hs_pipeline_stage",
                "hs_ticket_priority", "hubspot_owner_id", "createdate"),
}  # fmt: skip
# Default properties holding dates, typed as timestamps; any other property stays text, as
# HubSpot sends every property value as a string.
DATE_PROPERTIES = frozenset({"createdate", "closedate", "lastmodifieddate", "hs_lastmodifieddate"})

TIME = pa.timestamp("us", tz="UTC")
RECORD_COLUMNS = [
    ("id", pa.string()), ("createdAt", TIME), ("updatedAt", TIME), ("archived", pa.bool_()),
]  # fmt: skip
OWNERS_SCHEMA = pa.schema([
    *RECORD_COLUMNS, ("email", pa.string()),
    ("firstName", pa.string()), ("lastName", pa.string()), ("userId", pa.int64()),
    ("teams", pa.string()),
])  # fmt: skip


@dataclass
class SearchWindow:
    """One search query's progress: how many results it returned and where it ended."""

    start_ms: int
    count: int = 0
    last_ms: int | None = None
    ids_at_last: set[str] = field(default_factory=set)
    capped: bool = False

    def note(self, record_id: str, modified_ms: int) -> None:
        self.count += 1
        if modified_ms != self.last_ms:
            self.last_ms, self.ids_at_last = modified_ms, set()
        self.ids_at_last.add(record_id)


class HubSpotSource(Source):
    """HubSpot CRM objects (contacts, companies, deals, tickets) and owners."""

    offline_discovery = True
    config_model = HubSpotConfig
    settings: HubSpotConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.access_token = self.settings.access_token
        self.base_url = (self.settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.requests_per_second = self.settings.requests_per_second
        self.page_size = self.settings.page_size
        self.search_result_cap = self.settings.search_result_cap
        self.properties = self._properties(self.settings.properties)

    def check(self) -> str:
        with self._client() as http:
            account = http.get("/account-info/v3/details").json()
        return f"HubSpot account {account.get('portalId')} reachable"

    def discover(self) -> list[TableSchema]:
        objects = [TableSchema(name, self._object_schema(name)) for name in MODIFIED_PROPERTY]
        return [*objects, TableSchema("owners", OWNERS_SCHEMA)]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        if table == "owners":
            if incremental_key is not None:
                raise connection_error(
                    self.connection,
                    "table 'owners' can only be read in full; set sync_mode: full for it",
                )
            schema, records = OWNERS_SCHEMA, self._owners()
        else:
            schema = self._object_schema(table)
            records = self._objects(table, incremental_key, cursor)
        return self._batches(table, schema, records)

    def narrowed(self, table: str, window: Window) -> pa.RecordBatchReader | None:
        """A partition on a date property of a CRM object is searched for."""
        if table == "owners" or window.column not in self._date_properties(table):
            return None
        start, end = (_epoch_ms(bound) for bound in (window.start, window.end))
        records = self._search(table, window.column, start, end)
        return self._batches(table, self._object_schema(table), records)

    def _batches(
        self, table: str, schema: pa.Schema, records: Iterator[dict[str, Any]]
    ) -> pa.RecordBatchReader:
        rows = (_row(record, schema) for record in records)
        return to_batches(rows, self.connection, table, schema)

    def _date_properties(self, table: str) -> list[str]:
        """The requested properties of an object that hold dates (its search filters)."""
        return [name for name in self._object_schema(table).names if name in DATE_PROPERTIES]

    def _objects(
        self, table: str, incremental_key: str | None, cursor: Any
    ) -> Iterator[dict[str, Any]]:
        """A CRM object's records: all of them, or those modified since the cursor."""
        modified = MODIFIED_PROPERTY[table]
        if incremental_key not in (None, modified):
            raise connection_error(
                self.connection,
                f"table {table!r} can be read incrementally only on {modified}; "
                f"set incremental_key: {modified}",
            )
        if incremental_key is None or cursor is None:
            return self._list(table)
        return self._search(table, modified, _epoch_ms(cursor))

    def _list(self, table: str) -> Iterator[dict[str, Any]]:
        """Every record of an object, from the list endpoint."""
        params = {"limit": self.page_size, "properties": ",".join(self.properties[table])}
        yield from self._get_pages(f"/crm/v3/objects/{table}", params)

    def _owners(self) -> Iterator[dict[str, Any]]:
        yield from self._get_pages("/crm/v3/owners", {"limit": self.page_size})

    def _get_pages(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        with self._client() as http:
            after = None
            while True:
                query = {**params, "after": after} if after else params
                page = http.get(path, params=query).json()
                yield from page["results"]
                after = _next_after(page)
                if after is None:
                    return

    def _search(
        self, table: str, prop: str, since_ms: int, until_ms: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Records whose date property `prop` is at or after `since_ms` (and before
        `until_ms`), in windows of at most the search cap."""
        start, already_read = since_ms, frozenset[str]()
        with self._client() as http:
            while True:
                window = SearchWindow(start)
                yield from self._search_window(http, table, prop, window, already_read, until_ms)
                if not window.capped:
                    return
                if window.last_ms is None or window.last_ms == start:
                    raise connection_error(
                        self.connection,
                        f"table {table!r}: more than {self.search_result_cap} records share "
                        f"one {prop} value, which HubSpot search cannot "
                        "page past; run a full sync of this table",
                    )
                start, already_read = window.last_ms, frozenset(window.ids_at_last)

    def _search_window(
        self,
        http: httpx.Client,
        table: str,
        prop: str,
        window: SearchWindow,
        already_read: frozenset[str],
        until_ms: int | None,
    ) -> Iterator[dict[str, Any]]:
        """One search query (its filters are ANDed), paged; stops early at the search cap."""
        bounds = [("GTE", window.start_ms), *([("LT", until_ms)] if until_ms is not None else [])]
        body: dict[str, Any] = {
            "filterGroups": [
                {"filters": [
                    {"propertyName": prop, "operator": operator, "value": str(value)}
                    for operator, value in bounds
                ]}
            ],
            "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
            "properties": list(self.properties[table]),
            "limit": self.page_size,
        }  # fmt: skip
        path = f"/crm/v3/objects/{table}/search"
        while True:
            page = http.post(path, json=body).json()
            for record in page["results"]:
                window.note(record["id"], _epoch_ms(record["properties"][prop]))
                if record["id"] not in already_read:
                    yield record
            after = _next_after(page)
            if after is None:
                return
            if window.count >= self.search_result_cap:
                window.capped = True
                return
            body["after"] = after

    def _client(self) -> httpx.Client:
        return api_client(
            self.connection,
            self.base_url,
            headers={"Authorization": f"Bearer {self.access_token}"},
            requests_per_second=self.requests_per_second,
            credential_fields="access_token (and its scopes)",
        )

    def _properties(self, configured: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
        """Requested properties per object; the modified property is always among them.

        The config model has already refused objects other than MODIFIED_PROPERTY's.
        """
        chosen = {**DEFAULT_PROPERTIES, **{k: _names(v) for k, v in configured.items()}}
        return {
            table: tuple(dict.fromkeys([*names, MODIFIED_PROPERTY[table]]))
            for table, names in chosen.items()
        }

    def _object_schema(self, table: str) -> pa.Schema:
        if table not in MODIFIED_PROPERTY:
            raise connection_error(
                self.connection,
                f"unknown table {table!r}; use one of {', '.join([*MODIFIED_PROPERTY, 'owners'])}",
            )
        properties = [
            (name, TIME if name in DATE_PROPERTIES else pa.string())
            for name in self.properties[table]
        ]
        return pa.schema([*RECORD_COLUMNS, *properties])


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Property names from a list, or from one comma-separated string as HubSpot writes them."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(name.strip() for name in items if name.strip())


def _next_after(page: Mapping[str, Any]) -> str | None:
    return ((page.get("paging") or {}).get("next") or {}).get("after")


def _row(record: Mapping[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """A CRM object as one flat row: its own fields, then each property as a column."""
    values = {**(record.get("properties") or {}), **record}
    return {
        column.name: _timestamp(values.get(column.name))
        if column.type == TIME
        else values.get(column.name)
        for column in schema
    }


def _timestamp(value: Any) -> dt.datetime | None:
    """HubSpot's ISO 8601 dates (always UTC, with a Z) as datetimes; blank means unset."""
    return dt.datetime.fromisoformat(value) if value else None


def _epoch_ms(value: Any) -> int:
    """A cursor or date property as epoch milliseconds, the unit search filters take."""
    # Integer division floors, so a GTE filter on the result still includes the cursor.
    return (as_utc(value) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
