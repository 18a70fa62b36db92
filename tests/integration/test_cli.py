"""The `datapipe` command, run in-process against a pipelines folder of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from datapipe_assets.cli.main import main
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from tests.support.project_files import SIX_NODE_TRANSFORM, postgres_config, write_project
from tests.support.services import free_port

ORDERS_CSV = """id,customer_id,status,amount_cents,updated_at
1,10,paid,1000,2026-01-01 00:00:00
2,10,paid,2550,2026-01-01 01:00:00
3,20,pending,999,2026-01-01 02:00:00
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text(ORDERS_CSV)
    write_project(
        directory,
        {
            "orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
            "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}},
            "down_db": {
                "connector": "postgres",
                "config": {
                    "host": "127.0.0.1",
                    "port": free_port(),
                    "database": "x",
                    "username": "u",
                    "password": "${DOWN_DB_PASSWORD}",
                },
            },
        },
        {
            "revenue.yaml": {
                "name": "revenue",
                "source": {"connection": "orders_csv", "tables": ["orders"]},
                "transform": SIX_NODE_TRANSFORM,
                "destination": {"connection": "warehouse", "target_table": "revenue"},
            }
        },
    )
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(directory))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.setenv("DOWN_DB_PASSWORD", "never-printed-9913")
    return directory


