"""Asset keys of a pipeline's assets.

`[org, pipeline, "raw", table]` per source table, `[org, pipeline, node_id]` per transform
node and `[org, pipeline, "load", table]` per destination table.
"""

from __future__ import annotations

import dagster as dg

from datapipe_assets.spec import Pipeline

# Every run carries its pipeline's name: run queues limit it, alert sensors read it.
PIPELINE_TAG = "datapipe/pipeline"


def key_part(table: str) -> str:
    """A schema-qualified table name as one asset-key part (`public.orders` -> `public__orders`)."""
    return table.replace(".", "__")


RAW = "raw"
LOAD = "load"


def raw_key(pipeline: Pipeline, table: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline.org, pipeline.name, RAW, key_part(table)])


def node_key(pipeline: Pipeline, node_id: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline.org, pipeline.name, node_id])


def load_key(pipeline: Pipeline, target_table: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline.org, pipeline.name, LOAD, key_part(target_table)])


def key_stage(key: dg.AssetKey) -> str:
    """`raw`, `load` or `node`: which kind of DataPipe asset a key names."""
    path = key.path
    return path[2] if len(path) == 4 and path[2] in (RAW, LOAD) else "node"


def upstream_key(pipeline: Pipeline, node_id: str) -> dg.AssetKey:
    """The asset holding a node's output: a source node's is its raw table."""
    assert pipeline.transform is not None
    node = pipeline.transform.node(node_id)
    if node.type == "source":
        return raw_key(pipeline, node.data.table)
    return node_key(pipeline, node_id)
