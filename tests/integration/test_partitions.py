"""Partitioned pipelines through Dagster: each run extracts one day of the source and replaces
exactly that day in the destination; staging keeps a file per partition."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg
import pytest

from datapipe_assets.cli.main import main
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.defs.partitions import run_window
from datapipe_assets.pipeline.keys import dagster_name
from datapipe_assets.pipeline.project import load_project
from tests.support.fake_http import FakeServer, Request, Response, serve
from tests.support.project_files import (
    PAID_ONLY_TRANSFORM,
    failure_messages,
    postgres_config,
    run_summary,
    write_project,
)

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour)


# Six orders over four days; day 4 is outside the backfill.
ORDERS = [
    (1, 100, at(1, 9)),
    (2, 200, at(1, 23)),
    (3, 300, at(2, 0)),
    (4, 400, at(2, 18)),
    (5, 500, at(3, 12)),
    (6, 600, at(4, 1)),
]


@pytest.fixture
def shop(postgres) -> str:
    database = postgres.create_database()
    _execute(
        postgres,
        database,
        "CREATE TABLE orders (id integer PRIMARY KEY, amount integer, created_at timestamp)",
        *(f"INSERT INTO orders VALUES ({i}, {a}, '{t}')" for i, a, t in ORDERS),
    )
    return database


def _execute(postgres, database: str, *statements: str) -> None:
    with psycopg.connect(postgres.url(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _project(tmp_path: Path, postgres, shop: str, destination: dict[str, Any]) -> Path:
    return write_project(
        tmp_path / "pipelines",
        {"shop": {"connector": "postgres", "config": postgres_config(postgres, shop)},
         "warehouse": destination},
        {"orders.yaml": {"name": "daily_orders", "org": "acme",
                         "source": {"connection": "shop", "tables": ["orders"]},
                         "destination": {"connection": "warehouse"},
                         "partitions": {"by": "day", "column": "created_at",
                                        "start": "2024-01-01"}}},
    )  # fmt: skip


def _run_partition(
    project: Path, instance: dg.DagsterInstance, key: str, pipeline: str = "daily_orders"
) -> dg.ExecuteInProcessResult:
    loaded = load_project(project)
    job = build_definitions(loaded).resolve_job_def(dagster_name(loaded.get(pipeline).pipeline))
    result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
    assert result.success
    return result


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path, postgres):
    """The destination's connection and a way to read its orders table, sorted by id."""
    if request.param == "duckdb":
        path = tmp_path / "wh.duckdb"

        def rows() -> list[tuple]:
            with duckdb.connect(str(path), read_only=True) as con:
                return con.execute("SELECT * FROM orders ORDER BY id").fetchall()

        return {"connector": "duckdb", "config": {"path": str(path)}}, rows
    database = postgres.create_database()

    def pg_rows() -> list[tuple]:
        with psycopg.connect(postgres.url(database)) as conn:
            return conn.execute("SELECT * FROM orders ORDER BY id").fetchall()

    return {"connector": "postgres", "config": postgres_config(postgres, database)}, pg_rows


def test_a_backfill_and_a_rerun_partition_over_postgres(
    tmp_path, monkeypatch, postgres, shop, warehouse
):
    destination, rows = warehouse
    staging = tmp_path / "staging"
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(staging))
    project = _project(tmp_path, postgres, shop, destination)
    with dg.instance_for_test() as instance:
        runs = [_run_partition(project, instance, key) for key in DAYS]
        assert rows() == [(i, a, t) for i, a, t in ORDERS if t.day <= 3]
        # Each run extracted only its day's rows, into its own partition's file.
        for key, result, extracted in zip(DAYS, runs, [[1, 2], [3, 4], [5]], strict=True):
            file = staging / result.run_id / "acme/daily_orders/raw/orders" / f"{key}.parquet"
            assert sorted(duckdb.sql(f"SELECT id FROM '{file}'").fetchall()) == [
                (i,) for i in extracted
            ]
        # The source changes on days 1 and 2; only day 2 is run again.
        _execute(
            postgres,
            shop,
            "UPDATE orders SET amount = 101 WHERE id = 1",
            "UPDATE orders SET amount = 301 WHERE id = 3",
            "DELETE FROM orders WHERE id = 4",
            f"INSERT INTO orders VALUES (7, 700, '{at(2, 23)}')",
        )
        _run_partition(project, instance, "2024-01-02")
        assert rows() == [
            (1, 100, at(1, 9)),
            (2, 200, at(1, 23)),
            (3, 301, at(2, 0)),
            (5, 500, at(3, 12)),
            (7, 700, at(2, 23)),
        ]
        # Running it again changes nothing.
        _run_partition(project, instance, "2024-01-02")
        assert len(rows()) == 5
        load = (
            instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey(["acme", "daily_orders", "load", "orders"]),
                    asset_partitions=["2024-01-02"],
                ),
                limit=1,
            )
            .records[0]
            .asset_materialization
        )
        assert load.metadata["rows_loaded"].value == 2


