"""End-to-end throughput benchmark: CSV -> six-node transform -> PostgreSQL, against a floor.

Run as `.venv/bin/python bench/run.py [--rows N ...]` from the repository root. For every N:

1. an orders CSV of N rows is generated under `bench/data/` (or reused),
2. `floor`: DuckDB runs the same logic as one SQL statement over the CSV, in a fresh process,
3. `datapipe`: the six-node pipeline runs through Dagster `execute_in_process` into a real
   PostgreSQL started here, in a fresh process, and its row count is checked against the floor.

Each scenario runs in its own child process, so the peak RSS (from `os.wait4`) is that
scenario's alone. The child times its own run (imports excluded) and reports it as JSON;
the parent also reports the whole process time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
LOG_DIR = DATA_DIR / "logs"
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))
PIPELINE = "orders_revenue"
TARGET_TABLE = "revenue_by_customer"

SEED = 20_261_122
CUSTOMERS = 100_000
UPDATE_SHARE = 0.10
CHUNK_ROWS = 1_000_000
START_SECONDS = 1_767_225_600  # 2026-01-01 00:00:00 UTC
STATUSES = ("paid", "pending", "refunded")
STATUS_WEIGHTS = (0.6, 0.3, 0.1)
CURRENCIES = ("usd", "eur", "gbp")
CURRENCY_WEIGHTS = (0.8, 0.15, 0.05)

# Targets: end-to-end rows/s, ratio to the floor, peak RSS at 2M rows, RSS growth 2M -> 8M.
TARGET_ROWS_PER_SECOND = 150_000
TARGET_FLOOR_RATIO = 3.0
TARGET_RSS_MB = 1024
TARGET_RSS_ROWS = 2_000_000
TARGET_RSS_GROWTH = 0.20

# The floor: the pipeline's logic (filter paid -> rename -> amount_usd -> keep the latest
# version of each id -> revenue per customer) as the single statement a person would write.
FLOOR_SQL = """
WITH paid AS (
    SELECT id, customer_id, updated_at, CAST(amount_cents / 100.0 AS DOUBLE) AS amount_usd
    FROM read_csv('{path}')
    WHERE status = 'paid'
),
latest AS (
    SELECT * FROM paid
    QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY updated_at DESC NULLS LAST) = 1
)
SELECT customer_id, SUM(amount_usd) AS revenue, COUNT(id) AS orders
FROM latest GROUP BY customer_id ORDER BY customer_id
"""


# ---------------------------------------------------------------------------------------
# Data generation


def customer_of(ids: Any) -> Any:
    """The customer of each order id: a fixed hash, so every version of an id agrees."""
    return (ids * 2_654_435_761) % CUSTOMERS + 1


def orders_csv(rows: int) -> Path:
    """The orders CSV of `rows` rows, generated once (streamed in chunks) and then reused.

    About UPDATE_SHARE of the rows are later versions of an earlier id (a higher
    updated_at, a possibly different status and amount), so deduplicate has work to do.
    Rows come in updated_at order, as an export of a change log would.
    """
    path = DATA_DIR / f"orders_{rows}.csv"
    if path.exists():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("customer_id", pa.int64()),
            ("status", pa.string()),
            ("amount_cents", pa.int64()),
            ("currency", pa.string()),
            ("updated_at", pa.timestamp("s")),
        ]
    )
    statuses = pa.array(STATUSES)
    currencies = pa.array(CURRENCIES)
    partial = path.with_suffix(".csv.partial")
    next_id, written = 1, 0
    options = pacsv.WriteOptions(quoting_style="none")
    with pacsv.CSVWriter(str(partial), schema, write_options=options) as writer:
        while written < rows:
            n = min(CHUNK_ROWS, rows - written)
            is_update = rng.random(n) < UPDATE_SHARE
            if written == 0:
                is_update[0] = False  # the first row has no earlier id to update
            new_ids = next_id + np.cumsum(~is_update) - 1
            # An update refers to any id issued before it (uniformly).
            highest = np.maximum(new_ids, 1)
            ids = np.where(is_update, (rng.random(n) * highest).astype(np.int64) + 1, new_ids)
            next_id = int(new_ids[-1]) + 1
            index = np.arange(written, written + n, dtype=np.int64)
            seconds = START_SECONDS + index * 3 + rng.integers(0, 3, n)  # strictly rising
            batch = pa.record_batch(
                [
                    pa.array(ids),
                    pa.array(customer_of(ids)),
                    statuses.take(pa.array(rng.choice(3, n, p=STATUS_WEIGHTS))),
                    pa.array(rng.integers(100, 50_000, n)),
                    currencies.take(pa.array(rng.choice(3, n, p=CURRENCY_WEIGHTS))),
                    pa.array(seconds, pa.int64()).cast(pa.timestamp("s")),
                ],
                schema=schema,
            )
            writer.write_batch(batch)
            written += n
    partial.rename(path)
    return path


# ---------------------------------------------------------------------------------------
# Child processes: one scenario each, reporting JSON to a result file


class RssSampler:
    """Samples this process's resident set size in a thread, for a per-step memory peak."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.is_set():
                statm.seek(0)
                resident = int(statm.read().split()[1]) * self._page
                self.samples.append((time.time(), resident))
                self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def resident_mb(self) -> float:
        """The resident set size right now, in MiB."""
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page / (1 << 20)

    def peak_mb(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The highest sample between two time.time() instants, in MiB."""
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return max(inside, default=0) / (1 << 20)


def child_floor(csv_path: Path) -> dict[str, Any]:
    """The floor: one DuckDB statement over the CSV, its result fetched into Python."""
    started = time.perf_counter()
    import duckdb
    import pyarrow.compute as pc

    imported = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 1}")
    sql = FLOOR_SQL.format(path=str(csv_path).replace("'", "''"))
    result = con.execute(sql).to_arrow_table()
    finished = time.perf_counter()
    return {
        "import_seconds": imported - started,
        "run_seconds": finished - imported,
        "customers": result.num_rows,
        "orders": int(pc.sum(result.column("orders")).as_py() or 0),
        "revenue": float(pc.sum(result.column("revenue")).as_py() or 0.0),
    }


def child_datapipe(csv_path: Path, postgres: dict[str, Any], work: Path) -> dict[str, Any]:
    """The product: the six-node pipeline through Dagster into PostgreSQL."""
    started = time.perf_counter()
    import dagster as dg
    import psycopg

    from datapipe_assets.defs.factory import build_definitions
    from datapipe_assets.pipeline.project import load_project
    from tests.support.project_files import SIX_NODE_TRANSFORM, write_project
    from tests.support.services import PostgresServer

    imported = time.perf_counter()
    os.environ["DATAPIPE_STAGING_URL"] = str(work / "staging")
    project_dir = write_project(
        work / "pipelines",
        {
            "orders_csv": {
                "connector": "csv",
                "config": {"path": str(csv_path), "table": "orders"},
            },
            "warehouse": {"connector": "postgres", "config": postgres},
        },
        {
            f"{PIPELINE}.yaml": {
                "name": PIPELINE,
                "org": "bench",
                "source": {"connection": "orders_csv", "tables": ["orders"]},
                "transform": SIX_NODE_TRANSFORM,
                "destination": {"connection": "warehouse", "target_table": TARGET_TABLE},
            }
        },
    )
    (work / "dagster").mkdir()
    with (
        dg.instance_for_test(temp_dir=str(work / "dagster")) as instance,
        RssSampler() as sampler,
    ):
        baseline_mb = sampler.resident_mb()
        run_started = time.perf_counter()
        definitions = build_definitions(load_project(project_dir))
        job = definitions.resolve_job_def(f"bench__{PIPELINE}")
        defined = time.perf_counter()
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        finished = time.perf_counter()
        steps = step_timings(instance, result.run_id)
    for step in steps:
        step["peak_rss_mb"] = sampler.peak_mb(step["started_at"], step["ended_at"])
    server = PostgresServer(
        postgres["host"], postgres["port"], postgres["username"], postgres["password"]
    )
    url = server.url(postgres["database"])
    customers, orders, revenue = 0, 0, 0.0
    if result.success:
        with psycopg.connect(url) as conn:
            query = f"SELECT COUNT(*), SUM(orders), SUM(revenue) FROM {TARGET_TABLE}"
            customers, orders, revenue = conn.execute(query).fetchone() or (0, 0, 0.0)
    return {
        "success": result.success,
        "import_seconds": imported - started,
        "definitions_seconds": defined - run_started,
        "execute_seconds": finished - defined,
        "run_seconds": finished - run_started,
        "customers": customers,
        "orders": int(orders or 0),
        "revenue": float(revenue or 0.0),
        "steps": steps,
        "rss_before_run_mb": baseline_mb,
    }


def step_timings(instance: Any, run_id: str) -> list[dict[str, Any]]:
    """Per step, from the event log: total time, input load, compute+stage, and rows out.

    A step's compute yields a lazy batch stream and the staging IO manager consumes it, so
    the real work of a transform (DuckDB, parquet writing) sits between STEP_OUTPUT and
    HANDLED_OUTPUT; a load step does its work in compute, before STEP_SUCCESS.
    """
    import dagster as dg

    events: dict[str, dict[str, float]] = {}
    rows: dict[str, int] = {}
    order: list[str] = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.step_key not in events:
            events[event.step_key] = {}
            order.append(event.step_key)
        events[event.step_key].setdefault(event.event_type_value, entry.timestamp)
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            metadata = event.step_materialization_data.materialization.metadata
            count = metadata.get("dagster/row_count") or metadata.get("rows_loaded")
            if count is not None:
                rows[event.step_key] = int(count.value)
    timings = []
    for key in sorted(order, key=lambda k: events[k].get("STEP_START", 0.0)):
        marks = events[key]
        start = marks.get("STEP_START")
        end = marks.get("STEP_SUCCESS") or marks.get("STEP_FAILURE")
        if start is None or end is None:
            continue
        loaded = marks.get("LOADED_INPUT", start)
        output = marks.get("STEP_OUTPUT")
        handled = marks.get("HANDLED_OUTPUT")
        timings.append(
            {
                "step": key,
                "seconds": end - start,
                "load_input_seconds": loaded - start,
                "stage_output_seconds": (handled - output) if output and handled else None,
                "rows_out": rows.get(key),
                "started_at": start,
                "ended_at": end,
            }
        )
    return timings


def child_main(args: argparse.Namespace) -> None:
    """Run one scenario and write its JSON result; imports stay inside the timed helpers."""
    csv_path = Path(args.csv)
    if args.child == "floor":
        outcome = child_floor(csv_path)
    else:
        with tempfile.TemporaryDirectory(prefix="datapipe-bench-") as work:
            outcome = child_datapipe(csv_path, json.loads(args.postgres), Path(work))
    Path(args.result_file).write_text(json.dumps(outcome))


# ---------------------------------------------------------------------------------------
# Parent: start PostgreSQL, run the children, print the table and the targets


@dataclass
class Measurement:
    scenario: str
    rows: int
    run_seconds: float
    process_seconds: float
    peak_rss_mb: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.run_seconds


def child_env() -> dict[str, str]:
    """The children's environment: bytecode caching on, as a deployed process would have."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_child(
    scenario: str, rows: int, extra: Sequence[str], wrap: Sequence[str] = ()
) -> Measurement:
    """Run one scenario in a fresh process; its own peak RSS comes from wait4."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    result_file = LOG_DIR / f"{scenario}_{rows}.json"
    result_file.unlink(missing_ok=True)
    command = [*wrap, sys.executable, str(Path(__file__).resolve()), "--child", scenario]
    command += ["--csv", str(orders_csv(rows)), "--result-file", str(result_file), *extra]
    started = time.perf_counter()
    with (LOG_DIR / f"{scenario}_{rows}.log").open("wb") as log:
        process = subprocess.Popen(command, env=child_env(), cwd=ROOT, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if process.returncode != 0 or not result_file.exists():
        raise RuntimeError(f"{scenario} at {rows} rows failed; see {log.name}")
    detail = json.loads(result_file.read_text())
    return Measurement(
        scenario=scenario,
        rows=rows,
        run_seconds=detail["run_seconds"],
        process_seconds=elapsed,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        detail=detail,
    )


def warm_bytecode() -> None:
    """Import everything once with bytecode caching on, so no child pays for compiling."""
    code = (
        "import dagster, duckdb, psycopg, pyarrow.dataset, pyarrow.parquet; "
        "import datapipe_assets.defs.factory, datapipe_assets.pipeline.project, "
        "tests.support.project_files"
    )
    subprocess.run([sys.executable, "-c", code], env=child_env(), cwd=ROOT, check=True)


def repeated(runs: Sequence[Measurement]) -> Measurement:
    """Several runs of one scenario as one: the median-time run, with the highest peak RSS."""
    ordered = sorted(runs, key=lambda m: m.run_seconds)
    median = ordered[(len(ordered) - 1) // 2]
    median.peak_rss_mb = max(m.peak_rss_mb for m in runs)
    median.detail["all_run_seconds"] = [round(m.run_seconds, 3) for m in runs]
    return median


def measure(rows_list: Sequence[int], repeat: int, profile: bool) -> list[Measurement]:
    """Floor, then datapipe, for every row count; all against one real PostgreSQL server."""
    from tests.support.project_files import postgres_config
    from tests.support.services import postgres_server

    measurements: list[Measurement] = []
    for rows in rows_list:
        started = time.perf_counter()
        orders_csv(rows)
        print(f"data: {rows:,} rows ready in {time.perf_counter() - started:.1f}s", flush=True)
    warm_bytecode()
    with postgres_server() as server:

        def fresh_database() -> str:
            return json.dumps(postgres_config(server, server.create_database()))

        for rows in rows_list:
            floors, datapipes = [], []
            for _ in range(repeat):
                floor = run_child("floor", rows, [])
                print(f"floor    {rows:>12,} rows: {floor.run_seconds:7.2f}s", flush=True)
                datapipe = run_child("datapipe", rows, ["--postgres", fresh_database()])
                print(f"datapipe {rows:>12,} rows: {datapipe.run_seconds:7.2f}s", flush=True)
                check(datapipe, floor)
                floors.append(floor)
                datapipes.append(datapipe)
            measurements += [repeated(datapipes), repeated(floors)]
            if profile:
                profile_datapipe(rows, fresh_database())
    return measurements


def check(datapipe: Measurement, floor: Measurement) -> None:
    """The destination must hold exactly the floor's customers, orders and revenue."""
    got, want = datapipe.detail, floor.detail
    if not got["success"]:
        raise RuntimeError(f"the datapipe run failed; see {LOG_DIR}")
    if got["customers"] != want["customers"] or got["orders"] != want["orders"]:
        raise RuntimeError(
            f"datapipe loaded {got['customers']} customers / {got['orders']} orders, "
            f"the floor found {want['customers']} / {want['orders']}"
        )
    if abs(got["revenue"] - want["revenue"]) > 1e-6 * max(1.0, abs(want["revenue"])):
        raise RuntimeError(f"revenue differs: {got['revenue']} vs {want['revenue']}")


