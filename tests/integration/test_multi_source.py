"""Pipelines over several sources: joins, unions and multi-input SQL end to end in Dagster."""

from __future__ import annotations

import csv
import shutil
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import psycopg

from datapipe_assets.cli.preview import preview_rows
from datapipe_assets.pipeline.project import load_project
from tests.support.project_files import postgres_config, run, write_project

REPO = Path(__file__).resolve().parents[2]

CUSTOMERS = "id,name\n1,Ann\n2,Bob\n3,Cy\n"
ORDERS = "id,customer_id,amount\n10,1,5.5\n11,1,4.5\n12,2,7.0\n13,9,1.0\n"


def _csv_project(directory: Path, pipeline: dict, files: dict[str, str]) -> Path:
    (directory / "data").mkdir(parents=True)
    connections: dict = {"warehouse": {"connector": "duckdb", "config": {"path": "wh.duckdb"}}}
    for table, text in files.items():
        (directory / "data" / f"{table}.csv").write_text(text)
        connections[f"{table}_csv"] = {"connector": "csv", "config": {"path": f"data/{table}.csv"}}
    return write_project(directory, connections, {"p.yaml": pipeline})


def _rows(project: Path, table: str) -> list[tuple]:
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def _columns(project: Path, table: str) -> list[str]:
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


JOIN_PIPELINE = {
    "name": "p",
    "sources": [
        {"connection": "customers_csv", "tables": ["customers"]},
        {"connection": "orders_csv", "tables": ["orders"]},
    ],
    "transform": {
        "nodes": [
            {"id": "customers", "type": "source", "data": {"table": "customers"}},
            {"id": "orders", "type": "source", "data": {"table": "orders"}},
            {"id": "enriched", "type": "join", "inputs": {"left": "orders", "right": "customers"},
             "data": {"how": "left", "on": [{"left": "customer_id", "right": "id"}]}},
            {"id": "out", "type": "destination", "inputs": ["enriched"]},
        ],
    },
    "destination": {"connection": "warehouse", "target_table": "enriched_orders"},
}  # fmt: skip


def test_join_of_two_csv_connections_into_duckdb(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = _csv_project(
        tmp_path / "pipelines", JOIN_PIPELINE, {"customers": CUSTOMERS, "orders": ORDERS}
    )
    with dg.instance_for_test() as instance:
        result = run(project, "p", instance)
        assert result.success
        assert _columns(project, "enriched_orders") == [
            "id", "customer_id", "amount", "id_customers", "name"
        ]  # fmt: skip
        assert _rows(project, "enriched_orders") == [
            (10, 1, 5.5, 1, "Ann"),
            (11, 1, 4.5, 1, "Ann"),
            (12, 2, 7.0, 2, "Bob"),
            (13, 9, 1.0, None, None),
        ]
        event = instance.get_latest_materialization_event(dg.AssetKey(["default", "p", "enriched"]))
        assert event is not None and event.asset_materialization is not None
        metadata = event.asset_materialization.metadata
        lineage = metadata["dagster/column_lineage"].value
        deps = {
            column: [(d.asset_key.to_user_string(), d.column_name) for d in found]
            for column, found in lineage.deps_by_column.items()
        }
        assert deps == {
            "id": [("default/p/raw/orders", "id")],
            "customer_id": [("default/p/raw/orders", "customer_id")],
            "amount": [("default/p/raw/orders", "amount")],
            "id_customers": [("default/p/raw/customers", "id")],
            "name": [("default/p/raw/customers", "name")],
        }
        assert metadata["dagster/row_count"].value == 4


def test_join_asset_depends_on_both_inputs(tmp_path):
    from datapipe_assets.defs.factory import build_definitions

    project = _csv_project(
        tmp_path / "pipelines", JOIN_PIPELINE, {"customers": CUSTOMERS, "orders": ORDERS}
    )
    graph = build_definitions(load_project(project)).resolve_asset_graph()
    parents = graph.get(dg.AssetKey(["default", "p", "enriched"])).parent_keys
    assert {k.to_user_string() for k in parents} == {
        "default/p/raw/orders",
        "default/p/raw/customers",
    }


def test_preview_of_join_and_union_nodes(tmp_path):
    pipeline = {
        **JOIN_PIPELINE,
        "transform": {
            "nodes": [
                *JOIN_PIPELINE["transform"]["nodes"][:3],
                {"id": "both", "type": "union", "inputs": ["orders", "customers"]},
                {"id": "out", "type": "destination", "inputs": ["enriched"]},
            ],
            "edges": [],
        },
        "checks": [],
    }
    # The union is an extra branch: reading it needs its own consumer to be valid.
    pipeline["transform"]["nodes"][-1] = {"id": "out", "type": "destination", "inputs": ["both"]}
    pipeline["transform"]["nodes"].insert(
        3,
        {"id": "spare", "type": "sql", "inputs": ["enriched"], "data": {"query": "SELECT 1 AS x"}},
    )
    project = _csv_project(tmp_path / "p", pipeline, {"customers": CUSTOMERS, "orders": ORDERS})
    loaded = load_project(project).get("p")
    enriched = preview_rows(loaded, "enriched", 2)
    assert enriched.column_names == ["id", "customer_id", "amount", "id_customers", "name"]
    assert enriched.num_rows == 2
    union = preview_rows(loaded, "both", 10)
    assert union.column_names == ["id", "customer_id", "amount", "name"]
    assert sorted(union.to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "customer_id": None, "amount": None, "name": "Ann"},
        {"id": 2, "customer_id": None, "amount": None, "name": "Bob"},
        {"id": 3, "customer_id": None, "amount": None, "name": "Cy"},
        {"id": 10, "customer_id": 1, "amount": 5.5, "name": None},
        {"id": 11, "customer_id": 1, "amount": 4.5, "name": None},
        {"id": 12, "customer_id": 2, "amount": 7.0, "name": None},
        {"id": 13, "customer_id": 9, "amount": 1.0, "name": None},
    ]


