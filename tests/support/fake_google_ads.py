"""A local Google Ads REST API: OAuth token endpoint plus `googleAds:search` with paging.

Rows are served per GAQL resource (the query's FROM) in the nested, camelCase JSON the
real API returns, `page_size` at a time behind `nextPageToken`s; a query's `WHERE
segments.date BETWEEN` (both days inclusive) keeps the rows of those days. Access tokens can
be made to expire after a number of requests, as a long sync would see them lapse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_http import FakeServer, Request, Response

DEVELOPER_TOKEN = "dev-token-secret"
CLIENT_ID = "client-id.apps.googleusercontent.com"
CLIENT_SECRET = "client-secret-value"
REFRESH_TOKEN = "1//refresh-token-secret"
CUSTOMER_ID = "1234567890"

DATE_RANGE = re.compile(r" WHERE segments\.date BETWEEN '([0-9-]{10})' AND '([0-9-]{10})'$")
UNAUTHENTICATED = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials.",
        "status": "UNAUTHENTICATED",
    }
}


@dataclass
class FakeGoogleAds:
    server: FakeServer = field(default_factory=FakeServer)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by FROM resource
    page_size: int = 10_000
    # Each access token answers this many search requests, then gets 401 UNAUTHENTICATED.
    token_uses: int = 1_000
    expires_in: int = 3600
    queries: list[str] = field(default_factory=list)
    tokens_issued: int = 0
    _remaining: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server.route("POST", r"/token")(self._token)
        self.server.route(
            "POST", r"/v(?P<version>\d+)/customers/(?P<customer>\d+)/googleAds:search"
        )(self._search)

    @property
    def url(self) -> str:
        return self.server.url

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A connection config pointing at this fake."""
        return {
            "customer_id": "123-456-7890",
            "developer_token": DEVELOPER_TOKEN,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "token_uri": f"{self.url}/token",
            "base_url": self.url,
            **overrides,
        }

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in request.form().items()}
        valid = (
            form.get("grant_type") == "refresh_token"
            and form.get("refresh_token") == REFRESH_TOKEN
            and form.get("client_id") == CLIENT_ID
            and form.get("client_secret") == CLIENT_SECRET
        )
        if not valid:
            body = {"error": "invalid_grant", "error_description": "Token has been revoked."}
            return Response(401, body)
        self.tokens_issued += 1
        token = f"ya29.access-{self.tokens_issued}"
        self._remaining[token] = self.token_uses
        body = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return Response(200, body)

    def _search(self, request: Request, version: str, customer: str) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self._remaining.get(token, 0) <= 0:
            return Response(401, UNAUTHENTICATED)
        self._remaining[token] -= 1
        if request.headers.get("developer-token") != DEVELOPER_TOKEN or customer != CUSTOMER_ID:
            return Response(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
        body = request.json()
        self.queries.append(body["query"])
        match = re.search(r"\bFROM\s+(\w+)", body["query"])
        rows = self.rows.get(match.group(1) if match else "", [])
        if " WHERE " in body["query"]:
            days = DATE_RANGE.search(body["query"])
            if days is None:
                message = "this fake filters by segments.date BETWEEN only"
                return Response(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                "message": message}})  # fmt: skip
            first, last = days.groups()
            rows = [row for row in rows if first <= row["segments"]["date"] <= last]
        start = int(body.get("pageToken") or 0)
        page: dict[str, Any] = {"fieldMask": "fields"}
        if rows[start : start + self.page_size]:
            page["results"] = rows[start : start + self.page_size]
        if start + self.page_size < len(rows):
            page["nextPageToken"] = str(start + self.page_size)
        return Response(200, page)
