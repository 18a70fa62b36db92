"""The pipeline file: its pydantic model, shared by the YAML form and the visual editor's JSON.

Keys are accepted in snake_case and camelCase alike, so one model parses both shapes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from connectors.shared.durations import DURATION_PATTERN, duration_seconds

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
# The org of a pipeline that names none; its pipelines keep their plain names in Dagster.
DEFAULT_ORG = "default"
# Node ids and table names become Dagster asset-key parts and op names.
NODE_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,62}$"
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
# A table's name in the pipeline (`as:`) is one asset-key part and one SQL identifier.
TABLE_ALIAS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"

FILTER_OPERATORS = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "not_contains",
    "is_null",
    "is_not_null",
    "in",
)
AGGREGATE_FUNCTIONS = ("sum", "count", "avg", "min", "max", "count_distinct")
RESULT_TYPES = ("DOUBLE", "BIGINT", "VARCHAR", "BOOLEAN", "TIMESTAMP", "DATE", "DECIMAL(p,s)")
DECIMAL_TYPE = re.compile(r"^DECIMAL\(\s*(\d{1,2})\s*,\s*(\d{1,2})\s*\)$", re.IGNORECASE)


def _as_list(value: Any) -> Any:
    """A key (or table) given as one string means the same as a one-item list."""
    return [value] if isinstance(value, str) else value


def _as_list_of_one(value: Any) -> Any:
    """A single number means a one-item list."""
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value


def _yaml_on_key(value: Any) -> Any:
    """YAML 1.1 reads a bare `on:` key as the boolean True; mean the word."""
    if isinstance(value, dict) and True in value:
        value = {("on" if key is True else key): item for key, item in value.items()}
    return value


ColumnList = Annotated[list[str], BeforeValidator(_as_list)]
SyncMode = Literal["full", "incremental"]


class SpecModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        frozen=True,
    )


class ConnectionRef(SpecModel):
    """A named connection from connections.yaml, or a connector given inline."""

    connection: str | None = None
    connector: str | None = None
    config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> ConnectionRef:
        if self.connection is None and self.connector is None:
            raise ValueError("give `connection` (a name from connections.yaml) or `connector`")
        if self.connection is not None and (self.connector is not None or self.config):
            raise ValueError("give either `connection` or `connector` + `config`, not both")
        return self


def _table_entry(value: Any) -> Any:
    """A table given as a plain name means `{name: ...}` with the block's settings."""
    return {"name": value} if isinstance(value, str) else value


class TableSpec(SpecModel):
    """One table of a source block; each setting left out is the block's."""

    name: Annotated[str, Field(pattern=TABLE_PATTERN)]
    # `as` in the file: the table's name in this pipeline, when two connections share one.
    alias: Annotated[str, Field(pattern=TABLE_ALIAS_PATTERN)] | None = Field(
        default=None, alias="as"
    )
    sync_mode: SyncMode | None = None
    incremental_key: str | None = None
    primary_key: ColumnList | None = None


class SourceSpec(ConnectionRef):
    """A source block: one connection, its tables and their default sync settings."""

    tables: Annotated[
        list[Annotated[TableSpec, BeforeValidator(_table_entry)]], BeforeValidator(_as_list)
    ] = Field(min_length=1)
    sync_mode: SyncMode = "full"
    incremental_key: str | None = None
    primary_key: ColumnList = []


@dataclass(frozen=True)
class SourceTable:
    """A source table with its block's settings applied: what one raw asset extracts."""

    name: str  # its name in the pipeline: raw asset key, source nodes, checks, cursor state
    source_name: str  # its name in the connection
    block: int  # index of its source block
    block_path: str  # `source` or `sources[i]`, for messages
    index: int  # its index in the block's tables
    sync_mode: str
    incremental_key: str | None
    primary_key: tuple[str, ...]

    @property
    def incremental(self) -> bool:
        return self.sync_mode == "incremental"

    @property
    def path(self) -> str:
        return f"{self.block_path}.tables[{self.index}]"


class DestinationSpec(ConnectionRef):
    target_table: Annotated[str, Field(pattern=TABLE_PATTERN)] | None = None
    table_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]*$")] = ""
    load_mode: Literal["append", "replace", "upsert"] = "replace"
    upsert_key: ColumnList = []
    create_table_if_missing: bool = True


class SourceNodeData(SpecModel):
    table: str
    # Only needed to say which connection's table is meant, e.g. by its name there.
    connection: str | None = None


class EmptyData(SpecModel):
    model_config = ConfigDict(extra="ignore")


class FilterData(SpecModel):
    column: str
    operator: Literal[FILTER_OPERATORS]  # type: ignore[valid-type]
    value: Any = None