def test_union_and_multi_input_sql_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    pipeline = {
        "name": "p",
        "sources": [
            {"connection": "card_csv", "tables": ["card"]},
            {"connection": "bank_csv", "tables": ["bank"]},
            {"connection": "orders_csv", "tables": ["orders"]},
        ],
        "transform": {
            "nodes": [
                {"id": "card", "type": "source", "data": {"table": "card"}},
                {"id": "bank", "type": "source", "data": {"table": "bank"}},
                {"id": "orders", "type": "source", "data": {"table": "orders"}},
                {"id": "payments", "type": "union", "data": {"by": "name"}},
                {"id": "paid", "type": "sql", "data": {"query": (
                    "SELECT o.id, o.amount, coalesce(sum(p.paid), 0) AS paid FROM orders o "
                    "LEFT JOIN pay p ON p.order_id = o.id GROUP BY ALL")}},
                {"id": "out", "type": "destination"},
            ],
            "edges": [
                {"source": "card", "target": "payments", "target_handle": "a"},
                {"source": "bank", "target": "payments", "target_handle": "b"},
                {"source": "orders", "target": "paid"},
                {"source": "payments", "target": "paid", "target_handle": "pay"},
                {"source": "paid", "target": "out"},
            ],
        },
        "destination": {"connection": "warehouse", "target_table": "paid"},
    }  # fmt: skip
    files = {
        "card": "order_id,paid,card\n10,5.5,visa\n12,3.0,amex\n",
        "bank": "iban,order_id,paid\nDE1,12,4.0\nDE2,11,4.5\n",
        "orders": ORDERS,
    }
    project = _csv_project(tmp_path / "pipelines", pipeline, files)
    with dg.instance_for_test() as instance:
        assert run(project, "p", instance).success
    assert _rows(project, "paid") == [
        (10, 5.5, 5.5),
        (11, 4.5, 4.5),
        (12, 7.0, 7.0),
        (13, 1.0, 0.0),
    ]


def test_csv_joined_with_postgres_loaded_into_postgres(
    tmp_path, monkeypatch, postgres, pg_database
):
    """Two connectors in one pipeline: a CSV file and a PostgreSQL table, into PostgreSQL."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    with psycopg.connect(postgres.url(pg_database), autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id bigint PRIMARY KEY, name text, vip boolean)")
        conn.execute("INSERT INTO customers VALUES (1, 'Ann', true), (2, 'Bob', false)")
    (tmp_path / "p" / "data").mkdir(parents=True)
    (tmp_path / "p" / "data" / "orders.csv").write_text(ORDERS)
    db = postgres_config(postgres, pg_database)
    project = write_project(
        tmp_path / "p",
        {"orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
         "shop_db": {"connector": "postgres", "config": db},
         "warehouse": {"connector": "postgres", "config": {**db, "schema": "analytics"}}},
        {"p.yaml": {
            "name": "vip_orders",
            "sources": [{"connection": "orders_csv", "tables": ["orders"]},
                        {"connection": "shop_db", "tables": ["customers"]}],
            "transform": {"nodes": [
                {"id": "orders", "type": "source", "data": {"table": "orders"}},
                {"id": "customers", "type": "source",
                 "data": {"table": "customers", "connection": "shop_db"}},
                {"id": "vip", "type": "join", "inputs": {"left": "orders", "right": "customers"},
                 "data": {"how": "semi", "on": [{"left": "customer_id", "right": "id"}]}},
                {"id": "out", "type": "destination", "inputs": ["vip"]}]},
            "destination": {"connection": "warehouse", "target_table": "known_customer_orders"},
        }},
    )  # fmt: skip
    with dg.instance_for_test() as instance:
        result = run(project, "vip_orders", instance)
        assert result.success
    with psycopg.connect(postgres.url(pg_database)) as conn:
        rows = conn.execute(
            "SELECT id, customer_id, amount FROM analytics.known_customer_orders ORDER BY id"
        ).fetchall()
    assert rows == [(10, 1, 5.5), (11, 1, 4.5), (12, 2, 7.0)]


def test_per_table_incremental_settings_commit_per_table(tmp_path, monkeypatch):
    """An incremental table and a full one in one pipeline: each commits (or not) its own
    cursor with the load, and a second run extracts only the incremental table's new rows."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    events = "id,kind,at\n1,a,2026-01-01 00:00:00\n2,b,2026-01-02 00:00:00\n"
    kinds = "kind,label\na,Alpha\nb,Beta\n"
    pipeline = {
        "name": "p",
        "sources": [
            {"connection": "events_csv",
             "tables": [{"name": "events", "sync_mode": "incremental", "incremental_key": "at",
                         "primary_key": ["id"]}]},
            {"connection": "kinds_csv", "tables": ["kinds"], "sync_mode": "full"},
        ],
        "transform": {"nodes": [
            {"id": "events", "type": "source", "data": {"table": "events"}},
            {"id": "kinds", "type": "source", "data": {"table": "kinds"}},
            {"id": "labelled", "type": "join", "inputs": {"left": "events", "right": "kinds"},
             "data": {"how": "left", "on": ["kind"]}},
            {"id": "out", "type": "destination", "inputs": ["labelled"]}]},
        "destination": {"connection": "warehouse", "target_table": "events",
                        "load_mode": "append"},
    }  # fmt: skip
    project = _csv_project(tmp_path / "pipelines", pipeline, {"events": events, "kinds": kinds})
    with dg.instance_for_test() as instance:
        assert run(project, "p", instance).success
        with (project / "data" / "events.csv").open("a") as f:
            f.write("3,a,2026-01-03 00:00:00\n")
        assert run(project, "p", instance).success
    assert _rows(project, "events") == [
        (1, "a", dt("2026-01-01"), "Alpha"),
        (2, "b", dt("2026-01-02"), "Beta"),
        (3, "a", dt("2026-01-03"), "Alpha"),
    ]
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        states = con.execute(
            "SELECT pipeline, source_table FROM _datapipe_state ORDER BY ALL"
        ).fetchall()
    # Only the incremental table has a cursor; the full one re-extracts every run.
    assert states == [("p", "events")]


