"""Stripe as a source, through the official `stripe` library.

Every table is one list endpoint (`GET /v1/<table>`), read page by page with `limit` and
`starting_after`; incremental reads add `created[gte]`. The library retries network errors,
409 and 5xx itself (`max_network_retries`); a plain 429 it does not retry, so that is done
here, after the delay the Retry-After header asks for. Error messages use the same wording
as the shared HTTP layer (`connectors.shared.http`) and never contain the API key.

Each table has a fixed Arrow schema (see TABLES), so discover() needs no request and an
empty table still has its columns. Fields outside the schema are not read.
"""

from __future__ import annotations

import calendar
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
import stripe

from connectors.base import ConnectorError, Source, TableSchema, Window, connection_error
from connectors.config.stripe import DEFAULT_BASE_URL, StripeConfig
from connectors.shared.http import Backoff, http_error, retry_after, shared_limiter
from connectors.shared.records import to_batches
from connectors.shared.windows import unix_seconds

NETWORK_RETRIES = 3
# The only field the list endpoints filter on, so the only possible incremental key.
INCREMENTAL_KEY = "created"

T = TypeVar("T")

_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "json": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "time": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class StripeTable:
    """A list endpoint's columns: name -> kind (a key of _TYPES)."""

    kinds: dict[str, str]

    @classmethod
    def parse(cls, columns: str) -> StripeTable:
        """Columns as `name:kind` words; a bare name is text."""
        pairs = (word.partition(":") for word in columns.split())
        return cls({name: kind or "text" for name, _, kind in pairs})

    @property
    def schema(self) -> pa.Schema:
        return pa.schema((name, _TYPES[kind]) for name, kind in self.kinds.items())

    def row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """One API object as a row of this table's columns."""
        return {name: _cell(record.get(name), kind) for name, kind in self.kinds.items()}


def _cell(value: Any, kind: str) -> Any:
    """Unix times become UTC timestamps and an expanded object in an id column its id.

    Objects and lists in json columns (and metadata) become JSON text later, in to_batches.
    """
    if value is None:
        return None
    if kind == "time":
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if kind == "text" and isinstance(value, Mapping) and "id" in value:
        return value["id"]
    return value


# The documented fields of each object (Stripe API reference), as `name:kind`. Columns that
# refer to another object (customer, charge, ...) hold its id, expanded or not.
TABLES: dict[str, StripeTable] = {
    name: StripeTable.parse(columns)
    for name, columns in {
        "charges": """
            id created:time amount:int amount_captured:int amount_refunded:int currency
            customer description invoice payment_intent payment_method balance_transaction
            status paid:bool captured:bool refunded:bool disputed:bool failure_code
            failure_message receipt_email receipt_url statement_descriptor livemode:bool
            billing_details:json payment_method_details:json outcome:json metadata:json
        """,
        "customers": """
            id created:time email name description phone currency balance:int
            delinquent:bool default_source invoice_prefix tax_exempt discount test_clock
            livemode:bool address:json shipping:json invoice_settings:json
            preferred_locales:json metadata:json
        """,
        "invoices": """
            id created:time customer subscription number status currency amount_due:int
            amount_paid:int amount_remaining:int subtotal:int total:int billing_reason
            collection_method description hosted_invoice_url invoice_pdf attempted:bool
            attempt_count:int period_start:time period_end:time due_date:time
            next_payment_attempt:time effective_at:time livemode:bool lines:json
            status_transitions:json metadata:json
        """,
        "subscriptions": """
            id created:time customer status currency collection_method
            cancel_at_period_end:bool billing_cycle_anchor:time start_date:time
            current_period_start:time current_period_end:time cancel_at:time
            canceled_at:time ended_at:time trial_start:time trial_end:time latest_invoice
            default_payment_method plan quantity:int discount livemode:bool items:json
            metadata:json
        """,
        "payment_intents": """
            id created:time amount:int amount_capturable:int amount_received:int currency
            customer description invoice latest_charge payment_method status capture_method
            confirmation_method receipt_email canceled_at:time cancellation_reason
            livemode:bool last_payment_error:json next_action:json
            payment_method_types:json metadata:json
        """,
        "products": """
            id created:time updated:time name description active:bool default_price type
            unit_label url statement_descriptor tax_code livemode:bool images:json
            metadata:json
        """,
        "prices": """
            id created:time product active:bool currency unit_amount:int unit_amount_decimal
            type billing_scheme lookup_key nickname tax_behavior tiers_mode livemode:bool
            recurring:json tiers:json metadata:json
        """,
        "disputes": """
            id created:time amount:int currency charge payment_intent reason status
            is_charge_refundable:bool livemode:bool balance_transactions:json
            evidence_details:json metadata:json
        """,
        "refunds": """
            id created:time amount:int currency charge payment_intent balance_transaction
            reason receipt_number status failure_reason description metadata:json
        """,
        # Balance transactions have no metadata in Stripe's API.
        "balance_transactions": """
            id created:time available_on:time amount:int fee:int net:int currency
            exchange_rate:float description reporting_category source status type
            fee_details:json
        """,
    }.items()
}