def profile_datapipe(rows: int, postgres: str) -> None:
    """Sample the datapipe child with py-spy (if installed) into bench/data/logs/."""
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if spy is None:
        print("py-spy not found (set PY_SPY); skipping the profile", flush=True)
        return
    output = LOG_DIR / f"datapipe_{rows}.pyspy.txt"
    wrap = [spy, "record", "--rate", "50", "--format", "raw", "--output", str(output), "--"]
    run_child("datapipe", rows, ["--postgres", postgres], wrap=wrap)
    print(f"py-spy profile: {output}", flush=True)


def markdown_table(measurements: Sequence[Measurement]) -> str:
    """The results table; the ratio is datapipe seconds over the floor's at the same rows."""
    floors = {m.rows: m for m in measurements if m.scenario == "floor"}
    lines = [
        "| scenario | rows | seconds | rows/s | peak RSS MB | ratio to floor | process seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in measurements:
        ratio = m.run_seconds / floors[m.rows].run_seconds if m.rows in floors else float("nan")
        lines.append(
            f"| {m.scenario} | {m.rows:,} | {m.run_seconds:.2f} | {m.rows_per_second:,.0f} | "
            f"{m.peak_rss_mb:,.0f} | {ratio:.2f}x | {m.process_seconds:.2f} |"
        )
    return "\n".join(lines)


def step_table(measurement: Measurement) -> str:
    """Per-step durations of one datapipe run, from the Dagster event log."""
    detail = measurement.detail
    steps = detail["steps"]
    lines = [
        f"datapipe at {measurement.rows:,} rows: definitions {detail['definitions_seconds']:.2f}s, "
        f"execute_in_process {detail['execute_seconds']:.2f}s; RSS before the run "
        f"(Python + Dagster + imports) {detail['rss_before_run_mb']:,.0f} MB",
        "",
        "| step | seconds | share | load input s | stage output s | rows out | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for step in steps:
        stage, rows_out = step["stage_output_seconds"], step["rows_out"]
        lines.append(
            f"| {step['step']} | {step['seconds']:.2f} | "
            f"{step['seconds'] / detail['execute_seconds']:.0%} | "
            f"{step['load_input_seconds']:.2f} | {'' if stage is None else f'{stage:.2f}'} | "
            f"{'' if rows_out is None else f'{rows_out:,}'} | {step['peak_rss_mb']:,.0f} |"
        )
    in_steps = sum(s["seconds"] for s in steps)
    lines.append(
        f"| (outside steps: run start/stop, event log) | "
        f"{detail['execute_seconds'] - in_steps:.2f} | "
        f"{(detail['execute_seconds'] - in_steps) / detail['execute_seconds']:.0%} | | | | |"
    )
    return "\n".join(lines)


def rss_growth(small: Measurement, large: Measurement) -> float:
    """How much larger the peak RSS of the larger run is, as a fraction of the smaller's."""
    return large.peak_rss_mb / small.peak_rss_mb - 1


def targets(measurements: Sequence[Measurement]) -> list[tuple[str, bool, str]]:
    """Each target: name, pass, and the measured figure."""
    runs = {m.rows: m for m in measurements if m.scenario == "datapipe"}
    floors = {m.rows: m for m in measurements if m.scenario == "floor"}
    verdicts: list[tuple[str, bool, str]] = []
    for rows, m in sorted(runs.items()):
        verdicts.append(
            (
                f"end to end >= {TARGET_ROWS_PER_SECOND:,} rows/s at {rows:,} rows",
                m.rows_per_second >= TARGET_ROWS_PER_SECOND,
                f"{m.rows_per_second:,.0f} rows/s",
            )
        )
        ratio = m.run_seconds / floors[rows].run_seconds
        verdicts.append(
            (
                f"within {TARGET_FLOOR_RATIO:g}x of the floor at {rows:,} rows",
                ratio <= TARGET_FLOOR_RATIO,
                f"{ratio:.2f}x",
            )
        )
    if TARGET_RSS_ROWS in runs:
        rss = runs[TARGET_RSS_ROWS].peak_rss_mb
        verdicts.append(
            (
                f"peak RSS < {TARGET_RSS_MB:,} MB at {TARGET_RSS_ROWS:,} rows",
                rss < TARGET_RSS_MB,
                f"{rss:,.0f} MB",
            )
        )
    if len(runs) > 1:
        small, large = runs[min(runs)], runs[max(runs)]
        growth = rss_growth(small, large)
        verdicts.append(
            (
                f"RSS growth <= {TARGET_RSS_GROWTH:.0%} from {small.rows:,} to {large.rows:,} rows",
                growth <= TARGET_RSS_GROWTH,
                f"{small.peak_rss_mb:,.0f} -> {large.peak_rss_mb:,.0f} MB ({growth:+.0%})",
            )
        )
    return verdicts


def report(measurements: Sequence[Measurement]) -> str:
    """Everything printed at the end: table, RSS growth, targets, per-step breakdown."""
    parts = ["## Results", "", markdown_table(measurements), ""]
    if any(len(m.detail.get("all_run_seconds", [])) > 1 for m in measurements):
        parts += ["Every run's seconds:", ""]
        parts += [
            f"- {m.scenario} at {m.rows:,} rows: {m.detail['all_run_seconds']}"
            for m in measurements
        ]
        parts.append("")
    runs = sorted((m for m in measurements if m.scenario == "datapipe"), key=lambda m: m.rows)
    floors = sorted((m for m in measurements if m.scenario == "floor"), key=lambda m: m.rows)
    if len(runs) > 1:
        parts += ["## RSS growth", ""]
        for series in (runs, floors):
            small, large = series[0], series[-1]
            growth = rss_growth(small, large)
            parts.append(
                f"- {small.scenario}: {small.peak_rss_mb:,.0f} MB at {small.rows:,} rows -> "
                f"{large.peak_rss_mb:,.0f} MB at {large.rows:,} rows ({growth:+.0%})"
            )
        parts.append("")
    parts += ["## Targets", ""]
    parts += [
        f"- {'PASS' if ok else 'FAIL'}: {name} (measured {figure})"
        for name, ok, figure in targets(measurements)
    ]
    parts += ["", "## Per-step time (Dagster event log)", ""]
    for m in runs:
        parts += [step_table(m), ""]
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[2_000_000], help="row counts (default 2000000)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per scenario; the median time and the highest peak RSS are reported",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also sample each datapipe run with py-spy"
    )
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    # Internal: the child-process side.
    parser.add_argument("--child", choices=["floor", "datapipe"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--postgres", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    rows_list = sorted(set(args.rows))
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    measurements = measure(rows_list, args.repeat, args.profile)
    print()
    print(report(measurements))
    if args.json:
        args.json.write_text(
            json.dumps([{**m.__dict__, "rows_per_second": m.rows_per_second} for m in measurements])
        )


if __name__ == "__main__":
    main()
