"""Problems of a pipeline's data-quality checks, found before anything runs.

Asset names, check names, required fields and bounds are checked always; columns, types and
SQL are bound with DuckDB wherever the asset's schema is known.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from datapipe_assets.pipeline.check_rules import (
    REFERENCED,
    ROW_CHECKS,
    SCHEMA_CHECK_NAME,
    CheckTarget,
    asset_names,
    check_targets,
    failing_condition,
    key_columns,
    named_checks,
    only_warns,
    reads_from,
    reference_targets,
)
from datapipe_assets.pipeline.compiler import CompileError, type_family
from datapipe_assets.pipeline.problems import Problem
from datapipe_assets.pipeline.spec import CheckSpec, Pipeline
from resources.duckdb_sandbox import binding_connection, first_line, parse_single_select

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
    "relationships": [
        (("column",), "name the column that refers to the other asset"),
        (("to",), "name the asset it refers to: a node id, a source table or out"),
        (("to_column",), "name the column it refers to, e.g. to_column: id"),
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
        if check.type == "relationships" and check.to is not None:
            field_problems += _reference_problems(path, pipeline, check, targets)
        problems += field_problems
        if field_problems:
            continue
        reference = node_schemas.get(_reference(pipeline, check))
        for target in targets:
            schema = node_schemas.get(target.schema_of)
            if schema is not None:
                problems += _schema_problems(path, check, target.schema_of, schema, reference)
    problems += _name_problems(pipeline)
    # `out` of several tables can report one problem per table: keep each once.
    return list(dict.fromkeys(problems))


def _name_problems(pipeline: Pipeline) -> list[Problem]:
    """A name may be used once per asset: it is the asset check's key in Dagster."""
    first: dict[tuple[tuple[str, ...], str], int] = {}
    problems = []
    for named in named_checks(pipeline):
        earlier = first.setdefault((named.target.key, named.name), named.index)
        if earlier == named.index:
            continue
        check = named.check
        hint = (
            "keep one schema check per asset"
            if named.name == SCHEMA_CHECK_NAME
            else "give one of them another name (name: ...)"
        )
        field = "name" if check.name is not None else "type"
        problems.append(
            Problem(
                f"checks[{named.index}].{field}",
                f"check name {named.name!r} is already used on asset {check.asset!r} by "
                f"checks[{earlier}]",
                hint,
            )
        )
    return problems


def _reference(pipeline: Pipeline, check: CheckSpec) -> str | None:
    """The node id or table whose schema a relationships check's `to` asset has."""
    targets = reference_targets(pipeline, check)
    return targets[0].schema_of if len(targets) == 1 else None


def _reference_problems(
    path: str, pipeline: Pipeline, check: CheckSpec, targets: list[CheckTarget]
) -> list[Problem]:
    """`to` must name one asset, which a blocking check must not be upstream of."""
    references = reference_targets(pipeline, check)
    if not references:
        return [
            Problem(
                f"{path}.to",
                f"unknown asset {check.to!r}",
                f"use a node id, a source table or out: {', '.join(asset_names(pipeline))}",
            )
        ]
    if len(references) > 1:
        return [
            Problem(
                f"{path}.to",
                f"{check.to!r} names {len(references)} destination tables",
                "name the source table of the one meant",
            )
        ]
    if check.blocking and any(reads_from(pipeline, references[0], t) for t in targets):
        return [
            Problem(
                f"{path}.blocking",
                f"{check.to!r} is built from {check.asset!r}, so a blocking check on "
                f"{check.asset!r} that reads it would wait for itself",
                "remove blocking, or put the check on an asset built from both",
            )
        ]
    return []


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
    if check.type == "schema":
        problems += _schema_check_problems(path, check)
    elif check.blocking and only_warns(check):
        problems.append(
            Problem(
                f"{path}.blocking",
                "a check that only warns never blocks",
                "set severity: error or remove blocking",
            )
        )
    if check.type == "expression" and check.expression:
        problems += _expression_problems(path, check.expression)
    return problems


def _schema_check_problems(path: str, check: CheckSpec) -> list[Problem]:
    """Dagster's column-schema-change check runs schema checks: it neither blocks nor renames."""
    problems = []
    if check.blocking:
        problems.append(
            Problem(
                f"{path}.blocking",
                "a schema check cannot block: Dagster's column-schema-change check, which runs "
                "it, never blocks",
                "remove blocking; to stop a load on missing columns, add a blocking "
                "not_null or expression check on the columns the destination needs",
            )
        )
    if check.name is not None:
        problems.append(
            Problem(
                f"{path}.name",
                f"a schema check is always named {SCHEMA_CHECK_NAME} (Dagster names it)",
                "remove name",
            )
        )
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


def _schema_problems(
    path: str, check: CheckSpec, asset: str, schema: pa.Schema, reference: pa.Schema | None
) -> list[Problem]:
    """Problems of a check against its asset's schema (and its `to` asset's, when known)."""
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
    if check.type == "relationships":
        if reference is None:
            return []  # its SQL needs the other asset's columns too
        problems = _relationship_type_problems(path, check, column_type, reference)
        if problems:
            return problems
    if check.type in ROW_CHECKS:
        return _bind_problems(path, check, schema, reference)
    return []


def _relationship_type_problems(
    path: str, check: CheckSpec, column_type: pa.DataType | None, reference: pa.Schema
) -> list[Problem]:
    if check.to_column not in reference.names:
        return [
            Problem(
                f"{path}.to_column",
                f"asset {check.to!r} has no column {check.to_column!r}",
                f"use one of: {', '.join(reference.names)}",
            )
        ]
    to_type = reference.field(check.to_column).type
    families = (type_family(column_type), type_family(to_type)) if column_type else (None, None)
    # A column of NULLs (family None) compares with anything.
    if None not in families and families[0] != families[1]:
        return [
            Problem(
                f"{path}.to_column",
                f"{check.column!r} ({column_type}) cannot be compared with {check.to_column!r} "
                f"of {check.to!r} ({to_type})",
                "refer to a column of the same kind (number, text, date and time, boolean), "
                "or cast one in a computed node",
            )
        ]
    return []


def _is_number(data_type: pa.DataType | None) -> bool:
    return data_type is not None and (
        pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal(data_type)
    )


def _bind_problems(
    path: str, check: CheckSpec, schema: pa.Schema, reference: pa.Schema | None
) -> list[Problem]:
    """The check's SQL must run over a row of the asset's columns and types.

    Run, not only bound: a value that does not convert to the column's type (accepted_values
    ['big'] on a number) fails only when DuckDB evaluates the constant.
    """
    field = {"expression": "expression", "relationships": "to_column"}.get(check.type, "values")
    try:
        relations = {"input": _null_row(schema)}
        if reference is not None:
            relations[REFERENCED] = _null_row(reference)
        with binding_connection(relations) as con:
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


def _null_row(schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays([pa.nulls(1, f.type) for f in schema], schema=schema)
