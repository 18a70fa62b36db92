"""Live progress of a run for the terminal, read from Dagster's own event log."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from datapipe_assets.cli.check_report import details, outcome
from datapipe_assets.defs.errors import failure_message

FOLLOWED = {
    # Logged as the run starts: which assets each step materializes (see _UnfinishedAssets).
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    dg.DagsterEventType.STEP_FAILURE,
}
POLL_SECONDS = 0.3


@contextmanager
def printed_progress(instance: dg.DagsterInstance, run_id: str) -> Iterator[None]:
    """Print each materialization and failure of the run as it is logged."""
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(instance, run_id, stop), daemon=True)
    follower.start()
    try:
        yield
    finally:
        stop.set()
        follower.join()


class _UnfinishedAssets:
    """Per step, the assets it was planned to materialize and has not yet."""

    def __init__(self) -> None:
        self._by_step: dict[str, list[str]] = {}

    def record(self, event: dg.DagsterEvent) -> None:
        key = event.asset_key
        if key is None:
            return
        pending, name = self._by_step.setdefault(event.step_key or "", []), key.to_user_string()
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            pending.append(name)
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and name in pending:
            pending.remove(name)

    def of(self, step_key: str | None) -> list[str]:
        return self._by_step.get(step_key or "", [])


def _follow(instance: dg.DagsterInstance, run_id: str, stop: threading.Event) -> None:
    cursor = None
    unfinished = _UnfinishedAssets()
    while True:
        finished = stop.is_set()  # read before the query, so the last events are printed
        page = instance.get_records_for_run(run_id, cursor=cursor, of_type=FOLLOWED)
        for record in page.records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            unfinished.record(event)
            if event.event_type != dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
                line = progress_line(event, unfinished.of(event.step_key))
                print(line, file=sys.stderr if event.is_step_failure else None)
        cursor = page.cursor
        if finished:
            return
        stop.wait(POLL_SECONDS)


def check_lines(evaluation: dg.AssetCheckEvaluation) -> str:
    """`check  key: name passed`, or FAILED with the figures and the failing rows below."""
    line = f"  check  {evaluation.asset_key.to_user_string()}: {evaluation.check_name}"
    if evaluation.passed:
        return f"{line} passed"
    blocking = ", blocking" if evaluation.blocking else ""
    figures = outcome(evaluation)
    failed = f"{line} FAILED ({evaluation.severity.value}{blocking})"
    return "\n".join([f"{failed}: {figures}" if figures else failed, *details(evaluation)])


def progress_line(event: dg.DagsterEvent, unfinished: list[str]) -> str:
    """A materialization's or check's line; a failure's names the assets its step left
    unmaterialized (its step key if it had none)."""
    if event.is_step_failure:
        failed = ", ".join(sorted(unfinished)) or event.step_key
        return f"  FAILED {failed}: {failure_message(event)}"
    if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        return check_lines(event.asset_check_evaluation_data)
    materialization = event.step_materialization_data.materialization
    metadata = materialization.metadata
    rows = metadata.get("rows_loaded") or metadata.get("dagster/row_count")
    count = f"{rows.value:>12,} rows" if rows is not None else ""
    return f"  done   {materialization.asset_key.to_user_string():<58} {count}"
