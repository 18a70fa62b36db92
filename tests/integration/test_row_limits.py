"""The row limit per run of an org's plan (orgs.yaml): extracts stop at it, and a run either
fails with nothing loaded or, with `on_limit: load_partial`, loads exactly the rows read."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import psycopg
import pytest
import yaml

from connectors.base import CursorState
from datapipe_assets.cli.main import main
from datapipe_assets.pipeline.project import load_project
from tests.support.project_files import failure_messages, postgres_config, run, write_project

HINT = "raise max_rows_per_run in orgs.yaml, change the plan, or set on_limit: load_partial"
# Twelve orders; 5, 6 and 7 share one updated_at, across the cut of a 5-row limit.
TIMES = [dt.datetime(2026, 3, 1, hour) for hour in (1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 9, 10)]
ORDERS = [(id_, id_ * 100, at) for id_, at in enumerate(TIMES, start=1)]


def _orgs(directory, acme):
    (directory / "orgs.yaml").write_text(yaml.safe_dump({"orgs": {"acme": acme}}))


def _materialization(instance, *key):
    event = instance.get_latest_materialization_event(dg.AssetKey(["acme", *key]))
    return event.asset_materialization.metadata


@pytest.fixture
def shop(tmp_path, monkeypatch, postgres):
    """A PostgreSQL shop with the twelve orders, an empty warehouse and the pipeline's folder."""
    shop, warehouse = postgres.create_database(), postgres.create_database()
    with psycopg.connect(postgres.url(shop), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orders (id integer PRIMARY KEY, amount integer, updated_at timestamp)"
        )
        conn.cursor().executemany("INSERT INTO orders VALUES (%s, %s, %s)", ORDERS)
    directory = write_project(
        tmp_path / "pipelines",
        {"shop": {"connector": "postgres", "config": postgres_config(postgres, shop)},
         "warehouse": {"connector": "postgres", "config": postgres_config(postgres, warehouse)}},
        {"orders.yaml": {"name": "shop_orders", "org": "acme",
                         "source": {"connection": "shop", "tables": ["orders"],
                                    "sync_mode": "incremental", "incremental_key": "updated_at",
                                    "primary_key": ["id"]},
                         "destination": {"connection": "warehouse", "load_mode": "append"}}},
    )  # fmt: skip
    _orgs(directory, {"plan": "free", "max_rows_per_run": 5})
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(directory))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    return directory, postgres.url(shop), postgres.url(warehouse)


