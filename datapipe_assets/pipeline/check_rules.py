"""Check rules: what each data-quality check in a pipeline file asserts, and where.

A check names an asset: a transform node id, a source table, or `out` (the destination).
This module turns a check into the SQL that finds its failing rows and into its targets'
asset paths; the Dagster layer (`datapipe_assets.defs.checks`) runs them.

Row checks (not_null, unique, accepted_values, range, expression, relationships) count the
rows that fail and pass when the pass rate (percent of rows passing) reaches
`pass_threshold`. NULLs pass accepted_values, range and relationships (not_null checks for
them), NULL keys are never duplicates, and an expression passes only where it is TRUE.
Checks on `out` examine the rows the latest load wrote (its staged file), not the whole
destination table; `reconcile` checks the table.

Every check has a name, unique on its asset: its own `name`, or its type and columns
(`not_null_customer_id`, a second one `not_null_customer_id_2`). A `schema` check is run by
Dagster's own column-schema-change check, whose name is always `column_schema_change`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from datapipe_assets.pipeline.compiler import quote_identifier, quote_literal
from datapipe_assets.pipeline.graph import ancestors
from datapipe_assets.pipeline.keys import AssetPath, load_key, raw_key, upstream_key
from datapipe_assets.pipeline.spec import CheckSpec, Pipeline, destination_node_id

DESTINATION = "out"
ROW_CHECKS = ("not_null", "unique", "accepted_values", "range", "expression", "relationships")
# The name dg.build_column_schema_change_checks gives every check it builds.
SCHEMA_CHECK_NAME = "column_schema_change"
# What a relationships check's SQL calls the `to` asset's rows (`input` is the checked asset's).
REFERENCED = "referenced"


@dataclass(frozen=True)
class CheckTarget:
    """An asset a check runs on, and the node id or table whose schema that asset has."""

    key: AssetPath
    schema_of: str
    destination: bool  # a load asset: its data is the staged file it loaded


def asset_names(pipeline: Pipeline) -> list[str]:
    """Every name a check's `asset` may use."""
    nodes = [n.id for n in pipeline.transform.nodes] if pipeline.transform else []
    return list(dict.fromkeys([*nodes, *pipeline.table_names(), DESTINATION]))


def check_targets(pipeline: Pipeline, asset: str) -> list[CheckTarget]:
    """The assets a check on `asset` runs on; none for an unknown name.

    Without a transform, `out` means every destination table the pipeline loads.
    """
    transform = pipeline.transform
    if transform is None:
        if asset == DESTINATION:
            return [
                CheckTarget(load_key(pipeline, target), table, destination=True)
                for table, target in pipeline.target_tables().items()
            ]
        if asset in pipeline.table_names():
            return [CheckTarget(raw_key(pipeline, asset), asset, destination=False)]
        return []
    # A node id wins over a table of the same name; the two are usually the same asset.
    node = next((n for n in transform.nodes if n.id == asset), None)
    if node is None and asset in pipeline.table_names():
        reads = {n.id: pipeline.node_table(n.data) for n in transform.nodes if n.type == "source"}
        readers = [n for n, table in reads.items() if table is not None and table.name == asset]
        return [
            CheckTarget(raw_key(pipeline, asset), next(iter(readers), asset), destination=False)
        ]
    if node is None and asset == DESTINATION:
        node = transform.node(destination_node_id(transform))
    if node is None:
        return []
    if node.type == "destination":
        key = load_key(pipeline, pipeline.target_table_for_transform())
        return [CheckTarget(key, node.id, destination=True)]
    return [CheckTarget(upstream_key(pipeline, node.id), node.id, destination=False)]


def reference_targets(pipeline: Pipeline, check: CheckSpec) -> list[CheckTarget]:
    """The assets a relationships check's `to` names (validation keeps only exactly one)."""
    return check_targets(pipeline, check.to) if check.to is not None else []


def reads_from(pipeline: Pipeline, downstream: CheckTarget, upstream: CheckTarget) -> bool:
    """Whether `downstream` is built from `upstream`, directly or not (never from itself).

    A check on `upstream` that reads `downstream` and blocks would wait for itself.
    """
    if downstream.key == upstream.key or upstream.destination:
        return False
    transform = pipeline.transform
    if transform is None:
        # Each destination table is loaded from the raw table of its name.
        return downstream.destination and downstream.schema_of == upstream.schema_of
    return upstream.schema_of in ancestors(transform, downstream.schema_of) - {downstream.schema_of}