# Listing subscriptions skips canceled ones unless asked for every status.
_LIST_PARAMS: dict[str, dict[str, str]] = {"subscriptions": {"status": "all"}}


class StripeSource(Source):
    """The objects of one Stripe account, one table per list endpoint (see TABLES).

    Config: see StripeConfig. Tables sync in full or incrementally on `created`.
    """

    offline_discovery = True
    config_model = StripeConfig
    settings: StripeConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.base_url: str = (self.settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.page_size: int = self.settings.page_size
        self._limiter = shared_limiter(connection, self.settings.requests_per_second)
        self._backoff = Backoff()

    # The Source contract.

    def check(self) -> str:
        balance = self._call("/v1/balance", self._client.v1.balance.retrieve)
        return f"connected to Stripe ({'live' if balance.livemode else 'test'} mode)"

    def discover(self) -> list[TableSchema]:
        return [TableSchema(name, table.schema) for name, table in TABLES.items()]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        self._table(table)
        if incremental_key not in (None, INCREMENTAL_KEY):
            raise connection_error(
                self.connection,
                f"table {table!r} can sync incrementally only on {INCREMENTAL_KEY!r} (the "
                f"only filter of Stripe's list API); set incremental_key: {INCREMENTAL_KEY}",
            )
        created = None
        if incremental_key and cursor is not None:
            # `created` is whole seconds, so flooring the cursor keeps every row >= it.
            created = {"gte": calendar.timegm(cursor.utctimetuple())}
        return self._list(table, created)

    def narrowed(self, table: str, window: Window) -> pa.RecordBatchReader | None:
        """A partition on `created` is Stripe's own filter, `created[gte]` and `created[lt]`
        (partitions start on whole hours, so the bounds are whole seconds)."""
        if window.column != INCREMENTAL_KEY:
            return None
        self._table(table)
        bounds = (unix_seconds(b) for b in (window.start, window.end))
        return self._list(table, dict(zip(("gte", "lt"), bounds, strict=True)))

    def _list(self, table: str, created: dict[str, int] | None) -> pa.RecordBatchReader:
        """A table's objects, those `created` within the given bounds when there are some."""
        columns = self._table(table)
        params: dict[str, Any] = {"limit": self.page_size, **_LIST_PARAMS.get(table, {})}
        if created is not None:
            params["created"] = created
        rows = (columns.row(record) for record in self._objects(table, params))
        return to_batches(rows, self.connection, table, columns.schema)

    # Reading.

    def _table(self, table: str) -> StripeTable:
        if table not in TABLES:
            raise connection_error(
                self.connection, f"no table {table!r} in Stripe; use one of {', '.join(TABLES)}"
            )
        return TABLES[table]

    def _objects(self, table: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every object of a list endpoint, one page at a time."""
        service = getattr(self._client.v1, table)
        while True:
            page = self._call(f"/v1/{table}", partial(service.list, params=params))
            objects = [item.to_dict(for_json=True) for item in page.data]
            yield from objects
            if not page.has_more or not objects:
                return
            params = {**params, "starting_after": objects[-1]["id"]}

    @cached_property
    def _client(self) -> stripe.StripeClient:
        """Created on first use: discover() makes no request."""
        return stripe.StripeClient(
            self.settings.api_key,
            base_addresses={"api": self.base_url},
            max_network_retries=NETWORK_RETRIES,
        )

    # Requests and errors.

    def _call(self, path: str, request: Callable[[], T]) -> T:
        """One GET: rate-limited, a 429 retried after Retry-After, errors made clear."""
        attempt = 0
        while True:
            self._limiter.acquire()
            try:
                return request()
            except stripe.RateLimitError as error:
                attempt += 1
                if attempt >= self._backoff.attempts:
                    raise self._request_error(path, error) from None
                time.sleep(self._rate_limit_delay(error, attempt))
            except stripe.StripeError as error:
                raise self._request_error(path, error) from None

    def _rate_limit_delay(self, error: stripe.StripeError, attempt: int) -> float:
        wait = retry_after(httpx.Headers(error.headers or {}))
        return wait if wait is not None else self._backoff.delay(attempt)

    def _request_error(self, path: str, error: stripe.StripeError) -> ConnectorError:
        """The shared HTTP layer's message for the same failure; never the API key."""
        if error.http_status is not None:
            # Rebuilt as an httpx response so every API connector words errors alike.
            response = httpx.Response(
                error.http_status,
                content=error.http_body or b"",
                request=httpx.Request("GET", self.base_url + path),
            )
            return http_error(self.connection, response, "api_key")
        if isinstance(error, stripe.APIConnectionError):
            host = urlsplit(self.base_url).hostname
            return connection_error(
                self.connection,
                f"cannot reach {host} (network error); check base_url and the network",
            )
        return connection_error(
            self.connection,
            f"GET {path} failed ({type(error).__name__}); check the connection's settings",
        )
