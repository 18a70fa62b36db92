"""Semantic checks on a parsed pipeline, reporting every problem at once with a fix hint."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping

import duckdb
import pyarrow as pa
from croniter import croniter

from connectors.registry import DESTINATIONS, SOURCES
from datapipe_assets.pipeline.check_validation import check_problems
from datapipe_assets.pipeline.compiler import CompileError, compile_node, result_type
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.problems import Problem
from datapipe_assets.pipeline.spec import (
    ComputedNode,
    FilterNode,
    Pipeline,
    SqlNode,
    TransformNode,
    TransformSpec,
)
from resources.duckdb_sandbox import first_line, output_schema, parse_single_select

SCHEDULE_ALIASES = {"hourly": "0 * * * *", "daily": "0 0 * * *"}


def cron_expression(schedule: str) -> str:
    return SCHEDULE_ALIASES.get(schedule, schedule)


def check_pipeline(
    pipeline: Pipeline,
    connections: Mapping[str, ConnectionSpec],
    schemas: Mapping[str, pa.Schema] | None = None,
) -> list[Problem]:
    problems = [
        *_check_connections(pipeline, connections),
        *_check_modes(pipeline),
        *_check_schedule(pipeline),
    ]
    # Known output schema per node id (per source table without a transform).
    node_schemas: dict[str, pa.Schema | None] = dict(schemas or {})
    loaded_schemas = dict(node_schemas)
    if pipeline.transform is not None:
        graph_problems = _check_graph(pipeline, pipeline.transform)
        problems += graph_problems
        node_schemas, loaded_schemas = {}, {}
        if not graph_problems:
            node_problems, node_schemas = _check_nodes(pipeline, pipeline.transform, schemas or {})
            problems += node_problems
            loaded_schemas = {
                n.id: node_schemas.get(n.id)
                for n in pipeline.transform.nodes
                if n.type == "destination"
            }
    problems += _check_keys(pipeline, schemas or {})
    problems += _check_upsert_key(pipeline, loaded_schemas)
    problems += check_problems(pipeline, node_schemas)
    return problems


def _check_connections(
    pipeline: Pipeline, connections: Mapping[str, ConnectionSpec]
) -> list[Problem]:
    problems = []
    for block, registry in (("source", SOURCES), ("destination", DESTINATIONS)):
        ref = getattr(pipeline, block)
        if ref.connection is not None:
            spec = connections.get(ref.connection)
            if spec is None:
                known = ", ".join(sorted(connections)) or "none defined"
                problems.append(
                    Problem(
                        f"{block}.connection",
                        f"unknown connection {ref.connection!r}",
                        f"add it to connections.yaml or use one of: {known}",
                    )
                )
                continue
            connector, path = spec.connector, f"{block}.connection"
        else:
            connector, path = ref.connector, f"{block}.connector"
        if connector not in registry:
            problems.append(
                Problem(
                    path,
                    f"connector {connector!r} cannot be used as a {block}",
                    f"use one of: {', '.join(sorted(registry))}",
                )
            )
    return problems


def _check_modes(pipeline: Pipeline) -> list[Problem]:
    problems = []
    source, destination = pipeline.source, pipeline.destination
    if source.sync_mode == "incremental":
        if not source.incremental_key:
            problems.append(
                Problem(
                    "source.incremental_key",
                    "incremental sync needs an incremental_key",
                    "name the column that grows with every insert or update, e.g. updated_at",
                )
            )
        if destination.load_mode == "replace":
            problems.append(
                Problem(
                    "destination.load_mode",
                    "incremental sync with load_mode replace keeps only each run's new rows",
                    "use append or upsert, or sync_mode: full",
                )
            )
    if destination.load_mode == "upsert" and not destination.upsert_key:
        problems.append(
            Problem(
                "destination.upsert_key",
                "load_mode upsert needs an upsert_key",
                "list the column(s) that identify a row, e.g. [id]",
            )
        )
    return problems


def _check_schedule(pipeline: Pipeline) -> list[Problem]:
    problems = []
    if pipeline.schedule is not None:
        cron = cron_expression(pipeline.schedule)
        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            problems.append(
                Problem(
                    "schedule",
                    f"{pipeline.schedule!r} is not a schedule",
                    "use hourly, daily or a 5-field cron string such as '30 6 * * 1-5'",
                )
            )
    try:
        zoneinfo.ZoneInfo(pipeline.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(
            Problem(
                "timezone",
                f"unknown timezone {pipeline.timezone!r}",
                "use an IANA name such as UTC or Europe/Berlin",
            )
        )
    return problems


def _check_graph(pipeline: Pipeline, transform: TransformSpec) -> list[Problem]:
    problems = []
    ids = [n.id for n in transform.nodes]
    for index, node_id in enumerate(ids):
        if ids.index(node_id) != index:
            problems.append(
                Problem(
                    f"transform.nodes[{index}].id",
                    f"duplicate node id {node_id!r}",
                    "give every node a unique id",
                )
            )
    known = set(ids)
    for index, edge in enumerate(transform.edges):
        for end in ("source", "target"):
            if getattr(edge, end) not in known:
                problems.append(
                    Problem(
                        f"transform.edges[{index}].{end}",
                        f"edge points to unknown node {getattr(edge, end)!r}",
                        f"use one of the node ids: {', '.join(ids)}",
                    )
                )
    cycle = find_cycle(ids, [(e.source, e.target) for e in transform.edges])
    if cycle:
        problems.append(
            Problem(
                "transform.edges",
                f"the graph has a cycle: {' -> '.join(cycle)}",
                "remove one of these edges",
            )
        )
    problems += _check_inputs(pipeline, transform)
    return problems


def _check_inputs(pipeline: Pipeline, transform: TransformSpec) -> list[Problem]:
    problems = []
    destinations = [n.id for n in transform.nodes if n.type == "destination"]
    if len(destinations) != 1:
        problems.append(
            Problem(
                "transform.nodes",
                f"the graph has {len(destinations)} destination nodes",
                "add exactly one node of type destination",
            )
        )
    used_tables = set()
    for index, node in enumerate(transform.nodes):
        inputs = [e.source for e in transform.edges if e.target == node.id]
        path = f"transform.nodes[{index}]"
        if node.type == "source":
            used_tables.add(node.data.table)
            if node.data.table not in pipeline.source.tables:
                problems.append(
                    Problem(
                        f"{path}.data.table",
                        f"table {node.data.table!r} is not in source.tables",
                        f"use one of: {', '.join(pipeline.source.tables)}",
                    )
                )
            if inputs:
                problems.append(
                    Problem(
                        path, f"source node {node.id!r} has an input", "remove the edges into it"
                    )
                )
        elif len(inputs) != 1:
            problems.append(
                Problem(
                    path,
                    f"node {node.id!r} has {len(inputs)} inputs"
                    + (f" ({', '.join(inputs)})" if inputs else ""),
                    "connect exactly one edge into every node but source nodes",
                )
            )
    for table in pipeline.source.tables:
        if table not in used_tables:
            problems.append(
                Problem(
                    "source.tables",
                    f"table {table!r} is extracted but no source node reads it",
                    "add a source node for it or remove it from source.tables",
                )
            )
    return problems


def find_cycle(nodes: list[str], edges: list[tuple[str, str]]) -> list[str] | None:
    """A cycle's path (first node repeated at the end), by three-colour depth-first search."""
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in edges:
        if source in children and target in children:
            children[source].append(target)
    colour = dict.fromkeys(nodes, "white")
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = "grey"
        stack.append(node)
        for child in children[node]:
            if colour[child] == "grey":
                return [*stack[stack.index(child) :], child]
            if colour[child] == "white" and (found := visit(child)):
                return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in nodes:
        if colour[node] == "white" and (found := visit(node)):
            return found
    return None


