"""Overlapping and killed runs, as real `datapipe run` processes.

Each test holds a lock in PostgreSQL to stop runs at a chosen point: a lock on the source
table stops them in their extract (after they read the committed cursor), a row lock on the
cursor state stops a load after it wrote its rows, before it commits.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import psycopg
import pytest

from tests.support.project_files import postgres_config, write_project

DATAPIPE = str(Path(sys.executable).parent / "datapipe")
PIPELINE = "shop_orders"
# The pipeline's cursors are kept under its Dagster name (its org is not `default`).
OVERTAKEN = (
    "another run of pipeline 'acme__shop_orders' committed table 'orders' after this run started; "
    "nothing was loaded; run again"
)


class Shop:
    """A PostgreSQL source table, a warehouse and the pipeline between them."""

    def __init__(self, postgres, tmp_path: Path, destination: str, load_mode: str) -> None:
        self.postgres = postgres
        self.source = postgres.create_database()
        self.destination = destination
        self.warehouse = postgres.create_database()
        self.duckdb_path = tmp_path / "pipelines" / "warehouse.duckdb"
        self.execute(
            self.source,
            "CREATE TABLE orders (id integer PRIMARY KEY, amount integer, updated_at timestamp)",
        )
        warehouse = (
            {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}
            if destination == "duckdb"
            else {"connector": "postgres", "config": postgres_config(postgres, self.warehouse)}
        )
        target = {"connection": "warehouse", "load_mode": load_mode}
        if load_mode == "upsert":
            target["upsert_key"] = ["id"]
        write_project(
            tmp_path / "pipelines",
            {"shop": {"connector": "postgres", "config": postgres_config(postgres, self.source)},
             "warehouse": warehouse},
            {"orders.yaml": {"name": PIPELINE, "org": "acme",
                             "source": {"connection": "shop", "tables": ["orders"],
                                        "sync_mode": "incremental",
                                        "incremental_key": "updated_at", "primary_key": ["id"]},
                             "destination": target}},
        )  # fmt: skip
        self.env = {
            **os.environ,
            "DATAPIPE_PIPELINES_DIR": str(tmp_path / "pipelines"),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "DATAPIPE_STAGING_URL": str(tmp_path / "staging"),
        }

    def execute(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.postgres.url(database), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def add_orders(self, ids: range) -> None:
        for order_id in ids:
            self.execute(
                self.source,
                "INSERT INTO orders VALUES (%s, %s, %s)",
                (order_id, order_id * 10, dt.datetime(2026, 3, 1) + dt.timedelta(hours=order_id)),
            )

    def loaded_ids(self) -> list[int]:
        sql = "SELECT id FROM orders ORDER BY id"
        if self.destination == "duckdb":
            with duckdb.connect(str(self.duckdb_path)) as con:
                return [row[0] for row in con.execute(sql).fetchall()]
        return [row[0] for row in self.execute(self.warehouse, sql)]

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [DATAPIPE, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [DATAPIPE, *args], env=self.env, capture_output=True, text=True, timeout=180
        )

    @contextmanager
    def holding(self, database: str, *statements: str) -> Iterator[None]:
        """Run statements in a transaction kept open (holding their locks) until the end."""
        with psycopg.connect(self.postgres.url(database)) as conn:
            for statement in statements:
                conn.execute(statement)
            try:
                yield
            finally:
                conn.rollback()

    def wait_for_waiting(self, database: str, count: int, query_part: str) -> None:
        """Until `count` sessions wait on a lock in `database`, running such a query."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            waiting = self.execute(
                database,
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'",
            )
            if sum(query_part in query for (query,) in waiting) >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"no {count} sessions waited on {query_part!r}: {waiting}")


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    stdout, stderr = process.communicate(timeout=180)
    return process.returncode, stdout + stderr


