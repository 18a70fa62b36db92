"""The Dagster resource that hands transform assets their sandboxed DuckDB connections."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
import duckdb

from resources.duckdb_sandbox import sandboxed_connection


class TransformEngine(dg.ConfigurableResource):
    """Sandboxed DuckDB connections for transform assets."""

    memory_limit: str | None = None  # default: $DATAPIPE_DUCKDB_MEMORY, else 128MB
    threads: int | None = None  # default: one per core

    @contextmanager
    def connect(
        self, readable: Sequence[str], writable_directory: str
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        with sandboxed_connection(
            readable, writable_directory, self.memory_limit, self.threads
        ) as con:
            yield con
