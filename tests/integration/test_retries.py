"""Retries of a run's steps: a transient failure is tried again after the pipeline's delays,
any other fails the step at once; the event log shows every attempt with its reason."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from connectors.shared.http import Backoff
from connectors.sources.rest_api import RestApiSource
from tests.support.fake_http import FakeServer, Response, serve
from tests.support.project_files import failure_messages, run, write_project

ITEMS = [{"id": 1, "name": "bolt"}, {"id": 2, "name": "nut"}]
STEP = "default__items__raw__items"
DELAYS = [0.05, 0.1, 0.2]


@pytest.fixture(autouse=True)
def one_request_a_try(monkeypatch: pytest.MonkeyPatch) -> None:
    """The REST connector's own quick retries of each request, off: every failed request
    then fails the step, so each step attempt shows in the fake's requests."""
    monkeypatch.setattr(RestApiSource, "backoff", Backoff(attempts=1))


def items_api() -> FakeServer:
    fake = FakeServer()
    fake.route("GET", "/items")(lambda request: Response(200, {"data": ITEMS}))
    return fake


def items_project(directory: Path, url: str, retries: dict | None = None) -> Path:
    source = {
        "connector": "rest_api",
        "config": {
            "base_url": url,
            "endpoints": {"items": {"path": "/items", "data_path": "data"}},
        },
        "tables": ["items"],
    }
    pipeline = {
        "name": "items",
        "source": source,
        "destination": {"connection": "warehouse", "load_mode": "replace"},
        "retries": retries or {"max": 3, "delays": DELAYS},
    }
    return write_project(
        directory,
        {"warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {"items.yaml": pipeline},
    )


def step_events(
    instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType
) -> list[dg.DagsterEvent]:
    return [
        record.event_log_entry.dagster_event
        for record in instance.get_records_for_run(run_id, of_type=kind).records
        if record.event_log_entry.dagster_event is not None
    ]


def attempt_lines(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """The run's log lines about attempts, with their level."""
    return [
        (logging.getLevelName(entry.level), entry.user_message)
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is None and entry.user_message.startswith("attempt ")
    ]


def loaded_items(directory: Path) -> list[tuple]:
    with duckdb.connect(str(directory / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT id, name FROM items ORDER BY id").fetchall()


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))


def test_two_503_then_200_succeeds_on_the_third_attempt(tmp_path, staging):
    fake = items_api()
    fake.interruptions = [Response(503, {"message": "warming up"}) for _ in range(2)]
    with serve(fake), dg.instance_for_test() as instance:
        directory = items_project(tmp_path / "pipelines", fake.url)
        result = run(directory, "items", instance)
        assert result.success
        retries = step_events(instance, result.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
        restarts = step_events(instance, result.run_id, dg.DagsterEventType.STEP_RESTARTED)
        lines = attempt_lines(instance, result.run_id)
    reason = (
        "connection 'items.source': GET /items still failed with HTTP 503 after "
        "retries (warming up); try again later or lower requests_per_second"
    )
    assert [(e.step_key, e.step_retry_data.seconds_to_wait) for e in retries] == [
        (STEP, 0.05),
        (STEP, 0.1),
    ]
    # Each retry event carries the failure that asked for it, as its cause.
    assert [e.step_retry_data.error.cause.message.strip() for e in retries] == [
        f"dagster._core.definitions.events.Failure: {reason}"
    ] * 2
    assert [e.step_key for e in restarts] == [STEP, STEP]
    assert lines == [
        ("WARNING", f"attempt 1 of 4 failed, attempt 2 in 0.05 s: {reason}"),
        ("WARNING", f"attempt 2 of 4 failed, attempt 3 in 0.1 s: {reason}"),
    ]
    assert [r.path for r in fake.requests] == ["/items"] * 3
    assert loaded_items(tmp_path / "pipelines") == [(1, "bolt"), (2, "nut")]


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (
            401,
            "credentials rejected for connection 'items.source' (HTTP 401 on GET "
            "/items); check auth_type and headers",
        ),
        (
            400,
            "connection 'items.source': GET /items failed with HTTP 400 (bad filter); "
            "check the connection's settings",
        ),
    ],
)
def test_a_client_error_fails_after_one_attempt(tmp_path, staging, status, reason):
    fake = items_api()
    fake.interruptions = [Response(status, {"message": "bad filter"})]
    with serve(fake), dg.instance_for_test() as instance:
        directory = items_project(tmp_path / "pipelines", fake.url)
        result = run(directory, "items", instance)
        assert not result.success
        retries = step_events(instance, result.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
        lines = attempt_lines(instance, result.run_id)
    assert retries == []
    not_retried = f"attempt 1 of 4 failed, not retried (not a transient error): {reason}"
    assert lines == [("ERROR", not_retried)]
    assert failure_messages(result) == [reason]
    assert len(fake.requests) == 1


def test_a_transient_failure_that_lasts_fails_after_the_last_retry(tmp_path, staging):
    fake = items_api()
    fake.interruptions = [Response(502, "bad gateway") for _ in range(10)]
    with serve(fake), dg.instance_for_test() as instance:
        directory = items_project(tmp_path / "pipelines", fake.url, {"max": 2, "delays": [0]})
        result = run(directory, "items", instance)
        assert not result.success
        retries = step_events(instance, result.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY)
        lines = attempt_lines(instance, result.run_id)
    reason = (
        "connection 'items.source': GET /items still failed with HTTP 502 after "
        "retries; try again later or lower requests_per_second"
    )
    # A list of delays shorter than max repeats its last one.
    assert [e.step_retry_data.seconds_to_wait for e in retries] == [0, 0]
    assert lines == [
        ("WARNING", f"attempt 1 of 3 failed, attempt 2 in 0 s: {reason}"),
        ("WARNING", f"attempt 2 of 3 failed, attempt 3 in 0 s: {reason}"),
        ("ERROR", f"attempt 3 of 3 failed, no retry left: {reason}"),
    ]
    assert failure_messages(result) == [reason]
    assert len(fake.requests) == 3


def test_no_retry_with_max_zero(tmp_path, staging):
    fake = items_api()
    fake.interruptions = [Response(503, "down")]
    with serve(fake), dg.instance_for_test() as instance:
        directory = items_project(tmp_path / "pipelines", fake.url, {"max": 0})
        result = run(directory, "items", instance)
    assert not result.success
    assert len(fake.requests) == 1
