"""The `duckdb` destination's config."""

from __future__ import annotations

from connectors.config.model import ConnectorConfig, Text, option


class DuckDBConfig(ConnectorConfig):
    """A DuckDB database file."""

    path: Text = option(..., "The database file, created if missing.")
    schema_: Text = option("main", "Schema the tables and cursor states live in.", alias="schema")