class RenameMapping(SpecModel):
    from_: str = Field(alias="from")
    to: str


class RenameData(SpecModel):
    mappings: list[RenameMapping] = Field(min_length=1)
    drop_unmapped: bool = False


class ComputedColumn(SpecModel):
    name: str
    expression: str = Field(min_length=1)
    result_type: str


class ComputedData(SpecModel):
    columns: list[ComputedColumn] = Field(min_length=1)


class Measure(SpecModel):
    column: str
    function: Literal[AGGREGATE_FUNCTIONS]  # type: ignore[valid-type]
    alias: str


class AggregateData(SpecModel):
    group_by: ColumnList = []
    measures: list[Measure] = Field(min_length=1)


class DeduplicateData(SpecModel):
    columns: ColumnList = Field(min_length=1)
    keep_strategy: Literal["first", "last"] = "first"
    order_by: str | None = None


class SqlData(SpecModel):
    query: str = Field(min_length=1)


JOIN_TYPES = ("inner", "left", "right", "full", "semi", "anti")


class JoinKey(SpecModel):
    left: str
    right: str


def _join_key(value: Any) -> Any:
    """A join key given as one name means the column of that name on both sides."""
    return {"left": value, "right": value} if isinstance(value, str) else value


class JoinData(SpecModel):
    how: Literal[JOIN_TYPES] = "inner"  # type: ignore[valid-type]
    on: Annotated[
        list[Annotated[JoinKey, BeforeValidator(_join_key)]], BeforeValidator(_as_list)
    ] = Field(min_length=1)
    _on_key = model_validator(mode="before")(_yaml_on_key)


class UnionData(SpecModel):
    by: Literal["name", "position"] = "name"
    distinct: bool = False


def _drop_editor_keys(*keys: str) -> Any:
    """The visual editor's canvas positions and edge ids: accepted, then ignored."""

    def drop(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in keys}
        return value

    return model_validator(mode="before")(drop)


class _Node(SpecModel):
    id: Annotated[str, Field(pattern=NODE_ID_PATTERN)]
    # The node's inputs, as an alternative to edges: a list of node ids, or handle -> node id.
    inputs: list[str] | dict[str, str] | None = None
    # Stage this node's output as parquet even where its segment would fuse it (see
    # datapipe_assets.pipeline.segments): to inspect it, or to re-run from it.
    stage: bool = False
    _ignore_position = _drop_editor_keys("position")


class SourceNode(_Node):
    type: Literal["source"]
    data: SourceNodeData


class DestinationNode(_Node):
    type: Literal["destination"]
    data: EmptyData = EmptyData()


class FilterNode(_Node):
    type: Literal["filter"]
    data: FilterData


class RenameNode(_Node):
    type: Literal["rename"]
    data: RenameData


class ComputedNode(_Node):
    type: Literal["computed"]
    data: ComputedData


class AggregateNode(_Node):
    type: Literal["aggregate"]
    data: AggregateData


class DeduplicateNode(_Node):
    type: Literal["deduplicate"]
    data: DeduplicateData


class SqlNode(_Node):
    type: Literal["sql"]
    data: SqlData


class JoinNode(_Node):
    type: Literal["join"]
    data: JoinData


class UnionNode(_Node):
    type: Literal["union"]
    data: UnionData = UnionData()


TransformNode = (
    FilterNode
    | RenameNode
    | ComputedNode
    | AggregateNode
    | DeduplicateNode
    | SqlNode
    | JoinNode
    | UnionNode
)
Node = Annotated[
    SourceNode | DestinationNode | TransformNode,
    Field(discriminator="type"),
]


class Edge(SpecModel):
    _ignore_id = _drop_editor_keys("id", "sourceHandle", "source_handle")
    source: str
    target: str
    # Which input of the target this edge feeds (React Flow's targetHandle): left/right of a
    # join, or the name a sql node reads the input by.
    target_handle: str | None = None


@dataclass(frozen=True)
class NodeInput:
    """One input of a node: the node it reads, through which handle, declared where."""

    source: str
    handle: str | None
    path: str


