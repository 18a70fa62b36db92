"""A fake HubSpot CRM v3 API: list, search and owners endpoints with HubSpot's paging and errors.

It checks what the real API checks: the Bearer token, `limit` (100 on lists, 200 on search),
the search body's filter/sort shape (a GTE filter on a date property, and optionally an LT
filter on the same one, ANDed as HubSpot does within a filter group), and the search cap: a
query can page through only `search_cap` results (10,000 at HubSpot; lower here to test
windowing), and asking past it fails with HubSpot's 400.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_http import FakeServer, Request, Response

OBJECTS = r"(?P<object>contacts|companies|deals|tickets)"
BAD_TOKEN = {
    "status": "error",
    "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication "
    "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    "correlationId": "a43683b0-5717-4ceb-80b4-104d02915d8c",
    "category": "INVALID_AUTHENTICATION",
}
# HubSpot's secondly limit answers 429 without a Retry-After: the client backs off.
RATE_LIMITED = Response(
    429,
    {"status": "error", "message": "You have reached your secondly limit.",
     "errorType": "RATE_LIMIT", "correlationId": "c033cdaa", "policyName": "SECONDLY"},
)  # fmt: skip


def validation_error(message: str) -> Response:
    return Response(
        400,
        {"status": "error", "message": message, "correlationId": "b8c1e5d2",
         "category": "VALIDATION_ERROR"},
    )  # fmt: skip


def when(minute: int) -> str:
    """A HubSpot timestamp: UTC, millisecond precision, with a Z."""
    moment = dt.datetime(2024, 5, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def crm_object(object_id: int, modified: str, modified_at: int, **properties: str) -> dict:
    """A CRM record as HubSpot stores it, last modified `modified_at` minutes into May."""
    return {
        "id": str(object_id),
        "properties": {"hs_object_id": str(object_id), "createdate": when(0),
                       modified: when(modified_at), **properties},
        "createdAt": when(0),
        "updatedAt": when(modified_at),
        "archived": False,
    }  # fmt: skip


@dataclass
class FakeHubSpot:
    """A portal's CRM data, served by `server` once it runs under `serve`."""

    token: str = "pat-na1-secret"
    search_cap: int = 10_000
    objects: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"contacts": [], "companies": [], "deals": [], "tickets": []}
    )
    owners: list[dict[str, Any]] = field(default_factory=list)
    server: FakeServer = field(default_factory=FakeServer)

    def __post_init__(self) -> None:
        route = self.server.route
        route("GET", "/account-info/v3/details")(self._authorized(self.account))
        route("GET", f"/crm/v3/objects/{OBJECTS}")(self._authorized(self.list_objects))
        route("POST", f"/crm/v3/objects/{OBJECTS}/search")(self._authorized(self.search))
        route("GET", "/crm/v3/owners")(self._authorized(self.list_owners))

    def _authorized(self, handler: Any) -> Any:
        def check(request: Request, **groups: str) -> Response:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return Response(401, BAD_TOKEN)
            return handler(request, **groups)

        return check

    def account(self, request: Request) -> Response:
        return Response(200, {"portalId": 62515, "timeZone": "US/Eastern"})

    def list_objects(self, request: Request, object: str) -> Response:
        names = (request.param("properties") or "").split(",")
        records = [_with_properties(r, names) for r in self.objects[object]]
        return self._keyset_page(request, records, f"/crm/v3/objects/{object}")

    def list_owners(self, request: Request) -> Response:
        return self._keyset_page(request, self.owners, "/crm/v3/owners")

    def _keyset_page(self, request: Request, records: list[dict], path: str) -> Response:
        """A list endpoint's page: records by id from `after`, with paging.next.after."""
        limit = int(request.param("limit") or 10)
        if limit > 100:
            return validation_error("limit must be less than or equal to 100")
        after = int(request.param("after") or 0)
        rest = sorted((r for r in records if int(r["id"]) >= after), key=lambda r: int(r["id"]))
        body: dict[str, Any] = {"results": rest[:limit]}
        if len(rest) > limit:
            next_after = rest[limit]["id"]
            link = f"{self.server.url}{path}?after={next_after}"
            body["paging"] = {"next": {"after": next_after, "link": link}}
        return Response(200, body)

    def search(self, request: Request, object: str) -> Response:
        body = request.json()
        try:
            (group,) = body["filterGroups"]
            (sort,) = body["sorts"]
            prop = group["filters"][0]["propertyName"]
            bounds = {c["operator"]: int(c["value"]) for c in group["filters"]}
            same_property = all(c["propertyName"] == prop for c in group["filters"])
        except (KeyError, TypeError, ValueError, IndexError):
            return validation_error("Invalid input JSON on line 1")
        if (
            not same_property
            or set(bounds) not in ({"GTE"}, {"GTE", "LT"})
            or len(group["filters"]) != len(bounds)
            or sort != {"propertyName": prop, "direction": "ASCENDING"}
        ):
            return validation_error(
                "this fake supports a GTE filter, and an LT one, on a property sorted by it"
            )
        since, until = bounds["GTE"], bounds.get("LT")
        limit, after = int(body.get("limit", 10)), int(body.get("after", 0))
        if limit > 200:
            return validation_error("limit must be less than or equal to 200")
        if after >= self.search_cap:
            return validation_error(
                f"There was a problem with the request: paging past {self.search_cap} results"
            )
        matching = sorted(
            (
                r
                for r in self.objects[object]
                if r["properties"].get(prop)
                and since <= _ms(r["properties"][prop])
                and (until is None or _ms(r["properties"][prop]) < until)
            ),
            key=lambda r: (_ms(r["properties"][prop]), int(r["id"])),
        )
        page = matching[after : min(after + limit, self.search_cap)]
        result: dict[str, Any] = {
            "total": len(matching),
            "results": [_with_properties(r, body.get("properties", [])) for r in page],
        }
        if after + limit < len(matching):
            result["paging"] = {"next": {"after": str(after + limit)}}
        return Response(200, result)


def _with_properties(record: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A record with only the properties asked for (HubSpot always adds hs_object_id)."""
    wanted = {*names, "hs_object_id"}
    return {**record, "properties": {k: v for k, v in record["properties"].items() if k in wanted}}


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)