@pytest.mark.parametrize(
    ("destination", "load_mode"),
    [("postgres", "append"), ("postgres", "upsert"), ("duckdb", "append"), ("duckdb", "upsert")],
)
def test_two_overlapping_runs_load_each_row_once(postgres, tmp_path, destination, load_mode):
    """Both runs read the same committed cursor and extract the same new rows; the second to
    reach the load sees the first's commit and loads nothing. Without the check, 4 trials in 5
    loaded the rows twice."""
    shop = Shop(postgres, tmp_path, destination, load_mode)
    for round_ in range(3):
        shop.add_orders(range(round_ * 100 + 1, round_ * 100 + 101))
        with shop.holding(shop.source, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"):
            runs = [shop.start("run", PIPELINE, "--force") for _ in range(2)]
            shop.wait_for_waiting(shop.source, 2, '"orders"')
        outcomes = sorted(_finish(run) for run in runs)
        assert [code for code, _ in outcomes] == [0, 1], outcomes
        assert f"{PIPELINE}: run " in outcomes[0][1] and "succeeded" in outcomes[0][1]
        assert OVERTAKEN in outcomes[1][1]
        assert "Traceback" not in outcomes[1][1]
        assert shop.loaded_ids() == list(range(1, round_ * 100 + 101))


def test_a_run_is_refused_while_the_pipeline_has_a_live_run_and_a_killed_run_is_failed(
    postgres, tmp_path
):
    shop = Shop(postgres, tmp_path, "postgres", "append")
    shop.add_orders(range(1, 11))
    with shop.holding(shop.source, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"):
        first = shop.start("run", PIPELINE)
        shop.wait_for_waiting(shop.source, 1, '"orders"')
        second = shop.run("run", PIPELINE)
        run_id = re.search(r"already running: (\S+) \(STARTED\)", second.stderr)
        assert (second.returncode, second.stderr) == (
            1,
            f"error: pipeline 'shop_orders' is already running: {run_id and run_id[1]} "
            "(STARTED); wait for it to finish, or pass --force to start another run alongside "
            "it\n",
        )
        assert "running shop_orders" not in second.stdout
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    status = shop.run("status", PIPELINE)
    assert status.returncode == 0
    assert f"{run_id[1][:8]}   FAILURE" in status.stdout
    assert (
        f"reason: the process that ran it (pid {first.pid} on {os.uname().nodename}) ended "
        "without finishing it, killed or stopped; marked failed by DataPipe"
    ) in status.stdout
    again = shop.run("run", PIPELINE)
    assert again.returncode == 0, again.stdout + again.stderr
    assert shop.loaded_ids() == list(range(1, 11))


@pytest.mark.parametrize("load_mode", ["append", "upsert"])
def test_a_run_killed_in_its_load_changes_nothing_and_the_next_run_is_exact(
    postgres, tmp_path, load_mode
):
    shop = Shop(postgres, tmp_path, "postgres", load_mode)
    shop.add_orders(range(1, 11))
    assert shop.run("run", PIPELINE).returncode == 0
    shop.add_orders(range(11, 21))
    state = shop.execute(shop.warehouse, "SELECT state FROM _datapipe_state")
    # A row lock on the cursor state: the load writes its rows, then waits to commit it.
    with shop.holding(shop.warehouse, "SELECT * FROM _datapipe_state FOR UPDATE"):
        killed = shop.start("run", PIPELINE)
        shop.wait_for_waiting(shop.warehouse, 1, "_datapipe_state")
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    # The server ends the dead client's session, and its transaction with it.
    deadline = time.monotonic() + 30
    while shop.execute(
        shop.warehouse,
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state <> 'idle'",
    ):
        assert time.monotonic() < deadline, "the killed run's session never ended"
        time.sleep(0.1)
    assert shop.loaded_ids() == list(range(1, 11))
    assert shop.execute(shop.warehouse, "SELECT state FROM _datapipe_state") == state
    again = shop.run("run", PIPELINE)
    assert again.returncode == 0, again.stdout + again.stderr
    assert shop.loaded_ids() == list(range(1, 21))
    shop.add_orders(range(21, 23))
    assert shop.run("run", PIPELINE).returncode == 0
    assert shop.loaded_ids() == list(range(1, 23))
