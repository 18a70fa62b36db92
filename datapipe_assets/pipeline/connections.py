"""Connections: where a pipeline's source and destination live, and their secrets.

`${NAME}` placeholders stay unresolved until run time, so definitions (and the Dagster UI)
never hold a secret; resolved values exist only inside the step that uses them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.base import ConnectorError, Destination, Source
from connectors.registry import open_destination, open_source
from connectors.shared.secrets import PLACEHOLDER, SECRET_KEY


@dataclass(frozen=True)
class ConnectionSpec:
    """A connection as declared: its name, connector and unresolved config."""

    name: str
    connector: str
    config: Mapping[str, Any] = field(default_factory=dict)
    # Relative paths in the config (CSV files, DuckDB databases) resolve against the folder
    # of the file that declared the connection, not the process's working directory.
    base_dir: Path = Path(".")

    def resolve(self) -> dict[str, Any]:
        """The config with `${NAME}` read from the environment; raises if one is unset."""
        resolved = {key: self._resolve_value(key, value) for key, value in self.config.items()}
        resolved.setdefault("base_dir", str(self.base_dir))
        return resolved

    def _resolve_value(self, key: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: self._resolve_value(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve_value(key, v) for v in value]
        if not isinstance(value, str):
            return value

        def substitute(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in os.environ:
                raise ConnectorError(
                    f"connection {self.name!r}: environment variable {variable} (for "
                    f"{key!r}) is not set; export it before running"
                )
            return os.environ[variable]

        return PLACEHOLDER.sub(substitute, value)

    def missing_variables(self) -> list[str]:
        return sorted(
            {
                name
                for value in _strings(self.config)
                for name in PLACEHOLDER.findall(value)
                if name not in os.environ
            }
        )

    def open_source(self) -> Source:
        return open_source(self.connector, self.name, self.resolve())

    def open_destination(self) -> Destination:
        return open_destination(self.connector, self.name, self.resolve())

    def secrets(self) -> list[str]:
        """Resolved secret values, for masking any text that leaves a step."""
        found: list[str] = []
        for key, value in _items(self.config):
            if isinstance(value, str) and SECRET_KEY.search(key):
                resolved = PLACEHOLDER.sub(lambda m: os.environ.get(m.group(1), ""), value)
                if resolved:
                    found.append(resolved)
        return found


def secrets_of(connections: Iterable[ConnectionSpec]) -> list[str]:
    """Every resolved secret of some connections, for `mask`."""
    return [secret for connection in connections for secret in connection.secrets()]


def _items(config: Mapping[str, Any]) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            items.extend(_items(value))
        else:
            items.append((key, value))
    return items


def _strings(config: Mapping[str, Any]) -> list[str]:
    return [value for _, value in _items(config) if isinstance(value, str)]