def dt(day: str):
    import datetime

    return datetime.datetime.fromisoformat(day)


def test_renamed_table_keeps_its_own_raw_asset_and_reads_its_source_name(tmp_path, monkeypatch):
    """`as:` renames a table in the pipeline; the connection is still read by its own name."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    pipeline = {
        "name": "p",
        "sources": [
            {"connection": "orders_csv", "tables": ["orders"]},
            {"connection": "more_csv", "tables": [{"name": "more", "as": "other_orders"}]},
        ],
        "transform": {"nodes": [
            {"id": "a", "type": "source", "data": {"table": "orders"}},
            {"id": "b", "type": "source", "data": {"table": "more", "connection": "more_csv"}},
            {"id": "all", "type": "union", "inputs": ["a", "b"]},
            {"id": "out", "type": "destination", "inputs": ["all"]}]},
        "destination": {"connection": "warehouse", "target_table": "all_orders"},
    }  # fmt: skip
    files = {"orders": ORDERS, "more": "id,customer_id,amount\n20,3,2.0\n"}
    project = _csv_project(tmp_path / "pipelines", pipeline, files)
    with dg.instance_for_test() as instance:
        assert run(project, "p", instance).success
        raw = instance.get_latest_materialization_event(
            dg.AssetKey(["default", "p", "raw", "other_orders"])
        )
        assert raw is not None
    assert [r[0] for r in _rows(project, "all_orders")] == [10, 11, 12, 13, 20]


def test_shipped_customer_ltv_example(tmp_path, monkeypatch):
    """The example pipeline joins the three shipped CSV tables; its numbers match a
    computation straight from the files."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    (tmp_path / "pipelines" / "connections.yaml").write_text(
        (tmp_path / "pipelines" / "connections.yaml")
        .read_text()
        .replace("../.datapipe/warehouse.duckdb", "warehouse.duckdb")
    )
    project = tmp_path / "pipelines"
    with dg.instance_for_test() as instance:
        assert run(project, "customer_ltv", instance).success
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        loaded = con.execute(
            "SELECT id, paid_orders, lifetime_value_usd FROM customer_ltv ORDER BY id"
        ).fetchall()
    assert loaded == _expected_ltv(REPO / "pipelines" / "data")


def _expected_ltv(data: Path) -> list[tuple[int, int, Decimal]]:
    """Per customer: the latest version of each order, if paid, with all its payments."""
    latest: dict[str, dict] = {}
    for order in csv.DictReader((data / "orders.csv").open()):
        if order["id"] not in latest or order["updated_at"] >= latest[order["id"]]["updated_at"]:
            latest[order["id"]] = order
    paid = {o["id"]: o["customer_id"] for o in latest.values() if o["status"] == "paid"}
    cents: dict[str, int] = {}
    orders: dict[str, set[str]] = {}
    for payment in csv.DictReader((data / "payments.csv").open()):
        customer = paid.get(payment["order_id"])
        if customer is not None:
            cents[customer] = cents.get(customer, 0) + int(payment["amount_cents"])
            orders.setdefault(customer, set()).add(payment["order_id"])
    return [
        (int(c["id"]), len(orders.get(c["id"], ())), Decimal(cents.get(c["id"], 0)) / 100)
        for c in csv.DictReader((data / "customers.csv").open())
    ]
