"""Usage reported to Stripe billing as meter events, through the official `stripe` library.

The library retries network errors, 409 and 5xx itself (`max_network_retries`), with an
idempotency key per request. Each event also carries an `identifier`, which Stripe keeps
unique for at least 24 hours: an event sent again (a retried step, a re-send of one whose
answer was lost) is counted once. Error texts never contain the API key.
"""

from __future__ import annotations

from dataclasses import dataclass

import stripe

from connectors.shared.secrets import mask

NETWORK_RETRIES = 2
# Seconds per request: a slow Stripe must not hold a finished load's step for long.
TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class MeterEvent:
    """Rows for one Stripe customer's meter (`event_name`)."""

    event_name: str
    customer: str
    value: int
    identifier: str
    timestamp: int


class MeterError(Exception):
    """Stripe did not take a meter event; the text is one line with the key masked.

    `transient`: Stripe could not be reached or failed (5xx, 409, 429), so sending again
    later may succeed; otherwise Stripe refused this event (a 4xx such as an unknown customer).
    """

    def __init__(self, text: str, transient: bool) -> None:
        super().__init__(text)
        self.transient = transient


class StripeMeter:
    """Sends meter events to one Stripe account."""

    def __init__(self, api_key: str, api_base: str) -> None:
        self._key = api_key
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            max_network_retries=NETWORK_RETRIES,
            http_client=stripe.new_default_http_client(timeout=TIMEOUT_SECONDS),
        )

    def send(self, event: MeterEvent) -> None:
        """Create the meter event; raises MeterError when Stripe does not take it."""
        try:
            self._client.v1.billing.meter_events.create(
                params={
                    "event_name": event.event_name,
                    "payload": {"stripe_customer_id": event.customer, "value": str(event.value)},
                    "identifier": event.identifier,
                    "timestamp": event.timestamp,
                }
            )
        except stripe.StripeError as error:
            # The library's text for a network error runs over several lines.
            text = (error.user_message or str(error)).strip().splitlines() or [""]
            reason = " ".join(text[0].split()) or type(error).__name__
            status = f"HTTP {error.http_status}: " if error.http_status else ""
            transient = error.http_status is None or error.http_status in (409, 429)
            transient = transient or (error.http_status or 0) >= 500
            raise MeterError(mask(f"{status}{reason}", [self._key]), transient) from None