def _loaded(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        exists = conn.execute("SELECT to_regclass('public.orders')").fetchone()[0]
        if exists is None:
            return None
        return conn.execute("SELECT id, amount, updated_at FROM orders ORDER BY id").fetchall()


def _cursor(directory):
    destination = load_project(directory).get("shop_orders").destination.open_destination()
    return destination.read_state("acme__shop_orders", "orders")


def test_incremental_postgres_fails_at_the_limit_or_loads_5_5_2_rows_through_a_tie(shop, capsys):
    directory, shop_url, warehouse = shop
    # By default a run that reaches the limit fails, through `datapipe run`, with nothing
    # loaded and no cursor committed.
    assert main(["run", "shop_orders"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "  FAILED acme/shop_orders/raw/orders: pipeline 'shop_orders' (org 'acme'): table "
        f"'orders' reached the 5-row limit per run of org 'acme'; nothing was loaded; {HINT}"
    )
    assert _loaded(warehouse) is None
    assert _cursor(directory) is None

    pipeline = yaml.safe_load((directory / "orders.yaml").read_text())
    (directory / "orders.yaml").write_text(yaml.safe_dump({**pipeline, "on_limit": "load_partial"}))
    with dg.instance_for_test() as instance:
        # Run 1: orders 1-4 and one of 5, 6, 7, which share the cut's updated_at.
        assert run(directory, "shop_orders", instance).success
        first = _loaded(warehouse)
        assert first[:4] == ORDERS[:4] and len(first) == 5 and first[4] in ORDERS[4:7]
        assert _cursor(directory) == CursorState(TIMES[4], ((first[4][0],),))
        raw = _materialization(instance, "shop_orders", "raw", "orders")
        assert (raw["dagster/row_count"].value, raw["row_limit"].value) == (5, 5)
        assert raw["limited"].value is True
        assert _materialization(instance, "shop_orders", "load", "orders")["rows_loaded"].value == 5

        # Run 2: the other two tied orders, then 8, 9 and 10.
        assert run(directory, "shop_orders", instance).success
        assert _loaded(warehouse) == ORDERS[:10]
        assert _cursor(directory) == CursorState(TIMES[9], ((10,),))

        # Run 3: the last two; the limit is not reached.
        assert run(directory, "shop_orders", instance).success
        assert _loaded(warehouse) == ORDERS
        raw = _materialization(instance, "shop_orders", "raw", "orders")
        assert (raw["dagster/row_count"].value, raw["limited"].value) == (2, False)
        assert _cursor(directory) == CursorState(TIMES[11], ((12,),))

        # Failing again, over a committed cursor: the table and the cursor stay as they were.
        (directory / "orders.yaml").write_text(yaml.safe_dump(pipeline))
        later = [(id_, 0, dt.datetime(2026, 3, 2, id_ - 12)) for id_ in range(13, 19)]
        with psycopg.connect(shop_url, autocommit=True) as conn:
            conn.cursor().executemany("INSERT INTO orders VALUES (%s, %s, %s)", later)
        assert failure_messages(run(directory, "shop_orders", instance)) == [
            "pipeline 'shop_orders' (org 'acme'): table 'orders' reached the 5-row limit per "
            f"run of org 'acme'; nothing was loaded; {HINT}"
        ]
        assert _loaded(warehouse) == ORDERS
        assert _cursor(directory) == CursorState(TIMES[11], ((12,),))


TABLES = ("orders", "refunds")


@pytest.fixture
def csv_project(tmp_path):
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True)
    write_project(
        directory,
        {"files": {"connector": "csv", "config": {"tables": {t: f"data/{t}.csv" for t in TABLES}}},
         # The refunds again, through a connection of their own: an extract step of its own.
         "refunds_file": {"connector": "csv", "config": {"path": "data/refunds.csv"}},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {},
    )  # fmt: skip
    return directory


def _csv(directory, table, rows):
    lines = "".join(f"{i},{i * 10}\n" for i in range(1, rows + 1))
    (directory / "data" / f"{table}.csv").write_text("id,amount\n" + lines)


def _pipeline(directory, tables, **settings):
    """The pipeline `sales` of org acme: these tables of `files`, unless settings say more."""
    source = {"source": {"connection": "files", "tables": tables}} if tables else {}
    text = {"name": "sales", "org": "acme", **source, "destination": {"connection": "warehouse"},
            **settings}  # fmt: skip
    (directory / "sales.yaml").write_text(yaml.safe_dump(text))


def _warehouse(directory, table):
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT id, amount FROM {table} ORDER BY id").fetchall()


def _tables(directory):
    """The tables in the warehouse, if it was created."""
    if not (directory / "warehouse.duckdb").exists():
        return []
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]


def _fails_with_nothing_loaded(directory, instance, *messages):
    """Run `sales`: its steps fail with these messages, and the warehouse has no table."""
    assert failure_messages(run(directory, "sales", instance)) == list(messages)
    assert _tables(directory) == []


def test_full_sync_csv_with_load_partial_loads_exactly_the_first_rows(csv_project):
    _orgs(csv_project, {"max_rows_per_run": 5})
    _pipeline(csv_project, ["orders"], on_limit="load_partial")
    with dg.instance_for_test() as instance:
        _csv(csv_project, "orders", 12)
        assert run(csv_project, "sales", instance).success
        assert _warehouse(csv_project, "orders") == [(i, i * 10) for i in range(1, 6)]
        raw = _materialization(instance, "sales", "raw", "orders")
        assert (raw["row_limit"].value, raw["limited"].value) == (5, True)
        # A table of exactly the limit fits: it is loaded whole and not marked limited.
        _csv(csv_project, "orders", 5)
        assert run(csv_project, "sales", instance).success
        assert _materialization(instance, "sales", "raw", "orders")["limited"].value is False


def test_a_free_plan_limit_names_the_plan(csv_project):
    _orgs(csv_project, {"plan": "free"})
    _pipeline(csv_project, ["orders"])
    _csv(csv_project, "orders", 10_001)
    with dg.instance_for_test() as instance:
        _fails_with_nothing_loaded(
            csv_project,
            instance,
            "pipeline 'sales' (org 'acme'): table 'orders' reached the 10,000-row limit per run "
            f"of plan 'free' of org 'acme'; nothing was loaded; {HINT}",
        )


def _together(limit, orders, refunds):
    """The failure of a run whose orders and refunds passed the limit together."""
    return (
        f"pipeline 'sales' (org 'acme'): tables 'orders' ({orders} rows), 'refunds' ({refunds} "
        f"rows) together reached the {limit}-row limit per run of org 'acme'; nothing was "
        f"loaded; {HINT}"
    )


def test_tables_that_pass_the_limit_together_fail_before_any_load(csv_project):
    _orgs(csv_project, {"max_rows_per_run": 5})
    _pipeline(csv_project, ["orders", "refunds"])
    _csv(csv_project, "orders", 3)
    _csv(csv_project, "refunds", 3)
    with dg.instance_for_test() as instance:
        # Each table's load fails, before it commits anything.
        _fails_with_nothing_loaded(csv_project, instance, *2 * [_together(5, 3, 3)])
        # Within the limit together, both load.
        _csv(csv_project, "refunds", 2)
        assert run(csv_project, "sales", instance).success
    assert _warehouse(csv_project, "refunds") == [(1, 10), (2, 20)]


def test_tables_of_separate_steps_are_counted_together_before_a_transform_loads(csv_project):
    _orgs(csv_project, {"max_rows_per_run": 6})
    _pipeline(
        csv_project,
        None,
        sources=[{"connection": "files", "tables": ["orders"]},
                 {"connection": "refunds_file", "tables": ["refunds"]}],
        transform={"nodes": [{"id": "orders", "type": "source", "data": {"table": "orders"}},
                             {"id": "refunds", "type": "source", "data": {"table": "refunds"}},
                             {"id": "both", "type": "union", "inputs": ["orders", "refunds"]},
                             {"id": "out", "type": "destination", "inputs": ["both"]}]},
        destination={"connection": "warehouse", "target_table": "movements"},
    )  # fmt: skip
    _csv(csv_project, "orders", 4)
    _csv(csv_project, "refunds", 3)
    with dg.instance_for_test() as instance:
        _fails_with_nothing_loaded(csv_project, instance, _together(6, 4, 3))
        _csv(csv_project, "orders", 3)
        assert run(csv_project, "sales", instance).success
    assert _warehouse(csv_project, "movements") == [
        (1, 10),
        (1, 10),
        (2, 20),
        (2, 20),
        (3, 30),
        (3, 30),
    ]
