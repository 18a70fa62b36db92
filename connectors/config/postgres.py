"""The `postgres` source's and destination's config."""

from __future__ import annotations

from connectors.config.common import ServerConfig, SslMode
from connectors.config.model import Text, option


class PostgresConfig(ServerConfig):
    """A PostgreSQL database."""

    port: int = option(5432, "Server port.", ge=1, le=65535)
    sslmode: SslMode = option("prefer", "libpq SSL mode.")
    schema_: Text = option(
        "public",
        "Schema of unqualified table names (and, loading, of cursor states).",
        alias="schema",
    )
