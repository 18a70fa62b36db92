"""The `mysql` source's config."""

from __future__ import annotations

from connectors.config.common import ServerConfig
from connectors.config.model import option


class MySQLConfig(ServerConfig):
    """A MySQL or MariaDB database."""

    port: int = option(3306, "Server port.", ge=1, le=65535)
    connect_timeout: float = option(10.0, "Seconds to wait for the server to answer.", gt=0)
