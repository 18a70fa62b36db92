"""Incremental sync from PostgreSQL to PostgreSQL: cursors advance only with committed loads."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import psycopg
import pytest

from datapipe_assets.defs.cursors import FULL_REFRESH_TAG
from tests.support.project_files import failure_messages, postgres_config, run, write_project

T1, T2, T3, T4 = (dt.datetime(2026, 3, day, 12, 0) for day in (1, 2, 3, 4))
INSERT = "INSERT INTO orders VALUES (%s, %s, %s)"


@pytest.fixture
def databases(postgres):
    shop, warehouse = postgres.create_database(), postgres.create_database()
    with psycopg.connect(postgres.url(shop), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orders (id integer PRIMARY KEY, amount integer, updated_at timestamp)"
        )
    return shop, warehouse


def _project(tmp_path, monkeypatch, postgres, databases, load_mode):
    shop, warehouse = databases
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.setenv("SHOP_PASSWORD", postgres.password)
    shop_config = {**postgres_config(postgres, shop), "password": "${SHOP_PASSWORD}"}
    destination = {"connection": "warehouse", "load_mode": load_mode}
    if load_mode == "upsert":
        destination["upsert_key"] = ["id"]
    return write_project(
        tmp_path / "pipelines",
        {"shop": {"connector": "postgres", "config": shop_config},
         "warehouse": {"connector": "postgres", "config": postgres_config(postgres, warehouse)}},
        {"orders.yaml": {"name": "shop_orders", "org": "acme",
                         "source": {"connection": "shop", "tables": ["orders"],
                                    "sync_mode": "incremental", "incremental_key": "updated_at",
                                    "primary_key": ["id"]},
                         "destination": destination}},
    )  # fmt: skip


def _execute(postgres, database, *statements):
    with psycopg.connect(postgres.url(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement[0], statement[1:]) if len(statement) > 1 else conn.execute(
                statement[0]
            )


def _rows(postgres, database):
    with psycopg.connect(postgres.url(database)) as conn:
        return conn.execute("SELECT id, amount, updated_at FROM orders ORDER BY id").fetchall()


def _committed_cursor(instance):
    event = instance.get_latest_materialization_event(
        dg.AssetKey(["acme", "shop_orders", "load", "orders"])
    )
    return event.asset_materialization.metadata["cursor/orders"].value


def test_upsert_runs_with_updates_boundary_rows_and_a_failed_load(
    tmp_path, monkeypatch, postgres, databases
):
    shop, warehouse = databases
    project = _project(tmp_path, monkeypatch, postgres, databases, "upsert")
    with dg.instance_for_test() as instance:
        # Run 1: two rows share the cursor's boundary value T2.
        _execute(postgres, shop, (INSERT, 1, 100, T1), (INSERT, 2, 200, T2), (INSERT, 3, 300, T2))
        assert run(project, "shop_orders", instance).success
        assert _rows(postgres, warehouse) == [(1, 100, T1), (2, 200, T2), (3, 300, T2)]
        assert _committed_cursor(instance) == str(T2)

        # Run 2: a late row at the boundary value, a new row and an update.
        _execute(
            postgres, shop, (INSERT, 4, 400, T2), (INSERT, 5, 500, T3),
            ("UPDATE orders SET amount = 150, updated_at = %s WHERE id = 1", T3),
        )  # fmt: skip
        assert run(project, "shop_orders", instance).success
        assert _rows(postgres, warehouse) == _rows(postgres, shop)
        raw = instance.get_latest_materialization_event(
            dg.AssetKey(["acme", "shop_orders", "raw", "orders"])
        ).asset_materialization
        # Rows 2 and 3 (already loaded at T2) are not extracted again; 1, 4 and 5 are.
        assert raw.metadata["dagster/row_count"].value == 3
        assert raw.metadata["cursor/start"].value == str(T2)

        # Run 3: the load fails; nothing is loaded and the cursor stays.
        _execute(
            postgres, warehouse, ("ALTER TABLE orders ADD CONSTRAINT small CHECK (amount < 1000)",)
        )
        _execute(
            postgres, shop, (INSERT, 6, 5000, T4),
            ("UPDATE orders SET amount = 250, updated_at = %s WHERE id = 2", T4),
        )  # fmt: skip
        before = _rows(postgres, warehouse)
        failed = run(project, "shop_orders", instance)
        assert not failed.success
        assert "violates check constraint" in failure_messages(failed)[0]
        assert _rows(postgres, warehouse) == before
        assert _committed_cursor(instance) == str(T3)

        # Run 4: once the destination accepts the rows, everything missed arrives.
        _execute(postgres, warehouse, ("ALTER TABLE orders DROP CONSTRAINT small",))
        assert run(project, "shop_orders", instance).success
        assert _rows(postgres, warehouse) == _rows(postgres, shop)
        assert len(_rows(postgres, shop)) == 6
        assert _committed_cursor(instance) == str(T4)

        # A forced full refresh rebuilds the table from the whole source.
        _execute(postgres, warehouse, ("DELETE FROM orders WHERE id = 3",))
        assert run(project, "shop_orders", instance, tags={FULL_REFRESH_TAG: "true"}).success
        assert _rows(postgres, warehouse) == _rows(postgres, shop)


def test_append_never_doubles_rows_at_the_cursor_boundary(
    tmp_path, monkeypatch, postgres, databases
):
    shop, warehouse = databases
    project = _project(tmp_path, monkeypatch, postgres, databases, "append")
    with dg.instance_for_test() as instance:
        _execute(postgres, shop, (INSERT, 1, 100, T1), (INSERT, 2, 200, T2))
        assert run(project, "shop_orders", instance).success
        assert run(project, "shop_orders", instance).success  # nothing new
        _execute(postgres, shop, (INSERT, 3, 300, T2), (INSERT, 4, 400, T3))
        assert run(project, "shop_orders", instance).success
        assert _rows(postgres, warehouse) == _rows(postgres, shop)
