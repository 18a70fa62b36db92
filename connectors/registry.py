"""Sources and destinations, and their config models, by connector name.

Connector classes are imported on first use so that a pipeline using only CSV and DuckDB
never imports a database driver it does not need. Config models live in light modules
(`connectors.config`), so checking any connection's config imports no client library.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal

from connectors.base import ConnectorError, Destination, Source
from connectors.config.model import ConnectorConfig
from connectors.config.problems import ConfigProblem, validate

Role = Literal["source", "destination"]

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


# The config model of each connector, by role (a connector serving both may differ).
SOURCE_CONFIGS: dict[str, str] = {
    "csv": "connectors.config.csv:CsvConfig",
    "ga4": "connectors.config.ga4:Ga4Config",
    "google_ads": "connectors.config.google_ads:GoogleAdsConfig",
    "google_sheets": "connectors.config.google_sheets:GoogleSheetsSourceConfig",
    "hubspot": "connectors.config.hubspot:HubSpotConfig",
    "mysql": "connectors.config.mysql:MySQLConfig",
    "postgres": "connectors.config.postgres:PostgresConfig",
    "rest_api": "connectors.config.rest_api:RestApiConfig",
    "shopify": "connectors.config.shopify:ShopifyConfig",
    "stripe": "connectors.config.stripe:StripeConfig",
}

DESTINATION_CONFIGS: dict[str, str] = {
    "bigquery": "connectors.config.bigquery:BigQueryConfig",
    "duckdb": "connectors.config.duckdb:DuckDBConfig",
    "google_sheets": "connectors.config.google_sheets:GoogleSheetsDestinationConfig",
    "postgres": "connectors.config.postgres:PostgresConfig",
}


def config_model(connector: str, role: Role) -> type[ConnectorConfig] | None:
    """The config model of a connector in a role; None for an unknown connector."""
    paths = SOURCE_CONFIGS if role == "source" else DESTINATION_CONFIGS
    return _load_class(paths[connector]) if connector in paths else None


def config_problems(
    connector: str, role: Role, connection: str, config: Mapping[str, Any]
) -> list[ConfigProblem]:
    """Load-time problems of a connection's unresolved config; pure, reads no environment.

    Unknown and misspelled keys (with a did-you-mean), missing required keys and literal
    values of the wrong type are problems; a value holding a `${NAME}` placeholder is
    accepted for any key, as only a run resolves it. An unknown connector has no problems
    here: it is the loader's to report.
    """
    model = config_model(connector, role)
    if model is None:
        return []
    return validate(model, connection, config, resolved=False)[1]


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
