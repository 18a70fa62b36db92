"""Column lineage of a sql node, where DuckDB's own parse of the query can tell it.

DuckDB serializes a query's syntax tree (`json_serialize_sql`). Each output column of a
plain SELECT list is traced to the input columns it names; anything the tree cannot pin
down (a `*`, a subquery or CTE, an unqualified name several inputs share) gives no lineage
rather than a guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import duckdb

from resources.duckdb_sandbox import sandboxed_connection

Lineage = dict[str, list[tuple[str, str]]]


def sql_lineage(
    query: str, inputs: Mapping[str, tuple[str, Sequence[str]]], output_columns: Sequence[str]
) -> Lineage | None:
    """Output column -> (input node id, column) pairs.

    `inputs` maps each name the query may read a relation by to (its node id, its columns).
    """
    try:
        with sandboxed_connection() as con:
            [(serialized,)] = con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()
    except duckdb.Error:
        return None
    tree = json.loads(serialized)
    if tree.get("error") or len(tree["statements"]) != 1:
        return None
    node = tree["statements"][0]["node"]
    if node.get("type") != "SELECT_NODE" or node.get("cte_map", {}).get("map"):
        return None
    aliases = _relations(node.get("from_table"), inputs)
    select = node["select_list"]
    if aliases is None or len(select) != len(output_columns):
        return None
    lineage: Lineage = {}
    for output, expression in zip(output_columns, select, strict=True):
        sources = []
        for reference in _column_refs(expression):
            source = _resolve(reference, aliases, inputs)
            if source is None:
                return None
            sources.append(source)
        if sources:  # a constant or count(*) derives from no column
            lineage[output] = list(dict.fromkeys(sources))
    return lineage


def _relations(
    table: Any, inputs: Mapping[str, tuple[str, Sequence[str]]]
) -> dict[str, str] | None:
    """Alias -> relation name for the FROM clause, or None if it holds anything else."""
    if table is None or table.get("type") == "EMPTY":
        return {}
    if table["type"] == "BASE_TABLE":
        name = table["table_name"]
        if name not in inputs or table.get("schema_name"):
            return None
        return {table.get("alias") or name: name}
    if table["type"] == "JOIN":
        left, right = _relations(table["left"], inputs), _relations(table["right"], inputs)
        if left is None or right is None:
            return None
        return {**left, **right}
    return None


def _column_refs(expression: Any) -> Iterator[list[str]]:
    """Every column reference in an expression tree; a `*` makes lineage unknowable."""
    if isinstance(expression, dict):
        kind = expression.get("class")
        if kind == "COLUMN_REF":
            yield expression["column_names"]
            return
        if kind in ("STAR", "SUBQUERY"):
            yield []
            return
        for value in expression.values():
            yield from _column_refs(value)
    elif isinstance(expression, list):
        for item in expression:
            yield from _column_refs(item)


def _resolve(
    reference: list[str],
    aliases: Mapping[str, str],
    inputs: Mapping[str, tuple[str, Sequence[str]]],
) -> tuple[str, str] | None:
    if len(reference) == 2 and reference[0] in aliases:
        node_id, columns = inputs[aliases[reference[0]]]
        return (node_id, reference[1]) if reference[1] in columns else None
    if len(reference) == 1:
        # An unqualified name: the one relation in FROM that has it.
        having = [inputs[r] for r in aliases.values() if reference[0] in inputs[r][1]]
        if len(having) == 1:
            return having[0][0], reference[0]
    return None