class TransformSpec(SpecModel):
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = []

    def node(self, node_id: str) -> Any:
        return next(n for n in self.nodes if n.id == node_id)

    def inputs_of(self, node_id: str) -> list[NodeInput]:
        """A node's inputs in declared order: its incoming edges, then its `inputs`."""
        found = [
            NodeInput(e.source, e.target_handle, f"transform.edges[{i}]")
            for i, e in enumerate(self.edges)
            if e.target == node_id
        ]
        index = next(i for i, n in enumerate(self.nodes) if n.id == node_id)
        declared = self.nodes[index].inputs
        path = f"transform.nodes[{index}].inputs"
        if isinstance(declared, dict):
            found += [NodeInput(s, h, f"{path}.{h}") for h, s in declared.items()]
        elif declared:
            found += [NodeInput(s, None, f"{path}[{i}]") for i, s in enumerate(declared)]
        return found

    def input_of(self, node_id: str) -> str:
        """The one input of a single-input node."""
        return self.inputs_of(node_id)[0].source

    def consumers_of(self, node_id: str) -> list[str]:
        return [n.id for n in self.nodes if any(i.source == node_id for i in self.inputs_of(n.id))]


CHECK_TYPES = (
    "not_null", "unique", "accepted_values", "range", "expression", "row_count", "freshness",
    "schema", "reconcile", "relationships",
)  # fmt: skip
ALERT_EVENTS = (
    "failure", "check_failed", "zero_rows", "slow_run", "schema_change", "usage_limit",
)  # fmt: skip


class CheckSpec(SpecModel):
    """A data-quality check on a node, a source table or the destination (`out`)."""

    asset: str
    type: Literal[CHECK_TYPES]  # type: ignore[valid-type]
    # The asset check's name in the UI and in `datapipe status`; default: type and columns.
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    column: str | None = None
    columns: ColumnList = []
    values: list[Any] = []
    # `min` / `max` in the file; named so they do not shadow the builtins.
    minimum: float | None = Field(default=None, alias="min")
    maximum: float | None = Field(default=None, alias="max")
    expression: str | None = None
    pass_threshold: float = Field(default=100.0, ge=0, le=100)  # percent of rows
    max_age: Annotated[str, Field(pattern=DURATION_PATTERN)] | None = None
    on_change: Literal["warn", "fail"] = "warn"
    severity: Literal["warn", "error"] = "error"
    blocking: bool = False
    # relationships: every non-NULL `column` value must appear in `to_column` of asset `to`.
    to: str | None = None
    to_column: str | None = None


class AlertSpec(SpecModel):
    """Who hears about which events of a pipeline, and how."""

    _on_key = model_validator(mode="before")(_yaml_on_key)
    on: Annotated[list[Literal[ALERT_EVENTS]], BeforeValidator(_as_list)]  # type: ignore[valid-type]
    channel: Literal["email", "slack", "webhook"]
    to: ColumnList = []
    url: str | None = None
    slow_run_after: Annotated[str, Field(pattern=DURATION_PATTERN)] | None = None
    after_consecutive_failures: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _deliverable(self) -> AlertSpec:
        missing = []
        if self.channel == "email" and not self.to:
            missing.append("an email alert needs `to` addresses")
        if self.channel != "email" and not self.url:
            missing.append(f"a {self.channel} alert needs a `url`")
        if "slow_run" in self.on and self.slow_run_after is None:
            missing.append("a slow_run alert needs `slow_run_after`, like 15m")
        if missing:
            raise ValueError("; ".join(missing))
        return self


class RetriesSpec(SpecModel):
    """How often a step that failed for a transient reason (a refused or reset connection,
    a timeout, HTTP 429 or 5xx, a serialization failure) is tried again, and after how long."""

    # `max` in the file; named so it does not shadow the builtin.
    max_retries: int = Field(default=3, alias="max")
    # Seconds before each retry, in order; a list shorter than `max` repeats its last delay.
    delays: Annotated[list[float], BeforeValidator(_as_list_of_one)] = [5, 30, 120]

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry `retry_number + 1` (the first retry is 0)."""
        return self.delays[min(retry_number, len(self.delays) - 1)] if self.delays else 0.0


MAX_RETRIES = 10
# A run's timeout: seconds, or a number with s, m, h or d.
TIMEOUT_PATTERN = r"^\d+(\.\d+)?\s*(s|m|h|d)?$"
TIMEOUT_HINT = "give seconds (more than 0), or a number with s, m, h or d, like 30m or 2h"


def _scalar_timeout(value: Any) -> Any:
    """A timeout is a number or a text; anything else is named as such, in one error."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"a timeout is a number or a text; {TIMEOUT_HINT}")
    return value


def timeout_seconds(value: float | str) -> float:
    """`30m` -> 1800.0, `90` -> 90.0, for a timeout that validation has accepted."""
    if isinstance(value, str):
        text = value.strip()
        return duration_seconds(text) if text[-1:].isalpha() else float(text)
    return float(value)


class TriggerSpec(SpecModel):
    """Event triggers: a new file in a CSV source's folder, or other pipelines' loads."""

    on_new_file: bool = False
    after: ColumnList = []


