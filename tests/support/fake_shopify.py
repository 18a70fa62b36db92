"""A fake Shopify REST Admin API: the endpoints, paging and errors the connector relies on.

It checks what the real API checks: the X-Shopify-Access-Token header, `limit` <= 250, that
`page_info` comes with nothing but `limit` (and `fields`), that inventory items are asked for
by `ids` (at most 100), and that orders are filtered to open ones unless `status=any`. Pages
are keyset cursors over ids, handed out in a `Link` header as Shopify does.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_http import FakeServer, Request, Response

API = r"/admin/api/(?P<version>[0-9]{4}-[0-9]{2})"
BAD_TOKEN = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
RATE_LIMITED = Response(
    429,
    {"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume "
               "uninterrupted service."},
    {"Retry-After": "1.5"},
)  # fmt: skip


def when(day: int, hour: int = 0) -> str:
    """A Shopify timestamp: shop-local time with its UTC offset."""
    return dt.datetime(2024, 5, day, hour, tzinfo=dt.timezone(dt.timedelta(hours=-4))).isoformat()


@dataclass
class FakeShopify:
    """A shop's data, served by `server` once it runs under `serve`."""

    token: str = "shpat_secret"
    orders: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    products: list[dict[str, Any]] = field(default_factory=list)
    inventory_items: list[dict[str, Any]] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    server: FakeServer = field(default_factory=FakeServer)

    def __post_init__(self) -> None:
        route = self.server.route
        route("GET", f"{API}/shop.json")(self._authorized(self.shop))
        route("GET", f"{API}/(?P<resource>orders|customers|products|inventory_items).json")(
            self._authorized(self.listing)
        )
        route("GET", f"{API}/orders/(?P<order_id>[0-9]+)/transactions.json")(
            self._authorized(self.order_transactions)
        )

    def _authorized(self, handler: Any) -> Any:
        def check(request: Request, **groups: str) -> Response:
            if request.headers.get("x-shopify-access-token") != self.token:
                return Response(401, BAD_TOKEN)
            return handler(request, **groups)

        return check

    def shop(self, request: Request, version: str) -> Response:
        return Response(200, {"shop": {"id": 548380009, "name": "Fake Store"}})

    def listing(self, request: Request, version: str, resource: str) -> Response:
        limit = int(request.param("limit", "50") or 50)
        if limit > 250:
            return Response(400, {"errors": {"limit": "must be less than or equal to 250"}})
        page_info = request.param("page_info")
        if page_info is not None:
            extra = sorted(set(request.query) - {"limit", "page_info", "fields"})
            if extra:
                return Response(400, {"errors": {"page_info": f"cannot be used with {extra}"}})
            cursor = json.loads(base64.urlsafe_b64decode(page_info))
            filters, last_id = cursor["filters"], cursor["last_id"]
        else:
            filters = {k: v[0] for k, v in request.query.items() if k != "limit"}
            last_id = 0
        error = self._invalid_filters(resource, filters)
        if error:
            return Response(400, {"errors": error})
        matching = sorted(
            (r for r in getattr(self, resource) if _matches(r, filters, resource)),
            key=lambda r: r["id"],
        )
        start = sum(1 for r in matching if r["id"] <= last_id)
        page = matching[start : start + limit]
        url = f"{self.server.url}/admin/api/{version}/{resource}.json"
        links = []
        if start > 0:
            before = matching[start - limit - 1]["id"] if start > limit else 0
            links.append(
                f'<{url}?limit={limit}&page_info={_cursor(filters, before)}>; rel="previous"'
            )
        if start + limit < len(matching):
            links.append(
                f'<{url}?limit={limit}&page_info={_cursor(filters, page[-1]["id"])}>; rel="next"'
            )
        headers = {"X-Shopify-Shop-Api-Call-Limit": "1/40"}
        if links:
            headers["Link"] = ", ".join(links)
        return Response(200, {resource: page}, headers)

    def order_transactions(self, request: Request, version: str, order_id: str) -> Response:
        if not any(o["id"] == int(order_id) for o in self.orders):
            return Response(404, {"errors": "Not Found"})
        found = [t for t in self.transactions if t["order_id"] == int(order_id)]
        return Response(200, {"transactions": found})

    @staticmethod
    def _invalid_filters(resource: str, filters: dict[str, str]) -> Any:
        if resource != "inventory_items":
            return None
        ids = filters.get("ids", "")
        if not ids:
            return {"ids": "expected String to be a id list"}
        if len(ids.split(",")) > 100:
            return {"ids": "too many ids; at most 100"}
        return None


def _cursor(filters: dict[str, str], last_id: int) -> str:
    """An opaque page_info: the listing's filters and the id the page starts after."""
    state = json.dumps({"filters": filters, "last_id": last_id}).encode()
    return base64.urlsafe_b64encode(state).decode()


def _matches(record: dict[str, Any], filters: dict[str, str], resource: str) -> bool:
    """Shopify's listing filters: ids, updated/created_at_min and _max (both inclusive) and
    (orders) status."""
    if "ids" in filters and str(record["id"]) not in filters["ids"].split(","):
        return False
    for key in ("updated_at", "created_at"):
        low, high = filters.get(f"{key}_min"), filters.get(f"{key}_max")
        if low and _moment(record[key]) < _moment(low):
            return False
        if high and _moment(record[key]) > _moment(high):
            return False
    # Orders default to status=open: a closed or cancelled order shows only with `any`.
    if resource == "orders" and filters.get("status", "open") == "open":
        return record.get("closed_at") is None and record.get("cancelled_at") is None
    return True


def _moment(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)
