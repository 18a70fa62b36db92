"""Fused segments give the same results as staging every node, with per-node metadata.

Each pipeline runs twice through Dagster, once with `staging: every_node` and once with the
default (minimal staging, unstaged nodes fused into their segment's step), and the two runs
must load the same rows, materialize the same assets and record the same per-node schemas,
row counts and column lineage; only the staged-file metadata tells them apart.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from tests.support.project_files import run, write_project
from tests.support.warehouse_runs import materializations, warehouse_rows

ORDERS = """id,customer_id,status,amount_cents,updated_at
1,10,paid,1000,2026-01-01 00:00:00
2,10,paid,2550,2026-01-01 01:00:00
3,20,pending,999,2026-01-01 02:00:00
4,20,paid,500,2026-01-01 03:00:00
2,10,paid,3000,2026-01-02 00:00:00
5,30,refunded,100,2026-01-01 04:00:00
"""
CUSTOMERS = "id,name\n10,ada\n20,bob\n30,cy\n"
CARD = "order_id,amount_cents\n1,1000\n2,3000\n"
BANK = "order_id,amount_cents\n4,500\n2,50\n"

# filter, rename, computed (a new column and a replaced one), deduplicate, aggregate.
REVENUE: dict[str, Any] = {
    "name": "revenue",
    "org": "acme",
    "sources": [{"connection": "orders_csv", "tables": ["orders"]}],
    "transform": {
        "nodes": [
            {"id": "orders", "type": "source", "data": {"table": "orders"}},
            {"id": "paid", "type": "filter",
             "data": {"column": "status", "operator": "eq", "value": "paid"}},
            {"id": "renamed", "type": "rename",
             "data": {"mappings": [{"from": "amount_cents", "to": "amount"}]}},
            {"id": "usd", "type": "computed",
             "data": {"columns": [
                 {"name": "amount_usd", "expression": "amount / 100.0", "resultType": "DOUBLE"},
                 {"name": "customer_id", "expression": "'c' || customer_id",
                  "resultType": "VARCHAR"}]}},
            {"id": "latest", "type": "deduplicate",
             "data": {"columns": ["id"], "keepStrategy": "last", "orderBy": "updated_at"}},
            {"id": "by_customer", "type": "aggregate",
             "data": {"groupBy": ["customer_id"],
                      "measures": [{"column": "amount_usd", "function": "sum", "alias": "revenue"},
                                   {"column": "id", "function": "count", "alias": "orders"}]}},
            {"id": "out", "type": "destination", "inputs": ["by_customer"]},
        ],
        "edges": [
            {"source": "orders", "target": "paid"},
            {"source": "paid", "target": "renamed"},
            {"source": "renamed", "target": "usd"},
            {"source": "usd", "target": "latest"},
            {"source": "latest", "target": "by_customer"},
        ],
    },
    "destination": {"connection": "warehouse", "target_table": "revenue"},
}  # fmt: skip
# Hand-computed: paid orders 1, 2 (the later 3000 wins) and 4.
REVENUE_ROWS = [("c10", 40.0, 2), ("c20", 5.0, 1)]

# join, single-input sql, union, aggregate (a fused SUM is a HUGEINT, staged as DOUBLE) and
# multi-input sql; a check on `all_payments` stages it.
LTV: dict[str, Any] = {
    "name": "ltv",
    "org": "acme",
    "sources": [
        {"connection": f"{table}_csv", "tables": [table]}
        for table in ("orders", "customers", "card", "bank")
    ],
    "transform": {
        "nodes": [
            {"id": "orders", "type": "source", "data": {"table": "orders"}},
            {"id": "customers", "type": "source", "data": {"table": "customers"}},
            {"id": "card", "type": "source", "data": {"table": "card"}},
            {"id": "bank", "type": "source", "data": {"table": "bank"}},
            {"id": "paid", "type": "filter", "inputs": ["orders"],
             "data": {"column": "status", "operator": "eq", "value": "paid"}},
            {"id": "named", "type": "sql", "inputs": ["customers"],
             "data": {"query": "SELECT id, upper(name) AS name FROM input"}},
            {"id": "enriched", "type": "join", "inputs": {"left": "paid", "right": "named"},
             "data": {"how": "left", "on": [{"left": "customer_id", "right": "id"}]}},
            {"id": "all_payments", "type": "union", "inputs": ["card", "bank"]},
            {"id": "totals", "type": "aggregate", "inputs": ["all_payments"],
             "data": {"groupBy": ["order_id"],
                      "measures": [{"column": "amount_cents", "function": "sum",
                                    "alias": "paid_cents"}]}},
            {"id": "ltv", "type": "sql", "inputs": ["enriched", "totals"],
             "data": {"query": (
                 "SELECT e.name, sum(t.paid_cents) AS paid_cents, count(*) AS orders, "
                 "any_value(typeof(t.paid_cents)) AS paid_type "
                 "FROM enriched e JOIN totals t ON t.order_id = e.id GROUP BY e.name")}},
            {"id": "out", "type": "destination", "inputs": ["ltv"]},
        ],
    },
    "destination": {"connection": "warehouse", "target_table": "ltv"},
    "checks": [{"asset": "all_payments", "type": "row_count", "min": 1}],
}  # fmt: skip
# ADA: orders 1 (1000) and both versions of 2 (3000 + 50 each); BOB: order 4 (500).
# A staged SUM is DOUBLE, and so is a fused one: the fused node reads as its file would.
LTV_ROWS = [("ADA", 7100.0, 3, "DOUBLE"), ("BOB", 500.0, 1, "DOUBLE")]

FILE_METADATA = {"staged_bytes", "staged_path", "preview"}
NODE_METADATA = {
    "sql", "dagster/row_count", "dagster/column_schema", "duration_seconds",
    "dagster/column_lineage",
}  # fmt: skip
STAGED_METADATA = NODE_METADATA | FILE_METADATA

CASES = [
    pytest.param(REVENUE, REVENUE_ROWS, {"by_customer"}, id="chain"),
    pytest.param(LTV, LTV_ROWS, {"all_payments", "ltv"}, id="multi_input"),
]


def _project(directory: Path, pipeline: dict[str, Any], **settings: Any) -> Path:
    (directory / "data").mkdir(parents=True)
    tables = {"orders": ORDERS, "customers": CUSTOMERS, "card": CARD, "bank": BANK}
    for table, text in tables.items():
        (directory / "data" / f"{table}.csv").write_text(text)
    connections: dict[str, Any] = {
        f"{t}_csv": {"connector": "csv", "config": {"path": f"data/{t}.csv"}} for t in tables
    }
    connections["warehouse"] = {"connector": "duckdb", "config": {"path": "wh.duckdb"}}
    return write_project(
        directory, connections, {"p.yaml": {**copy.deepcopy(pipeline), **settings}}
    )


def _tables(pipeline: dict[str, Any]) -> list[str]:
    return [t for block in pipeline["sources"] for t in block["tables"]]


def _step_keys(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.get_step_success_events() if e.step_key}


def _comparable(metadata: dg.AssetMaterialization) -> dict[str, Any]:
    """What must be the same either way: row count, schema and column lineage."""
    return {
        name: metadata.metadata[name].value
        for name in ("dagster/row_count", "dagster/column_schema", "dagster/column_lineage")
        if name in metadata.metadata
    }


@pytest.mark.parametrize(("pipeline", "expected_rows", "staged"), CASES)
def test_fused_and_every_node_staging_load_the_same_rows_and_metadata(
    tmp_path, monkeypatch, pipeline, expected_rows, staged
):
    name, table = pipeline["name"], pipeline["destination"]["target_table"]
    results, projects = {}, {}
    with dg.instance_for_test() as instance:
        for mode in ("every_node", "minimal"):
            monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / mode / "staging"))
            projects[mode] = _project(tmp_path / mode / "pipelines", pipeline, staging=mode)
            results[mode] = run(projects[mode], name, instance)
            assert results[mode].success
    every, minimal = (materializations(results[m]) for m in ("every_node", "minimal"))

    assert warehouse_rows(projects["every_node"], table) == expected_rows
    assert warehouse_rows(projects["minimal"], table) == expected_rows
    assert every.keys() == minimal.keys()
    kinds = {n["id"]: n["type"] for n in pipeline["transform"]["nodes"]}
    nodes = [n for n, kind in kinds.items() if kind not in ("source", "destination")]
    assert set(every) == {*nodes, *(f"raw/{t}" for t in _tables(pipeline)),
                          f"load/{table}"}  # fmt: skip
    for node in nodes:
        assert set(every[node].metadata) == STAGED_METADATA, node
        expected = STAGED_METADATA if node in staged else NODE_METADATA
        assert set(minimal[node].metadata) == expected, node
        assert _comparable(minimal[node]) == _comparable(every[node]), node
        assert minimal[node].metadata["sql"] == every[node].metadata["sql"], node

    # Staged files: every node with every_node; only the staged ones (and raw tables) else.
    files = {
        mode: sorted(
            str(p.relative_to(tmp_path / mode / "staging" / results[mode].run_id / "acme" / name))
            for p in (tmp_path / mode / "staging").rglob("*.parquet")
        )
        for mode in results
    }
    raw_files = sorted(f"raw/{t}.parquet" for t in _tables(pipeline))
    assert files["every_node"] == sorted([*raw_files, *(f"{n}.parquet" for n in nodes)])
    assert files["minimal"] == sorted([*raw_files, *(f"{n}.parquet" for n in staged)])
    # One step per staged node: the fused ones run inside their segment's step.
    other_steps = {f"acme__{name}__raw__{t}" for t in _tables(pipeline)}
    other_steps.add(f"acme__{name}__load__{table}")
    other_steps |= {f"acme__{name}__{c['asset']}_{c['type']}" for c in pipeline.get("checks", [])}
    assert _step_keys(results["every_node"]) == other_steps | {f"acme__{name}__{n}" for n in nodes}
    assert _step_keys(results["minimal"]) == other_steps | {f"acme__{name}__{n}" for n in staged}


def test_revenue_segment_is_one_step(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(tmp_path / "pipelines", REVENUE)
    with dg.instance_for_test() as instance:
        result = run(project, "revenue", instance)
    assert result.success
    assert _step_keys(result) == {
        "acme__revenue__raw__orders",
        "acme__revenue__by_customer",
        "acme__revenue__load__revenue",
    }
    materialized = materializations(result)
    assert [
        (n, materialized[n].metadata["dagster/row_count"].value)
        for n in ("paid", "renamed", "usd", "latest", "by_customer")
    ] == [("paid", 4), ("renamed", 4), ("usd", 4), ("latest", 3), ("by_customer", 2)]
    usd = materialized["usd"].metadata
    assert [(c.name, c.type) for c in usd["dagster/column_schema"].value.columns] == [
        ("id", "int64"), ("customer_id", "string"), ("status", "string"), ("amount", "int64"),
        ("updated_at", "timestamp[us]"), ("amount_usd", "double"),
    ]  # fmt: skip
    lineage = usd["dagster/column_lineage"].value.deps_by_column
    assert [(d.asset_key.path, d.column_name) for d in lineage["amount_usd"]] == [
        (["acme", "revenue", "renamed"], "amount")
    ]
    assert usd["duration_seconds"].value >= 0


def test_datapipe_staging_every_node_wins_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.setenv("DATAPIPE_STAGING", "every_node")
    project = _project(tmp_path / "pipelines", REVENUE, staging="minimal")
    with dg.instance_for_test() as instance:
        result = run(project, "revenue", instance)
    assert result.success
    assert warehouse_rows(project, "revenue") == REVENUE_ROWS
    materialized = materializations(result)
    for node in ("paid", "renamed", "usd", "latest", "by_customer"):
        assert set(materialized[node].metadata) == STAGED_METADATA
    assert _step_keys(result) == {
        "acme__revenue__raw__orders", "acme__revenue__paid", "acme__revenue__renamed",
        "acme__revenue__usd", "acme__revenue__latest", "acme__revenue__by_customer",
        "acme__revenue__load__revenue",
    }  # fmt: skip


def test_a_node_marked_stage_true_is_staged_and_splits_the_segment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    pipeline = copy.deepcopy(REVENUE)
    next(n for n in pipeline["transform"]["nodes"] if n["id"] == "usd")["stage"] = True
    project = _project(tmp_path / "pipelines", pipeline)
    with dg.instance_for_test() as instance:
        result = run(project, "revenue", instance)
    assert result.success
    assert warehouse_rows(project, "revenue") == REVENUE_ROWS
    assert _step_keys(result) == {
        "acme__revenue__raw__orders",
        "acme__revenue__usd",
        "acme__revenue__by_customer",
        "acme__revenue__load__revenue",
    }
    materialized = materializations(result)
    assert set(materialized["usd"].metadata) == STAGED_METADATA
    assert set(materialized["latest"].metadata) == NODE_METADATA


def test_one_fused_node_materializes_alone_from_the_staged_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(tmp_path / "pipelines", REVENUE)
    with dg.instance_for_test() as instance:
        assert run(project, "revenue", instance).success
        job = build_definitions(load_project(project)).resolve_implicit_global_asset_job_def()
        usd = dg.AssetKey(["acme", "revenue", "usd"])
        rerun = job.get_subset(asset_selection={usd}).execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert rerun.success
        # Only `usd` is materialized (its fused inputs run, unrecorded); nothing is staged.
        assert list(materializations(rerun)) == ["usd"]
        assert materializations(rerun)["usd"].metadata["dagster/row_count"].value == 4
    assert not (tmp_path / "staging" / rerun.run_id).exists()


def _node_specs(project: Path) -> dict[str, dg.AssetSpec]:
    """The definitions' asset specs by key, without the org and pipeline parts."""
    specs = build_definitions(load_project(project)).resolve_all_asset_specs()
    return {"/".join(s.key.path[2:]): s for s in specs}


