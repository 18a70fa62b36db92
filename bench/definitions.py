"""Start-up benchmark: how long loading and building Dagster definitions takes for 50 pipelines.

Run as `.venv/bin/python bench/definitions.py [--pipelines 50] [--repeat 3]` from the
repository root. It writes a pipelines folder of N generated pipelines (each a CSV source,
the six-node orders transform, a DuckDB destination, a daily schedule and a not_null check)
into a temporary folder, then, in a fresh process per repeat (bytecode caching on), times
`load_project` (parse and validate every file, binding each node against the CSV's schema)
and `build_definitions` (Dagster assets, checks, jobs, schedules), imports excluded, and
the whole process. The target (issue 8) is well under a second for both steps together.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:  # `python bench/definitions.py` puts bench/ on the path
    sys.path.insert(0, str(ROOT))
TARGET_SECONDS = 1.0
ORDERS_CSV = (
    "id,customer_id,status,amount_cents,currency,updated_at\n1,10,paid,1000,usd,2026-01-01\n"
)


def write_pipelines(directory: Path, count: int) -> None:
    """`count` pipelines sharing one CSV connection and one DuckDB destination."""
    import yaml

    from tests.support.project_files import SIX_NODE_TRANSFORM

    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text(ORDERS_CSV)
    connections = {
        "orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
        "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}},
    }
    (directory / "connections.yaml").write_text(yaml.safe_dump(connections))
    for index in range(count):
        pipeline = {
            "name": f"orders_{index}",
            "source": {"connection": "orders_csv", "tables": ["orders"]},
            "transform": SIX_NODE_TRANSFORM,
            "destination": {"connection": "warehouse", "target_table": f"revenue_{index}"},
            "schedule": "daily",
            "checks": [{"asset": "paid", "type": "not_null", "column": "customer_id"}],
        }
        (directory / f"orders_{index}.yaml").write_text(yaml.safe_dump(pipeline))


def child(directory: Path) -> None:
    """Time load_project and build_definitions in this (fresh) process; print JSON."""
    from datapipe_assets.defs.factory import build_definitions
    from datapipe_assets.pipeline.project import load_project

    started = time.perf_counter()
    project = load_project(directory)
    loaded = time.perf_counter()
    build_definitions(project)
    built = time.perf_counter()
    assert not project.errors, project.errors
    print(json.dumps({
        "pipelines": len(project.pipelines),
        "load_project": loaded - started,
        "build_definitions": built - loaded,
    }))  # fmt: skip


def run(count: int, repeat: int) -> list[dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="bench-definitions-home-")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-definitions-") as folder:
        directory = Path(folder) / "pipelines"
        write_pipelines(directory, count)
        for _ in range(repeat):
            started = time.perf_counter()
            output = subprocess.run(
                [sys.executable, __file__, "--child", str(directory)],
                env=env, cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            result = json.loads(output.strip().splitlines()[-1])
            result["process"] = time.perf_counter() - started
            results.append(result)
    return results


def report(results: list[dict[str, float]]) -> str:
    median = {
        key: statistics.median(r[key] for r in results)
        for key in ("load_project", "build_definitions", "process")
    }
    both = median["load_project"] + median["build_definitions"]
    verdict = "PASS" if both < TARGET_SECONDS else "FAIL"
    return "\n".join([
        "| pipelines | load_project s | build_definitions s | both s | process s |",
        "|---:|---:|---:|---:|---:|",
        f"| {int(results[0]['pipelines'])} | {median['load_project']:.2f} | "
        f"{median['build_definitions']:.2f} | {both:.2f} | {median['process']:.2f} |",
        "",
        f"{verdict}: load + build < {TARGET_SECONDS:g} s (median of {len(results)}, "
        f"each run: {[round(r['load_project'] + r['build_definitions'], 2) for r in results]})",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(Path(args.child))
        return
    print(report(run(args.pipelines, args.repeat)))


if __name__ == "__main__":
    main()
