"""The `datapipe` executable ends with its command's exit code, every time.

A run of a folder holding two invalid files and one valid one, or of an invalid pipeline,
sometimes ended with "terminate called without an active exception" and exit 134 (SIGABRT):
a native DuckDB or Arrow thread still alive while the interpreter tore down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.project_files import write_project

DATAPIPE = str(Path(sys.executable).parent / "datapipe")


def test_failing_commands_exit_1_fifty_times_out_of_fifty(tmp_path):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "orders.csv").write_text("id,amount\n1,2\n")
    source = {"connection": "files", "tables": ["orders"]}
    write_project(
        pipelines,
        {"files": {"connector": "csv", "config": {"path": "orders.csv"}},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {"good.yaml": {"name": "good", "source": source,
                       "destination": {"connection": "warehouse"}},
         "no_key.yaml": {"name": "no_key",
                         "source": {**source, "sync_mode": "incremental",
                                    "incremental_key": "missing"},
                         "destination": {"connection": "warehouse", "load_mode": "append"}},
         "bad_node.yaml": {"name": "bad_node", "source": source,
                           "transform": {"nodes": [{"id": "spin", "type": "pivot"}],
                                         "edges": []},
                           "destination": {"connection": "warehouse"}}},
    )  # fmt: skip
    env = {
        **os.environ,
        "DATAPIPE_PIPELINES_DIR": str(pipelines),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DATAPIPE_STAGING_URL": str(tmp_path / "staging"),
    }
    outcomes = []
    for _ in range(25):
        # Two at a time, as a busy machine would run them.
        pair = [
            subprocess.Popen([DATAPIPE, *command], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for command in (["validate"], ["run", "no_key"])
        ]  # fmt: skip
        for process in pair:
            stdout, stderr = process.communicate(timeout=120)
            outcomes.append((process.returncode, "terminate called" in stderr, stdout))
    assert {code for code, _, _ in outcomes} == {1}
    assert not any(aborted for _, aborted, _ in outcomes)
    # The output is whole even though the process skips the interpreter's teardown.
    assert all(out.endswith("1 valid pipeline(s), 2 error(s)\n") for _, _, out in outcomes[0::2])
