"""A Stripe-protocol fake for what localstripe lacks: `/v1/prices` and the `created` filter.

It serves the list endpoints of in-memory objects as Stripe does: newest first, `limit`,
`starting_after`, `created[gte]` and `created[lt]`, behind a Bearer API key that is answered
with Stripe's own 401 body when wrong. Tests add objects to the dict they passed in while it runs.
"""

from __future__ import annotations

from typing import Any

from tests.support.fake_http import FakeServer, Request, Response

API_KEY = "sk_test_fake_51Hx4242"
INVALID_KEY = {
    "error": {
        "type": "invalid_request_error",
        "message": "Invalid API Key provided: sk_test_***",
    }
}


def stripe_fake(objects: dict[str, list[dict[str, Any]]]) -> FakeServer:
    """A server listing `objects[resource]` at `GET /v1/<resource>`."""
    server = FakeServer()

    @server.route("GET", r"/v1/(?P<resource>[a-z_]+)")
    def list_objects(request: Request, resource: str) -> Response:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return Response(401, INVALID_KEY)
        if resource not in objects:
            message = f"Unrecognized request URL (GET: /v1/{resource})."
            return Response(404, {"error": {"type": "invalid_request_error", "message": message}})
        return Response(200, _page(request, resource, objects[resource]))

    return server


def _page(request: Request, resource: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    newest_first = sorted(objects, key=lambda item: item["created"], reverse=True)
    gte, lt = request.param("created[gte]"), request.param("created[lt]")
    if gte is not None:
        newest_first = [item for item in newest_first if item["created"] >= int(gte)]
    if lt is not None:
        newest_first = [item for item in newest_first if item["created"] < int(lt)]
    after = request.param("starting_after")
    if after is not None:
        ids = [item["id"] for item in newest_first]
        newest_first = newest_first[ids.index(after) + 1 :]
    limit = int(request.param("limit") or 10)
    return {
        "object": "list",
        "url": f"/v1/{resource}",
        "has_more": len(newest_first) > limit,
        "data": newest_first[:limit],
    }
