"""The DuckDB connection transforms run in: in memory, shut off from the outside.

User SQL (computed expressions, sql nodes) runs here, so a connection can touch only the
files it is given: the staged input to read and a scratch folder for its output. No other
file, no network, no extension download, and settings locked so a query cannot switch any
of that back on.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import duckdb
import pyarrow as pa

from connectors.shared.sql_destination import quote

SPILL_DIRECTORY = os.path.join(tempfile.gettempdir(), "datapipe-duckdb-spill")


@contextmanager
def sandboxed_connection(
    readable: Sequence[str] = (),
    writable_directory: str | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = _open_sandbox(readable, writable_directory, memory_limit, threads)
    try:
        yield con
    finally:
        con.close()


def _open_sandbox(
    readable: Sequence[str],
    writable_directory: str | None,
    memory_limit: str | None,
    threads: int | None,
) -> duckdb.DuckDBPyConnection:
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
    # Exceptions to the lockdown must be granted before external access is switched off.
    con.execute("SET allowed_paths = ?", [list(readable)])
    con.execute("SET allowed_directories = ?", [[writable_directory] if writable_directory else []])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


_binders = threading.local()


@contextmanager
def binding_connection(
    relations: Mapping[str, pa.Table] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A sandboxed connection for parsing SQL and binding it against a few tiny relations
    (empty tables, or a row of NULLs), registered for the block only.

    One per thread, kept open: validating a folder binds every node and check, and opening
    a database for each would cost more than all the binding.
    """
    con = getattr(_binders, "connection", None)
    if con is None:
        # One thread: binding reads no data, and no worker thread outlives the process.
        con = _binders.connection = _open_sandbox((), None, None, 1)
        atexit.register(con.close)
    relations = relations or {}
    try:
        for name, table in relations.items():
            con.register(name, table)
        yield con
    finally:
        for name in relations:
            con.unregister(name)


def output_schema(sql: str, inputs: Mapping[str, pa.Schema]) -> pa.Schema:
    """Bind a query against empty relations of the given names and schemas; raise on error.

    Each input is a CTE over an empty table of its schema, made once per schema on the
    binding connection: registering Arrow tables for every bind cost a third of validating
    a folder of 50 pipelines.
    """
    with binding_connection() as con:
        ctes = [
            f"{quote(name)} AS (SELECT * FROM {_empty_table(con, schema)})"
            for name, schema in inputs.items()
        ]
        with_clause = f"WITH {', '.join(ctes)} " if ctes else ""
        return con.sql(f"{with_clause}SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema


def _empty_table(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> str:
    """An empty temporary table of this schema on the binding connection, made once."""
    tables: dict[pa.Schema, str] = _binders.__dict__.setdefault("empty_tables", {})
    name = tables.get(schema)
    if name is None:
        name = f"_datapipe_empty_{len(tables)}"
        con.register("_datapipe_schema", schema.empty_table())
        try:
            con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM _datapipe_schema")
        finally:
            con.unregister("_datapipe_schema")
        tables[schema] = name
    return name


def parse_single_select(sql: str) -> tuple[bool, str | None]:
    """Whether `sql` is exactly one SELECT, and DuckDB's parse error when it does not parse."""
    try:
        with binding_connection() as con:
            statements = con.extract_statements(sql)
    except duckdb.Error as error:
        return False, first_line(error)
    return len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT, None


def first_line(error: Exception) -> str:
    """DuckDB's message without its multi-line query excerpt."""
    return str(error).strip().splitlines()[0]
