"""An S3 endpoint that accepts connections but never answers (its server stopped by SIGSTOP)
fails a run with a clear error in bounded time, instead of hanging it for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyarrow import fs

from tests.support.project_files import write_project
from tests.support.services import s3_server

DATAPIPE = str(Path(sys.executable).parent / "datapipe")


def test_a_stopped_s3_server_fails_the_run_in_bounded_time_and_leaves_no_partial_object(
    tmp_path,
):
    pipelines = tmp_path / "pipelines"
    (pipelines / "data").mkdir(parents=True)
    (pipelines / "data" / "orders.csv").write_text("id,amount\n1,10\n2,20\n")
    write_project(
        pipelines,
        {"files": {"connector": "csv", "config": {"path": "data/orders.csv"}},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        # A timed-out store is a transient failure: retried once, at once, then reported.
        {"orders.yaml": {"name": "orders", "source": {"connection": "files", "tables": ["orders"]},
                         "destination": {"connection": "warehouse"},
                         "retries": {"max": 1, "delays": [0]}}},
    )  # fmt: skip
    with s3_server() as s3:
        bucket = s3.create_bucket()
        env = {
            **os.environ,
            **s3.env(),
            "DATAPIPE_PIPELINES_DIR": str(pipelines),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "DATAPIPE_STAGING_URL": f"s3://{bucket}/staging",
            "DATAPIPE_S3_TIMEOUT_SECONDS": "2",
        }
        server_pid = _listening_pid(s3.endpoint_url)
        os.kill(server_pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            run = subprocess.run(
                [DATAPIPE, "run", "orders"], env=env, capture_output=True, text=True, timeout=300
            )
            seconds = time.monotonic() - started
        finally:
            os.kill(server_pid, signal.SIGCONT)
        assert run.returncode == 1, run.stdout + run.stderr
        assert seconds < 120, seconds
        lines = (run.stdout + run.stderr).splitlines()
        assert len(lines) == 3 and lines[1].endswith(" FAILED"), lines
        assert lines[2].startswith(
            "  FAILED default/orders/load/orders, default/orders/raw/orders: staging at "
            f"s3://{bucket}/staging failed: "
        ), lines
        assert "Timeout was reached" in lines[2]
        assert lines[2].endswith(
            "; check DATAPIPE_STAGING_URL, AWS_ENDPOINT_URL and the credentials"
        ), lines
        assert "Traceback" not in run.stdout + run.stderr
        # With the server back, the next run stages and loads, and no partial object is left.
        again = subprocess.run(
            [DATAPIPE, "run", "orders"], env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stdout + again.stderr
        store = s3.filesystem()
        names = [
            info.base_name
            for info in store.get_file_info(fs.FileSelector(bucket, recursive=True))
            if info.type == fs.FileType.File
        ]
        assert names == ["orders.parquet"]


def _listening_pid(endpoint_url: str) -> int:
    """The process that serves S3 at the endpoint (SeaweedFS runs it inside `weed mini`)."""
    port = endpoint_url.rsplit(":", 1)[1]
    found = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    )
    return int(found.stdout.split("pid=")[1].split(",")[0])