def test_preview_prints_rows_at_a_node_without_loading(project, capsys):
    assert main(["preview", "revenue", "--node", "usd", "--limit", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "id  customer_id  status  amount  updated_at           amount_usd",
        "--  -----------  ------  ------  -------------------  ----------",
        "1   10           paid    1000    2026-01-01 00:00:00  10.0      ",
        "2   10           paid    2550    2026-01-01 01:00:00  25.5      ",
        "(2 row(s) shown)",
    ]
    assert not (project / "warehouse.duckdb").exists()


def test_preview_of_an_unknown_node(project, capsys):
    assert main(["preview", "revenue", "--node", "nope"]) == 1
    assert capsys.readouterr().err == (
        "error: pipeline 'revenue' has no node 'nope'; nodes: orders, paid, renamed, usd, "
        "latest, by_customer, out\n"
    )


def test_run_materializes_with_progress_and_loads(project, capsys):
    assert main(["run", "revenue"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "running revenue ..."
    assert [line.split()[:2] for line in lines[1:-1]] == [
        ["done", "default/revenue/raw/orders"],
        ["done", "default/revenue/paid"],
        ["done", "default/revenue/renamed"],
        ["done", "default/revenue/usd"],
        ["done", "default/revenue/latest"],
        ["done", "default/revenue/by_customer"],
        ["done", "default/revenue/load/revenue"],
    ]
    assert lines[-1].startswith("revenue: run ") and lines[-1].endswith(" succeeded")
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT customer_id, revenue, orders FROM revenue").fetchall() == [
            (10, 35.5, 2)
        ]


def test_status_lists_runs_with_rows_per_stage(project, capsys):
    assert main(["status", "revenue"]) == 0
    assert capsys.readouterr().out == "revenue: no runs yet\n"
    assert main(["run", "revenue"]) == 0
    (project / "data" / "orders.csv").write_text(ORDERS_CSV + "4,10,paid\n")
    assert main(["run", "revenue"]) == 1
    capsys.readouterr()
    assert main(["status", "revenue"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "revenue",
        "  run        status     version       seconds  extracted  transformed     loaded  "
        "failing checks",
    ]
    failed, reason, succeeded = lines[2].split(), lines[3], lines[4].split()
    version = load_project(project).get("revenue").version
    assert failed[1:3] + failed[4:] == ["FAILURE", version, "0", "0", "0", "-"]
    assert reason == (
        "             reason: connection 'orders_csv': data/orders.csv line 5: expected 5 "
        "fields, found 3; fix the row or the delimiter (',')"
    )
    assert succeeded[1:3] + succeeded[4:] == ["SUCCESS", version, "3", "1", "1", "-"]
    assert float(succeeded[3]) > 0


def test_a_changed_pipeline_file_is_a_new_version_of_its_runs_and_assets(project, capsys):
    file = project / "revenue.yaml"
    first = load_project(project).get("revenue").version
    # Comments and layout are not content.
    file.write_text("# revenue per customer\n" + yaml.safe_dump(yaml.safe_load(file.read_text())))
    assert load_project(project).get("revenue").version == first
    assert main(["run", "revenue"]) == 0
    file.write_text(file.read_text().replace("target_table: revenue", "target_table: income"))
    loaded = load_project(project).get("revenue")
    assert len(loaded.version) == 12 and loaded.version != first
    assert main(["run", "revenue"]) == 0
    capsys.readouterr()
    assert main(["status", "revenue"]) == 0
    versions = [line.split()[2] for line in capsys.readouterr().out.splitlines()[2:]]
    assert versions == [loaded.version, first]
    # Every asset of the pipeline carries the file's version as its code version.
    definitions = build_definitions(load_project(project))
    graph = definitions.resolve_asset_graph()
    pipeline_keys = [k for k in graph.get_all_asset_keys() if k.path[1] == "revenue"]
    assert pipeline_keys
    assert {graph.get(k).code_version for k in pipeline_keys} == {loaded.version}


def test_run_of_a_failing_pipeline_exits_1_with_the_reason(project, capsys):
    (project / "data" / "orders.csv").write_text(ORDERS_CSV + "4,10,paid\n")
    assert main(["run", "revenue"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == (
        "  FAILED default/revenue/raw/orders: connection 'orders_csv': data/orders.csv line 5: "
        "expected 5 fields, found 3; fix the row or the delimiter (',')"
    )
    assert captured.out.splitlines()[-1].endswith(" FAILED")


def test_discover_and_check_a_csv_connection(project, capsys):
    assert main(["discover", "orders_csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "orders",
        "  id                               int64",
        "  customer_id                      int64",
        "  status                           string",
        "  amount_cents                     int64",
        "  updated_at                       timestamp[us]",
        "1 table(s)",
    ]
    assert main(["check", "orders_csv"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_check_an_unreachable_database_names_it_and_hides_the_password(project, capsys):
    assert main(["check", "down_db"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: connection 'down_db': cannot reach 127.0.0.1:")
    assert err.endswith("; check host and port\n")
    assert "never-printed-9913" not in err


def test_unknown_connection(project, capsys):
    assert main(["check", "nope"]) == 1
    assert capsys.readouterr().err == (
        "error: unknown connection 'nope'; connections.yaml has: down_db, orders_csv, warehouse\n"
    )


def test_validate_real_postgres_connection_check(project, capsys, postgres, monkeypatch):
    config = {**postgres_config(postgres, "postgres"), "password": "${PG_PASSWORD_FOR_TEST}"}
    monkeypatch.setenv("PG_PASSWORD_FOR_TEST", postgres.password)
    write_project(project, {"db": {"connector": "postgres", "config": config}}, {})
    assert main(["check", "db"]) == 0
    assert capsys.readouterr().out == "ok: connected to database postgres as postgres\n"


def test_validate_and_preview_never_import_dagster(project):
    """The pipeline core is enough for validate and preview: no Dagster import at all."""
    code = (
        "import sys; from datapipe_assets.cli.main import main; "
        "codes = [main(['validate']), main(['preview', 'revenue', '--limit', '1'])]; "
        "print(codes, sorted({m.split('.')[0] for m in sys.modules} & {'dagster'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "[0, 0] []"


def test_validate_lists_the_columns_a_join_renames(project, capsys):
    (project / "joined.yaml").write_text(
        """
name: joined
sources:
  - {connection: orders_csv, tables: [orders]}
  - {connection: orders_csv, tables: [{name: orders, as: again}]}
transform:
  nodes:
    - {id: a, type: source, data: {table: orders}}
    - {id: b, type: source, data: {table: again}}
    - {id: j, type: join, inputs: {left: a, right: b}, data: {how: inner, on: [id]}}
    - {id: out, type: destination, inputs: [j]}
destination: {connection: warehouse}
"""
    )
    assert main(["validate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ok     joined (joined.yaml)",
        "note   pipeline 'joined', node 'j' (join): column 'customer_id' of the right input 'b' "
        "is renamed 'customer_id_b', as the left input has 'customer_id'",
        "note   pipeline 'joined', node 'j' (join): column 'status' of the right input 'b' is "
        "renamed 'status_b', as the left input has 'status'",
        "note   pipeline 'joined', node 'j' (join): column 'amount_cents' of the right input 'b' "
        "is renamed 'amount_cents_b', as the left input has 'amount_cents'",
        "note   pipeline 'joined', node 'j' (join): column 'updated_at' of the right input 'b' "
        "is renamed 'updated_at_b', as the left input has 'updated_at'",
        "ok     revenue (revenue.yaml)",
        "2 valid pipeline(s), 0 error(s)",
    ]


@pytest.mark.parametrize("limit", ["-1", "0", "ten"])
def test_a_limit_below_one_is_a_usage_error(project, capsys, limit):
    with pytest.raises(SystemExit) as exit_:
        main(["preview", "revenue", "--limit", limit])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"datapipe preview: error: argument --limit: must be a whole number of 1 or more, "
        f"not {limit!r}"
    )


@pytest.mark.parametrize("command", [["validate"], ["run", "revenue"], ["status"]])
def test_a_missing_pipelines_folder_is_an_error(project, capsys, monkeypatch, tmp_path, command):
    missing = tmp_path / "no_such_folder"
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(missing))
    assert main(command) == 1
    assert capsys.readouterr().err == (
        f"error: pipelines folder {missing} does not exist; create it, or set "
        "DATAPIPE_PIPELINES_DIR to the folder that holds your pipeline files\n"
    )


def test_status_of_an_unknown_pipeline_names_it(project, capsys):
    assert main(["status", "revnue"]) == 1
    assert capsys.readouterr().err == (
        "error: no pipeline named 'revnue', and no runs of one; pipelines: revenue\n"
    )
    assert main(["status", "revenue"]) == 0
    assert capsys.readouterr().out == "revenue: no runs yet\n"


def _copy_pipeline(project, file: str, **changes) -> None:
    pipeline = yaml.safe_load((project / "revenue.yaml").read_text())
    (project / file).write_text(yaml.safe_dump({**pipeline, **changes}))


def test_a_name_two_files_declare_is_refused(project, capsys):
    _copy_pipeline(project, "revenue_copy.yaml")
    assert main(["run", "revenue"]) == 1
    assert capsys.readouterr().err == (
        f"error: pipeline name 'revenue' is declared by {project / 'revenue.yaml'} and "
        f"{project / 'revenue_copy.yaml'}; give each pipeline a unique name\n"
    )
    assert main(["run", "--all"]) == 0
    captured = capsys.readouterr()
    assert "running revenue" not in captured.out
    assert captured.err == (
        f"skipped: {project / 'revenue_copy.yaml'}: name: pipeline name 'revenue' is already "
        f"used by {project / 'revenue.yaml'}; give each pipeline a unique name\n"
    )


def test_running_an_invalid_pipeline_shows_its_own_problems_once(project, capsys):
    _copy_pipeline(project, "a_other.yaml", name="other", schedule="never")
    _copy_pipeline(project, "z_mine.yaml", name="mine", load_mode="sideways")
    assert main(["run", "mine"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: no valid pipeline named 'mine'; valid pipelines: revenue "
        f"({project / 'z_mine.yaml'}: load_mode: unknown key; remove it or check its spelling)"
    ]


def test_validate_warns_of_unset_variables_and_csv_paths_that_match_no_file(
    project, capsys, monkeypatch
):
    monkeypatch.delenv("DOWN_DB_PASSWORD")
    (project / "from_db.yaml").write_text(
        "name: from_db\n"
        "source: {connection: down_db, tables: [orders]}\n"
        "destination: {connection: warehouse}\n"
    )
    (project / "exports.yaml").write_text(
        "name: exports\n"
        "source: {connector: csv, config: {path: 'exports/*.csv', table: orders},"
        " tables: [orders]}\n"
        "destination: {connection: warehouse}\n"
    )
    assert main(["validate"]) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if not line.startswith("ok")] == [
        "warn   pipeline 'exports': connection 'exports.source' path 'exports/*.csv' matches no "
        f"file (relative to {project}); check the path, or add the file before the pipeline runs",
        "warn   pipeline 'from_db': connection 'down_db' uses ${DOWN_DB_PASSWORD}, which is not "
        "set; set it before the pipeline runs",
        "3 valid pipeline(s), 0 error(s), 2 warning(s)",
    ]


def test_validate_warns_of_alert_urls_that_cannot_be_read(project, capsys, monkeypatch):
    monkeypatch.delenv("MISSING_HOOK_URL", raising=False)
    (project / "alerting.yaml").write_text(
        "name: alerting\n"
        "source: {connection: orders_csv, tables: [orders]}\n"
        "destination: {connection: warehouse}\n"
        "alerts:\n"
        "  - {on: [failure], channel: webhook, url: '${MISSING_HOOK_URL}'}\n"
        "  - {on: [failure], channel: slack, url: '${secret:SLACK_HOOK}'}\n"
    )
    assert main(["validate"]) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if not line.startswith("ok")] == [
        "warn   pipeline 'alerting': alerts[0].url uses ${MISSING_HOOK_URL}, which is not set; "
        "set it before an alert is sent",
        "warn   pipeline 'alerting': alerts[1].url uses ${secret:SLACK_HOOK}, which is not in "
        f"{project / 'secrets.enc.yaml'}; run `datapipe secrets set SLACK_HOOK` before the "
        "pipeline runs",
        "2 valid pipeline(s), 0 error(s), 2 warning(s)",
    ]


def test_two_first_commands_at_once_leave_a_working_instance(project, tmp_path):
    """Unserialized, 3 rounds in 12 left the schedule storage with two alembic heads, and every
    later command failed with alembic's traceback."""
    datapipe = str(Path(sys.executable).parent / "datapipe")
    for round_ in range(8):
        env = {**os.environ, "DAGSTER_HOME": str(tmp_path / f"home_{round_}")}
        first = [
            subprocess.Popen([datapipe, "status"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]  # fmt: skip
        assert [p.communicate(timeout=120)[1] for p in first] == ["", ""]
        assert [p.returncode for p in first] == [0, 0]
        later = subprocess.run(
            [datapipe, "status"], env=env, capture_output=True, text=True, timeout=120
        )
        assert (later.returncode, later.stderr) == (0, "")


def test_rejects_prints_the_latest_run_with_rejects_or_a_given_run(project, capsys, tmp_path):
    _copy_pipeline(
        project, "revenue.yaml", on_bad_rows={"action": "reject", "max_rejected_percent": 50}
    )
    assert main(["rejects", "revenue"]) == 0
    assert capsys.readouterr().out == "revenue: no run has rejected rows\n"
    bad = b"4,10,paid\n5,20,p\xe9nding,1,2026-01-02 00:00:00\n"
    (project / "data" / "orders.csv").write_bytes(ORDERS_CSV.encode() + bad)
    assert main(["run", "revenue"]) == 0
    rejected = capsys.readouterr().out.splitlines()[-1].split()[2]
    (project / "data" / "orders.csv").write_text(ORDERS_CSV)
    assert main(["run", "revenue"]) == 0
    clean = capsys.readouterr().out.splitlines()[-1].split()[2]

    assert main(["rejects", "revenue"]) == 0
    url = tmp_path / "staging" / rejected / "rejects/default/revenue/raw/orders.parquet"
    assert capsys.readouterr().out.splitlines() == [
        f"revenue: run {rejected}: 2 rejected rows",
        f"raw/orders ({url})",
        "  data/orders.csv line 5: expected 5 fields, found 3",
        "    4,10,paid",
        "  data/orders.csv line 6: column 'status' is not valid utf-8 text",
        "    5,20,p\\xe9nding,1,2026-01-02 00:00:00",
    ]
    assert main(["rejects", "revenue", "--run", clean]) == 0
    assert capsys.readouterr().out == f"revenue: run {clean} rejected no rows\n"
