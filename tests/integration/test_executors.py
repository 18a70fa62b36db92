"""Executors for real. Celery: Redis, two dagster-celery workers, S3 staging, PostgreSQL.

A pipeline of three source tables and two joins runs through `dagster job execute`; its steps
go through Redis to two worker processes started as deploy/celery.yaml describes, and its
events land in the PostgreSQL storage of deploy/dagster.yaml, which the workers share.
Multiprocess: each step in a child process of the run. And which executor each job gets.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import psycopg
import pytest
from dagster_celery.make_app import make_app

from datapipe_assets.cli.main import main
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from tests.support.deploy_instance import deploy_instance_env
from tests.support.project_files import postgres_config, write_project
from tests.support.services import RedisServer, redis_server

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKERS = ("worker1", "worker2")

SOURCE_SQL = """
create table customers (customer_id int primary key, name text);
insert into customers values (1, 'Ann'), (2, 'Bob'), (3, 'Cy');
create table orders (order_id int primary key, customer_id int, sku text, qty int);
insert into orders values (10, 1, 'A', 2), (11, 1, 'B', 1), (12, 2, 'A', 5), (13, 9, 'B', 3),
                          (14, 3, 'Z', 1);
create table products (sku text primary key, title text);
insert into products values ('A', 'Apple'), ('B', 'Banana');
"""

PIPELINE = {
    "name": "shop",
    # One source block per connection: three extract steps the workers can run at once.
    "sources": [
        {"connection": "crm", "tables": ["customers"]},
        {"connection": "sales", "tables": ["orders"]},
        {"connection": "catalog", "tables": ["products"]},
    ],
    "transform": {
        "nodes": [
            {"id": "orders", "type": "source", "data": {"table": "orders"}},
            {"id": "customers", "type": "source", "data": {"table": "customers"}},
            {"id": "products", "type": "source", "data": {"table": "products"}},
            {"id": "with_customer", "type": "join",
             "inputs": {"left": "orders", "right": "customers"},
             "data": {"how": "left", "on": "customer_id"}},
            {"id": "with_product", "type": "join",
             "inputs": {"left": "with_customer", "right": "products"},
             "data": {"how": "inner", "on": "sku"}},
            {"id": "out", "type": "destination", "inputs": ["with_product"]},
        ],
    },
    "destination": {"connection": "warehouse", "target_table": "order_lines"},
    # Every node its own step, so the run has steps for both workers at every stage.
    "staging": "every_node",
    "executor": {"type": "celery", "broker": "${DATAPIPE_CELERY_BROKER}"},
}  # fmt: skip


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@dataclass(frozen=True)
class Deployment:
    env: dict[str, str]
    warehouse_url: str


@pytest.fixture
def deployment(tmp_path, monkeypatch, postgres, pg_database, s3, redis) -> Deployment:
    """The environment of the run worker, of every Celery worker and of this test, which reads
    the instance: deploy/dagster.yaml on PostgreSQL, staging and step logs on S3, the broker on
    Redis."""
    source, warehouse = postgres.create_database(), postgres.create_database()
    with psycopg.connect(postgres.url(source)) as conn:
        conn.execute(SOURCE_SQL)
    connections = {
        name: {"connector": "postgres", "config": postgres_config(postgres, source)}
        for name in ("crm", "sales", "catalog")
    }
    connections["warehouse"] = {
        "connector": "postgres",
        "config": postgres_config(postgres, warehouse),
    }
    write_project(tmp_path / "pipelines", connections, {"shop.yaml": PIPELINE})
    bucket = s3.create_bucket()
    home = tmp_path / "dagster_home"
    env = {
        **deploy_instance_env(home, postgres, pg_database, s3, bucket, "compute-logs"),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DATAPIPE_PIPELINES_DIR": str(tmp_path / "pipelines"),
        "DATAPIPE_STAGING_URL": f"s3://{bucket}/staging",
        "DATAPIPE_CELERY_BROKER": redis.url(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Deployment(dict(os.environ), postgres.url(warehouse))


@contextmanager
def celery_worker(name: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """One worker as deploy/celery.yaml starts it, taking one step at a time. It runs in a
    process group of its own: `dagster-celery` starts `celery`, which forks the pool."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(REPO / "deploy" / "celery.yaml"), "-n", name,
             "--", "--concurrency=1"],
            env=env, cwd=log.parent, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield
        finally:
            stop_process_group(process)


