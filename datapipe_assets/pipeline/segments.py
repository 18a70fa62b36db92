"""Which transform nodes are staged as parquet, and the segments the others are fused into.

Staging every node's output costs a zstd parquet write and read per node even where only
the next node reads it. So, by default (`staging: minimal`), a transform node is staged only
where its output is needed outside its own step:

- it is read by more than one node (each reader's step reads the staged file);
- a check runs on it, or a relationships check reads it (checks read staged files);
- it is the input of the load;
- it is marked `stage: true`;
- nothing reads it (its output would otherwise not exist anywhere).

Source tables are always staged (their raw assets). A segment is a staged node with the
chain of unstaged nodes that feed it, back to staged inputs: one Dagster step, one DuckDB
connection. `staging: every_node` (or DATAPIPE_STAGING=every_node, which wins over the
file) stages every node, one step each, as before segments existed.

Without a transform, a source table is loaded in its extract's own step (`fused_loads`):
each batch goes into the staged file and on to the destination as it arrives, so the load
overlaps the extract. Only where nothing has to happen in between: a check on the raw table
must see the whole file before the load, and an incremental table's cursor is known only
once the extract ends. `every_node` keeps the separate steps there too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from datapipe_assets.pipeline.check_rules import check_targets, reference_targets
from datapipe_assets.pipeline.graph import topological_order
from datapipe_assets.pipeline.keys import AssetPath, node_key, raw_key
from datapipe_assets.pipeline.spec import Pipeline, TransformSpec

StagingMode = Literal["minimal", "every_node"]
STAGING_ENV = "DATAPIPE_STAGING"

# Why a node is staged, as staging_reasons names it.
EVERY_NODE = "every_node"
SEVERAL_CONSUMERS = "several_consumers"
CHECKED = "checked"
LOAD_INPUT = "load_input"
MARKED = "marked"
NO_CONSUMER = "no_consumer"


@dataclass(frozen=True)
class Segment:
    """One step: the staged node and the unstaged nodes fused into it."""

    staged: str  # the node whose output is staged; the last one to run
    nodes: tuple[str, ...]  # every node of the segment, in run order
    inputs: tuple[str, ...]  # the staged nodes (source nodes included) it reads, in order

    @property
    def fused(self) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if n != self.staged)


def staging_mode(pipeline: Pipeline, environ: Mapping[str, str]) -> StagingMode:
    """The file's `staging`, unless DATAPIPE_STAGING names a mode; an unknown one is an error."""
    value = environ.get(STAGING_ENV, "").strip()
    if not value:
        return pipeline.staging
    modes: tuple[StagingMode, ...] = get_args(StagingMode)
    for mode in modes:
        if value == mode:
            return mode
    raise ValueError(f"{STAGING_ENV}={value!r} is not one of {', '.join(modes)}")


def checked_keys(pipeline: Pipeline) -> set[AssetPath]:
    """The staged assets a check reads: its own asset, or a relationships check's `to`."""
    return {
        target.key
        for check in pipeline.checks
        for target in [*check_targets(pipeline, check.asset), *reference_targets(pipeline, check)]
        if not target.destination
    }


def fused_loads(pipeline: Pipeline, mode: StagingMode) -> list[str]:
    """The source tables loaded in their extract's own step (see the module's docstring)."""
    if pipeline.transform is not None or mode == "every_node":
        return []
    checked = checked_keys(pipeline)
    return [
        table.name
        for table in pipeline.source_tables()
        if not table.incremental and raw_key(pipeline, table.name) not in checked
    ]


def transform_nodes(transform: TransformSpec) -> list[str]:
    """The ids of the nodes that compute something (neither source nor destination)."""
    return [n.id for n in transform.nodes if n.type not in ("source", "destination")]


def staging_reasons(pipeline: Pipeline, mode: StagingMode) -> dict[str, list[str]]:
    """Per staged transform node, why it is staged; an unstaged node is not in it."""
    transform = pipeline.transform
    if transform is None:
        return {}
    nodes = transform_nodes(transform)
    if mode == "every_node":
        return {n: [EVERY_NODE] for n in nodes}
    checked = checked_keys(pipeline)
    load_inputs = {transform.input_of(n.id) for n in transform.nodes if n.type == "destination"}
    reasons: dict[str, list[str]] = {}
    for node_id in nodes:
        consumers = transform.consumers_of(node_id)
        found = [
            reason
            for reason, applies in (
                (SEVERAL_CONSUMERS, len(consumers) > 1),
                (CHECKED, node_key(pipeline, node_id) in checked),
                (LOAD_INPUT, node_id in load_inputs),
                (MARKED, transform.node(node_id).stage),
                (NO_CONSUMER, not consumers),
            )
            if applies
        ]
        if found:
            reasons[node_id] = found
    return reasons


def segments(pipeline: Pipeline, mode: StagingMode) -> list[Segment]:
    """Every staged transform node's segment, in run order of the staged nodes."""
    transform = pipeline.transform
    if transform is None:
        return []
    staged = staging_reasons(pipeline, mode).keys()
    order = topological_order(transform)
    # Inputs that end a segment: staged nodes and source nodes (their raw assets).
    boundary = set(staged) | {n.id for n in transform.nodes if n.type == "source"}
    found = []
    for node_id in (n for n in order if n in staged):
        members, pending = {node_id}, [node_id]
        inputs: list[str] = []
        while pending:
            for declared in transform.inputs_of(pending.pop()):
                if declared.source in boundary:
                    inputs.append(declared.source)
                elif declared.source not in members:
                    members.add(declared.source)
                    pending.append(declared.source)
        ordered_inputs = [n for n in order if n in inputs]
        found.append(
            Segment(
                staged=node_id,
                nodes=tuple(n for n in order if n in members),
                inputs=tuple(ordered_inputs),
            )
        )
    return found
