"""Parallel extracts: one step per source connection extracts its tables in a thread pool."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from tests.support.fake_http import FakeServer, Request, Response, serve
from tests.support.project_files import failure_messages, run, write_project
from tests.support.warehouse_runs import (
    ORDERS,
    SHOP,
    SHOP_FILES,
    materializations,
    shop_project,
    warehouse_rows,
    warehouse_tables,
)

FILES = SHOP_FILES

# The full-sync tables load in their extract's step; orders, incremental, has a load step.
STEPS = {
    "acme__shop__raw__from__shop_files", "acme__shop__raw__from__payment_files",
    "acme__shop__load__orders",
}  # fmt: skip
RAW_METADATA = {
    "duration_seconds", "dagster/row_count", "dagster/column_schema", "staged_bytes",
    "staged_path", "preview", "rejected_rows", "rows_extracted",
}  # fmt: skip
CURSOR_METADATA = {"cursor/start", "cursor/extracted_to"}

# The four tables joined into one load: a failed table means no load at all.
JOINED: dict[str, Any] = {
    **SHOP,
    "transform": {
        "nodes": [
            *({"id": t, "type": "source", "data": {"table": t}} for t in FILES),
            {"id": "paid", "type": "sql", "inputs": list(FILES),
             "data": {"query": (
                 "SELECT c.name, o.id, p.cents FROM orders o JOIN customers c "
                 "ON c.id = o.customer_id JOIN (SELECT * FROM card UNION ALL SELECT * FROM bank) "
                 "p ON p.order_id = o.id")}},
            {"id": "out", "type": "destination", "inputs": ["paid"]},
        ],
    },
    "destination": {"connection": "warehouse", "target_table": "paid", "load_mode": "append"},
}  # fmt: skip


def _project(directory: Path, pipeline: dict[str, Any], max_parallel: object) -> Path:
    settings = {} if max_parallel is None else {"max_parallel": max_parallel}
    return shop_project(directory, {**pipeline, **settings})


def _value(materialization: dg.AssetMaterialization, name: str) -> Any:
    return materialization.metadata[name].value


@pytest.mark.parametrize("max_parallel", [None, 1, 4])
def test_four_tables_load_exactly_and_each_raw_asset_records_its_metadata(
    tmp_path, monkeypatch, max_parallel
):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(tmp_path / "pipelines", SHOP, max_parallel)
    with dg.instance_for_test() as instance:
        result = run(project, "shop", instance)
    assert result.success
    assert {e.step_key for e in result.get_step_success_events()} == STEPS
    assert warehouse_rows(project, "customers") == [(1, "Ann"), (2, "Bob")]
    assert warehouse_rows(project, "card") == [(10, 500)]
    assert warehouse_rows(project, "bank") == [(11, 700)]
    assert [r[:3] for r in warehouse_rows(project, "orders")] == [(10, 1, 5), (11, 2, 7)]
    materialized = materializations(result)
    raw = {t: materialized[f"raw/{t}"] for t in FILES}
    assert {t: set(m.metadata) for t, m in raw.items()} == {
        "customers": RAW_METADATA, "orders": RAW_METADATA | CURSOR_METADATA,
        "card": RAW_METADATA, "bank": RAW_METADATA,
    }  # fmt: skip
    assert {t: _value(m, "dagster/row_count") for t, m in raw.items()} == {
        "customers": 2, "orders": 2, "card": 1, "bank": 1,
    }  # fmt: skip
    assert {
        t: [c.name for c in _value(m, "dagster/column_schema").columns] for t, m in raw.items()
    } == {
        "customers": ["id", "name"], "orders": ["id", "customer_id", "amount", "updated_at"],
        "card": ["order_id", "cents"], "bank": ["order_id", "cents"],
    }  # fmt: skip
    assert _value(raw["orders"], "cursor/start") == "none (full extract)"
    assert _value(raw["orders"], "cursor/extracted_to") == "2026-01-02"
    assert all(_value(m, "duration_seconds") >= 0 for m in raw.values())


def test_the_raw_assets_keep_their_descriptions_kinds_and_group(tmp_path):
    project = _project(tmp_path / "pipelines", SHOP, None)
    graph = build_definitions(load_project(project)).resolve_asset_graph()
    orders = graph.get(dg.AssetKey(["acme", "shop", "raw", "orders"]))
    assert orders.description == (
        "Table `orders` extracted from connection `shop_files` (incremental sync on `updated_at`)."
    )
    assert (orders.kinds, orders.group_name) == ({"csv"}, "acme__shop")
    assert orders.metadata == {
        "connection": "shop_files", "source_table": "orders", "dagster/io_manager_key": "staging",
    }  # fmt: skip


def test_one_raw_table_materializes_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(tmp_path / "pipelines", SHOP, None)
    key = dg.AssetKey(["acme", "shop", "raw", "card"])
    job = build_definitions(load_project(project)).resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=[key])
    assert result.success
    materialized = materializations(result)
    assert list(materialized) == ["raw/card"]
    assert _value(materialized["raw/card"], "dagster/row_count") == 1


def test_a_failing_table_fails_its_step_while_the_others_materialize_and_nothing_loads(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(tmp_path / "pipelines", JOINED, 4)
    (project / "data" / "orders.csv").write_text(ORDERS + "12,1\n")
    with dg.instance_for_test() as instance:
        result = run(project, "shop", instance)
    assert not result.success
    assert failure_messages(result) == [
        "connection 'shop_files': data/orders.csv line 4: expected 4 fields, found 2; "
        "fix the row or the delimiter (',')"
    ]
    assert sorted(materializations(result)) == ["raw/bank", "raw/card", "raw/customers"]
    assert not (project / "wh.duckdb").exists() or warehouse_tables(project) == []


# The payment tables incremental too: two cursors read and committed by one step.
INCREMENTAL: dict[str, Any] = {
    **SHOP,
    "sources": [
        SHOP["sources"][0],
        {**SHOP["sources"][1], "sync_mode": "incremental", "incremental_key": "order_id",
         "primary_key": ["order_id"]},
    ],
}  # fmt: skip


@pytest.mark.parametrize("max_parallel", [1, 4])
def test_incremental_tables_in_a_parallel_extract_commit_exactly(
    tmp_path, monkeypatch, max_parallel
):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _project(tmp_path / "pipelines", INCREMENTAL, max_parallel)
    with dg.instance_for_test() as instance:
        assert run(project, "shop", instance).success
        # A row at the committed cursor is not loaded again; a later one is.
        (project / "data" / "orders.csv").write_text(
            ORDERS + "11,2,7,2026-01-02\n12,1,9,2026-01-03\n"
        )
        (project / "data" / "card.csv").write_text(SHOP_FILES["card"] + "12,900\n")
        second = run(project, "shop", instance)
    assert second.success
    orders = warehouse_rows(project, "orders")
    assert [r[:3] for r in orders] == [(10, 1, 5), (11, 2, 7), (12, 1, 9)]
    assert warehouse_rows(project, "card") == [(10, 500), (12, 900)]
    assert warehouse_rows(project, "bank") == [(11, 700)]
    # Full tables are appended again, as their load mode says.
    assert warehouse_rows(project, "customers") == [(1, "Ann"), (1, "Ann"), (2, "Bob"), (2, "Bob")]
    materialized = materializations(second)
    assert {
        t: (_value(materialized[f"raw/{t}"], "cursor/start"),
            _value(materialized[f"raw/{t}"], "cursor/extracted_to"),
            _value(materialized[f"raw/{t}"], "dagster/row_count"))
        for t in ("orders", "card", "bank")
    } == {
        "orders": ("2026-01-02", "2026-01-03", 1),
        "card": ("10", "12", 1),
        "bank": ("11", "11", 0),
    }  # fmt: skip


class InFlight:
    """Holds each request until `target` are in flight at once (or a generous timeout)."""

    def __init__(self, target: int) -> None:
        self.target, self.now, self.most = target, 0, 0
        self.lock, self.reached = threading.Lock(), threading.Event()

    def handle(self, request: Request, name: str) -> Response:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            if self.now >= self.target:
                self.reached.set()
        # Only a failing test waits this long: the target is reached at once when it works.
        self.reached.wait(timeout=20)
        with self.lock:
            self.now -= 1
        return Response(200, {"data": [{"id": 1, "table": name}]})


@pytest.mark.parametrize(("max_parallel", "in_flight"), [(4, 4), (2, 2), (1, 1)])
def test_an_api_connections_tables_are_requested_concurrently_up_to_max_parallel(
    tmp_path, monkeypatch, max_parallel, in_flight
):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    counter = InFlight(in_flight)
    fake = FakeServer()
    fake.route("GET", r"/t/(?P<name>\w+)")(counter.handle)
    tables = ["a", "b", "c", "d"]
    with serve(fake):
        endpoints = {t: {"path": f"/t/{t}", "data_path": "data"} for t in tables}
        connections = {
            "warehouse": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
            "api": {"connector": "rest_api", "config": {
                "base_url": fake.url, "endpoints": endpoints, "requests_per_second": 1000}},
        }  # fmt: skip
        pipeline = {
            "name": "api", "org": "acme", "max_parallel": max_parallel,
            "source": {"connection": "api", "tables": tables},
            "destination": {"connection": "warehouse"},
        }  # fmt: skip
        project = write_project(tmp_path / "pipelines", connections, {"p.yaml": pipeline})
        with dg.instance_for_test() as instance:
            result = run(project, "api", instance)
    assert result.success
    assert counter.most == in_flight
    assert sorted(r.path for r in fake.requests) == [f"/t/{t}" for t in tables]
    assert {t: warehouse_rows(project, t) for t in tables} == {t: [(1, t)] for t in tables}


@pytest.mark.parametrize(("value", "message"), [
    (0, "Input should be greater than or equal to 1"),
    ("many", "Input should be a valid integer, unable to parse string as an integer"),
])  # fmt: skip
def test_max_parallel_below_one_or_not_a_number_is_refused(tmp_path, value, message):
    project = _project(tmp_path / "pipelines", SHOP, value)
    [errors] = load_project(project).errors.values()
    assert [(e.path, e.message, e.hint) for e in errors] == [
        ("max_parallel", message, "fix the value")
    ]