def stop_process_group(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the group `process` leads (a warm shutdown for Celery), until every member
    has exited; SIGKILL to those left after `timeout` seconds."""
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            process.poll()  # reaps the leader: a zombie would count as a member
            os.killpg(process.pid, 0)  # raises once the group is empty
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def wait_for_workers(broker: str, names: set[str], timeout: float = 90.0) -> None:
    """Until every worker answers a ping through the broker."""
    app = make_app({"broker": broker, "backend": broker})
    deadline = time.monotonic() + timeout
    answered: set[str] = set()
    while answered != names:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sorted(answered)} of {sorted(names)} answered")
        answered = {host for reply in app.control.ping(timeout=1.0) for host in reply}


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Which Celery worker ran each step, from the event each worker writes as it starts one."""
    found = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        metadata = event.engine_event_data.metadata if event is not None else {}
        if "Celery worker" in metadata:
            found[str(event.step_key)] = metadata["Celery worker"].value
    return found


def test_steps_run_on_two_celery_workers(tmp_path, deployment):
    host = socket.gethostname()
    names = {f"{name}@{host}" for name in WORKERS}
    with ExitStack() as stack:
        for name in WORKERS:
            stack.enter_context(celery_worker(name, deployment.env, tmp_path / f"{name}.log"))
        wait_for_workers(deployment.env["DATAPIPE_CELERY_BROKER"], names)
        run = subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-m", "datapipe_assets.definitions",
             "-j", "shop"],
            env=deployment.env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    with dg.DagsterInstance.from_config(deployment.env["DAGSTER_HOME"]) as instance:
        [record] = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        run_id = record.dagster_run.run_id
        succeeded = {
            str(entry.step_key)
            for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        }
        workers = step_workers(instance, run_id)
    # Every step ran on a Celery worker, and both workers took steps.
    assert succeeded == {
        f"default__shop__{step}"
        for step in ("raw__customers", "raw__orders", "raw__products", "with_customer",
                     "with_product", "load__order_lines")
    }  # fmt: skip
    assert set(workers) == succeeded
    assert set(workers.values()) == names

    with psycopg.connect(deployment.warehouse_url) as conn:
        columns = conn.execute(
            "select column_name from information_schema.columns "
            "where table_name = 'order_lines' order by ordinal_position"
        ).fetchall()
        rows = conn.execute("select * from order_lines order by order_id").fetchall()
    assert [c for (c,) in columns] == ["order_id", "customer_id", "sku", "qty", "name", "title"]
    # Order 13's customer is unknown (left join); order 14's product is (inner join).
    assert rows == [
        (10, 1, "A", 2, "Ann", "Apple"),
        (11, 1, "B", 1, "Ann", "Banana"),
        (12, 2, "A", 5, "Bob", "Apple"),
        (13, 9, "B", 3, None, "Banana"),
    ]


def test_each_pipeline_job_carries_its_executor(tmp_path, monkeypatch):
    """A file's executor, else the deployment's (DATAPIPE_EXECUTOR), on both of its jobs."""
    monkeypatch.setenv("DATAPIPE_STAGING_URL", "s3://staging/runs")
    monkeypatch.setenv("DATAPIPE_EXECUTOR", "multiprocess")
    # Nothing connects to it here: the jobs are only built.
    monkeypatch.setenv("DATAPIPE_CELERY_BROKER", "redis://redis:6379/0")
    (tmp_path / "data.csv").write_text("id\n1\n")
    base = {
        "source": {"connector": "csv", "config": {"path": "data.csv"}, "tables": ["data"]},
        "destination": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
    }
    project = write_project(tmp_path / "pipelines", {}, {
        "a.yaml": {"name": "a", **base},
        "b.yaml": {"name": "b", **base, "executor": {"type": "in_process"}},
        "c.yaml": {"name": "c", **base,
                   "executor": {"type": "multiprocess", "max_concurrent": 3}},
        "d.yaml": {"name": "d", **base, "executor": PIPELINE["executor"]},
    })  # fmt: skip
    definitions = build_definitions(load_project(project))
    jobs = {name: (name, f"{name}__full_refresh") for name in "abcd"}
    executors = {
        name: {definitions.resolve_job_def(job).executor_def for job in both}
        for name, both in jobs.items()
    }
    assert {name: [e.name for e in both] for name, both in executors.items()} == {
        "a": ["multiprocess"], "b": ["in_process"], "c": ["multiprocess"], "d": ["celery"]
    }  # fmt: skip
    # Jobs of no pipeline, and asset selections materialized from the UI: the deployment's.
    assert definitions.resolve_job_def("datapipe_staging_gc").executor_def.name == "multiprocess"
    [multiprocess], [celery] = executors["c"], executors["d"]
    # The broker is read from the environment when a run starts, not written into the job.
    assert multiprocess.apply_config_mapping({}).value == {
        "config": {"max_concurrent": 3, "retries": {"enabled": {}}}
    }
    assert celery.apply_config_mapping({}).value["config"]["broker"] == "redis://redis:6379/0"


