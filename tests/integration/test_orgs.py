"""Two orgs in one project, through the real CLI and the Dagster definitions: each has a
pipeline `orders` and connections `src` and `warehouse` of its own, and loads its own rows
into its own destination (acme: DuckDB, beta: PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest
import yaml

from datapipe_assets.cli.main import main
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from tests.support.project_files import postgres_config, write_project

ACME_CSV = "id,amount\n1,10\n2,20\n"
BETA_CSV = "id,amount\n7,70\n8,80\n9,90\n"


def _orders(org: str, source: str = "src") -> dict:
    return {
        "name": "orders",
        "org": org,
        "source": {"connection": source, "tables": ["orders"]},
        "destination": {"connection": "warehouse"},
    }


def _org_folder(directory: Path, org: str, csv: str, connections: dict) -> Path:
    """orgs/<org>/ with its connections.yaml and data/orders.csv (a path relative to it)."""
    folder = directory / "orgs" / org
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "orders.csv").write_text(csv)
    (folder / "connections.yaml").write_text(yaml.safe_dump(connections))
    return folder


@pytest.fixture
def project(tmp_path, monkeypatch, postgres, pg_database):
    """acme's connections in its folder; beta's `src` in its folder, its `warehouse` (a
    PostgreSQL database) in connections.yaml with `org: beta`."""
    directory = tmp_path / "pipelines"
    csv = {"connector": "csv", "config": {"path": "data/orders.csv"}}
    _org_folder(
        directory,
        "acme",
        ACME_CSV,
        {
            "src": csv,
            "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}},
            "acme_only": csv,
        },
    )
    _org_folder(directory, "beta", BETA_CSV, {"src": csv})
    beta_db = {**postgres_config(postgres, pg_database), "password": "${BETA_DB_PASSWORD}"}
    write_project(
        directory,
        {"warehouse": {"connector": "postgres", "config": beta_db, "org": "beta"}},
        {"acme_orders.yaml": _orders("acme"), "beta_orders.yaml": _orders("beta")},
    )
    (directory / "orgs.yaml").write_text("orgs:\n  acme: {plan: pro}\n  beta: {plan: team}\n")
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(directory))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.setenv("BETA_DB_PASSWORD", postgres.password)
    return directory


def _beta_rows(postgres, database: str) -> list[tuple]:
    with psycopg.connect(postgres.url(database)) as conn:
        return conn.execute("SELECT id, amount FROM orders ORDER BY id").fetchall()


def _acme_rows(project: Path) -> list[tuple]:
    path = project / "orgs" / "acme" / "warehouse.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT id, amount FROM orders ORDER BY id").fetchall()


def test_each_org_runs_its_own_orders_into_its_own_destination(
    project, capsys, postgres, pg_database
):
    assert main(["run", "acme/orders"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "running acme/orders ..."
    assert [line.split()[:2] for line in lines[1:-1]] == [
        ["done", "acme/orders/raw/orders"],
        ["done", "acme/orders/load/orders"],
    ]
    assert lines[-1].startswith("acme/orders: run ") and lines[-1].endswith(" succeeded")
    assert _acme_rows(project) == [(1, 10), (2, 20)]

    assert main(["run", "beta/orders"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "running beta/orders ..."
    assert lines[-1].startswith("beta/orders: run ") and lines[-1].endswith(" succeeded")
    assert _beta_rows(postgres, pg_database) == [(7, 70), (8, 80), (9, 90)]
    # acme's destination is untouched by beta's run.
    assert _acme_rows(project) == [(1, 10), (2, 20)]

    # Each org's runs are its own: status finds them by the pipeline's Dagster name.
    assert main(["status", "beta/orders", "--limit", "1"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0] == "beta/orders"
    assert status[2].split()[1] == "SUCCESS"
    assert status[2].split()[4:7] == ["3", "0", "3"]


def test_a_name_two_orgs_use_must_be_qualified(project, capsys):
    dates = ["--from", "2024-01-01", "--to", "2024-01-02"]
    for command in (["run"], ["status"], ["preview"], ["rejects"], ["backfill", *dates]):
        assert main([command[0], "orders", *command[1:]]) == 1
        assert capsys.readouterr().err == (
            "error: pipeline name 'orders' is used by several orgs; name one of: acme/orders, "
            "beta/orders\n"
        ), command
    assert main(["run", "gamma/orders"]) == 1
    assert capsys.readouterr().err == (
        "error: no valid pipeline named 'gamma/orders'; valid pipelines: acme/orders, beta/orders\n"
    )


def test_a_pipeline_using_another_orgs_connection_is_refused(project, capsys):
    steal = {**_orders("beta", "acme_only"), "name": "steal"}
    (project / "steal.yaml").write_text(yaml.safe_dump(steal))
    assert main(["run", "steal"]) == 1
    assert capsys.readouterr().err == (
        "error: no valid pipeline named 'steal'; valid pipelines: acme/orders, beta/orders "
        f"({project / 'steal.yaml'}: source.connection: pipeline 'steal' (org 'beta'): "
        "connection 'acme_only' belongs to org 'acme'; use a connection of org 'beta' or a "
        "shared one)\n"
    )


def test_validate_and_check_name_each_orgs_connections(project, capsys, monkeypatch):
    monkeypatch.delenv("BETA_DB_PASSWORD")
    assert main(["validate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ok     acme/orders (acme_orders.yaml)",
        "ok     beta/orders (beta_orders.yaml)",
        "warn   pipeline 'orders': connection 'beta/warehouse' uses ${BETA_DB_PASSWORD}, which "
        "is not set; set it before the pipeline runs",
        "2 valid pipeline(s), 0 error(s), 1 warning(s)",
    ]
    assert main(["check", "acme/warehouse"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert main(["discover", "beta/src"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "orders",
        "  id                               int64",
        "  amount                           int64",
        "1 table(s)",
    ]
    # A name one org alone has needs no org.
    assert main(["check", "acme_only"]) == 0
    capsys.readouterr()
    assert main(["check", "warehouse"]) == 1
    assert capsys.readouterr().err == (
        "error: connection name 'warehouse' is used by several orgs; name one of: "
        "acme/warehouse, beta/warehouse\n"
    )
    assert main(["check", "nope"]) == 1
    assert capsys.readouterr().err == (
        "error: unknown connection 'nope'; connections.yaml has: acme/acme_only, acme/src, "
        "acme/warehouse, beta/src, beta/warehouse\n"
    )


def test_definitions_keep_each_orgs_jobs_assets_and_tags_apart(project):
    project_ = load_project(project)
    definitions = build_definitions(project_)
    dg.Definitions.validate_loadable(definitions)
    keys = {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "acme/orders/raw/orders",
        "acme/orders/load/orders",
        "beta/orders/raw/orders",
        "beta/orders/load/orders",
    }
    jobs = sorted(job.name for job in definitions.resolve_all_job_defs())
    assert jobs == [
        "__ASSET_JOB",
        "acme__orders",
        "acme__orders__full_refresh",
        "beta__orders",
        "beta__orders__full_refresh",
        "datapipe_staging_gc",
    ]
    beta = definitions.resolve_job_def("beta__orders")
    assert beta.tags == {
        "datapipe/pipeline": "beta__orders",
        "datapipe/org": "beta",
        "datapipe/pipeline_version": project_.get("beta/orders").version,
        "dagster/max_runtime": "3600",
    }
    graph = definitions.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["beta", "orders", "raw", "orders"])).group_name == "beta__orders"
