"""Pipelines partitioned by file: each arrived file is a dynamic partition of its own, and
running one replaces exactly the rows that file loaded, in DuckDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg
import pytest

from datapipe_assets.cli.instance import dagster_instance
from datapipe_assets.cli.main import main
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from datapipe_assets.pipeline.run_source import FILE_TAG
from tests.support.project_files import (
    PAID_ONLY_TRANSFORM,
    failure_messages,
    postgres_config,
    run_summary,
)
from tests.support.project_files import write_project as write_files

PARTITIONS = "acme__orders__files"
A, B = "incoming/a.csv", "incoming/b.csv"
A_ROWS = "id,status,amount\n1,paid,10\n2,paid,20\n"
B_ROWS = "id,status,amount\n3,paid,30\n4,open,40\n"
# File a arrives again: order 1 changed, order 2 is gone, order 5 is new.
A_AGAIN = "id,status,amount\n1,paid,11\n5,paid,50\n"

Rows = Callable[[], list[tuple[Any, ...]]]


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path, postgres) -> tuple[dict[str, Any], Rows]:
    """The destination's connection, and its `orders` table's (id, amount, file) by id."""
    query = "SELECT id, amount, _datapipe_file FROM orders ORDER BY id"
    if request.param == "duckdb":
        path = tmp_path / "wh.duckdb"

        def rows() -> list[tuple[Any, ...]]:
            with duckdb.connect(str(path), read_only=True) as con:
                return con.execute(query).fetchall()

        return {"connector": "duckdb", "config": {"path": str(path)}}, rows
    database = postgres.create_database()

    def pg_rows() -> list[tuple[Any, ...]]:
        with psycopg.connect(postgres.url(database)) as conn:
            return conn.execute(query).fetchall()

    return {"connector": "postgres", "config": postgres_config(postgres, database)}, pg_rows


def write_project(
    directory: Path, destination: dict[str, Any], path: str = "incoming/*.csv", **spec: Any
) -> Path:
    """Pipeline `orders` (org acme), partitioned by the files arriving at `path`, loading
    table `orders` (by `load_mode: replace`, which must empty nothing but the file's rows)."""
    (directory / "incoming").mkdir(parents=True, exist_ok=True)
    return write_files(
        directory,
        {"warehouse": destination},
        {"orders.yaml": {"name": "orders", "org": "acme",
                         "source": {"connector": "csv",
                                    "config": {"path": path, "table": "orders"},
                                    "tables": ["orders"]},
                         "destination": {"connection": "warehouse", "load_mode": "replace"},
                         "trigger": {"on_new_file": True},
                         "partitions": {"by": "file"},
                         **spec}},
    )  # fmt: skip


def test_a_sensor_tick_adds_each_file_as_a_partition_and_one_file_runs_again_alone(
    tmp_path, monkeypatch, warehouse
):
    destination, rows = warehouse
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    project = write_project(tmp_path / "pipelines", destination)
    (project / A).write_text(A_ROWS)
    (project / B).write_text(B_ROWS)
    definitions = build_definitions(load_project(project))
    job = definitions.resolve_job_def("acme__orders")
    assert job.partitions_def == dg.DynamicPartitionsDefinition(name=PARTITIONS)
    with dg.instance_for_test() as instance:
        sensor = definitions.resolve_sensor_def("acme__orders__new_file")
        tick = sensor(dg.build_sensor_context(instance=instance, definitions=definitions))
        assert [(r.run_key, r.partition_key, r.tags) for r in tick.run_requests] == [
            (A, A, {FILE_TAG: A}),
            (B, B, {FILE_TAG: B}),
        ]
        assert tick.dynamic_partitions_requests == [
            dg.AddDynamicPartitionsRequest(PARTITIONS, [A, B])
        ]
        # What the daemon does with the tick: the partitions first, then a run of each.
        for request in tick.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        assert instance.get_dynamic_partitions(PARTITIONS) == [A, B]
        for request in tick.run_requests:
            result = job.execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=request.tags
            )
            assert result.success
        assert rows() == [(1, 10, A), (2, 20, A), (3, 30, B), (4, 40, B)]
        # The file's partition was staged under its own name.
        raw = dg.AssetKey(["acme", "orders", "raw", "orders"])
        staged = _materialization(instance, raw, A).metadata["staged_path"].value
        assert staged.endswith("/acme/orders/raw/orders/incoming%2Fa.csv.parquet")

        # File a changes; its partition alone runs again, as from the UI, with no file tag.
        (project / A).write_text(A_AGAIN)
        assert job.execute_in_process(instance=instance, partition_key=A).success
        assert rows() == [(1, 11, A), (3, 30, B), (4, 40, B), (5, 50, A)]
        load = dg.AssetKey(["acme", "orders", "load", "orders"])
        assert _materialization(instance, load, A).metadata["rows_loaded"].value == 2
        # Running it again changes nothing.
        assert job.execute_in_process(instance=instance, partition_key=A).success
        assert rows() == [(1, 11, A), (3, 30, B), (4, 40, B), (5, 50, A)]

        # A run that names no partition reads no file, and says how to run one.
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert failure_messages(result) == [
            "pipeline 'orders' is partitioned by file, and this run names no partition; run "
            "one file with datapipe run acme/orders --file PATH, or pick its partition in the UI"
        ]
        assert rows() == [(1, 11, A), (3, 30, B), (4, 40, B), (5, 50, A)]


