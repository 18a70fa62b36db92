"""Problems of a pipeline's data-quality checks, found before anything runs.

Asset names, required fields and bounds are checked always; columns and SQL are bound
with DuckDB wherever the asset's schema is known.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from datapipe_assets.pipeline.check_rules import (
    ROW_CHECKS,
    asset_names,
    check_targets,
    failing_condition,
    key_columns,
    only_warns,
)
from datapipe_assets.pipeline.compiler import CompileError
from datapipe_assets.pipeline.problems import Problem
from datapipe_assets.pipeline.spec import CheckSpec, Pipeline
from resources.duckdb_sandbox import first_line, parse_single_select, sandboxed_connection

# Per check type: the fields it needs (any one of a group), with what to write.
REQUIRED: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "not_null": [(("column",), "name the column to check")],
    "unique": [(("columns", "column"), "list the key column(s), e.g. columns: [id]")],
    "accepted_values": [
        (("column",), "name the column to check"),
        (("values",), "list the accepted values, e.g. values: [usd, eur]"),
    ],
    "range": [
        (("column",), "name the column to check"),
        (("min", "max"), "give min, max or both"),
    ],
    "expression": [(("expression",), "give a condition every row meets, e.g. amount >= 0")],
    "row_count": [(("min", "max"), "give min, max or both")],
    "freshness": [
        (("column",), "name the timestamp column"),
        (("max_age",), "give the largest allowed age, e.g. max_age: 26h"),
    ],
}
FIELDS = {"min": "minimum", "max": "maximum"}


def check_problems(
    pipeline: Pipeline, node_schemas: Mapping[str, pa.Schema | None]
) -> list[Problem]:
    """Every problem of `pipeline.checks`.

    `node_schemas` holds the known output schema per node id (per source table for a
    pipeline without a transform); a missing or None entry means unknown.
    """
    problems: list[Problem] = []
    for index, check in enumerate(pipeline.checks):
        path = f"checks[{index}]"
        targets = check_targets(pipeline, check.asset)
        if not targets:
            problems.append(
                Problem(
                    f"{path}.asset",
                    f"unknown asset {check.asset!r}",
                    f"use a node id, a source table or out: {', '.join(asset_names(pipeline))}",
                )
            )
            continue
        field_problems = _field_problems(path, check)
        if check.type == "reconcile" and not all(t.destination for t in targets):
            field_problems.append(
                Problem(
                    f"{path}.asset",
                    f"reconcile compares the destination table with the load, "
                    f"and {check.asset!r} is not the destination",
                    "use asset: out",
                )
            )
        problems += field_problems
        if field_problems:
            continue
        for target in targets:
            schema = node_schemas.get(target.schema_of)
            if schema is not None:
                problems += _schema_problems(path, check, target.schema_of, schema)
    # `out` of several tables can report one problem per table: keep each once.
    return list(dict.fromkeys(problems))


def _field_problems(path: str, check: CheckSpec) -> list[Problem]:
    problems = []
    for fields, hint in REQUIRED.get(check.type, []):
        if not any(getattr(check, FIELDS.get(f, f)) not in (None, []) for f in fields):
            problems.append(
                Problem(
                    f"{path}.{fields[0]}",
                    f"a {check.type} check needs {' or '.join(fields)}",
                    hint,
                )
            )
    if check.minimum is not None and check.maximum is not None and check.minimum > check.maximum:
        problems.append(
            Problem(
                f"{path}.min",
                f"min {check.minimum:g} is greater than max {check.maximum:g}",
                "swap them",
            )
        )
    if check.blocking and only_warns(check):
        problems.append(
            Problem(
                f"{path}.blocking",
                "a check that only warns never blocks",
                "set severity: error (for schema checks, on_change: fail) or remove blocking",
            )
        )
    if check.type == "expression" and check.expression:
        problems += _expression_problems(path, check.expression)
    return problems


def _expression_problems(path: str, expression: str) -> list[Problem]:
    """An expression must parse as one SQL condition, whatever the columns."""
    one_select, parse_error = parse_single_select(f"SELECT ({expression}) FROM input")
    if one_select:
        return []
    reason = parse_error or "it must be one condition"
    return [
        Problem(
            f"{path}.expression",
            f"expression {expression!r} is not valid SQL: {reason}",
            "write a DuckDB condition over the asset's columns, e.g. amount >= 0",
        )
    ]


def _schema_problems(path: str, check: CheckSpec, asset: str, schema: pa.Schema) -> list[Problem]:
    field = "columns" if check.columns else "column"
    missing = [c for c in key_columns(check) if c not in schema.names]
    if missing:
        return [
            Problem(
                f"{path}.{field}",
                f"asset {asset!r} has no column {column!r}",
                f"use one of: {', '.join(schema.names)}",
            )
            for column in missing
        ]
    column_type = schema.field(check.column).type if check.column else None
    if check.type == "freshness" and not (
        pa.types.is_timestamp(column_type) or pa.types.is_date(column_type)
    ):
        return [
            Problem(
                f"{path}.column",
                f"freshness needs a date or timestamp column; {check.column!r} is {column_type}",
                "name a column such as updated_at",
            )
        ]
    if check.type == "range" and not _is_number(column_type):
        return [
            Problem(
                f"{path}.column",
                f"range needs a numeric column; {check.column!r} is {column_type}",
                "use accepted_values or an expression for other types",
            )
        ]
    if check.type in ROW_CHECKS:
        return _bind_problems(path, check, schema)
    return []


def _is_number(data_type: pa.DataType | None) -> bool:
    return data_type is not None and (
        pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal(data_type)
    )


def _bind_problems(path: str, check: CheckSpec, schema: pa.Schema) -> list[Problem]:
    """The check's SQL must run over a row of the asset's columns and types.

    Run, not only bound: a value that does not convert to the column's type (accepted_values
    ['big'] on a number) fails only when DuckDB evaluates the constant.
    """
    field = "expression" if check.type == "expression" else "values"
    null_row = pa.Table.from_arrays([pa.nulls(1, f.type) for f in schema], schema=schema)
    try:
        with sandboxed_connection() as con:
            con.register("input", null_row)
            con.execute(f"SELECT {failing_condition(check)} FROM input").fetchall()
    except (duckdb.Error, CompileError) as error:
        reason = first_line(error) if isinstance(error, duckdb.Error) else str(error)
        return [
            Problem(
                f"{path}.{field}",
                f"{check.type} check does not fit the asset's columns: {reason}",
                "use the asset's column names and values of the column's type",
            )
        ]
    return []
