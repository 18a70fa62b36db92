"""Compile transform nodes to DuckDB SQL over one relation named `input`.

Identifiers are always quoted and literals escaped: values from a pipeline file never
become SQL syntax. Only `computed` expressions and `sql` queries are user SQL, and those
run in the sandboxed connection (see sandbox.py).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from typing import Any

from datapipe_assets.pipeline.spec import (
    DECIMAL_TYPE,
    RESULT_TYPES,
    AggregateNode,
    ComputedNode,
    DeduplicateNode,
    FilterNode,
    RenameNode,
    SqlNode,
    TransformNode,
)

COMPARISONS = {"eq": "=", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
AGGREGATES = {
    "sum": "SUM({})",
    "count": "COUNT({})",  # counts non-NULL values of the column, as in SQL
    "avg": "AVG({})",
    "min": "MIN({})",
    "max": "MAX({})",
    "count_distinct": "COUNT(DISTINCT {})",
}
# DuckDB numbers an arrow scan's rows in input order; used only to order ties.
ROW_ORDER = "__datapipe_row"


class CompileError(ValueError):
    """A node that cannot be compiled against its input; the message says what to fix."""


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CompileError(f"value {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise CompileError(f"value {value!r} must be a string, number, boolean or date")


def result_type(name: str) -> str:
    """A computed column's type in DuckDB spelling, or CompileError for an unknown one."""
    upper = name.strip().upper()
    if upper in RESULT_TYPES[:-1]:
        return upper
    match = DECIMAL_TYPE.match(upper)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if 1 <= precision <= 38 and scale <= precision:
            return f"DECIMAL({precision},{scale})"
    raise CompileError(
        f"result type {name!r} is not supported; use one of {', '.join(RESULT_TYPES)} "
        "(DECIMAL precision 1-38, scale <= precision)"
    )


def unknown_columns(node: TransformNode, columns: Sequence[str]) -> list[str]:
    """The columns a structured node names that its input does not have."""
    known = set(columns)
    return [c for c in referenced_columns(node) if c not in known]


def referenced_columns(node: TransformNode) -> list[str]:
    match node:
        case FilterNode():
            return [node.data.column]
        case RenameNode():
            return [m.from_ for m in node.data.mappings]
        case AggregateNode():
            return [*node.data.group_by, *(m.column for m in node.data.measures)]
        case DeduplicateNode():
            return [*node.data.columns, *([node.data.order_by] if node.data.order_by else [])]
    return []


def compile_node(node: TransformNode, columns: Sequence[str]) -> str:
    """DuckDB SQL for one node, reading the relation `input` whose columns are given."""
    missing = unknown_columns(node, columns)
    if missing:
        raise CompileError(
            f"unknown column {missing[0]!r}; the input has {', '.join(columns) or 'no columns'}"
        )
    match node:
        case FilterNode():
            return f"SELECT * FROM input WHERE {_condition(node)}"
        case RenameNode():
            return _rename(node, columns)
        case ComputedNode():
            return _computed(node, columns)
        case AggregateNode():
            return _aggregate(node)
        case DeduplicateNode():
            return _deduplicate(node)
        case SqlNode():
            return node.data.query.strip().rstrip(";")
    raise CompileError(f"node type {node.type!r} has no compiler")


def _condition(node: FilterNode) -> str:
    column, operator, value = (
        quote_identifier(node.data.column),
        node.data.operator,
        node.data.value,
    )
    if operator == "is_null":
        return f"{column} IS NULL"
    if operator == "is_not_null":
        return f"{column} IS NOT NULL"
    if operator == "in":
        if not isinstance(value, list) or not value:
            raise CompileError("operator 'in' needs `value` to be a non-empty list")
        return f"{column} IN ({', '.join(quote_literal(v) for v in value)})"
    if value is None or isinstance(value, list):
        raise CompileError(f"operator {operator!r} needs one non-null `value`")
    if operator in ("contains", "not_contains"):
        # contains() matches the text literally (no LIKE wildcards); lower() makes it
        # case-insensitive. A NULL column gives NULL, so both operators drop NULL rows.
        test = f"contains(lower(CAST({column} AS VARCHAR)), lower({quote_literal(str(value))}))"
        return test if operator == "contains" else f"NOT {test}"
    return f"{column} {COMPARISONS[operator]} {quote_literal(value)}"


