"""The `stripe` source's config."""

from __future__ import annotations

from connectors.config.common import HttpConfig
from connectors.config.model import Rate, Text, option

DEFAULT_BASE_URL = "https://api.stripe.com"
# Stripe's list endpoints return at most 100 objects a page.
MAX_PAGE_SIZE = 100
TABLES = (
    "charges", "customers", "invoices", "subscriptions", "payment_intents", "products",
    "prices", "disputes", "refunds", "balance_transactions",
)  # fmt: skip


class StripeConfig(HttpConfig):
    """One Stripe account."""

    notes = f"tables {', '.join(TABLES)}; incremental on `created`"

    api_key: Text = option(..., "Secret or restricted API key (use ${STRIPE_API_KEY}).")
    page_size: int = option(MAX_PAGE_SIZE, "Objects a page, 1 to 100.", ge=1, le=MAX_PAGE_SIZE)
    # Test mode allows 25 requests a second and live mode 100; 20 stays under both.
    requests_per_second: Rate = option(20.0, "Requests a second this connection may send.")
