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
    "postgres": "connectors.postgres_source:PostgresSource",
}

DESTINATIONS: dict[str, str] = {
    "duckdb": "connectors.duckdb_destination:DuckDBDestination",
    "postgres": "connectors.postgres_destination:PostgresDestination",
}


def _load_class(path: str) -> type:
    module_name, class_name = path.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_source(connector: str, connection: str, config: Mapping[str, Any]) -> Source:
    if connector not in SOURCES:
        raise ConnectorError(
            f"connection {connection!r}: unknown source connector {connector!r}; "
            f"use one of {', '.join(sorted(SOURCES))}"
        )
    return _load_class(SOURCES[connector])(connection, config)


def open_destination(connector: str, connection: str, config: Mapping[str, Any]) -> Destination:
    if connector not in DESTINATIONS:
        raise ConnectorError(
            f"connection {connection!r}: unknown destination connector {connector!r}; "
            f"use one of {', '.join(sorted(DESTINATIONS))}"
        )
    return _load_class(DESTINATIONS[connector])(connection, config)
