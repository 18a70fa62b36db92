"""deploy/ as it is wired, outside containers (none can run on the test machines): the image's
gRPC code server, and the compose file's webserver and daemon reaching it through
deploy/workspace.compose.yaml, on PostgreSQL storage and S3, launch a run from GraphQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient
from pyarrow import fs

from tests.integration.test_production_storage import wait_for
from tests.support.deploy_instance import instance_env
from tests.support.project_files import postgres_config, write_project
from tests.support.services import free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent


def dockerfile_cmd() -> list[str]:
    """The image's entry point: the JSON array of the Dockerfile's CMD."""
    [line] = [x for x in (DEPLOY / "Dockerfile").read_text().splitlines() if x.startswith("CMD ")]
    return json.loads(line.removeprefix("CMD "))


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())


def on_loopback(command: list[str], port: int, workspace: Path | None = None) -> list[str]:
    """A service's command with its address moved to 127.0.0.1:port (and the workspace file
    the compose file mounts read from the repository), its program from this venv."""
    replace = {"0.0.0.0": "127.0.0.1", "4000": str(port), "3000": str(port)}
    if workspace is not None:
        replace["/opt/dagster/workspace.yaml"] = str(workspace)
    return [str(BIN / command[0]), *(replace.get(arg, arg) for arg in command[1:])]


@contextmanager
def service(command: list[str], env: Mapping[str, str], log: Path) -> Iterator[None]:
    """A process with default signal handling (Dagster maps SIGTERM onto its shutdown)."""
    with log.open("ab") as output:
        process = subprocess.Popen(command, env=dict(env), stdout=output, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            stop_process(process, timeout=30.0)


RUN_EVENTS = {
    dg.DagsterEventType.RUN_ENQUEUED,
    dg.DagsterEventType.RUN_STARTING,
    dg.DagsterEventType.RUN_START,
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.RUN_FAILURE,
}


def run_events(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The run's life-cycle events, in order (Dagster still names them PIPELINE_*)."""
    return [
        event.event_type_value
        for entry in instance.all_logs(run_id)
        if (event := entry.dagster_event) is not None and event.event_type in RUN_EVENTS
    ]


@dataclass(frozen=True)
class Deployment:
    env: dict[str, str]
    warehouse: str


@pytest.fixture
def deployment(tmp_path, monkeypatch, postgres, pg_database, s3) -> Deployment:
    """The compose file's environment, each service address pointed at a test server, set in
    this process too (the test reads the runs from the same instance)."""
    bucket = s3.create_bucket()
    home = tmp_path / "dagster_home"
    home.mkdir()
    # What the image bakes into $DAGSTER_HOME.
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    overrides = {
        **instance_env(postgres, pg_database, s3, bucket),
        "DATAPIPE_STAGING_URL": f"s3://{bucket}/staging",
        "DATAPIPE_CODE_HOST": "127.0.0.1",
        "DATAPIPE_CODE_PORT": str(free_port()),
    }
    compose_env = compose()["x-datapipe-env"]
    # The test replaces every address and secret the compose file sets, and nothing else.
    assert set(overrides) <= set(compose_env)
    assert sorted(set(compose_env) - set(overrides)) == [
        "DAGSTER_COMPUTE_LOG_PREFIX", "DATAPIPE_CELERY_BROKER",
    ]  # fmt: skip
    warehouse = postgres.create_database()
    for name, value in {
        **compose_env, **overrides,
        "DAGSTER_HOME": str(home),
        "DATAPIPE_PIPELINES_DIR": str(orders_project(tmp_path / "pipelines", postgres, warehouse)),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    return Deployment(dict(os.environ), warehouse)


def orders_project(directory: Path, postgres, warehouse: str) -> Path:
    """One pipeline: a CSV of orders into the PostgreSQL database `warehouse`."""
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text("id,amount\n1,10\n2,25\n3,7\n")
    return write_project(
        directory,
        {
            "orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
            "warehouse": {"connector": "postgres", "config": postgres_config(postgres, warehouse)},
        },
        {
            "orders.yaml": {
                "name": "orders",
                "source": {"connection": "orders_csv", "tables": ["orders"]},
                "destination": {"connection": "warehouse"},
            }
        },
    )


def test_compose_services_run_a_pipeline_launched_from_graphql(deployment, tmp_path, postgres, s3):
    env, log = deployment.env, tmp_path / "services.log"
    services = compose()["services"]
    code_port, web_port = int(env["DATAPIPE_CODE_PORT"]), free_port()
    workspace = DEPLOY / "workspace.compose.yaml"
    assert dockerfile_cmd() == [
        "dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "datapipe_assets.definitions"
    ]  # fmt: skip
    with ExitStack() as stack:
        stack.enter_context(service(on_loopback(dockerfile_cmd(), code_port), env, log))
        # The code location loads before the webserver and daemon connect (compose waits on
        # the user-code service's health check).
        wait_for_port(code_port, timeout=60)
        stack.enter_context(
            service(on_loopback(services["webserver"]["command"], web_port, workspace), env, log)
        )
        stack.enter_context(
            service(on_loopback(services["daemon"]["command"], web_port, workspace), env, log)
        )
        wait_for_port(web_port, timeout=60)
        client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
        run_id = client.submit_job_execution("orders", repository_location_name="datapipe")
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            wait_for(lambda: instance.get_run_by_id(run_id).is_finished, log, timeout=90)
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-5000:]
            # Through the daemon's run queue, on the code location the gRPC server serves.
            assert run_events(instance, run_id) == [
                "PIPELINE_ENQUEUED", "PIPELINE_STARTING",
                "PIPELINE_START", "PIPELINE_SUCCESS",
            ]  # fmt: skip
            assert run.remote_job_origin.location_name == "datapipe"

    with psycopg.connect(postgres.url(deployment.warehouse)) as conn:
        rows = conn.execute("SELECT id, amount FROM orders ORDER BY id").fetchall()
    assert rows == [(1, 10), (2, 25), (3, 7)]
    store = s3.filesystem()
    bucket = env["DAGSTER_COMPUTE_LOG_BUCKET"]
    staged = store.get_file_info(fs.FileSelector(f"{bucket}/staging/{run_id}", recursive=True))
    assert sorted(Path(i.path).name for i in staged if i.is_file) == ["orders.parquet"]


