"""The DuckDB connection transforms run in: in memory, shut off from the outside.

User SQL (computed expressions, sql nodes) runs here, so a connection can touch only the
files it is given: the staged input to read and a scratch folder for its output. No other
file, no network, no extension download, and settings locked so a query cannot switch any
of that back on.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import duckdb
import pyarrow as pa

SPILL_DIRECTORY = os.path.join(tempfile.gettempdir(), "datapipe-duckdb-spill")


@contextmanager
def sandboxed_connection(
    readable: Sequence[str] = (),
    writable_directory: str | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": threads or os.cpu_count() or 2,
            # Bounded, so large sorts and aggregates spill to disk rather than grow the
            # process: peak memory stays flat whatever the table size.
            "memory_limit": memory_limit or os.environ.get("DATAPIPE_DUCKDB_MEMORY", "128MB"),
            "temp_directory": SPILL_DIRECTORY,
        },
    )
    try:
        # Exceptions to the lockdown must be granted before external access is switched off.
        con.execute("SET allowed_paths = ?", [list(readable)])
        con.execute(
            "SET allowed_directories = ?", [[writable_directory] if writable_directory else []]
        )
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


def output_schema(sql: str, inputs: Mapping[str, pa.Schema]) -> pa.Schema:
    """Bind a query against empty relations of the given names and schemas; raise on error."""
    with sandboxed_connection() as con:
        for name, schema in inputs.items():
            con.register(name, schema.empty_table())
        return con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema


def parse_single_select(sql: str) -> tuple[bool, str | None]:
    """Whether `sql` is exactly one SELECT, and DuckDB's parse error when it does not parse."""
    try:
        with sandboxed_connection() as con:
            statements = con.extract_statements(sql)
    except duckdb.Error as error:
        return False, first_line(error)
    return len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT, None


def first_line(error: Exception) -> str:
    """DuckDB's message without its multi-line query excerpt."""
    return str(error).strip().splitlines()[0]