def key_columns(check: CheckSpec) -> list[str]:
    """The columns a check reads: `columns` (unique's key) or `column`."""
    return check.columns or ([check.column] if check.column else [])


def failing_condition(check: CheckSpec) -> str:
    """A boolean SQL expression over a row of `input`, TRUE where the row fails."""
    column = quote_identifier(check.column or "")
    match check.type:
        case "not_null":
            return f"{column} IS NULL"
        case "unique":
            keys = [quote_identifier(c) for c in key_columns(check)]
            present = " AND ".join(f"{k} IS NOT NULL" for k in keys)
            return f"(COUNT(*) OVER (PARTITION BY {', '.join(keys)}) > 1 AND {present})"
        case "accepted_values":
            return f"{column} NOT IN ({', '.join(quote_literal(v) for v in check.values)})"
        case "range":
            bounds = [(check.minimum, "<"), (check.maximum, ">")]
            outside = [f"{column} {op} {quote_literal(b)}" for b, op in bounds if b is not None]
            return "(" + " OR ".join(outside) + ")"
        case "relationships":
            # NULLs are left out of the subquery: one would make NOT IN unknown for every row.
            to_column = quote_identifier(check.to_column or "")
            return (
                f"({column} IS NOT NULL AND {column} NOT IN "
                f"(SELECT {to_column} FROM {REFERENCED} WHERE {to_column} IS NOT NULL))"
            )
    return f"({check.expression}) IS NOT TRUE"


def freshness_sql(check: CheckSpec) -> str:
    """Rows and the newest value as epoch seconds (a naive timestamp is taken as UTC)."""
    return f"SELECT COUNT(*), epoch(MAX({quote_identifier(check.column or '')})) FROM input"


def describe_check(check: CheckSpec) -> str:
    """One line on what the check asserts, shown in the Dagster UI."""
    column = f"`{check.column}`"
    threshold = f" for at least {check.pass_threshold:g}% of rows"
    match check.type:
        case "not_null":
            text = f"{column} is never NULL"
        case "unique":
            text = f"{', '.join(f'`{c}`' for c in key_columns(check))} identify each row"
        case "accepted_values":
            text = f"{column} is one of {', '.join(map(str, check.values))} (or NULL)"
        case "range":
            text = f"{column} is within [{_bound(check.minimum)}, {_bound(check.maximum)}]"
        case "expression":
            text = f"`{check.expression}` is true"
        case "relationships":
            text = f"every {column} (or NULL) is an `{check.to_column}` of `{check.to}`"
        case "row_count":
            return f"Row count is within [{_bound(check.minimum)}, {_bound(check.maximum)}]."
        case "freshness":
            return f"The newest {column} is at most {check.max_age} old."
        case "schema":
            return "Column names and types are those of the previous materialization."
        case _:
            return (
                "The destination's row count matches the load: replace = rows loaded, "
                "append = previous rows + rows loaded, upsert >= rows loaded."
            )
    return text + (threshold if check.pass_threshold < 100 else "") + "."


def _bound(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def only_warns(check: CheckSpec) -> bool:
    """A schema check with `on_change: warn` only warns, whatever its severity."""
    return check.severity == "warn" or (check.type == "schema" and check.on_change == "warn")


def check_name(check: CheckSpec) -> str:
    """The check's own name, else `not_null_customer_id`: its type and columns, as a Dagster name.

    A schema check is always SCHEMA_CHECK_NAME: Dagster's builder names it.
    """
    if check.type == "schema":
        return SCHEMA_CHECK_NAME
    if check.name is not None:
        return check.name
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join([check.type, *key_columns(check)]))


@dataclass(frozen=True)
class NamedCheck:
    """One check on one asset it runs on, with its name there."""

    index: int  # in pipeline.checks
    check: CheckSpec
    target: CheckTarget
    name: str


def named_checks(pipeline: Pipeline) -> list[NamedCheck]:
    """Every check on every asset it runs on, in file order, named.

    An unnamed check of a default name already used on the asset gets `_2`, `_3`, ... so two
    `expression` checks need no names. Given names are kept as they are: validation reports
    two checks of one name on one asset.
    """
    uses: Counter[tuple[AssetPath, str]] = Counter()
    named = []
    for index, check in enumerate(pipeline.checks):
        for target in check_targets(pipeline, check.asset):
            name = check_name(check)
            if check.name is None and check.type != "schema":
                uses[target.key, name] += 1
                count = uses[target.key, name]
                name = name if count == 1 else f"{name}_{count}"
            named.append(NamedCheck(index, check, target, name))
    return named