def _materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str
) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    materialization = records[0].asset_materialization
    assert materialization is not None
    return materialization


@pytest.fixture
def cli_project(tmp_path, monkeypatch) -> Path:
    """The pipeline with a transform (only paid orders) into DuckDB, for the CLI."""
    directory = write_project(
        tmp_path / "pipelines",
        {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
        transform=PAID_ONLY_TRANSFORM,
    )
    use_project(monkeypatch, directory)
    return directory


def use_project(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """The commands' pipelines folder, with Dagster's home and staging beside it."""
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(directory))
    monkeypatch.setenv("DAGSTER_HOME", str(directory.parent / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(directory.parent / "staging"))


def _loaded(project: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        return con.execute("SELECT id, amount, _datapipe_file FROM orders ORDER BY id").fetchall()


def _ran(*files: str) -> list[str]:
    """What `datapipe run orders` says when each file's partition ran and succeeded."""
    return [
        line for file in files
        for line in (f"running orders partition {file} ...", "orders: run ID succeeded")
    ]  # fmt: skip


def test_datapipe_run_takes_the_new_files_and_run_file_reruns_one(cli_project, capsys):
    (cli_project / A).write_text(A_ROWS)
    (cli_project / B).write_text(B_ROWS)
    assert main(["run", "orders"]) == 0
    assert run_summary(capsys.readouterr().out, "orders") == _ran(A, B)
    assert _loaded(cli_project) == [(1, 10, A), (2, 20, A), (3, 30, B)]
    with dagster_instance() as instance:
        assert instance.get_dynamic_partitions(PARTITIONS) == [A, B]

    # Every file is a partition already: nothing is new.
    assert main(["run", "orders"]) == 0
    assert capsys.readouterr().out == (
        "orders: no new file matches incoming/*.csv (any it matches is a partition already); "
        "run one again with datapipe run orders --file PATH\n"
    )

    (cli_project / A).write_text(A_AGAIN)
    assert main(["run", "orders", "--file", A]) == 0
    assert run_summary(capsys.readouterr().out, "orders") == _ran(A)
    assert _loaded(cli_project) == [(1, 11, A), (3, 30, B), (5, 50, A)]


def test_file_options_and_backfill_refusals(cli_project, capsys):
    (cli_project / A).write_text(A_ROWS)
    # Another pipeline, not partitioned at all.
    (cli_project / "whole.yaml").write_text(
        "name: whole\nsource: {connector: csv, config: {path: incoming/a.csv}, tables: [a]}\n"
        "destination: {connection: warehouse}\n"
    )
    cases = [
        (["run", "orders", "--file", "incoming/c.csv"],
         "error: pipeline 'orders' has no file 'incoming/c.csv': the path incoming/*.csv of "
         "connection 'orders.source' matches incoming/a.csv; give one of those, as listed"),
        (["run", "--all", "--file", A],
         "error: --file names a file of one pipeline; give its name instead of --all"),
        (["run", "whole", "--file", A],
         "error: pipeline 'whole' is not partitioned by file; --file runs one arrived file of "
         "a pipeline with partitions: {by: file}"),
        (["backfill", "orders", "--from", "2024-01-01", "--to", "2024-01-02"],
         "error: pipeline 'orders' is partitioned by file, not by date; run one file with "
         "datapipe run orders --file PATH, or pick files' partitions in the Dagster UI"),
    ]  # fmt: skip
    for argv, error in cases:
        assert main(argv) == 1
        output = capsys.readouterr()
        assert (output.out, output.err) == ("", error + "\n")
    assert not (cli_project / "wh.duckdb").exists()


def test_a_failed_load_of_a_file_leaves_its_rows_as_they_were(
    tmp_path, monkeypatch, postgres, capsys
):
    """The delete of the file's rows and the insert of its new ones are one transaction."""
    database = postgres.create_database()
    with psycopg.connect(postgres.url(database), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orders (id integer, status text, "
            "amount integer CONSTRAINT no_50 CHECK (amount <> 50))"
        )
    destination = {"connector": "postgres", "config": postgres_config(postgres, database)}
    project = write_project(tmp_path / "pipelines", destination)
    use_project(monkeypatch, project)

    def rows() -> list[tuple[Any, ...]]:
        with psycopg.connect(postgres.url(database)) as conn:
            query = "SELECT id, amount, _datapipe_file FROM orders ORDER BY id"
            return conn.execute(query).fetchall()

    (project / A).write_text(A_ROWS)
    (project / B).write_text(B_ROWS)
    assert main(["run", "orders"]) == 0
    assert rows() == [(1, 10, A), (2, 20, A), (3, 30, B), (4, 40, B)]
    # The new version of file a has an order the table refuses: nothing of it is loaded,
    # and the rows its first version loaded stay.
    (project / A).write_text(A_AGAIN)
    capsys.readouterr()
    assert main(["run", "orders", "--file", A]) == 1
    output = capsys.readouterr()
    assert run_summary(output.out, "orders")[-1] == "orders: run ID FAILED"
    assert output.err == (
        "  FAILED acme/orders/load/orders: connection 'warehouse': loading table 'orders' "
        'failed: new row for relation "orders" violates check constraint "no_50"\n'
    )
    assert rows() == [(1, 10, A), (2, 20, A), (3, 30, B), (4, 40, B)]
    with psycopg.connect(postgres.url(database), autocommit=True) as conn:
        conn.execute("ALTER TABLE orders DROP CONSTRAINT no_50")
    assert main(["run", "orders", "--file", A]) == 0
    assert rows() == [(1, 11, A), (3, 30, B), (4, 40, B), (5, 50, A)]


def test_files_arriving_on_s3_are_partitions_too(tmp_path, monkeypatch, s3, capsys):
    for variable, value in s3.env().items():
        monkeypatch.setenv(variable, value)
    bucket = s3.create_bucket()
    store = s3.filesystem()

    def land(name: str, text: str) -> str:
        with store.open_output_stream(f"{bucket}/landing/{name}") as stream:
            stream.write(text.encode())
        return f"s3://{bucket}/landing/{name}"

    destination = {"connector": "duckdb", "config": {"path": "wh.duckdb"}}
    project = write_project(
        tmp_path / "pipelines", destination, path=f"s3://{bucket}/landing/*.csv"
    )
    use_project(monkeypatch, project)
    a, b = land("a.csv", A_ROWS), land("b.csv", B_ROWS)
    assert main(["run", "orders"]) == 0
    assert run_summary(capsys.readouterr().out, "orders") == _ran(a, b)
    assert _loaded(project) == [(1, 10, a), (2, 20, a), (3, 30, b), (4, 40, b)]
    land("a.csv", A_AGAIN)
    assert main(["run", "orders", "--file", a]) == 0
    assert _loaded(project) == [(1, 11, a), (3, 30, b), (4, 40, b), (5, 50, a)]
