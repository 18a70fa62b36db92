"""Full-sync tables of a pipeline without a transform load in their extract's own step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from connectors.sources.csv import CsvSource
from datapipe_assets.cli.main import main
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from tests.support.project_files import failure_messages, run
from tests.support.warehouse_runs import (
    SHOP,
    SHOP_FILES,
    materializations,
    shop_project,
    warehouse_rows,
    warehouse_tables,
)

BANK = "order_id,cents\n11,700\n12,800\n"
FILES = {**SHOP_FILES, "bank": BANK}

# customers has a check on its raw table and orders is incremental: both keep a load step.
# card and bank are loaded in their connection's extract step.
CHECKED_SHOP: dict[str, Any] = {
    **SHOP,
    "checks": [{"type": "not_null", "asset": "customers", "column": "name"}],
}
EXTRACT_STEPS = {
    "acme__shop__raw__from__shop_files",
    "acme__shop__raw__from__payment_files",
    "acme__shop__raw__customers_not_null_name",
}
LOAD_STEPS = {f"acme__shop__load__{t}" for t in FILES}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = shop_project(tmp_path / "pipelines", CHECKED_SHOP)
    (project / "data" / "bank.csv").write_text(BANK)
    return project


@pytest.mark.parametrize(
    ("staging", "steps"),
    [
        ("minimal", EXTRACT_STEPS | {"acme__shop__load__customers", "acme__shop__load__orders"}),
        ("every_node", EXTRACT_STEPS | LOAD_STEPS),
    ],
)
def test_loads_in_the_extract_step_give_the_rows_and_metadata_of_separate_steps(
    project, monkeypatch, staging, steps
):
    monkeypatch.setenv("DATAPIPE_STAGING", staging)
    with dg.instance_for_test() as instance:
        result = run(project, "shop", instance)
    assert result.success
    assert {e.step_key for e in result.get_step_success_events()} == steps
    assert warehouse_rows(project, "card") == [(10, 500)]
    assert warehouse_rows(project, "bank") == [(11, 700), (12, 800)]
    assert warehouse_rows(project, "customers") == [(1, "Ann"), (2, "Bob")]
    assert [r[:3] for r in warehouse_rows(project, "orders")] == [(10, 1, 5), (11, 2, 7)]
    materialized = materializations(result)
    loads = {t: materialized[f"load/{t}"].metadata for t in FILES}
    # Every load records the same names, and the staged file it loaded is its raw table's.
    assert {t: sorted(m) for t, m in loads.items()} == {
        t: sorted(m) for t, m in loads.items() if t == "orders"
    } | dict.fromkeys(["customers", "card", "bank"], sorted(loads["customers"]))
    for table, metadata in loads.items():
        staged = materialized[f"raw/{table}"].metadata["staged_path"].value
        assert metadata["loaded_from"].value == staged
        assert pq.read_table(staged).num_rows == metadata["rows_loaded"].value
    assert loads["bank"]["dagster/row_count"].value == 2


def test_load_of_a_table_runs_alone_from_its_latest_staged_data(project):
    card, load = (dg.AssetKey(["acme", "shop", kind, "card"]) for kind in ("raw", "load"))
    with dg.instance_for_test() as instance:
        assert run(project, "shop", instance).success
        staged = instance.get_latest_materialization_event(card).asset_materialization
        (project / "data" / "card.csv").write_text(SHOP_FILES["card"] + "99,1\n")
        job = _global_job(project)
        result = job.execute_in_process(instance=instance, asset_selection=[load])
    assert result.success
    assert list(materializations(result)) == ["load/card"]
    # Not extracted again: the new row in the file is not loaded, the staged one is again.
    assert warehouse_rows(project, "card") == [(10, 500), (10, 500)]
    loaded_from = materializations(result)["load/card"].metadata["loaded_from"].value
    assert loaded_from == staged.metadata["staged_path"].value


def _global_job(project: Path) -> dg.JobDefinition:
    return build_definitions(load_project(project)).resolve_implicit_global_asset_job_def()


def test_a_source_failing_mid_stream_loads_nothing_and_names_the_table(project):
    # The bad value is past the first block the types are sniffed from, so the extract
    # fails while the load is already receiving rows.
    rows = "".join(f"{i},{i}\n" for i in range(600_000))
    (project / "data" / "bank.csv").write_text("order_id,cents\n" + rows + "13,lots\n")
    with dg.instance_for_test() as instance:
        result = run(project, "shop", instance)
    assert not result.success
    [message] = failure_messages(result)
    assert message.startswith("connection 'payment_files': data/bank.csv line 600002")
    assert "raw/bank" not in materializations(result)
    assert "bank" not in warehouse_tables(project)
    assert warehouse_rows(project, "card") == [(10, 500)]


def test_a_failed_load_writes_nothing_names_the_load_and_spares_the_other_table(project):
    with duckdb.connect(str(project / "wh.duckdb")) as con:
        con.execute("CREATE TABLE bank (order_id BIGINT, cents DATE)")
    with dg.instance_for_test() as instance:
        result = run(project, "shop", instance)
    assert not result.success
    assert failure_messages(result) == [
        "connection 'warehouse': column 'cents' of table 'bank' is DATE but the data is "
        "BIGINT; change the column type or cast it in a computed step"
    ]
    assert "load/bank" not in materializations(result)
    assert warehouse_rows(project, "bank") == []
    assert warehouse_rows(project, "card") == [(10, 500)]


def test_a_retried_step_does_not_load_a_table_twice(project, monkeypatch):
    read = CsvSource.read
    failed: list[str] = []

    def flaky_bank(self: CsvSource, table: str, *args: Any, **kwargs: Any) -> Any:
        # A transient error on bank's first read only, after card's load has committed.
        if table == "bank" and not failed:
            failed.append(table)
            raise OSError("connection reset by peer")
        return read(self, table, *args, **kwargs)

    monkeypatch.setattr(CsvSource, "read", flaky_bank)
    with (project / "p.yaml").open("a") as file:
        file.write("retries: {delays: [0]}\n")  # retried at once
    with dg.instance_for_test() as instance:
        result = run(project, "shop", instance)
    assert result.success
    assert failed == ["bank"]
    retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == ["acme__shop__raw__from__payment_files"]
    assert warehouse_rows(project, "card") == [(10, 500)]
    assert warehouse_rows(project, "bank") == [(11, 700), (12, 800)]
    materialized = [
        e.materialization.asset_key.path[2:] for e in result.get_asset_materialization_events()
    ]
    assert materialized.count(["load", "card"]) == 1


def test_the_cli_names_a_failure_by_the_assets_its_step_left_unmaterialized(
    project, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(project))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    with duckdb.connect(str(project / "wh.duckdb")) as con:
        con.execute("CREATE TABLE bank (order_id BIGINT, cents DATE)")
    assert main(["run", "shop"]) == 1
    # card's extract and load, in the same step, did materialize.
    assert capsys.readouterr().err.splitlines()[-1] == (
        "  FAILED acme/shop/load/bank, acme/shop/raw/bank: connection 'warehouse': column "
        "'cents' of table 'bank' is DATE but the data is BIGINT; change the column type or "
        "cast it in a computed step"
    )
