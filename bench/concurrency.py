"""20 pipelines at once through the production instance: queue waits, durations, exact rows.

Run as `.venv/bin/python bench/concurrency.py [--pipelines 20] [--rows 1000]` from the
repository root. It starts PostgreSQL and SeaweedFS (S3) of its own on loopback, copies
deploy/dagster.yaml as shipped into a fresh DAGSTER_HOME (PostgreSQL run storage, the
QueuedRunCoordinator with its limits, S3 step logs), then starts `dagster-webserver` and
`dagster-daemon` on it, as a deployment runs them.

It writes `--pipelines` small pipelines (a CSV of `--rows` rows each, through a filter into
its own PostgreSQL table), submits one run of each at once through the webserver's GraphQL
API (as the UI or a script would), plus a second run of the first pipeline, and waits for
all of them. It reports the wall time, each run's queue wait (created -> started) and
duration (started -> ended), checks every run succeeded and every table holds exactly its
rows, and checks the deployment's limits held: never more than `max_concurrent_runs`
runs at once, and the first pipeline's two runs never at the same time. The report is
printed and written into bench/RESULTS.md between the concurrency markers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:  # `python bench/concurrency.py` puts bench/, not the root, first
    sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import psycopg  # noqa: E402
import yaml  # noqa: E402
from dagster_graphql import DagsterGraphQLClient  # noqa: E402

from tests.support.project_files import postgres_config, write_project  # noqa: E402
from tests.support.services import (  # noqa: E402
    PostgresServer,
    S3Server,
    postgres_server,
    s3_server,
    stop_process,
)
from tests.support.webserver import dagster_webserver  # noqa: E402

RESULTS = BENCH_DIR / "RESULTS.md"
START_MARK, END_MARK = "<!-- concurrency:start -->", "<!-- concurrency:end -->"
DEPLOY_INSTANCE = ROOT / "deploy" / "dagster.yaml"
# The seed's requirement for small pipelines.
TARGET_MEAN_SECONDS = 30.0


@dataclass(frozen=True)
class RunTiming:
    pipeline: str
    run_id: str
    status: str
    created: float
    started: float
    ended: float

    @property
    def queued(self) -> float:
        return self.started - self.created

    @property
    def duration(self) -> float:
        return self.ended - self.started


def write_pipelines(directory: Path, count: int, rows: int, postgres: dict[str, object]) -> None:
    """`count` pipelines, each a CSV of its own loaded into its own table in the warehouse."""
    (directory / "data").mkdir(parents=True)
    lines = "\n".join(f"{i},{i % 7},{i * 3}" for i in range(1, rows + 1))
    pipelines: dict[str, dict[str, object]] = {}
    connections: dict[str, object] = {"warehouse": {"connector": "postgres", "config": postgres}}
    for n in range(count):
        name = f"small_{n:02d}"
        (directory / "data" / f"{name}.csv").write_text(f"id,kind,amount\n{lines}\n")
        connections[f"{name}_csv"] = {"connector": "csv", "config": {"path": f"data/{name}.csv"}}
        pipelines[f"{name}.yaml"] = {
            "name": name,
            "source": {"connection": f"{name}_csv", "tables": [name]},
            "transform": {
                "nodes": [
                    {"id": "rows", "type": "source", "data": {"table": name}},
                    {"id": "kept", "type": "filter",
                     "data": {"column": "kind", "operator": "gte", "value": 0}},
                    {"id": "out", "type": "destination"},
                ],
                "edges": [{"source": "rows", "target": "kept"},
                          {"source": "kept", "target": "out"}],
            },
            "destination": {"connection": "warehouse", "target_table": name},
        }  # fmt: skip
    write_project(directory, connections, pipelines)


def instance_env(work: Path, s3: S3Server, server: PostgresServer, storage: str) -> dict[str, str]:
    """The environment deploy/dagster.yaml reads, pointed at this run's servers."""
    return {
        **os.environ,
        **s3.env(),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "DAGSTER_PG_HOST": server.host,
        "DAGSTER_PG_PORT": str(server.port),
        "DAGSTER_PG_USER": server.user,
        "DAGSTER_PG_PASSWORD": server.password,
        "DAGSTER_PG_DB": storage,
        "DAGSTER_COMPUTE_LOG_BUCKET": s3.create_bucket(),
        "DAGSTER_COMPUTE_LOG_PREFIX": "logs",
        "DAGSTER_COMPUTE_LOG_ENDPOINT_URL": s3.endpoint_url,
        "DATAPIPE_PIPELINES_DIR": str(work / "pipelines"),
        "DATAPIPE_STAGING_URL": str(work / "staging"),
    }


@contextmanager
def daemon(env: dict[str, str], workspace: Path, log: Path) -> Iterator[None]:
    binary = Path(sys.executable).parent / "dagster-daemon"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(binary), "run", "-w", str(workspace)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop_process(process)


def timings(instance: dg.DagsterInstance, runs: dict[str, str]) -> list[RunTiming]:
    records = instance.get_run_records(dg.RunsFilter(run_ids=list(runs)))
    found = [
        RunTiming(
            runs[record.dagster_run.run_id],
            record.dagster_run.run_id,
            record.dagster_run.status.value,
            record.create_timestamp.timestamp(),
            record.start_time or 0.0,
            record.end_time or 0.0,
        )
        for record in records
    ]
    return sorted(found, key=lambda t: t.created)


