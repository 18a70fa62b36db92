"""Config keys several connectors share: HTTP APIs, Google service accounts, SQL servers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from connectors.config.model import ConnectorConfig, Rate, Text, option


def _key_file_text(value: Any) -> Any:
    # A key file written inline as a YAML mapping is the same key as its JSON text.
    return json.dumps(dict(value)) if isinstance(value, Mapping) else value


# A Google service-account key: its JSON text (or a YAML mapping of it), or a file path.
ServiceAccountJson = Annotated[str, BeforeValidator(_key_file_text)]


class HttpConfig(ConnectorConfig):
    """An HTTP API connector: where to send requests, and how many a second."""

    base_url: str | None = option(
        None, "API address, to go through a proxy or a test server.", shown="the service's"
    )
    requests_per_second: Rate = option(1.0, "Requests a second this connection may send.")


class GoogleConfig(HttpConfig):
    """A Google API read or written with a service account."""

    service_account_json: ServiceAccountJson = option(
        ..., "Service-account key: its JSON text or mapping, or a path to the key file."
    )


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class ServerConfig(ConnectorConfig):
    """A database server reached over TCP with a user name and password."""

    host: Text = option(..., "Server host name or address.")
    port: int = option(..., "Server port.", ge=1, le=65535)
    database: Text = option(..., "Database to connect to.")
    username: Text = option(..., "User to connect as.")
    password: str | None = option(None, "The user's password (use ${ENV_VAR}).")
