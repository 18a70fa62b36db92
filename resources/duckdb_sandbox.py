"""The DuckDB connection transforms run in: in memory, with no access outside the process.

User SQL (computed expressions, sql nodes) runs here, so the connection can read only the
Arrow data registered with it: no files, no network, no extension downloads, and settings
locked so a query cannot switch any of that back on.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import duckdb
import pyarrow as pa
from dagster_duckdb import DuckDBResource


def sandbox_config(memory_limit: str | None = None, threads: int | None = None) -> dict[str, Any]:
    return {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "threads": threads or int(os.environ.get("DATAPIPE_DUCKDB_THREADS", os.cpu_count() or 2)),
        # Bounded so large sorts and aggregates spill to disk instead of growing the process.
        "memory_limit": memory_limit or os.environ.get("DATAPIPE_DUCKDB_MEMORY", "1GB"),
        "temp_directory": os.path.join(tempfile.gettempdir(), "datapipe-duckdb-spill"),
        "lock_configuration": True,
    }


def transform_engine() -> DuckDBResource:
    """The Dagster resource every transform asset gets its connection from."""
    return DuckDBResource(database=":memory:", connection_config=sandbox_config())


def connect() -> duckdb.DuckDBPyConnection:
    """A sandboxed connection for use outside a Dagster run (validation, preview)."""
    return duckdb.connect(":memory:", config=sandbox_config())


def output_schema(sql: str, input_schema: pa.Schema) -> pa.Schema:
    """Bind a query against an empty `input` with the given schema; raise on any error."""
    with connect() as con:
        con.register("input", input_schema.empty_table())
        return con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema


def first_line(error: Exception) -> str:
    """DuckDB's message without its multi-line query excerpt."""
    return str(error).strip().splitlines()[0]