def most_at_once(runs: Sequence[RunTiming]) -> int:
    """The most runs that were started and not yet ended at one moment."""
    edges = sorted([(t.started, 1) for t in runs] + [(t.ended, -1) for t in runs])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def measure(count: int, rows: int) -> tuple[list[RunTiming], float, list[str]]:
    work = Path(tempfile.mkdtemp(prefix="datapipe-concurrency-"))
    problems: list[str] = []
    try:
        with postgres_server() as server, s3_server() as s3:
            storage, warehouse = server.create_database(), server.create_database()
            pipelines = work / "pipelines"
            write_pipelines(pipelines, count, rows, postgres_config(server, warehouse))
            home = work / "dagster_home"
            home.mkdir()
            shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
            coordinator = yaml.safe_load(DEPLOY_INSTANCE.read_text())["run_coordinator"]
            limit = coordinator["config"]["max_concurrent_runs"]
            env = instance_env(work, s3, server, storage)
            workspace = work / "workspace.yaml"
            workspace.write_text(
                "load_from:\n  - python_module:\n      module_name: datapipe_assets.definitions\n"
                f"      working_directory: {ROOT}\n"
            )
            log = work / "dagster.log"
            names = [f"small_{n:02d}" for n in range(count)]
            with dagster_webserver(env, "datapipe_assets.definitions", log) as url:
                # The instance below is deploy/dagster.yaml's, which reads these variables.
                os.environ.update(env)
                client = DagsterGraphQLClient("127.0.0.1", port_number=int(url.rsplit(":")[-1]))
                with daemon(env, workspace, log), dg.DagsterInstance.get() as instance:
                    submitted = time.monotonic()
                    runs = {client.submit_job_execution(name): name for name in names}
                    runs[client.submit_job_execution(names[0])] = names[0]
                    every_run = dg.RunsFilter(run_ids=list(runs))
                    while not all(run.is_finished for run in instance.get_runs(every_run)):
                        if time.monotonic() - submitted > 900:
                            raise TimeoutError(f"runs unfinished after 900 s; see {log}")
                        time.sleep(0.5)
                    found = timings(instance, runs)
            wall = max(t.ended for t in found) - min(t.created for t in found)
            problems += [f"{t.pipeline} run {t.run_id} {t.status}" for t in found
                         if t.status != "SUCCESS"]  # fmt: skip
            with psycopg.connect(server.url(warehouse)) as conn:
                for name in names:
                    got = conn.execute(f'SELECT count(*), sum(amount) FROM "{name}"').fetchone()
                    want = (rows, 3 * rows * (rows + 1) // 2)
                    if got != want:
                        problems.append(f"{name}: (rows, sum) {got}, expected {want}")
            if (peak := most_at_once(found)) > limit:
                problems.append(f"{peak} runs at once, over max_concurrent_runs {limit}")
            first = [t for t in found if t.pipeline == names[0]]
            if first[0].ended > first[1].started:
                problems.append(f"{names[0]}'s two runs overlapped")
            return found, wall, problems
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(found: Sequence[RunTiming], wall: float, problems: Sequence[str], rows: int) -> str:
    durations = [t.duration for t in found]
    completions = [t.ended - t.created for t in found]
    mean_completion = statistics.mean(completions)
    lines = [
        f"{len(found)} runs ({len(found) - 1} pipelines, a second run of the first), "
        f"{rows} rows each, submitted at once through the webserver; deploy/dagster.yaml "
        "(PostgreSQL storage, QueuedRunCoordinator, S3 step logs) with a running daemon.",
        "",
        f"- wall time, first submission to last end: {wall:.1f} s",
        f"- mean completion (created -> ended): {mean_completion:.1f} s "
        f"(target < {TARGET_MEAN_SECONDS:.0f} s: "
        f"{'PASS' if mean_completion < TARGET_MEAN_SECONDS else 'FAIL'})",
        f"- run duration (started -> ended): median {statistics.median(durations):.1f} s, "
        f"max {max(durations):.1f} s",
        f"- most runs at once: {most_at_once(found)}",
        f"- checks: {'all runs succeeded with exact rows; limits held' if not problems else ''}"
        + "; ".join(problems),
        "",
        "| pipeline | run | queued s | duration s | status |",
        "|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {t.pipeline} | {t.run_id[:8]} | {t.queued:.1f} | {t.duration:.1f} | {t.status} |"
        for t in found
    ]
    return "\n".join(lines)


def write_results(text: str) -> None:
    current = RESULTS.read_text()
    block = f"{START_MARK}\n{text}\n{END_MARK}"
    if START_MARK in current:
        head, rest = current.split(START_MARK, 1)
        current = head + block + rest.split(END_MARK, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n## Concurrency (issue 10)\n\n" + block + "\n"
    RESULTS.write_text(current)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args(argv)
    found, wall, problems = measure(args.pipelines, args.rows)
    text = report(found, wall, problems, args.rows)
    print(text)
    write_results(text)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
