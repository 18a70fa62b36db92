"""Which transform nodes are staged, why, and the segments the others are fused into."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from datapipe_assets.pipeline.segments import (
    CHECKED,
    EVERY_NODE,
    LOAD_INPUT,
    MARKED,
    NO_CONSUMER,
    SEVERAL_CONSUMERS,
    Segment,
    segments,
    staging_mode,
    staging_reasons,
)
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.project_files import SIX_NODE_TRANSFORM


def _pipeline(transform: dict[str, Any] | None = None, **fields: Any) -> Pipeline:
    return Pipeline.model_validate(
        {
            "name": "shop",
            "source": {"connection": "files", "tables": ["orders", "customers"]},
            "transform": transform or copy.deepcopy(SIX_NODE_TRANSFORM),
            "destination": {"connection": "warehouse"},
            **fields,
        }
    )


def _marked(node_id: str) -> dict[str, Any]:
    transform = copy.deepcopy(SIX_NODE_TRANSFORM)
    next(n for n in transform["nodes"] if n["id"] == node_id)["stage"] = True
    return transform


# orders -> paid -> enriched (join with customers) -> out, and paid -> flagged (nothing reads it)
BRANCHING: dict[str, Any] = {
    "nodes": [
        {"id": "orders", "type": "source", "data": {"table": "orders"}},
        {"id": "customers", "type": "source", "data": {"table": "customers"}},
        {"id": "paid", "type": "filter",
         "data": {"column": "status", "operator": "eq", "value": "paid"}},
        {"id": "known", "type": "filter",
         "data": {"column": "id", "operator": "is_not_null"}},
        {"id": "enriched", "type": "join", "inputs": {"left": "paid", "right": "known"},
         "data": {"on": [{"left": "customer_id", "right": "id"}]}},
        {"id": "flagged", "type": "filter", "inputs": ["paid"],
         "data": {"column": "amount_cents", "operator": "gt", "value": 1000}},
        {"id": "usd", "type": "computed", "inputs": ["enriched"],
         "data": {"columns": [{"name": "amount_cents", "expression": "amount_cents / 100.0",
                               "resultType": "DOUBLE"}]}},
        {"id": "out", "type": "destination", "inputs": ["usd"]},
    ],
    "edges": [
        {"source": "orders", "target": "paid"},
        {"source": "customers", "target": "known"},
    ],
}  # fmt: skip


def test_a_chain_is_one_segment_staged_at_the_load_input():
    pipeline = _pipeline()
    assert staging_reasons(pipeline, "minimal") == {"by_customer": [LOAD_INPUT]}
    assert segments(pipeline, "minimal") == [
        Segment(
            staged="by_customer",
            nodes=("paid", "renamed", "usd", "latest", "by_customer"),
            inputs=("orders",),
        )
    ]


def test_a_node_with_several_consumers_is_staged_and_ends_segments():
    pipeline = _pipeline(BRANCHING)
    assert staging_reasons(pipeline, "minimal") == {
        "paid": [SEVERAL_CONSUMERS],
        "flagged": [NO_CONSUMER],
        "usd": [LOAD_INPUT],
    }
    found = segments(pipeline, "minimal")
    assert found[0] == Segment(staged="paid", nodes=("paid",), inputs=("orders",))
    by_staged = {s.staged: (s.nodes, set(s.inputs)) for s in found}
    assert by_staged == {
        "paid": (("paid",), {"orders"}),
        "flagged": (("flagged",), {"paid"}),
        # Both inputs of the join, in run order: `known` and then the join and `usd`.
        "usd": (("known", "enriched", "usd"), {"customers", "paid"}),
    }


def test_a_checked_node_is_staged():
    pipeline = _pipeline(checks=[{"asset": "usd", "type": "not_null", "column": "id"}])
    assert staging_reasons(pipeline, "minimal") == {"usd": [CHECKED], "by_customer": [LOAD_INPUT]}
    assert [(s.staged, s.nodes, s.inputs) for s in segments(pipeline, "minimal")] == [
        ("usd", ("paid", "renamed", "usd"), ("orders",)),
        ("by_customer", ("latest", "by_customer"), ("usd",)),
    ]


def test_the_to_of_a_relationships_check_is_staged():
    pipeline = _pipeline(
        BRANCHING,
        checks=[{"asset": "orders", "type": "relationships", "column": "customer_id",
                 "to": "known", "to_column": "id"}],
    )  # fmt: skip
    assert staging_reasons(pipeline, "minimal")["known"] == [CHECKED]


def test_a_check_on_a_source_table_or_the_destination_stages_no_other_node():
    pipeline = _pipeline(
        checks=[
            {"asset": "orders", "type": "row_count", "min": 1},
            {"asset": "out", "type": "reconcile"},
        ]
    )
    assert staging_reasons(pipeline, "minimal") == {"by_customer": [LOAD_INPUT]}


def test_a_node_marked_stage_true_is_staged():
    pipeline = _pipeline(_marked("renamed"))
    assert staging_reasons(pipeline, "minimal") == {
        "renamed": [MARKED],
        "by_customer": [LOAD_INPUT],
    }
    assert [(s.staged, s.fused) for s in segments(pipeline, "minimal")] == [
        ("renamed", ("paid",)),
        ("by_customer", ("usd", "latest")),
    ]


def test_every_reason_of_a_node_is_listed():
    pipeline = _pipeline(
        _marked("by_customer"),
        checks=[{"asset": "by_customer", "type": "row_count", "min": 1}],
    )
    assert staging_reasons(pipeline, "minimal")["by_customer"] == [CHECKED, LOAD_INPUT, MARKED]


def test_every_node_in_the_file_stages_every_node_one_segment_each():
    pipeline = _pipeline(staging="every_node")
    assert staging_mode(pipeline, {}) == "every_node"
    reasons = staging_reasons(pipeline, staging_mode(pipeline, {}))
    assert reasons == {n: [EVERY_NODE] for n in ("paid", "renamed", "usd", "latest", "by_customer")}
    assert [(s.staged, s.nodes, s.inputs) for s in segments(pipeline, "every_node")] == [
        ("paid", ("paid",), ("orders",)),
        ("renamed", ("renamed",), ("paid",)),
        ("usd", ("usd",), ("renamed",)),
        ("latest", ("latest",), ("usd",)),
        ("by_customer", ("by_customer",), ("latest",)),
    ]


def test_the_environment_wins_over_the_file():
    assert staging_mode(_pipeline(), {"DATAPIPE_STAGING": "every_node"}) == "every_node"
    assert staging_mode(_pipeline(), {"DATAPIPE_STAGING": ""}) == "minimal"
    assert staging_mode(_pipeline(), {}) == "minimal"
    every_node = _pipeline(staging="every_node")
    assert staging_mode(every_node, {"DATAPIPE_STAGING": "minimal"}) == "minimal"
    with pytest.raises(
        ValueError, match="DATAPIPE_STAGING='all' is not one of minimal, every_node"
    ):
        staging_mode(every_node, {"DATAPIPE_STAGING": "all"})


def test_staging_is_minimal_or_every_node():
    with pytest.raises(ValueError, match="staging"):
        _pipeline(staging="none")


def test_a_pipeline_without_a_transform_has_no_segments():
    pipeline = Pipeline.model_validate(
        {"name": "copy", "source": {"connection": "files", "tables": ["orders"]},
         "destination": {"connection": "warehouse"}}
    )  # fmt: skip
    assert staging_reasons(pipeline, "minimal") == {}
    assert segments(pipeline, "minimal") == []
