"""`datapipe run`'s own timeout: its runs execute in this process, where no daemon stops them.

When a run outlasts its pipeline's `timeout`, it is marked canceling with the reason and
interrupted (SIGINT, which Dagster turns into an interrupt of the running step); once it has
ended it is reported as failed, "timed out after N s". A step blocked where no interrupt
reaches it (a read from a server that stopped answering) gets GRACE_SECONDS to notice; then
the run is reported as failed all the same and the process exits with status 1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from datapipe_assets.pipeline.spec import Pipeline, timeout_seconds

# How long an interrupted run may take to stop before the process ends without it.
GRACE_SECONDS = 10.0
# How often the watchdog looks whether the run has started, once its time is up.
POLL_SECONDS = 0.1


class _Watchdog:
    def __init__(self, instance: dg.DagsterInstance, run_id: str, pipeline: Pipeline) -> None:
        self.instance, self.run_id, self.name = instance, run_id, pipeline.name
        self.seconds = timeout_seconds(pipeline.timeout)
        self.reason = f"timed out after {self.seconds:g} s"
        self.expired = False
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def watch(self) -> None:
        if self.finished.wait(self.seconds):
            return
        run = self._started_run()
        if run is None:
            return
        with self._lock:
            if self.finished.is_set():
                return
            self.expired = True
            self.instance.report_run_canceling(run, message=f"{self.reason}; stopping the run")
            print(f"{self.name}: {self.reason} (its timeout); stopping the run", file=sys.stderr)
            os.kill(os.getpid(), signal.SIGINT)
        if self.finished.wait(GRACE_SECONDS):
            return
        # A step is blocked where no interrupt reaches it: end the process without it.
        stuck = f"a step did not stop within {GRACE_SECONDS:g} s, so its process ended"
        self.instance.report_run_failed(run, f"{self.reason}; {stuck}")
        print(f"{self.name}: run {self.run_id} FAILED: {self.reason}", flush=True)
        sys.stderr.flush()
        os._exit(1)

    def _started_run(self) -> dg.DagsterRun | None:
        """The run once it has started (interrupting before would stop this command instead);
        None when it has ended meanwhile."""
        while not self.finished.is_set():
            run = self.instance.get_run_by_id(self.run_id)
            if run is not None and run.is_finished:
                return None
            if run is not None and run.status == dg.DagsterRunStatus.STARTED:
                return run
            self.finished.wait(POLL_SECONDS)
        return None

    def end(self) -> None:
        with self._lock:
            self.finished.set()
        if self.expired:
            run = self.instance.get_run_by_id(self.run_id)
            if run is not None:
                self.instance.report_run_failed(run, self.reason)


@contextmanager
def run_timeout(instance: dg.DagsterInstance, run_id: str, pipeline: Pipeline) -> Iterator[None]:
    """Stop the in-process run `run_id` once it outlasts the pipeline's timeout."""
    watchdog = _Watchdog(instance, run_id, pipeline)
    thread = threading.Thread(target=watchdog.watch, name="run-timeout", daemon=True)
    thread.start()
    try:
        yield
    finally:
        watchdog.end()
        thread.join()
