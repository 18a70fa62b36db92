"""load_project over a folder of pipeline files: every error class, with its exact message."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from datapipe_assets.pipeline.executor import pipeline_executor
from datapipe_assets.pipeline.project import load_project
from datapipe_assets.pipeline.spec import ExecutorSpec
from datapipe_assets.pipeline.validation import find_cycle

CONNECTIONS = """\
orders_csv:
  connector: csv
  config: {path: data/orders.csv}
warehouse:
  connector: duckdb
  config: {path: warehouse.duckdb}
ftp_conn:
  connector: ftp
  config: {}
"""
ORDERS_CSV = "id,status,amount\n1,paid,10\n2,open,20\n3,paid,5\n"

VALID = """\
name: {name}
source: {{connection: orders_csv, tables: [orders]}}
transform:
  nodes:
    - {{id: s, type: source, data: {{table: orders}}}}
    - {{id: paid, type: filter, data: {{column: status, operator: eq, value: paid}}}}
    - {{id: o, type: destination}}
  edges:
    - {{source: s, target: paid}}
    - {{source: paid, target: o}}
destination: {{connection: warehouse, load_mode: upsert, upsert_key: id}}
schedule: daily
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATAPIPE_CONNECTIONS_FILE", raising=False)
    # The deployment's executor and staging are checked with each pipeline: start from none.
    for name in ("DATAPIPE_EXECUTOR", "DATAPIPE_STAGING_URL", "DATAPIPE_CELERY_BROKER"):
        monkeypatch.delenv(name, raising=False)
    # Errors name files relative to the working directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "connections.yaml").write_text(CONNECTIONS)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text(ORDERS_CSV)
    return tmp_path


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text))


def errors(folder: Path) -> dict[str, list[str]]:
    project = load_project(folder)
    return {file: [str(e) for e in errs] for file, errs in project.errors.items()}


def only_errors(folder: Path, file: str, text: str) -> list[str]:
    """Write one pipeline file; return its errors, checking no other file has any."""
    write(folder, file, text)
    found = errors(folder)
    assert set(found) == {file}
    return found[file]


def test_valid_pipeline_loads(folder):
    write(folder, "good.yaml", VALID.format(name="good"))
    project = load_project(folder)
    assert project.errors == {}
    assert [p.pipeline.name for p in project.pipelines] == ["good"]
    loaded = project.pipelines[0]
    assert loaded.file == folder / "good.yaml"
    assert [(s.name, s.connector) for s in loaded.sources] == [("orders_csv", "csv")]
    assert (loaded.destination.name, loaded.destination.connector) == ("warehouse", "duckdb")


CASES = yaml.safe_load((Path(__file__).parent / "validation_cases.yaml").read_text())


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_file_errors(folder, case):
    """Each file in validation_cases.yaml gets exactly its listed errors, and no other file any."""
    assert only_errors(folder, case["file"], case["text"]) == case["errors"]


def test_unknown_connection_without_connections_file(folder):
    (folder / "connections.yaml").unlink()
    text = """\
    name: e
    source: {connector: csv, config: {path: data/orders.csv}, tables: [orders]}
    destination: {connection: warehouse}
    """
    assert only_errors(folder, "e.yaml", text) == [
        "e.yaml: destination.connection: unknown connection 'warehouse'; add it to "
        "connections.yaml or use one of: none defined"
    ]


BAD_SCHEDULE = (
    "is not a schedule; use hourly, daily or a 5-field cron string such as '30 6 * * 1-5'"
)
BAD_TIMEZONE = "use an IANA name such as UTC or Europe/Berlin"


@pytest.mark.parametrize(
    ("name", "key", "value", "message"),
    [
        *(("s", "schedule", cron, f"{cron!r} {BAD_SCHEDULE}")
          for cron in ["61 * * * *", "* * * *", "weekly", "0 0 * * * *"]),
        *(("t", "timezone", zone, f"unknown timezone {zone!r}; {BAD_TIMEZONE}")
          for zone in ["Mars/Olympus", "utc+1", "../etc/passwd"]),
    ],
)  # fmt: skip
def test_bad_schedule_or_timezone(folder, name, key, value, message):
    text = f"""\
    name: {name}
    source: {{connection: orders_csv, tables: [orders]}}
    destination: {{connection: warehouse}}
    {key}: "{value}"
    """
    assert only_errors(folder, f"{name}.yaml", text) == [f"{name}.yaml: {key}: {message}"]


