"""Semantic checks on a parsed pipeline, reporting every problem at once with a fix hint."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from croniter import croniter

from connectors.registry import DESTINATIONS, SOURCES, config_problems
from datapipe_assets.pipeline.check_validation import check_problems
from datapipe_assets.pipeline.compiler import (
    CompileError,
    Relation,
    compile_node,
    compile_step,
    join_renames,
    relation_names,
    relation_views,
    result_type,
)
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.graph import find_cycle, graph_edges, topological_order
from datapipe_assets.pipeline.partition_validation import partition_notes, partition_problems
from datapipe_assets.pipeline.problems import Problem, timezone_problems
from datapipe_assets.pipeline.row_limit import on_limit_problems
from datapipe_assets.pipeline.spec import (
    MAX_RETRIES,
    TABLE_ALIAS_PATTERN,
    TIMEOUT_HINT,
    TIMEOUT_PATTERN,
    ComputedNode,
    FilterNode,
    JoinNode,
    NodeInput,
    Pipeline,
    SqlNode,
    TransformNode,
    TransformSpec,
    timeout_seconds,
)
from resources.duckdb_sandbox import first_line, output_schema, parse_single_select

SCHEDULE_ALIASES = {"hourly": "0 * * * *", "daily": "0 0 * * *"}


def cron_expression(schedule: str) -> str:
    return SCHEDULE_ALIASES.get(schedule, schedule)


@dataclass(frozen=True)
class Validation:
    """What validating a pipeline found: problems that stop it, notes that do not."""

    problems: list[Problem]
    # Things a reader should know but need not fix, such as columns a join renamed.
    notes: list[str]


def check_pipeline(
    pipeline: Pipeline,
    connections: Mapping[str, ConnectionSpec],
    schemas: Mapping[str, pa.Schema] | None = None,
) -> Validation:
    """Every problem of a parsed pipeline. `schemas` holds the known source table schemas,
    by the tables' names in the pipeline."""
    problems = [
        *_check_connections(pipeline, connections),
        *_check_tables(pipeline),
        *_check_modes(pipeline),
        *_check_schedule(pipeline),
        *_check_bad_rows(pipeline),
        *_check_run_limits(pipeline),
        *on_limit_problems(pipeline, connections),
    ]
    notes: list[str] = []
    # Known output schema per node id (per source table without a transform).
    node_schemas: dict[str, pa.Schema | None] = dict(schemas or {})
    loaded_schemas = dict(node_schemas)
    if pipeline.transform is not None:
        graph_problems = _check_graph(pipeline, pipeline.transform)
        problems += graph_problems
        node_schemas, loaded_schemas = {}, {}
        if not graph_problems:
            node_problems, node_schemas, notes = _check_nodes(
                pipeline, pipeline.transform, schemas or {}
            )
            problems += node_problems
            loaded_schemas = {
                n.id: node_schemas.get(n.id)
                for n in pipeline.transform.nodes
                if n.type == "destination"
            }
    problems += _check_keys(pipeline, schemas or {})
    problems += partition_problems(pipeline, connections, schemas or {}, loaded_schemas)
    notes += partition_notes(pipeline)
    problems += _check_upsert_key(pipeline, loaded_schemas)
    problems += check_problems(pipeline, node_schemas)
    return Validation(problems, notes)


def _check_connections(
    pipeline: Pipeline, connections: Mapping[str, ConnectionSpec]
) -> list[Problem]:
    refs = [(path, block, "source", SOURCES) for path, block in pipeline.source_blocks()]
    refs.append(("destination", pipeline.destination, "destination", DESTINATIONS))
    problems = []
    for path, ref, role, registry in refs:
        if ref.connection is not None:
            spec = connections.get(ref.connection)
            if spec is None:
                known = ", ".join(sorted(connections)) or "none defined"
                problems.append(
                    Problem(
                        f"{path}.connection",
                        f"unknown connection {ref.connection!r}",
                        f"add it to connections.yaml or use one of: {known}",
                    )
                )
                continue
            connector, where, name = spec.connector, f"{path}.connection", spec.name
            config = spec.config
        else:
            connector, where = str(ref.connector), f"{path}.connector"
            name, config = f"{pipeline.name}.{path}", ref.config or {}
        if connector not in registry:
            problems.append(
                Problem(
                    where,
                    f"connector {connector!r} cannot be used as a {role}",
                    f"use one of: {', '.join(sorted(registry))}",
                )
            )
            continue
        for found in config_problems(connector, role, name, config):
            # A named connection's problem is reported where a pipeline uses it.
            at = f"{path}.config" + (f".{found.key}" if found.key else "")
            problems.append(
                Problem(
                    where if ref.connection is not None else at,
                    f"connection {name!r}: {found.message}",
                    found.hint,
                )
            )
    return problems


