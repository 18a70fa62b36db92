"""What the pipeline tests that load into a DuckDB warehouse share: the shop's four CSV
tables over two connections, the loaded rows and a run's materializations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from tests.support.project_files import write_project

CUSTOMERS = "id,name\n1,Ann\n2,Bob\n"
ORDERS = "id,customer_id,amount,updated_at\n10,1,5,2026-01-01\n11,2,7,2026-01-02\n"
CARD = "order_id,cents\n10,500\n"
BANK = "order_id,cents\n11,700\n"
SHOP_FILES = {"customers": CUSTOMERS, "orders": ORDERS, "card": CARD, "bank": BANK}

# Four tables over two CSV connections: each connection's two tables are one step.
SHOP: dict[str, Any] = {
    "name": "shop",
    "org": "acme",
    "sources": [
        {"connection": "shop_files", "sync_mode": "full",
         "tables": ["customers", {"name": "orders", "sync_mode": "incremental",
                                  "incremental_key": "updated_at", "primary_key": ["id"]}]},
        {"connection": "payment_files", "tables": ["card", "bank"]},
    ],
    "destination": {"connection": "warehouse", "load_mode": "append"},
}  # fmt: skip


def shop_project(directory: Path, pipeline: dict[str, Any]) -> Path:
    """A project of the shop's CSV files, a DuckDB warehouse (wh.duckdb) and `pipeline`."""
    (directory / "data").mkdir(parents=True)
    for table, text in SHOP_FILES.items():
        (directory / "data" / f"{table}.csv").write_text(text)
    paths = {t: f"data/{t}.csv" for t in SHOP_FILES}
    connections = {
        "warehouse": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
        "shop_files": {"connector": "csv", "config": {"tables": {
            "customers": paths["customers"], "orders": paths["orders"]}}},
        "payment_files": {"connector": "csv", "config": {"tables": {
            "card": paths["card"], "bank": paths["bank"]}}},
    }  # fmt: skip
    return write_project(directory, connections, {"p.yaml": pipeline})


def warehouse_rows(project: Path, table: str) -> list[tuple[Any, ...]]:
    """A table of the project's wh.duckdb, every row, sorted."""
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def warehouse_tables(project: Path) -> list[str]:
    """The tables in the project's wh.duckdb."""
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        return [name for (name,) in con.execute("SHOW TABLES").fetchall()]


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    """The run's materializations by asset key, without the org and pipeline parts."""
    return {
        "/".join(m.asset_key.path[2:]): m
        for m in (e.materialization for e in result.get_asset_materialization_events())
    }