def test_datapipe_commands_on_a_celery_pipeline(tmp_path, monkeypatch, s3, capsys):
    """`validate` warns of an unset broker variable; `datapipe run` says its steps run here."""
    bucket = s3.create_bucket()
    for name, value in {**s3.env(), "DATAPIPE_STAGING_URL": f"s3://{bucket}/staging",
                        "DATAPIPE_PIPELINES_DIR": str(tmp_path / "pipelines"),
                        "DAGSTER_HOME": str(tmp_path / "dagster_home")}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATAPIPE_CELERY_BROKER", raising=False)
    monkeypatch.delenv("DATAPIPE_EXECUTOR", raising=False)
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "data.csv").write_text("id,name\n1,a\n2,b\n")
    write_project(pipelines, {}, {"d.yaml": {
        "name": "d",
        "source": {"connector": "csv", "config": {"path": "data.csv"}, "tables": ["data"]},
        "destination": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
        "executor": PIPELINE["executor"],
    }})  # fmt: skip

    assert main(["validate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ok     d (d.yaml)",
        "warn   pipeline 'd': executor broker uses ${DATAPIPE_CELERY_BROKER}, which is not set; "
        "set it before the pipeline runs",
        "1 valid pipeline(s), 0 error(s), 1 warning(s)",
    ]
    assert main(["run", "d"]) == 0
    output = capsys.readouterr()
    assert output.err.splitlines()[0] == (
        "note: d runs its steps with the celery executor when Dagster launches it; "
        "`datapipe run` runs them in this process"
    )
    assert output.out.splitlines()[-1].startswith("d: run ")
    assert output.out.splitlines()[-1].endswith(" succeeded")
    with duckdb.connect(str(pipelines / "wh.duckdb"), read_only=True) as con:
        assert con.execute("select * from data order by id").fetchall() == [(1, "a"), (2, "b")]


def test_multiprocess_executor_runs_each_step_in_a_process_of_its_own(tmp_path, monkeypatch):
    """`dagster job execute` on a pipeline with `executor: {type: multiprocess}`."""
    home, pipelines = tmp_path / "dagster_home", tmp_path / "pipelines"
    home.mkdir()
    for name, value in {"DAGSTER_HOME": str(home), "DATAPIPE_PIPELINES_DIR": str(pipelines),
                        "DATAPIPE_STAGING_URL": str(tmp_path / "staging")}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATAPIPE_EXECUTOR", raising=False)
    pipelines.mkdir()
    (pipelines / "customers.csv").write_text("customer_id,name\n1,Ann\n2,Bob\n")
    (pipelines / "orders.csv").write_text("order_id,customer_id\n10,1\n11,2\n12,1\n")
    write_project(pipelines, {}, {"m.yaml": {
        "name": "m",
        # Two source connections: two extract steps, which run at once.
        "sources": [{"connector": "csv", "config": {"path": f"{table}.csv"}, "tables": [table]}
                    for table in ("customers", "orders")],
        "transform": {"nodes": [
            {"id": "orders", "type": "source", "data": {"table": "orders"}},
            {"id": "customers", "type": "source", "data": {"table": "customers"}},
            {"id": "named", "type": "join", "inputs": {"left": "orders", "right": "customers"},
             "data": {"on": "customer_id"}},
            {"id": "out", "type": "destination", "inputs": ["named"]},
        ]},
        "destination": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
        "executor": {"type": "multiprocess", "max_concurrent": 2},
    }})  # fmt: skip
    run = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "datapipe_assets.definitions", "-j", "m"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    with dg.DagsterInstance.get() as instance:
        [record] = instance.get_run_records()
        run_id = record.dagster_run.run_id
        [started] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
        steps = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    step_pids = {str(e.step_key): e.dagster_event.pid for e in steps if e.dagster_event}
    assert sorted(step_pids) == [
        "default__m__load__m", "default__m__named", "default__m__raw__customers",
        "default__m__raw__orders",
    ]  # fmt: skip
    # Each step in a process of its own, none in the run's.
    assert len(set(step_pids.values())) == len(step_pids)
    assert started.dagster_event is not None
    assert started.dagster_event.pid not in step_pids.values()
    with duckdb.connect(str(pipelines / "wh.duckdb"), read_only=True) as con:
        assert con.execute("select * from m order by order_id").fetchall() == [
            (10, 1, "Ann"), (11, 2, "Bob"), (12, 1, "Ann")
        ]  # fmt: skip
