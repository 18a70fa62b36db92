"""Compile transform nodes to DuckDB SQL over their input relations.

A single-input node reads one relation named `input`; a join reads `left` and `right`, a
union `input_1` ... `input_n`, and a sql node each input by its node id (or the handle its
edge gives). Identifiers are always quoted and literals escaped: values from a pipeline
file never become SQL syntax. Only `computed` expressions and `sql` queries are user SQL,
and those run in the sandboxed connection (resources/duckdb_sandbox.py).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from datapipe_assets.pipeline.spec import (
    DECIMAL_TYPE,
    RESULT_TYPES,
    AggregateNode,
    ComputedNode,
    DeduplicateNode,
    FilterNode,
    JoinNode,
    NodeInput,
    RenameNode,
    SqlNode,
    TransformNode,
    UnionNode,
)
from datapipe_assets.pipeline.sql_lineage import sql_lineage

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
JOIN_KEYWORDS = {
    "inner": "INNER JOIN",
    "left": "LEFT JOIN",
    "right": "RIGHT JOIN",
    "full": "FULL OUTER JOIN",
    "semi": "SEMI JOIN",
    "anti": "ANTI JOIN",
}
MULTI_INPUT_TYPES = ("join", "union", "sql")


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


@dataclass(frozen=True)
class Relation:
    """One input of a node, as its SQL reads it."""

    name: str  # the relation's name in the node's SQL
    node_id: str  # the input node, for messages and renamed columns
    schema: pa.Schema


@dataclass(frozen=True)
class JoinColumn:
    """One output column of a join: which side and column it comes from."""

    name: str
    side: str  # "left" or "right"
    column: str
    # A key of the same name on both sides of a right or full join: the side that matched.
    coalesced: bool = False


def relation_names(node: TransformNode, inputs: Sequence[NodeInput]) -> list[str]:
    """The name each input (in declared order) goes by in the node's SQL."""
    match node:
        case JoinNode():
            return [str(i.handle) for i in inputs]
        case UnionNode():
            return [f"input_{n}" for n in range(1, len(inputs) + 1)]
        case SqlNode():
            return [i.handle or i.source for i in inputs]
    return ["input"]


def relation_views(node: TransformNode, relations: Sequence[Relation]) -> dict[str, Relation]:
    """Every name the node's SQL may read an input by: a sql node with one input also
    reads it as `input`, as single-input sql nodes always have."""
    views = {r.name: r for r in relations}
    if isinstance(node, SqlNode) and len(relations) == 1:
        views.setdefault("input", relations[0])
    return views


def compile_step(node: TransformNode, relations: Sequence[Relation]) -> str:
    """DuckDB SQL for a node over its input relations (see relation_names)."""
    match node:
        case JoinNode():
            left, right = _sides(relations)
            return _join(node, left, right)
        case UnionNode():
            return _union(node, relations)
        case SqlNode():
            return node.data.query.strip().rstrip(";")
    return compile_node(node, relations[0].schema.names)


def _sides(relations: Sequence[Relation]) -> tuple[Relation, Relation]:
    by_name = {r.name: r for r in relations}
    return by_name["left"], by_name["right"]


def join_columns(node: JoinNode, left: Relation, right: Relation) -> list[JoinColumn]:
    """A join's output: every left column, then (but for semi and anti) the right ones.

    A right key equated with a left key of the same name is left out (for right and full
    joins the left one becomes the matched side's value); a right column whose name is
    taken is renamed `<name>_<right input id>`.
    """
    for key in node.data.on:
        for side, relation, column in (("left", left, key.left), ("right", right, key.right)):
            if column not in relation.schema.names:
                raise CompileError(
                    f"join key {column!r} is not a column of the {side} input "
                    f"{relation.node_id!r}; its columns are {', '.join(relation.schema.names)}"
                )
    same_name_keys = {k.left for k in node.data.on if k.left == k.right}
    coalesce = node.data.how in ("right", "full")
    output = [
        JoinColumn(c, "left", c, coalesced=coalesce and c in same_name_keys)
        for c in left.schema.names
    ]
    if node.data.how in ("semi", "anti"):
        return output
    taken = set(left.schema.names)
    for column in right.schema.names:
        if column in same_name_keys:
            continue
        name = column
        if name in taken:
            name = f"{column}_{right.node_id}"
            suffix = 2
            while name in taken:
                name, suffix = f"{column}_{right.node_id}_{suffix}", suffix + 1
        taken.add(name)
        output.append(JoinColumn(name, "right", column))
    return output


def join_renames(node: JoinNode, left: Relation, right: Relation) -> list[tuple[str, str]]:
    """(right column, output name) for each right column renamed to avoid a clash."""
    return [
        (c.column, c.name)
        for c in join_columns(node, left, right)
        if c.side == "right" and c.name != c.column
    ]