def _shown(spec: dg.AssetSpec) -> tuple[Any, ...]:
    """What the UI shows of an asset: its inputs, group, kinds, description and node type."""
    deps = sorted("/".join(d.asset_key.path[2:]) for d in spec.deps)
    return deps, spec.group_name, spec.kinds, spec.description, spec.metadata.get("node_type")


def test_fused_nodes_keep_their_lineage_group_kinds_and_descriptions(tmp_path):
    every = _node_specs(_project(tmp_path / "every", LTV, staging="every_node"))
    minimal = _node_specs(_project(tmp_path / "minimal", LTV))
    assert every.keys() == minimal.keys()
    for key in every:
        assert _shown(minimal[key]) == _shown(every[key]), key
    assert _shown(minimal["enriched"]) == (
        ["named", "paid"], "acme__ltv", {"duckdb"},
        "Left join of `paid` with `named` on `customer_id` = `id`.", "join",
    )  # fmt: skip
    assert _shown(minimal["ltv"])[0] == ["enriched", "totals"]
    assert _shown(minimal["totals"])[0] == ["all_payments"]
    assert _shown(minimal["paid"])[0] == ["raw/orders"]


def test_incremental_cursors_pass_through_a_fused_segment_to_the_load(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    pipeline = copy.deepcopy(REVENUE)
    pipeline["sources"][0].update(
        {"sync_mode": "incremental", "incremental_key": "updated_at", "primary_key": ["id"]}
    )
    pipeline["destination"].update({"load_mode": "append"})
    project = _project(tmp_path / "pipelines", pipeline)
    load_key = dg.AssetKey(["acme", "revenue", "load", "revenue"])
    with dg.instance_for_test() as instance:
        first = run(project, "revenue", instance)
        assert first.success
        assert set(materializations(first)["paid"].metadata) == NODE_METADATA
        load = instance.get_latest_materialization_event(load_key).asset_materialization
        assert load.metadata["cursor/orders"].value == "2026-01-02 00:00:00"
        with (project / "data" / "orders.csv").open("a") as f:
            f.write("6,30,paid,700,2026-01-03 00:00:00\n")
        second = run(project, "revenue", instance)
        assert second.success
        # Only the new row (and none at the committed boundary again) went through.
        assert materializations(second)["raw/orders"].metadata["dagster/row_count"].value == 1
        load = instance.get_latest_materialization_event(load_key).asset_materialization
        assert load.metadata["cursor/orders"].value == "2026-01-03 00:00:00"
    assert warehouse_rows(project, "revenue") == [*REVENUE_ROWS, ("c30", 7.0, 1)]
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        states = con.execute("SELECT pipeline, source_table FROM _datapipe_state").fetchall()
    assert states == [("acme__revenue", "orders")]