def topological_order(transform: TransformSpec) -> list[str]:
    """Node ids with every node after its input (the graph is known to be acyclic)."""
    order: list[str] = []
    pending = [n.id for n in transform.nodes if n.type == "source"]
    while pending:
        node_id = pending.pop(0)
        order.append(node_id)
        pending += [e.target for e in transform.edges if e.source == node_id]
    return order


def _check_nodes(
    pipeline: Pipeline, transform: TransformSpec, schemas: Mapping[str, pa.Schema]
) -> tuple[list[Problem], dict[str, pa.Schema | None]]:
    """Problems of each node, and each node's known output schema."""
    problems = []
    index_of = {n.id: i for i, n in enumerate(transform.nodes)}
    node_schemas: dict[str, pa.Schema | None] = {}
    for node_id in topological_order(transform):
        node = transform.node(node_id)
        path = f"transform.nodes[{index_of[node_id]}].data"
        if node.type == "source":
            node_schemas[node_id] = schemas.get(node.data.table)
            continue
        input_schema = node_schemas[transform.input_of(node_id)]
        if node.type == "destination":
            node_schemas[node_id] = input_schema
            continue
        message = static_problem(node)
        if message is None and input_schema is not None:
            schema, message = _bind(node, input_schema)
            node_schemas[node_id] = schema
        else:
            node_schemas[node_id] = None
        if message is not None:
            problems.append(
                Problem(
                    path, f"node {node_id!r} ({node.type}): {message}", "fix the node's settings"
                )
            )
    return problems, node_schemas


