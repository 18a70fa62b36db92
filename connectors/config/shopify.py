"""The `shopify` source's config."""

from __future__ import annotations

from pydantic import model_validator

from connectors.config.common import HttpConfig
from connectors.config.model import ConfigValueError, Rate, Text, option

DEFAULT_API_VERSION = "2024-10"
MAX_PAGE_SIZE = 250
TABLES = ("orders", "customers", "products", "inventory_items", "transactions")


class ShopifyConfig(HttpConfig):
    """One Shopify store, through the Admin REST API."""

    notes = f"tables {', '.join(TABLES)}; incremental on `updated_at`"

    shop_domain: Text | None = option(
        None, "The store's domain, such as acme.myshopify.com (required without base_url)."
    )
    access_token: Text = option(..., "Admin API access token (use ${SHOPIFY_ACCESS_TOKEN}).")
    api_version: Text = option(DEFAULT_API_VERSION, "Admin API version.")
    page_size: int = option(MAX_PAGE_SIZE, "Records a page, 1 to 250.", ge=1, le=MAX_PAGE_SIZE)
    # Shopify's REST Admin API allows 2 requests a second on standard plans.
    requests_per_second: Rate = option(2.0, "Requests a second this connection may send.")

    @model_validator(mode="after")
    def _has_address(self) -> ShopifyConfig:
        if self.shop_domain is None and self.base_url is None:
            raise ConfigValueError(
                "the config needs shop_domain",
                "set it to the store's domain, such as acme.myshopify.com",
            )
        return self
