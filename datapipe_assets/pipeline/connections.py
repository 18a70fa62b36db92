"""Connections: where a pipeline's source and destination live, and their secrets.

`${NAME}` and `${secret:NAME}` placeholders stay unresolved until run time, so definitions
(and the Dagster UI) never hold a secret; resolved values exist only inside the step that
uses them. A secret is decrypted only when a connection that uses it is opened.
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
from connectors.shared.secrets import PLACEHOLDER, REFERENCE, SECRET_KEY, SECRET_REFERENCE
from datapipe_assets.pipeline.secret_store import SECRETS_FILE, SecretStoreError, reveal


@dataclass(frozen=True)
class ConnectionSpec:
    """A connection as declared: its name, connector and unresolved config."""

    name: str
    connector: str
    config: Mapping[str, Any] = field(default_factory=dict)
    # Relative paths in the config (CSV files, DuckDB databases) resolve against the folder
    # of the file that declared the connection, not the process's working directory.
    base_dir: Path = Path(".")
    # Where `${secret:NAME}` is read from: secrets.enc.yaml beside connections.yaml.
    secrets_file: Path = Path(SECRETS_FILE)
    # The org whose pipelines alone may use it; None: shared by every org (or inline).
    org: str | None = None

    @property
    def label(self) -> str:
        """How messages name it: `warehouse`, or `acme/warehouse` when scoped to an org."""
        return self.name if self.org is None else f"{self.org}/{self.name}"

    def resolve(self) -> dict[str, Any]:
        """The config with `${NAME}` read from the environment and `${secret:NAME}` from the
        secrets file; raises if one is unset, unknown or cannot be decrypted."""
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
            variable, secret = match.groups()
            if secret is not None:
                return self._secret(secret)
            if variable not in os.environ:
                raise ConnectorError(
                    f"connection {self.name!r}: environment variable {variable} (for "
                    f"{key!r}) is not set; export it before running"
                )
            return os.environ[variable]

        # One pass for both kinds, so text inside a resolved value is never resolved again.
        return REFERENCE.sub(substitute, value)

    def _secret(self, name: str) -> str:
        try:
            return reveal(self.secrets_file, name)
        except SecretStoreError as error:
            raise ConnectorError(f"connection {self.name!r}: {error}") from None

    def secret_names(self) -> list[str]:
        """The names the config reads as `${secret:NAME}`."""
        return sorted(
            {n for value in _strings(self.config) for n in SECRET_REFERENCE.findall(value)}
        )

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
        """Resolved secret values, for masking any text that leaves a step: every value
        of a secret-named key, and every `${secret:NAME}` wherever it is used.

        Never raises, as it runs while another error is reported: a value that cannot be
        resolved here is left out.
        """
        found = [self._quietly(f"${{secret:{name}}}") for name in self.secret_names()]
        for key, value in _items(self.config):
            if isinstance(value, str) and SECRET_KEY.search(key):
                found.append(self._quietly(value))
        return list(dict.fromkeys(secret for secret in found if secret))

    def _quietly(self, value: str) -> str:
        """A value resolved as far as it can be, with what cannot be resolved left empty."""

        def substitute(match: re.Match[str]) -> str:
            variable, secret = match.groups()
            if secret is None:
                return os.environ.get(variable, "")
            try:
                return reveal(self.secrets_file, secret)
            except SecretStoreError:
                return ""

        return REFERENCE.sub(substitute, value)


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