@pytest.mark.parametrize("schedule", ["hourly", "daily", "30 6 * * 1-5", "*/15 * * * *"])
def test_good_schedules(folder, schedule):
    write(
        folder,
        "s.yaml",
        f"""\
        name: s
        source: {{connection: orders_csv, tables: [orders]}}
        destination: {{connection: warehouse}}
        schedule: "{schedule}"
        timezone: Europe/Berlin
        """,
    )
    project = load_project(folder)
    assert project.errors == {}
    assert project.get("s").pipeline.schedule == schedule


def test_duplicate_pipeline_names_across_files(folder):
    write(folder, "a.yaml", VALID.format(name="same"))
    write(folder, "b.yaml", VALID.format(name="same"))
    project = load_project(folder)
    assert [(p.pipeline.name, p.file.name) for p in project.pipelines] == [("same", "a.yaml")]
    assert {f: [str(e) for e in errs] for f, errs in project.errors.items()} == {
        "b.yaml": [
            "b.yaml: name: pipeline name 'same' is already used by a.yaml; give each pipeline a "
            "unique name"
        ]
    }


def test_one_bad_file_does_not_stop_the_valid_ones(folder):
    write(folder, "a_good.yaml", VALID.format(name="first"))
    write(folder, "b_bad.yaml", "name: [unclosed\n")
    write(folder, "c_bad.yaml", VALID.format(name="broken").replace("daily", "never"))
    write(folder, "d_good.json", VALID_JSON)
    write(folder, "notes.txt", "not a pipeline")
    project = load_project(folder)
    assert [p.pipeline.name for p in project.pipelines] == ["first", "second"]
    assert sorted(project.errors) == ["b_bad.yaml", "c_bad.yaml"]
    assert [str(e) for e in project.errors["c_bad.yaml"]] == [
        "c_bad.yaml: schedule: 'never' is not a schedule; use hourly, daily or a 5-field cron "
        "string such as '30 6 * * 1-5'"
    ]
    with pytest.raises(KeyError, match="valid pipelines: first, second"):
        project.get("broken")


VALID_JSON = """\
{"name": "second",
 "sourceConfig": {"connection": "orders_csv", "tables": ["orders"]},
 "destinationConfig": {"connection": "warehouse", "loadMode": "append"}}
"""


def test_bad_connections_file_is_reported(folder):
    (folder / "connections.yaml").write_text(
        "good:\n  connector: csv\n  config: {path: data/orders.csv}\nbad:\n  config: {}\n"
    )
    write(
        folder,
        "p.yaml",
        """\
        name: p
        source: {connection: good, tables: [orders]}
        destination: {connection: bad}
        """,
    )
    assert errors(folder) == {
        "connections.yaml": ["connections.yaml: bad.connector: Field required; required; add it"],
        "p.yaml": [
            "p.yaml: destination.connection: unknown connection 'bad'; add it to "
            "connections.yaml or use one of: good"
        ],
    }


# --- find_cycle --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "edges", "expected"),
    [
        (["a", "b", "c"], [("a", "b"), ("b", "c")], None),
        (["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], None),
        (["a", "b"], [("a", "b"), ("b", "a")], ["a", "b", "a"]),
        (["a"], [("a", "a")], ["a", "a"]),
        (["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")], ["a", "b", "c", "a"]),
        # The path starts where the cycle starts, not at the first node visited.
        (
            ["s", "x", "y", "z"],
            [("s", "x"), ("x", "y"), ("y", "z"), ("z", "x")],
            ["x", "y", "z", "x"],
        ),
        (["s", "t", "a", "b"], [("s", "t"), ("a", "b"), ("b", "a")], ["a", "b", "a"]),
        # Edges to unknown nodes are ignored (reported elsewhere).
        (["a", "b"], [("a", "ghost"), ("ghost", "a"), ("a", "b")], None),
        ([], [], None),
    ],
)
def test_find_cycle(nodes, edges, expected):
    assert find_cycle(nodes, edges) == expected


