"""Parallel extracts benchmark: a pipeline of 4 API tables, each page served after a delay.

Run as `.venv/bin/python bench/parallel.py [--pages 4] [--delay 0.25]` from the repository
root. The local fake HTTP server (tests/support/fake_http.py) serves 4 endpoints of one
`rest_api` connection; each page of each table is answered after `--delay` seconds, so every
table's extract takes about `pages x delay`. The pipeline (4 raw tables, loaded into DuckDB)
runs through Dagster `execute_in_process` with `max_parallel` 1 and 4; for each the script
prints the run's wall time next to its slowest table's extract time (`duration_seconds` of
the raw assets). Serial, the run takes about the sum of the extracts; parallel, about the
slowest one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/parallel.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from tests.support.fake_http import FakeServer, Request, Response, serve  # noqa: E402
from tests.support.project_files import run, write_project  # noqa: E402

TABLES = ["a", "b", "c", "d"]
ROWS_PER_PAGE = 1000


def api(pages: int, delay: float) -> FakeServer:
    """4 tables of `pages` pages each (cursor pagination), every page after `delay` s."""
    fake = FakeServer()

    @fake.route("GET", r"/t/(?P<name>\w+)")
    def _page(request: Request, name: str) -> Response:
        page = int(request.param("cursor", "0") or 0)
        time.sleep(delay)
        rows = [{"id": page * ROWS_PER_PAGE + i, "table": name} for i in range(ROWS_PER_PAGE)]
        return Response(200, {"data": rows, "next": str(page + 1) if page + 1 < pages else None})

    return fake


def run_once(directory: Path, url: str, max_parallel: int) -> tuple[float, float, int]:
    """The run's wall seconds, its slowest extract's seconds and the rows extracted."""
    pagination = {"type": "cursor", "cursor_path": "next", "cursor_param": "cursor"}
    endpoints = {
        t: {"path": f"/t/{t}", "data_path": "data", "pagination": pagination,
            "schema": {"id": "BIGINT", "table": "VARCHAR"}}
        for t in TABLES
    }  # fmt: skip
    connections = {
        "warehouse": {"connector": "duckdb", "config": {"path": "wh.duckdb"}},
        "api": {"connector": "rest_api",
                "config": {"base_url": url, "endpoints": endpoints, "requests_per_second": 100}},
    }  # fmt: skip
    pipeline = {
        "name": "parallel", "max_parallel": max_parallel,
        "source": {"connection": "api", "tables": TABLES},
        "destination": {"connection": "warehouse"},
    }  # fmt: skip
    project = write_project(directory, connections, {"p.yaml": pipeline})
    with dg.instance_for_test() as instance:
        started = time.perf_counter()
        result = run(project, "parallel", instance)
        wall = time.perf_counter() - started
    assert result.success, "the benchmark's pipeline failed"
    raw = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key.path[2] == "raw"
    ]
    slowest = max(float(m.metadata["duration_seconds"].value) for m in raw)
    rows = sum(int(m.metadata["dagster/row_count"].value) for m in raw)
    return wall, slowest, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=4, help="pages per table")
    parser.add_argument("--delay", type=float, default=0.25, help="seconds per page")
    args = parser.parse_args()
    each = args.pages * args.delay
    print(f"4 tables x {args.pages} pages x {args.delay}s a page (each extract >= {each:.2f}s)\n")
    print("| max_parallel | run wall s | slowest extract s | wall / slowest | rows |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp, serve(api(args.pages, args.delay)) as fake:
        os.environ["DATAPIPE_STAGING_URL"] = str(Path(tmp) / "staging")
        run_once(Path(tmp) / "warmup", fake.url, 4)  # imports and first-run costs, not timed
        for max_parallel in (1, 4):
            wall, slowest, rows = run_once(Path(tmp) / f"p{max_parallel}", fake.url, max_parallel)
            print(
                f"| {max_parallel} | {wall:.2f} | {slowest:.2f} | {wall / slowest:.2f} | {rows} |"
            )


if __name__ == "__main__":
    main()