PARTITION_PERIODS = ("hour", "day", "week", "month")
# A file partition is one file an on_new_file trigger saw arrive.
PARTITION_KINDS = (*PARTITION_PERIODS, "file")


class PartitionsSpec(SpecModel):
    """How a pipeline's runs are partitioned (the Dagster layer makes the partitions
    definition, see datapipe_assets/defs/partitions.py).

    By hour, day, week or month: time windows over a date or timestamp `column` of every
    source table, from `start`; each run extracts one window [start, end) and replaces that
    window's rows in the destination. By file (with `trigger: {on_new_file: true}`): one
    partition per arrived file; each run reads that file and replaces the rows loaded from
    it. Validation (pipeline/partition_validation.py) requires `column` and `start` of time
    windows, and refuses them, and `timezone`, with `by: file`.
    """

    by: Literal[PARTITION_KINDS]  # type: ignore[valid-type]
    column: str | None = None
    # The first partition's start: a date, or a date and time for hourly partitions.
    start: dt.date | dt.datetime | None = None
    # The zone partitions start and end in, and the one a column without a zone is read in.
    timezone: str = "UTC"

    @property
    def by_file(self) -> bool:
        return self.by == "file"

    def start_time(self) -> dt.datetime:
        """The start as a wall-clock time (no zone) of `timezone`, as Dagster takes it."""
        assert self.start is not None, "validation requires the start of time windows"
        if isinstance(self.start, dt.datetime):
            return self.start.replace(tzinfo=None)
        return dt.datetime.combine(self.start, dt.time())


class BadRowsSpec(SpecModel):
    """What a run does with a row that cannot be read, converted or loaded.

    `fail` (the default) fails the run at the first such row. `reject` writes each one to the
    run's rejects file instead and loads the rest, unless the rejects go over
    `max_rejected` rows or `max_rejected_percent` of the rows read: then nothing is loaded.
    """

    action: Literal["fail", "reject"] = "fail"
    max_rejected: Annotated[int, Field(ge=0)] | None = None
    max_rejected_percent: Annotated[float, Field(ge=0, le=100)] | None = None

    @property
    def rejects(self) -> bool:
        return self.action == "reject"

    def exceeded(self, rejected: int, read: int) -> bool:
        """Whether `rejected` rows of `read` are more than the pipeline allows."""
        if self.max_rejected is not None and rejected > self.max_rejected:
            return True
        if self.max_rejected_percent is None:
            return False
        return 100 * rejected > self.max_rejected_percent * read

    def limit(self) -> str:
        """The limit as the file spells it, for messages."""
        limits = []
        if self.max_rejected is not None:
            limits.append(f"max_rejected: {self.max_rejected}")
        if self.max_rejected_percent is not None:
            limits.append(f"max_rejected_percent: {self.max_rejected_percent:g}")
        return " and ".join(limits)


EXECUTOR_TYPES = ("in_process", "multiprocess", "celery")


class ExecutorSpec(SpecModel):
    """Where a run's steps execute: all in the run's process (`in_process`), one process
    each on the run's machine (`multiprocess`, at most `max_concurrent` at once), or on
    `dagster-celery` workers fed through `broker`, which may sit on other machines."""

    type: Literal[EXECUTOR_TYPES]  # type: ignore[valid-type]
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    # A URL, or `${NAME}` to read it from the environment where the run starts; the results
    # backend defaults to the broker (Redis serves as both).
    broker: str | None = None
    backend: str | None = None


# DataPipe's own jobs and sensors (datapipe_staging_gc, datapipe_alerts__...) start so: a
# pipeline's job of the same name would stop the whole code location from loading.
RESERVED_PREFIX = "datapipe_"


def _not_reserved(name: str) -> str:
    if name.startswith(RESERVED_PREFIX):
        raise ValueError(
            f"names starting with {RESERVED_PREFIX!r} are reserved for DataPipe's own jobs "
            "and sensors"
        )
    return name