def _rename(node: RenameNode, columns: Sequence[str]) -> str:
    mapping = {m.from_: m.to for m in node.data.mappings}
    targets = list(mapping.values())
    if len(set(targets)) != len(targets):
        raise CompileError("two mappings rename to the same name; give each a distinct `to`")
    if node.data.drop_unmapped:
        kept = [m.from_ for m in node.data.mappings]
    else:
        # Renamed columns keep their place; every other column passes through.
        kept = list(columns)
        clashes = [t for t in targets if t in columns and t not in mapping]
        if clashes:
            raise CompileError(
                f"renaming to {clashes[0]!r} clashes with an existing column; rename that "
                "column too or set dropUnmapped: true"
            )
    select = [
        f"{quote_identifier(c)} AS {quote_identifier(mapping[c])}"
        if c in mapping
        else quote_identifier(c)
        for c in kept
    ]
    return f"SELECT {', '.join(select)} FROM input"


def _computed(node: ComputedNode, columns: Sequence[str]) -> str:
    names = [c.name for c in node.data.columns]
    clash = next((n for i, n in enumerate(names) if n in columns or n in names[:i]), None)
    if clash is not None:
        raise CompileError(f"computed column {clash!r} already exists; choose a new name")
    added = [
        f"CAST(({c.expression}) AS {result_type(c.result_type)}) AS {quote_identifier(c.name)}"
        for c in node.data.columns
    ]
    return f"SELECT *, {', '.join(added)} FROM input"


def _aggregate(node: AggregateNode) -> str:
    aliases = [m.alias for m in node.data.measures]
    duplicate = next((a for a in aliases if aliases.count(a) > 1 or a in node.data.group_by), None)
    if duplicate is not None:
        raise CompileError(
            f"output column {duplicate!r} appears twice; give each measure a unique alias"
        )
    groups = [quote_identifier(c) for c in node.data.group_by]
    measures = [
        AGGREGATES[m.function].format(quote_identifier(m.column))
        + f" AS {quote_identifier(m.alias)}"
        for m in node.data.measures
    ]
    sql = f"SELECT {', '.join([*groups, *measures])} FROM input"
    if groups:
        # Ordered by the groups so previews and loads are deterministic.
        sql += f" GROUP BY {', '.join(groups)} ORDER BY {', '.join(groups)}"
    return sql


def _deduplicate(node: DeduplicateNode) -> str:
    direction = "DESC" if node.data.keep_strategy == "last" else "ASC"
    order = [f"{ROW_ORDER} {direction}"]
    if node.data.order_by:
        order.insert(0, f"{quote_identifier(node.data.order_by)} {direction} NULLS LAST")
    partition = ", ".join(quote_identifier(c) for c in node.data.columns)
    return (
        f"SELECT * EXCLUDE ({ROW_ORDER}) FROM "
        f"(SELECT *, ROW_NUMBER() OVER () AS {ROW_ORDER} FROM input) "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {', '.join(order)}) = 1"
    )


def column_lineage(node: TransformNode, columns: Sequence[str]) -> dict[str, list[str]] | None:
    """Output column -> the input columns it derives from, where that can be known."""
    match node:
        case FilterNode() | DeduplicateNode():
            return {c: [c] for c in columns}
        case RenameNode():
            mapping = {m.from_: m.to for m in node.data.mappings}
            kept = mapping if node.data.drop_unmapped else {c: mapping.get(c, c) for c in columns}
            return {out: [src] for src, out in kept.items()}
        case ComputedNode():
            lineage = {c: [c] for c in columns}
            for computed in node.data.columns:
                lineage[computed.name] = _columns_in(computed.expression, columns)
            return lineage
        case AggregateNode():
            lineage = {c: [c] for c in node.data.group_by}
            lineage.update({m.alias: [m.column] for m in node.data.measures})
            return lineage
    return None


def _columns_in(expression: str, columns: Sequence[str]) -> list[str]:
    """Input columns an expression names: quoted exactly, unquoted in any case (as DuckDB)."""
    words = re.findall(r'"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_]*)', expression)
    quoted = {q.replace('""', '"') for q, _ in words if q}
    bare = {b.lower() for _, b in words if b}
    return [c for c in columns if c in quoted or c.lower() in bare]