def test_unknown_column_over_an_api_source_is_caught_without_its_secret(folder, monkeypatch):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    text = (
        "name: s\n"
        "source: {connector: stripe, config: {api_key: '${STRIPE_API_KEY}'}, tables: [charges]}\n"
        "transform:\n"
        "  nodes:\n"
        "    - {id: c, type: source, data: {table: charges}}\n"
        "    - {id: f, type: filter, data: {column: amount_cents, operator: gt, value: 0}}\n"
        "    - {id: o, type: destination}\n"
        "  edges: [{source: c, target: f}, {source: f, target: o}]\n"
        "destination: {connection: warehouse}\n"
    )
    [error] = only_errors(folder, "s.yaml", text)
    assert error.startswith(
        "s.yaml: transform.nodes[1].data: node 'f' (filter): unknown column 'amount_cents'; "
        "the input has id, "
    )


def test_undeliverable_alerts_are_rejected_with_what_they_lack(folder):
    text = (
        "name: a\n"
        "source: {connection: orders_csv, tables: [orders]}\n"
        "destination: {connection: warehouse}\n"
        "alerts:\n"
        "  - {on: [failure, slow_run], channel: email}\n"
        "  - {on: [failure], channel: slack, url: '${SLACK_WEBHOOK_URL}'}\n"
    )
    assert only_errors(folder, "a.yaml", text) == [
        "a.yaml: alerts[0]: an email alert needs `to` addresses; a slow_run alert needs "
        "`slow_run_after`, like 15m; fix the value"
    ]


def test_bad_triggers_are_reported_and_drop_their_pipelines(folder):
    base = (
        "source: {connection: orders_csv, tables: [orders]}\ndestination: {connection: warehouse}\n"
    )
    write(folder, "a.yaml", f"name: a\n{base}trigger: {{after: [b]}}\n")
    write(folder, "b.yaml", f"name: b\n{base}trigger: {{after: [a]}}\n")
    write(folder, "c.yaml", f"name: c\n{base}trigger: {{after: [nope]}}\n")
    write(folder, "d.yaml", f"name: d\n{base}trigger: {{after: [c]}}\n")
    write(folder, "e.yaml", f"name: e\n{base}trigger: {{after: [a]}}\n")
    found = errors(folder)
    assert found["a.yaml"] == [
        "a.yaml: trigger.after: the pipelines wait for each other: a -> b -> a; "
        "remove one of these links"
    ]
    assert found["c.yaml"] == [
        "c.yaml: trigger.after: names 'nope', which is not another valid pipeline; "
        "use one of: a, b, d, e"
    ]
    # Pipelines that wait for a dropped one are dropped in turn, each saying why.
    assert found["b.yaml"] == [
        "b.yaml: trigger.after: names 'a', which is not another valid pipeline; use one of: d, e"
    ]
    assert found["d.yaml"][0].startswith("d.yaml: trigger.after: names 'c', which is not")
    assert found["e.yaml"][0].startswith("e.yaml: trigger.after: names 'a', which is not")
    assert load_project(folder).pipelines == []


def test_a_named_connections_config_is_checked_where_a_pipeline_uses_it(folder):
    (folder / "connections.yaml").write_text(
        CONNECTIONS.replace("config: {path: warehouse.duckdb}", "config: {pth: warehouse.duckdb}")
    )
    text = """\
    name: e
    source: {connection: orders_csv, tables: [orders]}
    destination: {connection: warehouse}
    """
    assert only_errors(folder, "e.yaml", text) == [
        "e.yaml: destination.connection: connection 'warehouse': missing config key 'path'; set "
        "it in the connection's config",
        "e.yaml: destination.connection: connection 'warehouse': unknown config key 'pth'; did "
        "you mean 'path'? (keys: path, schema)",
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "sources: [{connection: orders_csv, tables: [orders]}, "
            "{connector: csv, config: {path: data/orders.csv}, tables: [{name: orders, as: b}]}]",
            "f.yaml: trigger.on_new_file: on_new_file needs one csv source (this pipeline reads "
            "csv, csv); use a csv connection whose path is a glob such as incoming/*.csv or "
            "s3://bucket/prefix/*.csv",
        ),
        (
            "source: {connector: csv, config: {tables: {orders: data/orders.csv}}, "
            "tables: [orders]}",
            "f.yaml: trigger.on_new_file: on_new_file runs once per new file of one table, and "
            "connection 'f.source' offers several (tables: or table_per_file); use a csv "
            "connection with a path glob such as incoming/*.csv",
        ),
    ],
)
def test_on_new_file_needs_one_single_table_csv_source(folder, source, expected):
    trigger = "trigger: {on_new_file: true}"
    text = f"name: f\n{source}\ndestination: {{connection: warehouse}}\n{trigger}\n"
    assert only_errors(folder, "f.yaml", text) == [expected]


