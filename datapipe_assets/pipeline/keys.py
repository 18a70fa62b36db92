"""Asset keys of a pipeline's assets, as plain paths, and the tags every run carries.

`[org, pipeline, "raw", table]` per source table, `[org, pipeline, node_id]` per transform
node and `[org, pipeline, "load", table]` per destination table. Paths are tuples of
strings; the Dagster layer turns them into asset keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from datapipe_assets.pipeline.spec import Pipeline

AssetPath = tuple[str, ...]

# Every run carries its pipeline's name: run queues limit it, alert sensors read it.
PIPELINE_TAG = "datapipe/pipeline"


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