def _join(node: JoinNode, left: Relation, right: Relation) -> str:
    select = []
    for column in join_columns(node, left, right):
        side = "l" if column.side == "left" else "r"
        source = f"{side}.{quote_identifier(column.column)}"
        if column.coalesced:
            source = f"COALESCE({source}, r.{quote_identifier(column.column)})"
        select.append(f"{source} AS {quote_identifier(column.name)}")
    # `=` never matches a NULL key, as in SQL: no IS NOT DISTINCT FROM.
    condition = " AND ".join(
        f"l.{quote_identifier(k.left)} = r.{quote_identifier(k.right)}" for k in node.data.on
    )
    return (
        f"SELECT {', '.join(select)} FROM {quote_identifier(left.name)} AS l "
        f"{JOIN_KEYWORDS[node.data.how]} {quote_identifier(right.name)} AS r ON {condition}"
    )


def _union(node: UnionNode, relations: Sequence[Relation]) -> str:
    _check_union_columns(node, relations)
    operator = "UNION" if node.data.distinct else "UNION ALL"
    if node.data.by == "name":
        operator += " BY NAME"
    return f" {operator} ".join(f"SELECT * FROM {quote_identifier(r.name)}" for r in relations)


def _check_union_columns(node: UnionNode, relations: Sequence[Relation]) -> None:
    """Columns that line up must have compatible types; by position, the same count."""
    first = relations[0]
    if node.data.by == "position":
        for other in relations[1:]:
            if len(other.schema) != len(first.schema):
                raise CompileError(
                    f"union by position needs the same number of columns: input "
                    f"{first.node_id!r} has {len(first.schema)}, input {other.node_id!r} has "
                    f"{len(other.schema)}; use by: name or select matching columns first"
                )
        lined_up = [[(r, r.schema.field(i)) for r in relations] for i in range(len(first.schema))]
    else:
        names = dict.fromkeys(n for r in relations for n in r.schema.names)
        lined_up = [
            [(r, r.schema.field(n)) for r in relations if n in r.schema.names] for n in names
        ]
    for fields in lined_up:
        known = [(r, f) for r, f in fields if type_family(f.type) is not None]
        for relation, field in known[1:]:
            base, base_field = known[0]
            if type_family(field.type) != type_family(base_field.type):
                raise CompileError(
                    f"union cannot line up column {base_field.name!r} ({base_field.type}) of "
                    f"input {base.node_id!r} with {field.name!r} ({field.type}) of input "
                    f"{relation.node_id!r}; convert one with a computed node first"
                )


def type_family(data_type: pa.DataType) -> str | None:
    """Types a union may line up together; None (a column of NULLs) fits any."""
    if pa.types.is_null(data_type):
        return None
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "number"
    if pa.types.is_decimal(data_type):
        return "number"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "text"
    if pa.types.is_timestamp(data_type) or pa.types.is_date(data_type):
        return "time"
    return str(data_type)


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
    """New columns after the existing ones; a column of an existing name replaces it in place."""
    names = [c.name for c in node.data.columns]
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise CompileError(f"computed column {twice!r} is given twice; compute it once")
    expressions = {
        c.name: f"CAST(({c.expression}) AS {result_type(c.result_type)}) "
        f"AS {quote_identifier(c.name)}"
        for c in node.data.columns
    }
    replaced = [expressions[n] for n in names if n in columns]
    added = [expressions[n] for n in names if n not in columns]
    select = "*" + (f" REPLACE ({', '.join(replaced)})" if replaced else "")
    return f"SELECT {', '.join([select, *added])} FROM input"


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


def step_lineage(
    node: TransformNode, relations: Sequence[Relation], output_columns: Sequence[str]
) -> dict[str, list[tuple[str, str]]] | None:
    """Output column -> the (input node id, column) pairs it derives from, where known."""
    match node:
        case JoinNode():
            left, right = _sides(relations)
            lineage = {}
            for column in join_columns(node, left, right):
                side = left if column.side == "left" else right
                sources = [(side.node_id, column.column)]
                if column.coalesced:
                    sources.append((right.node_id, column.column))
                lineage[column.name] = sources
            return lineage
        case UnionNode():
            if node.data.by == "position":
                names = relations[0].schema.names
                return {
                    name: [(r.node_id, r.schema.names[i]) for r in relations]
                    for i, name in enumerate(names)
                }
            names = dict.fromkeys(n for r in relations for n in r.schema.names)
            return {
                name: [(r.node_id, name) for r in relations if name in r.schema.names]
                for name in names
            }
        case SqlNode():
            views = relation_views(node, relations)
            inputs = {name: (r.node_id, r.schema.names) for name, r in views.items()}
            return sql_lineage(node.data.query, inputs, output_columns)
    lineage = column_lineage(node, relations[0].schema.names)
    if lineage is None:
        return None
    source = relations[0].node_id
    return {out: [(source, c) for c in columns] for out, columns in lineage.items()}


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