PLAIN = """\
name: p
source: {connection: orders_csv, tables: [orders]}
destination: {connection: warehouse}
"""


DEPLOYMENT_EXECUTOR_ERRORS = {
    # Celery with the default, local staging.
    "celery": "p.yaml: executor: the deployment's celery executor (DATAPIPE_EXECUTOR=celery) "
    "needs staging on S3, and DATAPIPE_STAGING_URL is a local folder: each step runs on a Celery "
    "worker, possibly on another machine, and reads the data the steps before it staged; set "
    "DATAPIPE_STAGING_URL to an s3:// URL every worker can reach, or use the multiprocess "
    "executor",
    "threads": "p.yaml: executor: DATAPIPE_EXECUTOR is 'threads', which is not an executor; set "
    "DATAPIPE_EXECUTOR to in_process, multiprocess or celery, or give the pipeline its own "
    "executor",
}


@pytest.mark.parametrize("chosen", DEPLOYMENT_EXECUTOR_ERRORS)
def test_deployment_executor_problems(folder, monkeypatch, chosen):
    monkeypatch.setenv("DATAPIPE_EXECUTOR", chosen)
    assert only_errors(folder, "p.yaml", PLAIN) == [DEPLOYMENT_EXECUTOR_ERRORS[chosen]]


def test_deployment_executor_applies_unless_the_file_chooses(folder, monkeypatch):
    monkeypatch.setenv("DATAPIPE_EXECUTOR", "celery")
    monkeypatch.setenv("DATAPIPE_STAGING_URL", "s3://staging/runs")
    write(folder, "p.yaml", PLAIN)
    write(folder, "q.yaml", PLAIN.replace("name: p", "name: q") + "executor: {type: in_process}\n")
    project = load_project(folder)
    assert project.errors == {}
    chosen = {p.pipeline.name: pipeline_executor(p.pipeline, os.environ) for p in project.pipelines}
    assert chosen == {
        "p": ExecutorSpec(type="celery", broker="${DATAPIPE_CELERY_BROKER}"),
        "q": ExecutorSpec(type="in_process"),
    }


PARTITIONED_TOTALS = """\
name: {name}
source: {{connection: orders_csv, tables: [orders]}}
transform:
  nodes:
    - {{id: s, type: source, data: {{table: orders}}}}
    - {{id: latest, type: deduplicate, data: {{columns: [id]}}}}
    - {{id: totals, type: aggregate,
       data: {{group_by: {group_by}, measures: [{{column: amount, function: sum, alias: total}}]}}}}
    - {{id: o, type: destination}}
  edges:
    - {{source: s, target: latest}}
    - {{source: latest, target: totals}}
    - {{source: totals, target: o}}
destination: {{connection: warehouse}}
partitions: {{by: day, column: created_at, start: 2024-01-01}}
"""


def test_partitioned_nodes_over_many_rows_get_a_note_and_the_load_keeps_the_column(folder):
    (folder / "data" / "orders.csv").write_text(
        "id,status,amount,created_at\n1,paid,10,2024-01-01\n"
    )
    write(folder, "daily.yaml", PARTITIONED_TOTALS.format(name="daily", group_by="[created_at]"))
    write(folder, "flat.yaml", PARTITIONED_TOTALS.format(name="flat", group_by="[status]"))
    project = load_project(folder)
    assert {file: [str(e) for e in errs] for file, errs in project.errors.items()} == {
        "flat.yaml": [
            "flat.yaml: partitions.column: the loaded data has no column 'created_at'; a "
            "partition's load replaces the rows of its window in that column; keep it in the "
            "data the transform loads (it has: status, total)"
        ]
    }
    assert list(project.get("daily").notes) == [
        f"pipeline 'daily', node {node!r} ({node_type}): works within one partition (one day "
        f"of created_at), not across partitions; to {node_type} across all of them, read the "
        "loaded table in an unpartitioned pipeline with trigger: {after: [daily]}"
        for node, node_type in (("latest", "deduplicate"), ("totals", "aggregate"))
    ]
