"""Asset keys of a pipeline's assets, as plain paths, and the tags every run carries.

`[org, pipeline, "raw", table]` per source table, `[org, pipeline, node_id]` per transform
node and `[org, pipeline, "load", table]` per destination table. Paths are tuples of
strings; the Dagster layer turns them into asset keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from datapipe_assets.pipeline.spec import DEFAULT_ORG, Pipeline

AssetPath = tuple[str, ...]

# Every run carries its pipeline's Dagster name (`dagster_name`): run queues limit it,
# alert sensors and `datapipe status` read it. And its org, to filter runs by org.
PIPELINE_TAG = "datapipe/pipeline"
ORG_TAG = "datapipe/org"


def qualified_name(org: str, name: str) -> str:
    """A pipeline's name in Dagster (job, asset group, schedule, sensor, run tag, cursor
    state): unique across orgs. The org `default` keeps plain names, so a project without
    orgs keeps its names; another org's are `{org}__{name}`."""
    return name if org == DEFAULT_ORG else f"{org}__{name}"


def dagster_name(pipeline: Pipeline) -> str:
    return qualified_name(pipeline.org, pipeline.name)


def full_reference(org: str, name: str) -> str:
    """`ORG/NAME`: a pipeline as the CLI always accepts it."""
    return f"{org}/{name}"


def cli_reference(pipeline: Pipeline) -> str:
    """How a message outside the CLI names a pipeline to a command: `NAME` in the org
    `default`, else `ORG/NAME`, which the CLI accepts whatever other orgs declare."""
    if pipeline.org == DEFAULT_ORG:
        return pipeline.name
    return full_reference(pipeline.org, pipeline.name)


def key_part(table: str) -> str:
    """A schema-qualified table name as one asset-key part (`public.orders` -> `public__orders`)."""
    return table.replace(".", "__")


RAW = "raw"
LOAD = "load"


def raw_key(pipeline: Pipeline, table: str) -> AssetPath:
    return (pipeline.org, pipeline.name, RAW, key_part(table))


def node_key(pipeline: Pipeline, node_id: str) -> AssetPath:
    return (pipeline.org, pipeline.name, node_id)


def load_key(pipeline: Pipeline, target_table: str) -> AssetPath:
    return (pipeline.org, pipeline.name, LOAD, key_part(target_table))


def key_stage(path: Sequence[str]) -> str:
    """`raw`, `load` or `node`: which kind of DataPipe asset a key's path names."""
    return path[2] if len(path) == 4 and path[2] in (RAW, LOAD) else "node"


def upstream_key(pipeline: Pipeline, node_id: str) -> AssetPath:
    """The asset holding a node's output: a source node's is its raw table."""
    assert pipeline.transform is not None
    node = pipeline.transform.node(node_id)
    if node.type == "source":
        table = pipeline.node_table(node.data)
        assert table is not None, "validation resolves every source node's table"
        return raw_key(pipeline, table.name)
    return node_key(pipeline, node_id)
