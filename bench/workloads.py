"""Issue 8's workloads, each command timed as a whole process beside its floor.

Run as `.venv/bin/python bench/workloads.py [--rows N ...] [--repeat 3]` from the repository
root. For every N it generates (or reuses) the orders CSV of bench/run.py, starts a
PostgreSQL of its own, and runs each workload's floor and `datapipe run` as fresh processes:

- W1 CSV -> PostgreSQL, replace. Floor: PostgreSQL's server-side `COPY FROM` the file.
- W2 CSV -> six-node transform -> DuckDB. Floor: DuckDB, one statement over the CSV.
- W3 PostgreSQL -> PostgreSQL, replace. Floor: `psql COPY TO STDOUT | psql COPY FROM STDIN`.

Between runs it also times W0, a `datapipe run` of 10 rows of the same CSV into DuckDB: the
fixed cost of any run, which gives each workload the least ratio a run can reach.

Seconds are whole-command wall time (imports and Dagster's start included), the median of
the repeats; peak RSS (from `os.wait4`) is the highest of them. Every run's result is
checked against its floor's. The report is printed and written into bench/RESULTS.md
between the workloads markers.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:  # `python bench/workloads.py` puts bench/, not the root, on the path
    sys.path.insert(0, str(ROOT))

from bench.run import FLOOR_SQL, child_env, orders_csv  # noqa: E402
from tests.support.project_files import SIX_NODE_TRANSFORM, write_project  # noqa: E402
from tests.support.services import PG_BIN, PostgresServer, postgres_server  # noqa: E402

RESULTS = BENCH_DIR / "RESULTS.md"
START_MARK, END_MARK = "<!-- workloads:start -->", "<!-- workloads:end -->"
DATAPIPE = Path(sys.executable).parent / "datapipe"
ORDERS_COLUMNS = (
    "id bigint, customer_id bigint, status text, amount_cents bigint, currency text, "
    "updated_at timestamp"
)
TARGET_RSS_MB = 512
TARGET_RSS_GROWTH = 0.20


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    floor_name: str
    target_ratio: float


WORKLOADS = (
    Workload("w1", "CSV -> PostgreSQL, replace", "server-side COPY FROM the file", 1.5),
    Workload("w2", "CSV -> 6-node transform -> DuckDB", "DuckDB, one statement", 3.0),
    Workload(
        "w3",
        "PostgreSQL -> PostgreSQL, replace",
        "psql COPY TO STDOUT piped into COPY FROM STDIN",
        2.0,
    ),
)


@dataclass(frozen=True)
class Timing:
    seconds: float
    peak_rss_mb: float


# A `datapipe run` of 10 rows: what any run costs before its data (start-up, Dagster's run).
FIXED_COST = "w0"


@dataclass(frozen=True)
class Measured:
    workload: Workload
    rows: int
    floor: list[Timing]
    datapipe: list[Timing]
    fixed: list[Timing]

    @staticmethod
    def median(timings: list[Timing]) -> float:
        return statistics.median(t.seconds for t in timings)

    @property
    def ratio(self) -> float:
        return self.median(self.datapipe) / self.median(self.floor)

    @property
    def least_ratio(self) -> float:
        """The ratio of a run whose data work took exactly the floor's time, on top of the
        fixed cost of a run measured beside it."""
        floor = self.median(self.floor)
        return (self.median(self.fixed) + floor) / floor

    @property
    def datapipe_rss(self) -> float:
        return max(t.peak_rss_mb for t in self.datapipe)


# Runs a command and writes its peak RSS in KiB. A child of this small process starts from a
# small RSS: a child of the large bench process would count that process's RSS as its own,
# since Linux carries the pre-exec memory of a vfork-ed child into its maximum.
LAUNCHER = (
    "import resource, subprocess, sys; "
    "code = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)


def timed(command: Sequence[str], env: dict[str, str], log: Path) -> Timing:
    """Run a command to its end; its wall time and the peak RSS of it or its children."""
    rss_file = log.with_suffix(".rss")
    started = time.perf_counter()
    with log.open("ab") as out:
        launched = [sys.executable, "-c", LAUNCHER, str(rss_file), *command]
        code = subprocess.call(launched, env=env, cwd=ROOT, stdout=out, stderr=out)
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed; see {log}")
    return Timing(seconds, int(rss_file.read_text()) / 1024)


class Bench:
    """One PostgreSQL, one warm Dagster instance and one project for every workload."""

    def __init__(self, server: PostgresServer, work: Path, rows: int) -> None:
        self.server, self.work, self.rows = server, work, rows
        self.csv = orders_csv(rows)
        self.log = work / "commands.log"
        self.psql = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        self.psql += ["-h", server.host, "-p", str(server.port), "-U", server.user]
        for database in ("src", "dst"):
            server.create_database(database)
        self.env = {
            **child_env(),
            "PGPASSWORD": server.password,
            "DAGSTER_HOME": str(work / "dagster_home"),
            "DATAPIPE_PIPELINES_DIR": str(work / "pipelines"),
            "DATAPIPE_STAGING_URL": str(work / "staging"),
        }
        # W0: 10 rows of the same CSV, the fixed cost of a `datapipe run`.
        with self.csv.open() as full:
            (work / "tiny.csv").write_text("".join(next(full) for _ in range(11)))
        (work / "dagster_home").mkdir()
        shutil.copy(ROOT / "dagster.yaml", work / "dagster_home" / "dagster.yaml")
        self._write_project()
        # W3's source table, loaded once.
        self._sql("src", f"CREATE TABLE orders ({ORDERS_COLUMNS})", self._copy_file("orders"))

    def _write_project(self) -> None:
        pg = {"host": self.server.host, "port": self.server.port,
              "username": self.server.user, "password": self.server.password}  # fmt: skip
        write_project(
            self.work / "pipelines",
            {
                "orders_csv": {"connector": "csv",
                               "config": {"path": str(self.csv), "table": "orders"}},
                "tiny_csv": {"connector": "csv",
                             "config": {"path": str(self.work / "tiny.csv"), "table": "orders"}},
                "tiny_duckdb": {"connector": "duckdb",
                                "config": {"path": str(self.work / "w0.duckdb")}},
                "source_pg": {"connector": "postgres", "config": {**pg, "database": "src"}},
                "target_pg": {"connector": "postgres", "config": {**pg, "database": "dst"}},
                "warehouse": {"connector": "duckdb",
                              "config": {"path": str(self.work / "w2.duckdb")}},
            },
            {
                "w0.yaml": {
                    "name": "w0",
                    "source": {"connection": "tiny_csv", "tables": ["orders"]},
                    "destination": {"connection": "tiny_duckdb", "load_mode": "replace"},
                },
                "w1.yaml": {
                    "name": "w1",
                    "source": {"connection": "orders_csv", "tables": ["orders"]},
                    "destination": {"connection": "target_pg", "table_prefix": "w1_",
                                    "load_mode": "replace"},
                },
                "w2.yaml": {
                    "name": "w2",
                    "source": {"connection": "orders_csv", "tables": ["orders"]},
                    "transform": SIX_NODE_TRANSFORM,
                    "destination": {"connection": "warehouse", "target_table": "revenue",
                                    "load_mode": "replace"},
                },
                "w3.yaml": {
                    "name": "w3",
                    "source": {"connection": "source_pg", "tables": ["orders"]},
                    "destination": {"connection": "target_pg", "table_prefix": "w3_",
                                    "load_mode": "replace"},
                },
            },
        )  # fmt: skip

    def _copy_file(self, table: str) -> str:
        return f"COPY {table} FROM '{self.csv}' (FORMAT csv, HEADER)"

    def _sql(self, database: str, *statements: str) -> None:
        command = [*self.psql, "-d", database]
        for statement in statements:
            command += ["-c", statement]
        subprocess.run(command, env=self.env, check=True, capture_output=True)

    def _value(self, database: str, query: str) -> str:
        command = [*self.psql, "-d", database, "-A", "-t", "-c", query]
        return subprocess.run(
            command, env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    # The floors and the datapipe commands; each returns its timing.

    def floor(self, workload: Workload) -> Timing:
        if workload.name == "w1":
            create = f"DROP TABLE IF EXISTS floor_w1; CREATE TABLE floor_w1 ({ORDERS_COLUMNS})"
            return timed(
                [*self.psql, "-d", "dst", "-c", create, "-c", self._copy_file("floor_w1")],
                self.env,
                self.log,
            )
        if workload.name == "w2":
            sql = f"CREATE OR REPLACE TABLE revenue AS {FLOOR_SQL.format(path=self.csv)}"
            target = str(self.work / "floor.duckdb")
            code = f"import duckdb; duckdb.connect({target!r}).execute({sql!r})"
            return timed([sys.executable, "-c", code], self.env, self.log)
        self._sql("dst", f"CREATE TABLE IF NOT EXISTS floor_w3 ({ORDERS_COLUMNS})")
        out = " ".join([*self.psql, "-d", "src", "-c", "'COPY orders TO STDOUT'"])
        into = " ".join(
            [
                *self.psql,
                "-d",
                "dst",
                "-c",
                "'TRUNCATE floor_w3'",
                "-c",
                "'COPY floor_w3 FROM STDIN'",
            ]
        )
        return timed(["bash", "-o", "pipefail", "-c", f"{out} | {into}"], self.env, self.log)

    def datapipe(self, workload: Workload | str) -> Timing:
        name = workload if isinstance(workload, str) else workload.name
        return timed([str(DATAPIPE), "run", name], self.env, self.log)

    def check(self, workload: Workload) -> None:
        """The datapipe run's result is the floor's."""
        if workload.name == "w2":
            import duckdb

            query = "SELECT count(*), sum(orders), round(sum(revenue), 2) FROM revenue"
            results = [
                duckdb.connect(str(self.work / name), read_only=True).execute(query).fetchone()
                for name in ("w2.duckdb", "floor.duckdb")
            ]
            assert results[0] == results[1], f"w2: {results[0]} != floor {results[1]}"
            return
        table = "w1_orders" if workload.name == "w1" else "w3_orders"
        query = "SELECT count(*), sum(id), sum(amount_cents), max(updated_at) FROM {}"
        ours, floor = (
            self._value("dst", query.format(t)) for t in (table, f"floor_{workload.name}")
        )
        assert ours == floor, f"{workload.name}: {ours} != floor {floor}"


def measure(rows: int, repeat: int) -> list[Measured]:
    with postgres_server() as server, tempfile.TemporaryDirectory(prefix="datapipe-w-") as tmp:
        bench = Bench(server, Path(tmp), rows)
        measured = []
        for workload in WORKLOADS:
            bench.floor(workload)
            bench.datapipe(workload)  # warm-up: the instance's database, bytecode, the page cache
            floor, datapipe, fixed = [], [], []
            for _ in range(repeat):
                floor.append(bench.floor(workload))
                datapipe.append(bench.datapipe(workload))
                bench.check(workload)
                fixed.append(bench.datapipe(FIXED_COST))
            measured.append(Measured(workload, rows, floor, datapipe, fixed))
            print(f"{workload.name} at {rows:,} rows: {measured[-1].ratio:.2f}x", flush=True)
        return measured


def report(results: Sequence[Measured], command: str) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} with `{command}`: whole-command wall time, "
        "median of the repeats; peak RSS the highest of them.",
        "",
        "| workload | rows | floor | floor s | datapipe s | ratio | target "
        "| least ratio | peak RSS MB (floor / datapipe) |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for m in results:
        verdict = "PASS" if m.ratio <= m.workload.target_ratio else "FAIL"
        lines.append(
            f"| {m.workload.name.upper()} {m.workload.title} | {m.rows:,} "
            f"| {m.workload.floor_name} "
            f"| {m.median(m.floor):.2f} | {m.median(m.datapipe):.2f} | {m.ratio:.2f}x "
            f"| <= {m.workload.target_ratio}x: {verdict} | {m.least_ratio:.2f}x "
            f"| {max(t.peak_rss_mb for t in m.floor):.0f} / {m.datapipe_rss:.0f} |"
        )
    lines += [
        "",
        "Least ratio: (fixed cost + floor) / floor, where the fixed cost is the median "
        f"`datapipe run {FIXED_COST}` (10 rows of the same CSV into DuckDB) timed between "
        "the workload's runs: what a run whose data work matched the floor would reach.",
    ]
    lines += ["", f"Every run's seconds (floor; datapipe; {FIXED_COST}):", ""]
    for m in results:
        floor, ours, fixed = (
            ", ".join(f"{t.seconds:.2f}" for t in timings)
            for timings in (m.floor, m.datapipe, m.fixed)
        )
        lines.append(f"- {m.workload.name.upper()} at {m.rows:,}: [{floor}]; [{ours}]; [{fixed}]")
    lines += [
        "",
        "Peak RSS of datapipe (target <= 512 MB, growing <= 20% from the smallest N to the "
        "largest):",
        "",
    ]
    for workload in WORKLOADS:
        runs = sorted((m for m in results if m.workload == workload), key=lambda m: m.rows)
        small, large = runs[0], runs[-1]
        growth = large.datapipe_rss / small.datapipe_rss - 1
        within = large.datapipe_rss <= TARGET_RSS_MB and growth <= TARGET_RSS_GROWTH
        lines.append(
            f"- {workload.name.upper()}: {small.datapipe_rss:.0f} MB at {small.rows:,} -> "
            f"{large.datapipe_rss:.0f} MB at {large.rows:,} ({growth:+.0%}): "
            + ("PASS" if within else "FAIL")
        )
    return "\n".join(lines)


def write_results(text: str) -> None:
    current = RESULTS.read_text()
    start, end = current.index(START_MARK) + len(START_MARK), current.index(END_MARK)
    RESULTS.write_text(current[:start] + "\n" + text + "\n" + current[end:])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = [m for rows in args.rows for m in measure(rows, args.repeat)]
    command = " ".join(["bench/workloads.py", *(argv if argv is not None else sys.argv[1:])])
    text = report(results, f".venv/bin/python {command}")
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