def _bind(node: TransformNode, input_schema: pa.Schema) -> tuple[pa.Schema | None, str | None]:
    """The node's output schema, or why DuckDB cannot compile it against its input."""
    try:
        return output_schema(compile_node(node, input_schema.names), input_schema), None
    except CompileError as error:
        return None, str(error)
    except duckdb.Error as error:
        return None, first_line(error)


def static_problem(node: TransformNode) -> str | None:
    """What is wrong with a node whatever its input columns, or None."""
    try:
        if isinstance(node, FilterNode):
            compile_node(node, [node.data.column])
        elif isinstance(node, ComputedNode):
            for column in node.data.columns:
                _require_one_select(
                    f"SELECT CAST(({column.expression}) AS {result_type(column.result_type)})",
                    f"expression of {column.name!r}",
                )
        elif isinstance(node, SqlNode):
            _require_one_select(node.data.query, "query")
    except CompileError as error:
        return str(error)
    return None


def _require_one_select(sql: str, what: str) -> None:
    one_select, parse_error = parse_single_select(sql)
    if parse_error is not None:
        raise CompileError(f"{what} is not valid SQL: {parse_error}")
    if not one_select:
        raise CompileError(f"{what} must be a single SELECT (over the relation named input)")


def _check_keys(pipeline: Pipeline, schemas: Mapping[str, pa.Schema]) -> list[Problem]:
    problems = []
    for table in pipeline.source.tables:
        schema = schemas.get(table)
        if schema is None:
            continue
        keys = [("source.incremental_key", pipeline.source.incremental_key)]
        keys += [("source.primary_key", k) for k in pipeline.source.primary_key]
        for path, column in keys:
            if column and column not in schema.names:
                problems.append(
                    Problem(
                        path,
                        f"table {table!r} has no column {column!r}",
                        f"use one of: {', '.join(schema.names)}",
                    )
                )
    return problems


def _check_upsert_key(pipeline: Pipeline, loaded: Mapping[str, pa.Schema | None]) -> list[Problem]:
    """The upsert key must be columns of every table the pipeline loads, where known."""
    problems = []
    for schema in loaded.values():
        if schema is None:
            continue
        for column in pipeline.destination.upsert_key:
            if column not in schema.names:
                problems.append(
                    Problem(
                        "destination.upsert_key",
                        f"the loaded data has no column {column!r}",
                        f"use one of: {', '.join(schema.names)}",
                    )
                )
    return problems


def trigger_problems(pipelines: Mapping[str, tuple[Pipeline, str]]) -> dict[str, list[Problem]]:
    """Problems of the pipelines' triggers, which only the set of valid pipelines can tell.

    `pipelines` maps each valid pipeline's name to its spec and its source's connector.
    """
    problems: dict[str, list[Problem]] = {}
    for name, (pipeline, connector) in pipelines.items():
        trigger = pipeline.trigger
        if trigger is None:
            continue
        found = []
        if trigger.on_new_file and connector != "csv":
            found.append(
                Problem(
                    "trigger.on_new_file",
                    f"on_new_file needs a csv source (this one is {connector})",
                    "use a csv connection whose path is a glob such as incoming/*.csv or "
                    "s3://bucket/prefix/*.csv",
                )
            )
        for upstream in trigger.after:
            if upstream not in pipelines or upstream == name:
                known = ", ".join(sorted(set(pipelines) - {name})) or "none"
                found.append(
                    Problem(
                        "trigger.after",
                        f"names {upstream!r}, which is not another valid pipeline",
                        f"use one of: {known}",
                    )
                )
        if found:
            problems[name] = found
    edges = [
        (upstream, name)
        for name, (pipeline, _) in pipelines.items()
        for upstream in (pipeline.trigger.after if pipeline.trigger else [])
        if upstream in pipelines
    ]
    cycle = find_cycle(list(pipelines), edges)
    if cycle:
        problems.setdefault(cycle[-1], []).append(
            Problem(
                "trigger.after",
                f"the pipelines wait for each other: {' -> '.join(cycle)}",
                "remove one of these links",
            )
        )
    return problems
