"""A pipeline's live runs, and the runs whose process died marked failed.

`datapipe run` executes runs in its own process, which the daemon's run monitoring does not
watch. Such a run killed with -9 (or whose machine stopped) would stay STARTED for good, and
the pipeline's schedule would skip every tick for it. So a run started by the CLI records
its process in a tag, and `fail_abandoned_runs`, called by `datapipe run`, `datapipe status`
and every schedule tick, marks a STARTED run whose process is gone as failed, with a reason.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg

from datapipe_assets.pipeline.keys import PIPELINE_TAG

# "host:pid:start": the start time tells a reused pid from the process that ran the run.
PROCESS_TAG = "datapipe/process"
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def process_tags() -> dict[str, str]:
    """Tags for a run executed in this process."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{socket.gethostname()}:{pid}:{_start_time(pid)}"}


def live_runs(instance: dg.DagsterInstance, pipeline: str) -> list[dg.DagsterRun]:
    """The pipeline's queued or running runs, once those whose process died are failed."""
    fail_abandoned_runs(instance, pipeline)
    return list(
        instance.get_runs(
            filters=dg.RunsFilter(tags={PIPELINE_TAG: pipeline}, statuses=IN_PROGRESS)
        )
    )


def fail_abandoned_runs(instance: dg.DagsterInstance, pipeline: str | None = None) -> None:
    """Mark failed every in-progress run (of one pipeline, or of all) whose process is gone."""
    tags = {PIPELINE_TAG: pipeline} if pipeline else {}
    for run in instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=IN_PROGRESS)):
        process = run.tags.get(PROCESS_TAG)
        if process is not None and _gone(process):
            host, pid, _ = process.split(":")
            instance.report_run_failed(
                run,
                message=f"the process that ran it (pid {pid} on {host}) ended without "
                "finishing it, killed or stopped; marked failed by DataPipe",
            )


def _gone(process: str) -> bool:
    """Whether a run's process has ended; a process on another machine cannot be seen."""
    host, pid, start = process.split(":")
    if host != socket.gethostname():
        return False
    return _start_time(int(pid)) != start


def _start_time(pid: int) -> str | None:
    """When a process started, in clock ticks after boot (Linux); None if there is none."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            # Field 22; the command name (field 2, in parentheses) may hold spaces.
            return stat.read_text().rpartition(")")[2].split()[19]
        except OSError:
            return None
    # Without /proc (macOS), a live pid is taken to be the same process.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""
