"""Sources and destinations, by connector name.

Connector classes are imported on first use so that a pipeline using only CSV and DuckDB
never imports a database driver it does not need.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from connectors.base import ConnectorError, Destination, Source

SOURCES: dict[str, str] = {
    "csv": "connectors.sources.csv:CsvSource",
    "ga4": "connectors.sources.ga4:Ga4Source",
    "google_ads": "connectors.sources.google_ads:GoogleAdsSource",
    "google_sheets": "connectors.sources.google_sheets:GoogleSheetsSource",
    "hubspot": "connectors.sources.hubspot:HubSpotSource",
    "mysql": "connectors.sources.mysql:MySQLSource",
    "postgres": "connectors.sources.postgres:PostgresSource",
    "rest_api": "connectors.sources.rest_api:RestApiSource",
    "shopify": "connectors.sources.shopify:ShopifySource",
    "stripe": "connectors.sources.stripe:StripeSource",
}

DESTINATIONS: dict[str, str] = {
    "bigquery": "connectors.destinations.bigquery:BigQueryDestination",
    "duckdb": "connectors.destinations.duckdb:DuckDBDestination",
    "google_sheets": "connectors.destinations.google_sheets:GoogleSheetsDestination",
    "postgres": "connectors.destinations.postgres:PostgresDestination",
}


def _load_class(path: str) -> type:
    module_name, class_name = path.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def source_class(connector: str, connection: str) -> type[Source]:
    if connector not in SOURCES:
        raise ConnectorError(
            f"connection {connection!r}: unknown source connector {connector!r}; "
            f"use one of {', '.join(sorted(SOURCES))}"
        )
    return _load_class(SOURCES[connector])


def open_source(connector: str, connection: str, config: Mapping[str, Any]) -> Source:
    return source_class(connector, connection)(connection, config)


def open_destination(connector: str, connection: str, config: Mapping[str, Any]) -> Destination:
    if connector not in DESTINATIONS:
        raise ConnectorError(
            f"connection {connection!r}: unknown destination connector {connector!r}; "
            f"use one of {', '.join(sorted(DESTINATIONS))}"
        )
    return _load_class(DESTINATIONS[connector])(connection, config)