ORDERS_CSV = """id,status,amount,created_at
1,paid,10,2024-01-01 09:00:00
2,open,20,2024-01-01 23:59:59
3,paid,30,2024-01-02 00:00:00
4,paid,40,2024-01-02 18:00:00
5,paid,50,2024-01-03 12:00:00
6,paid,60,2024-01-04 01:00:00
"""


@pytest.fixture
def csv_project(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text(ORDERS_CSV)
    write_project(
        directory,
        {"orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
         "warehouse": {"connector": "duckdb", "config": {"path": "wh.duckdb"}}},
        {"paid.yaml": {"name": "paid", "org": "acme",
                       "source": {"connection": "orders_csv", "tables": ["orders"]},
                       "transform": PAID_ONLY_TRANSFORM,
                       "destination": {"connection": "warehouse", "target_table": "paid_orders"},
                       "partitions": {"by": "day", "column": "created_at", "start": "2024-01-01",
                                      "timezone": "UTC"},
                       "schedule": "daily",
                       # Checks of a partition see its rows only: 1, 2 and 1 paid orders.
                       "checks": [{"asset": "paid", "type": "not_null", "column": "amount"},
                                  {"asset": "paid", "type": "row_count", "min": 1, "max": 2},
                                  {"asset": "out", "type": "row_count", "min": 1}]}},
    )  # fmt: skip
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(directory))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    return directory


def _paid_rows(project: Path) -> list[tuple]:
    with duckdb.connect(str(project / "wh.duckdb"), read_only=True) as con:
        return con.execute("SELECT id, amount FROM paid_orders ORDER BY id").fetchall()


def test_backfill_command_over_csv_then_one_partition_again(csv_project, capsys):
    assert main(["backfill", "paid", "--from", "2024-01-01", "--to", "2024-01-03"]) == 0
    assert run_summary(capsys.readouterr().out, "paid") == [
        "running paid partition 2024-01-01 (1 of 3) ...",
        "paid: run ID succeeded",
        "running paid partition 2024-01-02 (2 of 3) ...",
        "paid: run ID succeeded",
        "running paid partition 2024-01-03 (3 of 3) ...",
        "paid: run ID succeeded",
        "paid: backfill of 3 partition(s), 3 succeeded",
    ]
    assert _paid_rows(csv_project) == [(1, 10), (3, 30), (4, 40), (5, 50)]
    # Day 1 and day 2 change in the file; only day 2 is run again.
    (csv_project / "data" / "orders.csv").write_text(
        ORDERS_CSV.replace("1,paid,10", "1,paid,11")
        .replace("3,paid,30", "3,open,30")
        .replace("4,paid,40", "4,paid,41")
    )
    assert main(["backfill", "paid", "--from", "2024-01-02", "--to", "2024-01-02"]) == 0
    summary = run_summary(capsys.readouterr().out, "paid")
    assert summary[-1] == "paid: backfill of 1 partition(s), 1 succeeded"
    assert _paid_rows(csv_project) == [(1, 10), (4, 41), (5, 50)]


def test_backfill_command_refusals(csv_project, capsys):
    assert main(["backfill", "paid", "--from", "2024-01-03", "--to", "2024-01-01"]) == 1
    assert (
        capsys.readouterr().err == "error: --to 2024-01-01 is before --from 2024-01-03; swap them\n"
    )
    assert main(["backfill", "paid", "--from", "2023-01-01", "--to", "2023-12-31"]) == 1
    assert capsys.readouterr().err == (
        "error: pipeline 'paid' has no complete partition starting from 2023-01-01 to "
        "2023-12-31 (its partitions by day start 2024-01-01, in UTC)\n"
    )
    with pytest.raises(SystemExit):
        main(["backfill", "paid", "--from", "yesterday", "--to", "2024-01-01"])
    assert "argument --from: must be a date like 2024-01-31, not 'yesterday'" in (
        capsys.readouterr().err
    )


