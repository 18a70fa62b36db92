"""A local server speaking Stripe's meter-events API: `POST /v1/billing/meter_events`.

It takes the form-encoded event the stripe library sends, behind the Bearer API key, and
answers with a `billing.meter_event` object. As Stripe does, it counts an identifier once:
an event sent again is answered but not counted twice. A test sets `mode` to `down` (503,
nothing recorded) or `lost` (the event is recorded, then the answer is a 500, as when a
response is lost on its way back), and lists in `refused` the identifiers to answer with
Stripe's 400 for an event it will never take.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_http import FakeServer, Request, Response
from tests.support.fake_stripe_prices import API_KEY, INVALID_KEY

DOWN = {"error": {"type": "api_error", "message": "Stripe is unavailable (test)"}}


@dataclass
class MeterFake:
    server: FakeServer = field(default_factory=FakeServer)
    mode: str = "up"
    # Every request's event, in order, duplicates and failures included.
    received: list[dict[str, Any]] = field(default_factory=list)
    # The events counted: one per identifier, as Stripe keeps them.
    counted: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.server.route("POST", "/v1/billing/meter_events")(self._create)

    def _create(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return Response(401, INVALID_KEY)
        form = {name: values[0] for name, values in request.form().items()}
        event = {
            "event_name": form["event_name"],
            "customer": form["payload[stripe_customer_id]"],
            "value": form["payload[value]"],
            "identifier": form["identifier"],
            "timestamp": int(form["timestamp"]),
        }
        self.received.append(event)
        if self.mode == "down":
            return Response(503, DOWN)
        if event["identifier"] in self.refused:
            message = f"No such customer: '{event['customer']}'"
            return Response(400, {"error": {"type": "invalid_request_error", "message": message}})
        self.counted.setdefault(event["identifier"], event)
        if self.mode == "lost":
            return Response(500, DOWN)
        return Response(200, _meter_event(self.counted[event["identifier"]]))

    def totals(self) -> dict[tuple[str, str], int]:
        """Rows billed per (meter, customer), as Stripe would sum them."""
        found: dict[tuple[str, str], int] = {}
        for event in self.counted.values():
            key = (event["event_name"], event["customer"])
            found[key] = found.get(key, 0) + int(event["value"])
        return found


def _meter_event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "billing.meter_event",
        "created": int(time.time()),
        "event_name": event["event_name"],
        "identifier": event["identifier"],
        "livemode": False,
        "payload": {"stripe_customer_id": event["customer"], "value": event["value"]},
        "timestamp": event["timestamp"],
    }
