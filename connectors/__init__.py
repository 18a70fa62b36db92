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
    "csv": "connectors.csv_source:CsvSource",
    "ga4": "connectors.ga4_source:Ga4Source",
    "google_ads": "connectors.google_ads_source:GoogleAdsSource",
    "google_sheets": "connectors.google_sheets_source:GoogleSheetsSource",
    "hubspot": "connectors.hubspot_source:HubSpotSource",
    "mysql": "connectors.mysql_source:MySQLSource",
    "postgres": "connectors.postgres_source:PostgresSource",
    "rest_api": "connectors.rest_api_source:RestApiSource",
    "shopify": "connectors.shopify_source:ShopifySource",
    "stripe": "connectors.stripe_source:StripeSource",
}

DESTINATIONS: dict[str, str] = {
    "bigquery": "connectors.bigquery_destination:BigQueryDestination",
    "duckdb": "connectors.duckdb_destination:DuckDBDestination",
    "google_sheets": "connectors.google_sheets_destination:GoogleSheetsDestination",
    "postgres": "connectors.postgres_destination:PostgresDestination",
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