def test_the_schedule_and_datapipe_run_take_the_latest_complete_partition(csv_project, capsys):
    definitions = build_definitions(load_project(csv_project))
    schedule = definitions.resolve_schedule_def("acme__paid__schedule")
    with dg.instance_for_test() as instance:

        def tick(at: dt.datetime) -> dg.RunRequest | dg.SkipReason:
            return schedule(dg.build_schedule_context(instance, scheduled_execution_time=at))

        assert tick(dt.datetime(2024, 1, 3, 0, 5, tzinfo=dt.UTC)).partition_key == "2024-01-02"
        assert tick(dt.datetime(2023, 12, 31, tzinfo=dt.UTC)).skip_message == (
            "pipeline 'paid' has no complete partition yet (partitions start 2024-01-01)"
        )
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date()
    # Yesterday has no orders in the file: nothing is loaded, and the row counts fail.
    assert main(["run", "paid"]) == 1
    assert run_summary(capsys.readouterr().out, "paid") == [
        f"running paid partition {yesterday} ...",
        "paid: run ID succeeded, but checks of severity error failed: "
        "acme/paid/paid:row_count, acme/paid/load/paid_orders:row_count",
    ]
    assert _paid_rows(csv_project) == []


def test_a_failed_partition_is_listed_and_runs_again_alone(
    tmp_path, monkeypatch, postgres, shop, capsys
):
    warehouse = postgres.create_database()
    # The destination refuses one order of day 2.
    _execute(
        postgres,
        warehouse,
        "CREATE TABLE orders (id integer, amount integer CONSTRAINT no_400 CHECK (amount <> 400), "
        "created_at timestamp)",
    )
    destination = {"connector": "postgres", "config": postgres_config(postgres, warehouse)}
    project = _project(tmp_path, postgres, shop, destination)
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(project))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))

    def loaded() -> list[int]:
        with psycopg.connect(postgres.url(warehouse)) as conn:
            return [i for (i,) in conn.execute("SELECT id FROM orders ORDER BY id").fetchall()]

    assert main(["backfill", "daily_orders", "--from", "2024-01-01", "--to", "2024-01-03"]) == 1
    output = capsys.readouterr()
    assert output.out.splitlines()[-1] == "daily_orders: backfill of 3 partition(s), 2 succeeded"
    assert output.err.splitlines()[-1] == (
        "daily_orders: partitions that failed: 2024-01-02; run one again with datapipe backfill "
        "daily_orders --from DATE --to DATE for its day"
    )
    assert loaded() == [1, 2, 5]
    _execute(postgres, warehouse, "ALTER TABLE orders DROP CONSTRAINT no_400")
    assert main(["backfill", "daily_orders", "--from", "2024-01-02", "--to", "2024-01-02"]) == 0
    assert loaded() == [1, 2, 3, 4, 5]


# The first partition of each test case below: weeks start on the Monday after the start.
FIRST_KEYS = {"hour": "2024-03-31-00:00", "day": "2024-01-01", "week": "2024-03-25",
              "month": "2024-01-01"}  # fmt: skip


@pytest.mark.parametrize(
    ("by", "start", "key", "window"),
    [
        # Berlin moves its clocks from 02:00 to 03:00 on 2024-03-31: that hour is not there,
        # and that day has 23 hours.
        ("hour", "2024-03-31 00:00", "2024-03-31-01:00",
         ("2024-03-31 01:00:00+01:00", "2024-03-31 03:00:00+02:00")),
        ("day", "2024-01-01", "2024-03-31",
         ("2024-03-31 00:00:00+01:00", "2024-04-01 00:00:00+02:00")),
        ("week", "2024-03-20", "2024-03-25",
         ("2024-03-25 00:00:00+01:00", "2024-04-01 00:00:00+02:00")),
        ("month", "2024-01-01", "2024-03-01",
         ("2024-03-01 00:00:00+01:00", "2024-04-01 00:00:00+02:00")),
    ],
)  # fmt: skip
def test_every_asset_of_a_pipeline_shares_its_partitions(tmp_path, by, start, key, window):
    """Hours, days, weeks (from Monday) and months in the pipeline's time zone, across a
    daylight saving change: a run's window is its partition's."""
    (tmp_path / "orders.csv").write_text("id,status,created_at\n1,paid,2024-03-31 01:30:00\n")
    pipeline = {
        "name": "p", "org": "acme",
        "source": {"connector": "csv", "config": {"path": "orders.csv"}, "tables": ["orders"]},
        "transform": PAID_ONLY_TRANSFORM,
        "destination": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
        "partitions": {"by": by, "column": "created_at", "start": start,
                       "timezone": "Europe/Berlin"},
    }  # fmt: skip
    project = load_project(write_project(tmp_path, {}, {"p.yaml": pipeline}))
    definitions = build_definitions(project)
    specs = [s for s in definitions.resolve_all_asset_specs() if s.group_name == "acme__p"]
    assert sorted("/".join(s.key.path[2:]) for s in specs) == ["load/p", "paid", "raw/orders"]
    partitions = definitions.resolve_job_def("acme__p").partitions_def
    assert {s.partitions_def for s in specs} == {partitions}
    assert partitions.get_first_partition_key() == FIRST_KEYS[by]
    found = run_window(project.get("p").pipeline, {"dagster/partition": key})
    assert (found.column, str(found.start), str(found.end)) == ("created_at", *window)