def _check_tables(pipeline: Pipeline) -> list[Problem]:
    """Table names are unique within a pipeline: they name raw assets and source nodes."""
    problems = []
    first_seen: dict[str, str] = {}
    for table in pipeline.source_tables():
        if table.name not in first_seen:
            first_seen[table.name] = table.path
            continue
        block = pipeline.source_blocks()[table.block][1]
        # Named after its connection where it has a name, e.g. stripe_orders.
        suggestion = f"{block.connection}_{table.name}" if block.connection else f"{table.name}_2"
        problems.append(
            Problem(
                table.path,
                f"table name {table.name!r} is already used by {first_seen[table.name]}",
                f"table names must be unique in a pipeline; rename one with as:, e.g. "
                f"{{name: {table.source_name}, as: {suggestion}}}",
            )
        )
    return problems


def _check_modes(pipeline: Pipeline) -> list[Problem]:
    problems = []
    destination = pipeline.destination
    for table in pipeline.source_tables():
        if table.incremental and not table.incremental_key:
            block = pipeline.source_blocks()[table.block][1]
            # A block-wide setting is reported once, where it is written.
            inherited = (
                block.sync_mode == "incremental" and block.tables[table.index].sync_mode is None
            )
            problem = Problem(
                f"{table.block_path if inherited else table.path}.incremental_key",
                "incremental sync needs an incremental_key",
                "name the column that grows with every insert or update, e.g. updated_at",
            )
            if problem not in problems:
                problems.append(problem)
    if pipeline.incremental() and destination.load_mode == "replace":
        problems.append(
            Problem(
                "destination.load_mode",
                "incremental sync with load_mode replace keeps only each run's new rows",
                "use append or upsert, or sync_mode: full",
            )
        )
    if destination.target_table is not None and pipeline.transform is None:
        # Without a transform each source table is loaded under its own name; a target_table
        # there would otherwise be ignored without a word.
        problems.append(
            Problem(
                "destination.target_table",
                "target_table names a transform's output, and this pipeline has no transform: "
                "each source table loads under its own name",
                "remove target_table, or set table_prefix to name the loaded tables",
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


def _check_bad_rows(pipeline: Pipeline) -> list[Problem]:
    """A reject policy needs a limit, and a limit needs the reject policy."""
    policy = pipeline.on_bad_rows
    limited = policy.max_rejected is not None or policy.max_rejected_percent is not None
    if policy.rejects and not limited:
        return [
            Problem(
                "on_bad_rows",
                "action reject needs a limit on the rows it may reject",
                "add max_rejected (rows) or max_rejected_percent (of the rows read), "
                "e.g. {action: reject, max_rejected: 100}",
            )
        ]
    if limited and not policy.rejects:
        return [
            Problem(
                "on_bad_rows",
                "max_rejected and max_rejected_percent apply only with action reject",
                "add action: reject, or remove the limit",
            )
        ]
    return []


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
    problems += timezone_problems("timezone", pipeline.timezone)
    return problems


def _check_run_limits(pipeline: Pipeline) -> list[Problem]:
    """`retries` and `timeout`: the numbers a run is retried and bounded by."""
    problems = []
    retries = pipeline.retries
    if not 0 <= retries.max_retries <= MAX_RETRIES:
        problems.append(
            Problem(
                "retries.max",
                f"{retries.max_retries} is not between 0 and {MAX_RETRIES}",
                "give how many times a step that failed for a transient reason is tried again "
                "(0: never)",
            )
        )
    for index, delay in enumerate(retries.delays):
        if not (math.isfinite(delay) and delay >= 0):
            problems.append(
                Problem(
                    f"retries.delays[{index}]",
                    f"{delay:g} is not a delay",
                    "give the seconds to wait before that retry, 0 or more",
                )
            )
    if retries.max_retries > 0 and not retries.delays:
        problems.append(
            Problem(
                "retries.delays",
                "no delay is given for the retries",
                "give the seconds before each retry, like [5, 30, 120], or set max: 0",
            )
        )
    timeout = pipeline.timeout
    valid = (
        re.fullmatch(TIMEOUT_PATTERN, timeout.strip()) is not None
        if isinstance(timeout, str)
        else math.isfinite(timeout)
    )
    if not valid or timeout_seconds(timeout) <= 0:
        shown = repr(timeout) if isinstance(timeout, str) else f"{timeout:g}"
        problems.append(Problem("timeout", f"{shown} is not a timeout", TIMEOUT_HINT))
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
    for node in transform.nodes:
        for declared in transform.inputs_of(node.id):
            if declared.source not in known and not declared.path.startswith("transform.edges"):
                problems.append(
                    Problem(
                        declared.path,
                        f"input points to unknown node {declared.source!r}",
                        f"use one of the node ids: {', '.join(ids)}",
                    )
                )
    cycle = find_cycle(ids, graph_edges(transform))
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
        inputs = transform.inputs_of(node.id)
        path = f"transform.nodes[{index}]"
        if node.type == "source":
            table = pipeline.node_table(node.data)
            if table is None:
                problems.append(
                    _unknown_table(pipeline, node.data.table, node.data.connection, path)
                )
            else:
                used_tables.add(table.name)
            if inputs:
                problems.append(
                    Problem(
                        path, f"source node {node.id!r} has an input", "remove the edges into it"
                    )
                )
        else:
            problems += _input_problems(node, inputs, path)
    for table in pipeline.source_tables():
        if table.name not in used_tables:
            problems.append(
                Problem(
                    f"{table.block_path}.tables",
                    f"table {table.name!r} is extracted but no source node reads it",
                    f"add a source node for it or remove it from {table.block_path}.tables",
                )
            )
    return problems


def _unknown_table(pipeline: Pipeline, table: str, connection: str | None, path: str) -> Problem:
    names = ", ".join(pipeline.table_names())
    if connection is not None:
        return Problem(
            f"{path}.data.table",
            f"connection {connection!r} gives this pipeline no table {table!r}",
            f"use one of the pipeline's tables ({names}) and the connection it is read from",
        )
    where = "source.tables" if pipeline.source is not None else "the tables of sources"
    return Problem(
        f"{path}.data.table", f"table {table!r} is not in {where}", f"use one of: {names}"
    )


JOIN_HANDLES = ("left", "right")


def _input_problems(node: TransformNode, inputs: list[NodeInput], path: str) -> list[Problem]:
    """A node's inputs must fit its type: a join's left and right, two or more for a union,
    distinctly named ones for sql, and exactly one for every other node."""
    what = f"{node.type} node {node.id!r}"
    if node.type == "join":
        problems = [
            Problem(
                i.path,
                f"{what}: input {i.source!r} "
                + (f"has handle {i.handle!r}" if i.handle else "does not say which side it is"),
                "give it target_handle: left or right (or inputs: {left: ..., right: ...})",
            )
            for i in inputs
            if i.handle not in JOIN_HANDLES
        ]
        for handle in JOIN_HANDLES:
            count = sum(i.handle == handle for i in inputs)
            if count != 1:
                problems.append(
                    Problem(
                        path,
                        f"{what} has {count} {handle} inputs",
                        f"connect exactly one input with target_handle: {handle}",
                    )
                )
        return problems
    if node.type == "union":
        if len(inputs) < 2:
            return [Problem(path, f"{what} has {len(inputs)} input(s)", "connect two or more")]
        return []
    if node.type == "sql":
        return _sql_input_problems(what, inputs, path)
    problems = []
    if len(inputs) != 1:
        problems.append(
            Problem(
                path,
                f"node {node.id!r} has {len(inputs)} inputs"
                + (f" ({', '.join(i.source for i in inputs)})" if inputs else ""),
                "connect exactly one input into it; only join, union and sql nodes take several",
            )
        )
    problems += [
        Problem(
            i.path,
            f"{what} has one input; handle {i.handle!r} is not one of its inputs",
            "remove target_handle",
        )
        for i in inputs
        if i.handle not in (None, "input")
    ]
    return problems


def _sql_input_problems(what: str, inputs: list[NodeInput], path: str) -> list[Problem]:
    if not inputs:
        return [Problem(path, f"{what} has no input", "connect one or more inputs")]
    problems = []
    names = [i.handle or i.source for i in inputs]
    reported: set[str] = set()
    for declared, name in zip(inputs, names, strict=True):
        if declared.handle is not None and not re.fullmatch(TABLE_ALIAS_PATTERN, declared.handle):
            problems.append(
                Problem(
                    declared.path,
                    f"{what}: handle {declared.handle!r} cannot name a relation in SQL",
                    "use letters, digits and _, starting with a letter",
                )
            )
        elif names.count(name) > 1 and name not in reported:
            reported.add(name)
            problems.append(
                Problem(
                    declared.path,
                    f"{what} reads two inputs by the name {name!r}",
                    "give each a distinct target_handle: it is the input's name in the query",
                )
            )
    return problems


def _check_nodes(
    pipeline: Pipeline, transform: TransformSpec, schemas: Mapping[str, pa.Schema]
) -> tuple[list[Problem], dict[str, pa.Schema | None], list[str]]:
    """Problems of each node, each node's known output schema, and notes on the nodes."""
    problems, notes = [], []
    index_of = {n.id: i for i, n in enumerate(transform.nodes)}
    node_schemas: dict[str, pa.Schema | None] = {}
    for node_id in topological_order(transform):
        node = transform.node(node_id)
        path = f"transform.nodes[{index_of[node_id]}].data"
        if node.type == "source":
            table = pipeline.node_table(node.data)
            node_schemas[node_id] = schemas.get(table.name) if table else None
            continue
        inputs = transform.inputs_of(node_id)
        input_schemas = [node_schemas[i.source] for i in inputs]
        if node.type == "destination":
            node_schemas[node_id] = input_schemas[0]
            continue
        message = static_problem(node)
        node_schemas[node_id] = None
        if message is None and all(s is not None for s in input_schemas):
            relations = [
                Relation(name, i.source, schema)
                for name, i, schema in zip(
                    relation_names(node, inputs), inputs, input_schemas, strict=True
                )
            ]
            node_schemas[node_id], message = _bind(node, relations)
            if message is None and isinstance(node, JoinNode):
                notes += _rename_notes(pipeline, node, relations)
        if message is not None:
            problems.append(
                Problem(
                    path, f"node {node_id!r} ({node.type}): {message}", "fix the node's settings"
                )
            )
    return problems, node_schemas, notes


def _rename_notes(pipeline: Pipeline, node: JoinNode, relations: Sequence[Relation]) -> list[str]:
    by_name = {r.name: r for r in relations}
    right = by_name["right"]
    return [
        f"pipeline {pipeline.name!r}, node {node.id!r} (join): column {column!r} of the right "
        f"input {right.node_id!r} is renamed {renamed!r}, as the left input has {column!r}"
        for column, renamed in join_renames(node, by_name["left"], right)
    ]


def _bind(
    node: TransformNode, relations: Sequence[Relation]
) -> tuple[pa.Schema | None, str | None]:
    """The node's output schema, or why DuckDB cannot compile it against its inputs."""
    try:
        views = {name: r.schema for name, r in relation_views(node, relations).items()}
        return output_schema(compile_step(node, relations), views), None
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
                    "over the relation named input",
                )
        elif isinstance(node, SqlNode):
            _require_one_select(node.data.query, "query", "over its inputs, named by node id")
    except CompileError as error:
        return str(error)
    return None


def _require_one_select(sql: str, what: str, reading: str) -> None:
    one_select, parse_error = parse_single_select(sql)
    if parse_error is not None:
        raise CompileError(f"{what} is not valid SQL: {parse_error}")
    if not one_select:
        raise CompileError(f"{what} must be a single SELECT ({reading})")


def _check_keys(pipeline: Pipeline, schemas: Mapping[str, pa.Schema]) -> list[Problem]:
    problems = []
    for table in pipeline.source_tables():
        schema = schemas.get(table.name)
        if schema is None:
            continue
        own = pipeline.source_blocks()[table.block][1].tables[table.index]
        keys = [
            (
                f"{table.path if own.incremental_key else table.block_path}.incremental_key",
                table.incremental_key if table.incremental else None,
            )
        ]
        keys += [
            (f"{table.path if own.primary_key is not None else table.block_path}.primary_key", k)
            for k in table.primary_key
        ]
        for path, column in keys:
            if column and column not in schema.names:
                problems.append(
                    Problem(
                        path,
                        f"table {table.name!r} has no column {column!r}",
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


def trigger_problems(
    pipelines: Mapping[str, tuple[Pipeline, Sequence[ConnectionSpec]]],
) -> dict[str, list[Problem]]:
    """Problems of the pipelines' triggers, which only the set of valid pipelines can tell.

    `pipelines` maps each valid pipeline's name to its spec and its source blocks'
    connections.
    """
    problems: dict[str, list[Problem]] = {}
    for name, (pipeline, sources) in pipelines.items():
        trigger = pipeline.trigger
        if trigger is None:
            continue
        found = []
        connectors = [s.connector for s in sources]
        if trigger.on_new_file and connectors != ["csv"]:
            found.append(
                Problem(
                    "trigger.on_new_file",
                    "on_new_file needs one csv source "
                    f"(this pipeline reads {', '.join(connectors)})",
                    "use a csv connection whose path is a glob such as incoming/*.csv or "
                    "s3://bucket/prefix/*.csv",
                )
            )
        elif trigger.on_new_file and not _one_table_path(sources[0]):
            found.append(
                Problem(
                    "trigger.on_new_file",
                    f"on_new_file runs once per new file of one table, and connection "
                    f"{sources[0].name!r} offers several (tables: or table_per_file)",
                    "use a csv connection with a path glob such as incoming/*.csv",
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


def _one_table_path(source: ConnectionSpec) -> bool:
    """A CSV connection whose `path` glob is one table: a file arrival is a run of it."""
    return "tables" not in source.config and not source.config.get("table_per_file")