def instance_file(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


VARIANTS = {
    "deploy/dagster.yaml": "DefaultRunLauncher",
    "deploy/ecs/dagster.yaml": "EcsRunLauncher",
    "deploy/compose/dagster.docker-runs.yaml": "DockerRunLauncher",
}


@pytest.mark.parametrize("path", VARIANTS)
def test_each_instance_loads_on_postgres_and_s3(path, tmp_path, monkeypatch, postgres, s3):
    """Dagster loads each dagster.yaml variant, its launcher's config checked by the launcher
    class itself (EcsRunLauncher also checks against boto3's ECS model), on live storage."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / path, home / "dagster.yaml")
    for name, value in instance_env(postgres, postgres.create_database(), s3, "logs").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_PREFIX", "compute-logs")
    # ECS sets it in every task; boto3's ECS client needs it.
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3.region)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [type(part).__name__ for part in (
            instance.run_storage, instance.event_log_storage, instance.schedule_storage,
            instance.run_coordinator, instance.compute_log_manager, instance.run_launcher,
        )] == ["PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage",
               "QueuedRunCoordinator", "S3ComputeLogManager", VARIANTS[path]]  # fmt: skip
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == 86400


def test_launcher_variants_are_the_production_instance_plus_a_run_launcher():
    """deploy/dagster.yaml stays the one policy (storage, queue, monitoring, logs)."""
    production = instance_file("deploy/dagster.yaml")
    assert "run_launcher" not in production
    for path in ("deploy/ecs/dagster.yaml", "deploy/compose/dagster.docker-runs.yaml"):
        variant = instance_file(path)
        assert variant.pop("run_launcher")["class"] == VARIANTS[path]
        assert variant == production


def test_docker_run_containers_get_the_compose_environment():
    """A run container needs what the user-code container has, but the code server address."""
    launcher = instance_file("deploy/compose/dagster.docker-runs.yaml")["run_launcher"]
    compose_env = set(compose()["x-datapipe-env"]) - {"DATAPIPE_CODE_HOST", "DATAPIPE_CODE_PORT"}
    assert sorted(launcher["config"]["env_vars"]) == sorted(compose_env)
    assert launcher["config"]["network"] == compose()["networks"]["default"]["name"]


def test_helm_values_keep_the_production_queue_and_run_monitoring():
    production = instance_file("deploy/dagster.yaml")
    values = instance_file("deploy/helm/values.yaml")
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert production["run_coordinator"]["config"] == {
        "max_concurrent_runs": queue["maxConcurrentRuns"],
        "dequeue_use_threads": queue["dequeueUseThreads"],
        "dequeue_num_workers": queue["dequeueNumWorkers"],
        "dequeue_interval_seconds": queue["dequeueIntervalSeconds"],
        "tag_concurrency_limits": queue["tagConcurrencyLimits"],
    }
    # The chart's own run monitoring stays off: one run_monitoring block reaches dagster.yaml.
    assert values["dagsterDaemon"]["runMonitoring"] == {"enabled": False}
    added = values["additionalInstanceConfig"]
    assert (added["run_monitoring"], added["nux"]) == (
        production["run_monitoring"], production["nux"]
    )  # fmt: skip


def test_uv_lock_matches_pyproject():
    """The image and deploy/install.sh install uv.lock's versions: it must cover pyproject.toml
    (run `uv lock` after changing dependencies)."""
    uv = shutil.which("uv") or str(BIN / "uv")
    result = subprocess.run(
        [uv, "lock", "--check", "--offline"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_image_installs_the_lock_as_an_unprivileged_user():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in lines
    syncs = [line for line in lines if line.startswith("RUN uv sync")]
    assert len(syncs) == 2
    assert all("--frozen" in line and "--no-dev" in line for line in syncs)
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line for line in final_stage if line.startswith("USER ")]
    assert users == ["USER 10001:10001"]
    assert any("useradd --uid 10001" in line for line in final_stage)