def test_an_unpartitioned_pipeline_after_a_partitioned_one_totals_every_partition(
    tmp_path, monkeypatch, postgres, shop
):
    """What the note on aggregate nodes offers: a pipeline with trigger.after reads the loaded
    table back whole, after each partition's load."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    warehouse = postgres.create_database()
    config = postgres_config(postgres, warehouse)
    project = _project(tmp_path, postgres, shop, {"connector": "postgres", "config": config})
    totals = {
        "nodes": [
            {"id": "orders", "type": "source", "data": {"table": "orders"}},
            {"id": "total", "type": "aggregate",
             "data": {"measures": [{"column": "amount", "function": "sum", "alias": "total"},
                                   {"column": "id", "function": "count", "alias": "orders"}]}},
            {"id": "out", "type": "destination"},
        ],
        "edges": [{"source": "orders", "target": "total"}, {"source": "total", "target": "out"}],
    }  # fmt: skip
    write_project(
        project,
        {"shop": {"connector": "postgres", "config": postgres_config(postgres, shop)},
         "warehouse": {"connector": "postgres", "config": config}},
        {"totals.yaml": {"name": "order_totals", "org": "acme",
                         "source": {"connection": "warehouse", "tables": ["orders"]},
                         "transform": totals,
                         "destination": {"connection": "warehouse", "target_table": "totals"},
                         "trigger": {"after": ["daily_orders"]}}},
    )  # fmt: skip
    definitions = build_definitions(load_project(project))
    totals_load = dg.AssetKey(["acme", "order_totals", "load", "totals"])
    with dg.instance_for_test() as instance:
        cursor = dg.evaluate_automation_conditions(definitions, instance).cursor
        for key in DAYS[:2]:
            _run_partition(project, instance, key)
        tick = dg.evaluate_automation_conditions(definitions, instance, cursor=cursor)
        assert tick.get_num_requested(totals_load) == 1
        job = definitions.resolve_job_def("acme__order_totals")
        assert job.execute_in_process(instance=instance).success
    with psycopg.connect(postgres.url(warehouse)) as conn:
        assert conn.execute("SELECT total, orders FROM totals").fetchall() == [(1000, 4)]


def _api_project(
    directory: Path,
    base_url: str,
    endpoint: tuple[str, dict[str, Any]],
    warehouse: dict[str, Any],
    pipeline: dict[str, Any],
) -> Path:
    """A project whose one pipeline loads one rest_api endpoint (table name, endpoint config)
    into the `warehouse` connection; `pipeline` gives its name, partitions and the rest."""
    table, config = endpoint
    source = {"connector": "rest_api", "tables": [table],
              "config": {"base_url": base_url, "endpoints": {table: config}}}  # fmt: skip
    destination = {"connection": "warehouse"}
    return write_project(
        directory,
        {"warehouse": warehouse},
        {f"{table}.yaml": {"source": source, "destination": destination, **pipeline}},
    )


def test_partitions_over_a_rest_api_source(tmp_path, monkeypatch):
    """An API without a date filter is read whole and filtered to the partition's day."""
    users = [
        {"id": 1, "name": "Ada", "updated_at": "2024-01-01T10:00:00Z"},
        {"id": 2, "name": "Grace", "updated_at": "2024-01-02T00:00:00Z"},
        {"id": 3, "name": "Linus", "updated_at": "2024-01-02T23:00:00Z"},
    ]
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    fake = FakeServer()

    @fake.route("GET", "/users")
    def list_users(request: Request) -> Response:
        return Response(200, {"data": users})

    with serve(fake) as server:
        endpoint = {
            "path": "/users",
            "data_path": "data",
            "schema": {"id": "BIGINT", "name": "VARCHAR", "updated_at": "TIMESTAMPTZ"},
        }
        project = _api_project(
            tmp_path / "pipelines",
            server.url,
            ("users", endpoint),
            {"connector": "duckdb", "config": {"path": str(tmp_path / "w.duckdb")}},
            {"name": "daily_users",
             "partitions": {"by": "day", "column": "updated_at", "start": "2024-01-01"}},
        )  # fmt: skip

        def names() -> list[tuple]:
            with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
                return con.execute("SELECT id, name FROM users ORDER BY id").fetchall()

        with dg.instance_for_test() as instance:
            for key in DAYS[:2]:
                _run_partition(project, instance, key, "daily_users")
            assert names() == [(1, "Ada"), (2, "Grace"), (3, "Linus")]
            users[0]["name"], users[1]["name"] = "Ada L.", "Grace H."
            del users[2]
            _run_partition(project, instance, "2024-01-02", "daily_users")
            assert names() == [(1, "Ada"), (2, "Grace H.")]