class Pipeline(SpecModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(_not_reserved)]
    org: Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(_not_reserved)] = DEFAULT_ORG
    description: str = ""
    # One source block, or several (`sources`), each a connection with its tables.
    source: SourceSpec | None = None
    sources: list[SourceSpec] = []
    transform: TransformSpec | None = None
    destination: DestinationSpec
    schedule: str | None = None
    timezone: str = "UTC"
    trigger: TriggerSpec | None = None
    checks: list[CheckSpec] = []
    alerts: list[AlertSpec] = []
    # `minimal` stages only the nodes that need it and fuses the rest into one step per
    # segment; `every_node` stages every node, one step each (DATAPIPE_STAGING overrides).
    staging: Literal["minimal", "every_node"] = "minimal"
    # How many tables of one source connection are extracted at once; None: the core count.
    max_parallel: Annotated[int, Field(ge=1)] | None = None
    on_bad_rows: BadRowsSpec = BadRowsSpec()
    # What a run does when a table reaches its org's row limit per run (orgs.yaml): fail
    # with nothing loaded, or load the rows read up to the limit.
    on_limit: Literal["fail", "load_partial"] = "fail"
    # Transient failures of an extract, transform or load step are retried (see RetriesSpec).
    retries: RetriesSpec = RetriesSpec()
    # How long a run may take before it is stopped and reported as timed out.
    timeout: Annotated[float | str, BeforeValidator(_scalar_timeout)] = "1h"
    # Where the steps of its runs execute; None: the deployment's choice (DATAPIPE_EXECUTOR).
    executor: ExecutorSpec | None = None
    # Partitions: each run extracts and replaces one time window, or one arrived file.
    partitions: PartitionsSpec | None = None

    @model_validator(mode="after")
    def _one_source_form(self) -> Pipeline:
        if self.source is None and not self.sources:
            raise ValueError("give `source` (one connection) or `sources` (a list of them)")
        if self.source is not None and self.sources:
            raise ValueError("give either `source` or `sources`, not both")
        return self

    def source_blocks(self) -> list[tuple[str, SourceSpec]]:
        """Each source block with its path in the file (`source` or `sources[i]`)."""
        if self.source is not None:
            return [("source", self.source)]
        return [(f"sources[{i}]", block) for i, block in enumerate(self.sources)]

    def source_tables(self) -> list[SourceTable]:
        """Every source table, with its block's settings where it sets none of its own."""
        return [
            SourceTable(
                name=table.alias or table.name,
                source_name=table.name,
                block=block_index,
                block_path=path,
                index=index,
                sync_mode=table.sync_mode or block.sync_mode,
                incremental_key=(
                    table.incremental_key
                    if table.incremental_key is not None
                    else block.incremental_key
                ),
                primary_key=tuple(
                    table.primary_key if table.primary_key is not None else block.primary_key
                ),
            )
            for block_index, (path, block) in enumerate(self.source_blocks())
            for index, table in enumerate(block.tables)
        ]

    def source_table(self, name: str) -> SourceTable:
        return next(t for t in self.source_tables() if t.name == name)

    def connection_name(self, block: int) -> str:
        """A source block's connection: its name, or `<pipeline>.<path>` when given inline."""
        path, spec = self.source_blocks()[block]
        return spec.connection or f"{self.name}.{path}"

    def node_table(self, data: SourceNodeData) -> SourceTable | None:
        """The table a source node reads: by its name in the pipeline, or, with `connection`,
        by its name in that connection too."""
        for table in self.source_tables():
            if data.connection is not None:
                if self.connection_name(table.block) == data.connection and data.table in (
                    table.name,
                    table.source_name,
                ):
                    return table
            elif table.name == data.table:
                return table
        return None

    def table_names(self) -> list[str]:
        """The names the pipeline's source tables go by: raw assets, source nodes, checks."""
        return [table.name for table in self.source_tables()]

    def incremental(self) -> bool:
        return any(table.incremental for table in self.source_tables())

    def target_tables(self) -> dict[str, str]:
        """Destination table per loaded relation: the destination node, or each raw table."""
        if self.transform is not None:
            return {destination_node_id(self.transform): self.target_table_for_transform()}
        prefix = self.destination.table_prefix
        return {table: prefix + table.split(".")[-1] for table in self.table_names()}

    def target_table_for_transform(self) -> str:
        # Without an explicit target_table a transformed pipeline loads into its own name.
        return self.destination.target_table or self.destination.table_prefix + self.name


def destination_node_id(transform: TransformSpec) -> str:
    return next(n.id for n in transform.nodes if n.type == "destination")


class Connection(SpecModel):
    """One entry of connections.yaml."""

    connector: str
    config: dict[str, Any] = {}
    # The org whose pipelines alone may use it; none: shared by every org.
    org: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None


# The visual editor exports the three config blocks under these names.
EDITOR_BLOCKS = {
    "sourceConfig": "source",
    "sourceConfigs": "sources",
    "transformConfig": "transform",
    "destinationConfig": "destination",
}


def normalize_editor_export(document: dict[str, Any]) -> dict[str, Any]:
    """Map the visual editor's JSON shape onto the pipeline-file shape."""
    return {EDITOR_BLOCKS.get(key, key): value for key, value in document.items()}
