"""Shopify as a source, through the REST Admin API.

Connection config: `shop_domain` (mystore.myshopify.com), `access_token` (sent as
X-Shopify-Access-Token), `api_version` ("2024-10"), `base_url` (https://{shop_domain}),
`requests_per_second` (2) and `page_size` (250, Shopify's maximum).

Tables: orders (every status), customers, products, inventory_items and transactions.
Columns are a fixed, documented set per table so a table's schema never depends on which
fields the first page happened to carry; nested objects (line items, addresses, variants)
arrive as JSON text and money as decimals.

Incremental reads: orders, customers and products on `updated_at` (or `created_at`), sent as
Shopify's `updated_at_min` filter; inventory_items on `updated_at`, filtered here because
Shopify's inventory endpoint has no date filter; transactions on `created_at`, found through
the orders updated since the cursor (a new transaction always updates its order).
Without the read_all_orders scope Shopify only returns the last 60 days of orders.

A partition on one of those columns sends its window as `<column>_min` and `<column>_max`
(both inclusive at Shopify: rows at the window's end are dropped here); transactions get
only the orders' `updated_at_min`, as an order is updated again after its transactions.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow as pa

from connectors.base import (
    Source,
    TableSchema,
    Window,
    connection_error,
    rows_since,
)
from connectors.config.shopify import ShopifyConfig
from connectors.shared.http import api_client
from connectors.shared.records import as_utc, to_batches

# The inventory_items endpoint accepts at most 100 ids per request.
INVENTORY_IDS_PER_REQUEST = 100

_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')

ID = pa.int64()
TEXT = pa.string()
FLAG = pa.bool_()
TIME = pa.timestamp("us", tz="UTC")
# Money arrives as strings such as "19.99"; four places covers the three-decimal currencies.
MONEY = pa.decimal128(20, 4)


@dataclass(frozen=True)
class ShopifyTable:
    """A table: its columns, and the incremental keys Shopify can filter it on."""

    schema: pa.Schema
    incremental_keys: tuple[str, ...]


TABLES: dict[str, ShopifyTable] = {
    "orders": ShopifyTable(
        pa.schema([
            ("id", ID), ("name", TEXT), ("email", TEXT), ("financial_status", TEXT),
            ("fulfillment_status", TEXT), ("currency", TEXT), ("total_price", MONEY),
            ("subtotal_price", MONEY), ("total_tax", MONEY), ("total_discounts", MONEY),
            ("customer", TEXT), ("line_items", TEXT), ("shipping_address", TEXT),
            ("billing_address", TEXT), ("tags", TEXT), ("test", FLAG), ("created_at", TIME),
            ("updated_at", TIME), ("processed_at", TIME), ("closed_at", TIME),
            ("cancelled_at", TIME),
        ]),
        ("updated_at", "created_at"),
    ),
    "customers": ShopifyTable(
        pa.schema([
            ("id", ID), ("email", TEXT), ("first_name", TEXT), ("last_name", TEXT),
            ("phone", TEXT), ("state", TEXT), ("verified_email", FLAG), ("tax_exempt", FLAG),
            ("currency", TEXT), ("tags", TEXT), ("note", TEXT), ("default_address", TEXT),
            ("addresses", TEXT), ("created_at", TIME), ("updated_at", TIME),
        ]),
        ("updated_at", "created_at"),
    ),
    "products": ShopifyTable(
        pa.schema([
            ("id", ID), ("title", TEXT), ("handle", TEXT), ("vendor", TEXT),
            ("product_type", TEXT), ("status", TEXT), ("tags", TEXT), ("body_html", TEXT),
            ("variants", TEXT), ("options", TEXT), ("images", TEXT), ("created_at", TIME),
            ("updated_at", TIME), ("published_at", TIME),
        ]),
        ("updated_at", "created_at"),
    ),
    "inventory_items": ShopifyTable(
        pa.schema([
            ("id", ID), ("sku", TEXT), ("cost", MONEY), ("tracked", FLAG),
            ("requires_shipping", FLAG), ("country_code_of_origin", TEXT),
            ("province_code_of_origin", TEXT), ("harmonized_system_code", TEXT),
            ("created_at", TIME), ("updated_at", TIME),
        ]),
        ("updated_at",),
    ),
    "transactions": ShopifyTable(
        pa.schema([
            ("id", ID), ("order_id", ID), ("parent_id", ID), ("kind", TEXT), ("gateway", TEXT),
            ("status", TEXT), ("message", TEXT), ("amount", MONEY), ("currency", TEXT),
            ("test", FLAG), ("authorization", TEXT), ("error_code", TEXT),
            ("source_name", TEXT), ("created_at", TIME), ("processed_at", TIME),
        ]),
        ("created_at",),
    ),
}  # fmt: skip


class ShopifySource(Source):
    """A Shopify store's orders, customers, products, inventory items and transactions."""

    offline_discovery = True
    config_model = ShopifyConfig
    settings: ShopifyConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.access_token = self.settings.access_token
        self.api_version = self.settings.api_version
        self.base_url = (self.settings.base_url or f"https://{self._shop_domain()}").rstrip("/")
        self.requests_per_second = self.settings.requests_per_second
        self.page_size = self.settings.page_size

    def check(self) -> str:
        with self._client() as http:
            shop = self._get(http, "shop", {}).json()["shop"]
        return f"Shopify shop {shop.get('name')!r} reachable (API {self.api_version})"

    def discover(self) -> list[TableSchema]:
        return [TableSchema(name, table.schema) for name, table in TABLES.items()]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        spec = self._table(table)
        if incremental_key is not None and incremental_key not in spec.incremental_keys:
            raise connection_error(
                self.connection,
                f"table {table!r} can be read incrementally only on "
                f"{', '.join(spec.incremental_keys)}; set incremental_key to one of them",
            )
        since = as_utc(cursor) if incremental_key is not None and cursor is not None else None
        reader = self._reader(table, self._records(table, incremental_key, since))
        if since is not None:
            # Also the filter for the tables Shopify cannot filter, and a guard against its
            # whole-second precision: only rows at or after the cursor leave here.
            reader = rows_since(reader, incremental_key, since, self.connection)
        return reader

    def narrowed(self, table: str, window: Window) -> pa.RecordBatchReader | None:
        """A partition on a column Shopify filters asks for its window."""
        if window.column not in self._table(table).incremental_keys:
            return None
        start, end = as_utc(window.start), as_utc(window.end)
        return self._reader(table, self._records(table, window.column, start, end))

    def _reader(self, table: str, records: Iterator[dict[str, Any]]) -> pa.RecordBatchReader:
        schema = self._table(table).schema
        typed = (_typed(record, schema) for record in records)
        return to_batches(typed, self.connection, table, schema)

    def _records(
        self,
        table: str,
        key: str | None,
        since: dt.datetime | None,
        until: dt.datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        with self._client() as http:
            if table == "inventory_items":
                yield from self._inventory_items(http)
            elif table == "transactions":
                # A transaction created after the cursor updated its order after it too (and
                # maybe again later: there is no upper bound on its order's updated_at).
                yield from self._transactions(http, _date_filter("updated_at", since))
            else:
                filters = _date_filter(key, since, until) if key is not None else {}
                if table == "orders":
                    filters["status"] = "any"  # Shopify lists only open orders by default
                yield from self._list(http, table, filters)

    def _list(
        self, http: httpx.Client, resource: str, filters: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        """Every record of a listing, following the Link header's page_info cursor."""
        params: dict[str, Any] = {**filters, "limit": self.page_size}
        while True:
            response = self._get(http, resource, params)
            yield from response.json()[resource]
            page_info = _next_page_info(response.headers.get("Link"))
            if page_info is None:
                return
            # Shopify rejects filters next to page_info: the cursor already carries them. Only
            # page_info is taken from the Link URL, so the token never goes to another host.
            params = {"limit": self.page_size, "page_info": page_info}

    def _inventory_items(self, http: httpx.Client) -> Iterator[dict[str, Any]]:
        """Inventory items can only be fetched by id, so the ids come from product variants."""
        ids = (
            variant["inventory_item_id"]
            for product in self._list(http, "products", {})
            for variant in product.get("variants") or ()
            if variant.get("inventory_item_id") is not None
        )
        for chunk in _chunks(ids, INVENTORY_IDS_PER_REQUEST):
            yield from self._list(http, "inventory_items", {"ids": ",".join(map(str, chunk))})

    def _transactions(
        self, http: httpx.Client, order_filters: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        """Transactions are listed per order (unpaged: an order has only a handful)."""
        for order in self._list(http, "orders", {**order_filters, "status": "any"}):
            path = f"orders/{order['id']}/transactions"
            yield from self._get(http, path, {}).json()["transactions"]

    def _get(self, http: httpx.Client, resource: str, params: Mapping[str, Any]) -> httpx.Response:
        return http.get(f"/admin/api/{self.api_version}/{resource}.json", params=params)

    def _client(self) -> httpx.Client:
        return api_client(
            self.connection,
            self.base_url,
            headers={"X-Shopify-Access-Token": self.access_token, "Accept": "application/json"},
            requests_per_second=self.requests_per_second,
            credential_fields="access_token (and its API scopes)",
        )

    def _table(self, table: str) -> ShopifyTable:
        if table not in TABLES:
            raise connection_error(
                self.connection, f"unknown table {table!r}; use one of {', '.join(TABLES)}"
            )
        return TABLES[table]

    def _shop_domain(self) -> str:
        # The model requires shop_domain whenever base_url is not set.
        domain = str(self.settings.shop_domain)
        # People paste the admin URL; the API wants just the host.
        return domain.removeprefix("https://").removeprefix("http://").strip("/")


def _date_filter(
    key: str, since: dt.datetime | None, until: dt.datetime | None = None
) -> dict[str, str]:
    """Shopify's inclusive `<key>_min` and `<key>_max` filters, in whole seconds (its
    precision): the minimum floored, the maximum (a window's end, whole hours) exact."""
    bounds = {"min": since.replace(microsecond=0) if since else None, "max": until}
    return {f"{key}_{side}": bound.isoformat() for side, bound in bounds.items() if bound}


def _next_page_info(link: str | None) -> str | None:
    """The page_info of the Link header's rel="next" URL, if there is a next page."""
    match = _NEXT_LINK.search(link or "")
    if match is None:
        return None
    values = parse_qs(urlsplit(match.group(1)).query).get("page_info")
    return values[0] if values else None


def _chunks(items: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _typed(record: Mapping[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """The schema's columns of a record, with timestamps and money parsed from text."""
    return {field.name: _value(record.get(field.name), field.type) for field in schema}


def _value(value: Any, kind: pa.DataType) -> Any:
    if value is None or value == "":
        return None
    if pa.types.is_timestamp(kind):
        return as_utc(value)
    if pa.types.is_decimal(kind):
        return decimal.Decimal(str(value))
    return value