def test_backfill_over_a_rest_api_with_a_date_filter_into_postgres(
    tmp_path, monkeypatch, postgres, capsys
):
    """Each partition's run sends its day to the API's own filter (which, like many APIs,
    includes its end); exactly the day's rows replace that day in PostgreSQL."""
    orders = [{"id": i, "amount": a, "created_at": f"{t.isoformat()}Z"} for i, a, t in ORDERS]
    fake = FakeServer()

    @fake.route("GET", "/orders")
    def list_orders(request: Request) -> Response:
        since, until = (
            dt.datetime.fromisoformat(request.param(name) or "") for name in ("since", "until")
        )
        found = [o for o in orders if since <= dt.datetime.fromisoformat(o["created_at"]) <= until]
        return Response(200, {"data": found})

    warehouse = postgres.create_database()
    endpoint = {
        "data_path": "data",
        "window": {"start_param": "since", "end_param": "until", "format": "iso"},
        "schema": {"id": "BIGINT", "amount": "BIGINT", "created_at": "TIMESTAMPTZ"},
    }
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))

    def loaded() -> list[tuple]:
        with psycopg.connect(postgres.url(warehouse)) as conn:
            query = "SELECT id, amount, created_at FROM orders ORDER BY id"
            return [(i, a, t.astimezone(dt.UTC)) for i, a, t in conn.execute(query).fetchall()]

    def backfill(first: str, last: str) -> list[dict[str, list[str]]]:
        """The queries the API received during a backfill of these days."""
        fake.requests.clear()
        assert main(["backfill", "api_orders", "--from", first, "--to", last]) == 0
        assert capsys.readouterr().out.splitlines()[-1].endswith("succeeded")
        return [request.query for request in fake.requests]

    def day(number: int) -> dict[str, list[str]]:
        return {"since": [f"2024-01-{number:02d}T00:00:00Z"],
                "until": [f"2024-01-{number + 1:02d}T00:00:00Z"]}  # fmt: skip

    with serve(fake) as server:
        project = _api_project(
            tmp_path / "pipelines",
            server.url,
            ("orders", endpoint),
            {"connector": "postgres", "config": postgres_config(postgres, warehouse)},
            {"name": "api_orders", "org": "acme",
             "partitions": {"by": "day", "column": "created_at", "start": "2024-01-01",
                            "timezone": "UTC"}},
        )  # fmt: skip
        monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(project))
        assert backfill("2024-01-01", "2024-01-03") == [day(1), day(2), day(3)]
        utc = [(i, a, t.replace(tzinfo=dt.UTC)) for i, a, t in ORDERS]
        assert loaded() == utc[:5]
        # The API gave order 3 (at midnight) to days 1 and 2 alike; day 1 left it out.
        staged = {
            file.stem: sorted(i for (i,) in duckdb.sql(f"SELECT id FROM '{file}'").fetchall())
            for file in (tmp_path / "staging").glob("*/acme/api_orders/raw/orders/*.parquet")
        }
        assert staged == {"2024-01-01": [1, 2], "2024-01-02": [3, 4], "2024-01-03": [5]}
        # Days 1 and 2 change at the source; only day 2 is run again, twice.
        orders[0]["amount"], orders[2]["amount"] = 101, 301
        del orders[3]
        orders.append({"id": 7, "amount": 700, "created_at": "2024-01-02T23:00:00Z"})
        new = (7, 700, at(2, 23).replace(tzinfo=dt.UTC))
        expected = [utc[0], utc[1], (3, 301, utc[2][2]), utc[4], new]
        for _ in range(2):
            assert backfill("2024-01-02", "2024-01-02") == [day(2)]
            assert loaded() == expected


def test_a_run_without_a_partition_says_how_to_run_partitions(csv_project):
    definitions = build_definitions(load_project(csv_project))
    with dg.instance_for_test() as instance:
        result = definitions.resolve_job_def("acme__paid").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert failure_messages(result) == [
        "pipeline 'paid' is partitioned by day, and this run names no partition; run partitions "
        "with datapipe backfill acme/paid --from DATE --to DATE, or pick them in the UI"
    ]
