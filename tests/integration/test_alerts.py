"""Alerts end to end: real Dagster runs, sensors evaluated through Dagster's testing APIs, a
real SMTP server (aiosmtpd) and local HTTP servers standing in for Slack and webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from connectors.shared.http import Backoff
from datapipe_assets.defs.alerts.rules import load_alert_rules
from datapipe_assets.defs.alerts.sensors import alert_sensors
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from datapipe_assets.pipeline.secret_store import put_secret
from resources.notifications import Notifier
from tests.support.fake_http import FakeServer, Response, serve
from tests.support.project_files import run, write_project
from tests.support.smtp_server import SmtpServer, alert_mail_server

ORDERS_CSV = "id,status,amount\n1,paid,10\n2,pending,5\n"
FAILING = {"id": "bad", "type": "sql",
           "data": {"query": "SELECT CAST(status AS INTEGER) AS s FROM input"}}  # fmt: skip
NO_ROWS = {"id": "bad", "type": "filter",
           "data": {"column": "status", "operator": "eq", "value": "refunded"}}  # fmt: skip
RUN_ERROR = (
    "pipeline 'orders', node 'bad' (sql): Conversion Error: Could not convert string 'paid' "
    "to INT32 when casting from source column status"
)
PAID = {"id": "bad", "type": "filter",
        "data": {"column": "status", "operator": "eq", "value": "paid"}}  # fmt: skip
CHECK_FAILED_HOOK = {"on": "check_failed", "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}"}
SLACK_TOKEN_PATH = "/services/T0001/B0002/Xy7SecretToken"
HOOK_TOKEN = "hook-token-5521"
# aiosmtpd warns that its login is not over TLS: the test server listens on loopback only.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
FAST = Notifier(backoff=Backoff(attempts=3, base_seconds=0.001, max_seconds=0.001))


def _project(
    directory: Path,
    node: dict[str, Any],
    alerts: list[dict[str, Any]],
    org_alerts: Any = None,
    checks: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> Path:
    """One pipeline `orders` (org acme): CSV -> node -> DuckDB, with the given alerts (and
    any other pipeline `settings`)."""
    directory.mkdir(parents=True)
    (directory / "orders.csv").write_text(ORDERS_CSV)
    if org_alerts is not None:
        (directory / "alerts.yaml").write_text(yaml.safe_dump(org_alerts))
    return write_project(
        directory,
        {"src": {"connector": "csv", "config": {"path": "orders.csv"}},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {"orders.yaml": {
            "name": "orders", "org": "acme", "source": {"connection": "src", "tables": ["orders"]},
            "transform": {"nodes": [{"id": "orders", "type": "source", "data": {"table": "orders"}},
                                    node, {"id": "out", "type": "destination"}],
                          "edges": [{"source": "orders", "target": "bad"},
                                    {"source": "bad", "target": "out"}]},
            "destination": {"connection": "warehouse", "target_table": "orders_out"},
            "alerts": alerts, "checks": checks or [], **settings,
        }},
    )  # fmt: skip


def _sensors(directory: Path) -> dict[str, dg.SensorDefinition]:
    project = load_project(directory)
    assert project.errors == {}
    return {s.name: s for s in alert_sensors(load_alert_rules(project), FAST)}


def _alert_on_failed_run(
    directory: Path,
) -> tuple[dg.ExecuteInProcessResult, Any, list[dict[str, Any]]]:
    """Run the pipeline (it fails) and evaluate the failure sensor: the run, outcome, alert log."""
    sensor = _sensors(directory)["datapipe_alerts__run_failure"]
    with dg.instance_for_test() as instance:
        result = run(directory, "orders", instance)
        assert not result.success
        outcome = _on_failure(sensor, instance, result)
        return result, outcome, _alert_log(instance)


def _on_failure(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> Any:
    """Evaluate a run-failure sensor on a failed run, recording its events as the daemon does."""
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()
    return _recorded(sensor(context), instance)


def _tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    cursor: str | None,
    definitions: dg.Definitions | None = None,
) -> dg.SensorResult:
    """Evaluate a sensor as the daemon does, in the code location of `definitions`."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions)
    return _recorded(sensor(context), instance)


def _recorded(result: Any, instance: dg.DagsterInstance) -> Any:
    # The sensor daemon reports a tick's asset events this way (dagster/_daemon/sensor.py).
    for event in getattr(result, "asset_events", []):
        instance.report_runless_asset_event(event)
    return result


def _alert_log(instance: dg.DagsterInstance) -> list[dict[str, Any]]:
    """The recorded alerts of acme/orders, oldest first, as plain metadata values."""
    records = instance.fetch_observations(
        dg.AssetKey(["acme", "orders", "_alerts"]), limit=50, ascending=True
    ).records
    return [
        {k: v.value for k, v in r.asset_observation.metadata.items()}  # type: ignore[union-attr]
        for r in records
    ]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    for name in ("DATAPIPE_SMTP_HOST", "RESEND_API_KEY", "DATAPIPE_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def smtp(env: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    with alert_mail_server(env) as server:
        yield server


@pytest.fixture
def hooks(env: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """One local server for Slack's incoming webhook and a generic webhook."""
    fake = FakeServer()
    fake.route("POST", SLACK_TOKEN_PATH)(lambda request: Response(200, "ok"))
    fake.route("POST", "/hooks/datapipe")(lambda request: Response(204, b""))
    with serve(fake):
        env.setenv("SLACK_WEBHOOK_URL", fake.url + SLACK_TOKEN_PATH)
        env.setenv("ALERT_WEBHOOK_URL", f"{fake.url}/hooks/datapipe?token={HOOK_TOKEN}")
        yield fake


def _assert_no_secret(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_failure_alert_by_email(tmp_path, smtp):
    directory = _project(
        tmp_path / "p",
        FAILING,
        [{"on": ["failure", "check_failed", "zero_rows", "slow_run", "schema_change"],
          "channel": "email", "to": ["ops@example.com"], "slow_run_after": "15m",
          "after_consecutive_failures": 1}],
    )  # fmt: skip
    result, outcome, log = _alert_on_failed_run(directory)

    assert isinstance(outcome, dg.SensorResult)
    link = f"http://127.0.0.1:3000/runs/{result.run_id}"
    [mail] = smtp.messages
    assert smtp.logins == ["alerts"]
    assert (mail["From"], mail["To"]) == ("datapipe@example.com", "ops@example.com")
    assert mail["Subject"] == "[DataPipe] orders: run failed at acme/orders/bad"
    assert mail.get_content() == (
        "Pipeline: orders (org acme)\n"
        "Event: failure\n"
        "Stage: acme/orders/bad\n"
        "Error:\n"
        f"  {RUN_ERROR}\n"
        f"Run: {link}\n"
    )
    assert log == [{
        "status": "sent", "event": "failure", "channel": "email", "rule": "pipeline-0-email",
        "target": "ops@example.com", "stage": "acme/orders/bad", "run_id": result.run_id,
        "run_url": link, "error": "",
    }]  # fmt: skip
    _assert_no_secret([mail.as_string(), json.dumps(log)], smtp.password)


def test_slack_and_webhook_payloads(tmp_path, hooks, env):
    env.setenv("DATAPIPE_UI_URL", "https://dagster.example.com/")
    directory = _project(
        tmp_path / "p",
        FAILING,
        [{"on": "failure", "channel": "slack", "url": "${SLACK_WEBHOOK_URL}"},
         {"on": "failure", "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}"}],
    )  # fmt: skip
    result, _, log = _alert_on_failed_run(directory)

    link = f"https://dagster.example.com/runs/{result.run_id}"
    slack, hook = hooks.requests
    assert (slack.path, slack.json()) == (SLACK_TOKEN_PATH, {"text": (
        "[DataPipe] orders: run failed at acme/orders/bad\n"
        "Pipeline: orders (org acme)\nEvent: failure\nStage: acme/orders/bad\n"
        f"Error:\n  {RUN_ERROR}\nRun: {link}\n"
    )})  # fmt: skip
    assert (hook.path, hook.query, hook.json()) == ("/hooks/datapipe", {"token": [HOOK_TOKEN]}, {
        "event": "failure", "org": "acme", "pipeline": "orders", "run_id": result.run_id,
        "stage": "acme/orders/bad", "error": RUN_ERROR, "run_url": link,
    })  # fmt: skip
    assert [(e["status"], e["target"]) for e in log] == [
        ("sent", "${SLACK_WEBHOOK_URL}"),
        ("sent", "${ALERT_WEBHOOK_URL}"),
    ]
    _assert_no_secret([json.dumps(log)], SLACK_TOKEN_PATH, HOOK_TOKEN)


def test_webhook_url_from_the_secrets_file(tmp_path, hooks, env):
    """`${secret:NAME}` in a rule's url is read from the encrypted secrets file when the alert
    is sent; an unknown secret fails that alert alone, saying which."""
    env.setenv("DATAPIPE_MASTER_KEY", "alerts master key 7702")
    directory = _project(
        tmp_path / "p",
        FAILING,
        [{"on": "failure", "channel": "webhook", "url": "${secret:ALERT_HOOK}"},
         {"on": "failure", "channel": "webhook", "url": "${secret:MISSING_HOOK}"}],
    )  # fmt: skip
    secrets = directory / "secrets.enc.yaml"
    put_secret(secrets, "ALERT_HOOK", f"{hooks.url}/hooks/datapipe?token={HOOK_TOKEN}")
    result, _, log = _alert_on_failed_run(directory)
    assert [(r.path, r.query, r.json()["run_id"]) for r in hooks.requests] == [
        ("/hooks/datapipe", {"token": [HOOK_TOKEN]}, result.run_id)
    ]
    assert [(e["status"], e["target"], e["error"]) for e in log] == [
        ("sent", "${secret:ALERT_HOOK}", ""),
        (
            "failed",
            "${secret:MISSING_HOOK}",
            f"secret 'MISSING_HOOK' is not in {secrets}; run `datapipe secrets set MISSING_HOOK`",
        ),
    ]
    _assert_no_secret([json.dumps(log)], HOOK_TOKEN)


def test_zero_rows_alerted_once_across_ticks(tmp_path, hooks):
    directory = _project(
        tmp_path / "p",
        NO_ROWS,
        [{"on": ["zero_rows", "failure"], "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}"}],
    )
    sensor = _sensors(directory)["datapipe_alerts__events"]
    with dg.instance_for_test() as instance:
        first = _tick(sensor, instance, None)  # starts at the newest event
        result = run(directory, "orders", instance)
        assert result.success
        second = _tick(sensor, instance, first.cursor)
        third = _tick(sensor, instance, second.cursor)  # the cursor carried over: nothing new

    assert first.skip_reason is not None and third.skip_reason is not None
    assert third.asset_events == []
    [hook] = hooks.requests
    assert hook.json() == {
        "event": "zero_rows", "org": "acme", "pipeline": "orders", "run_id": result.run_id,
        "stage": "acme/orders/load/orders_out",
        "error": "0 rows loaded into acme/orders/load/orders_out",
        "run_url": f"http://127.0.0.1:3000/runs/{result.run_id}",
    }  # fmt: skip


def test_check_failed_and_schema_change_from_real_checks(tmp_path, hooks, smtp):
    directory = _project(
        tmp_path / "p",
        NO_ROWS,
        [{"on": "check_failed", "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}"},
         {"on": "schema_change", "channel": "email", "to": ["data@example.com"]}],
        checks=[{"asset": "out", "type": "schema", "on_change": "fail"}],
    )  # fmt: skip
    load = dg.AssetKey(["acme", "orders", "load", "orders_out"])

    @dg.asset_check(asset=load, name="positive_amount")
    def positive_amount() -> dg.AssetCheckResult:
        # A description that leaks a secret: alerts must mask it.
        return dg.AssetCheckResult(passed=False, description=f"3 rows < 0 (pw {smtp.password})")

    definitions = dg.Definitions.merge(
        build_definitions(load_project(directory)),
        dg.Definitions(asset_checks=[positive_amount]),
    )
    sensor = _sensors(directory)["datapipe_alerts__events"]
    job = definitions.resolve_job_def("acme__orders")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success
        # The sensor starts after that run: its failed check is history, never alerted.
        started = _tick(sensor, instance, None, definitions)
        (directory / "orders.csv").write_text("id,status,amount,note\n1,paid,10,x\n")
        result = job.execute_in_process(instance=instance)
        assert result.success  # a failed check does not fail its run
        second = _tick(sensor, instance, started.cursor, definitions)
        third = _tick(sensor, instance, second.cursor, definitions)

    stage = "acme/orders/load/orders_out check"
    assert sorted((r.json()["stage"], r.json()["error"]) for r in hooks.requests) == [
        (f"{stage} column_schema_change",
         "check column_schema_change failed (severity ERROR): Column schema changed between "
         "previous and latest materialization.\n\nAdded columns: note"),
        (f"{stage} positive_amount",
         "check positive_amount failed (severity ERROR): 3 rows < 0 (pw ***)"),
    ]  # fmt: skip
    assert {r.json()["run_id"] for r in hooks.requests} == {result.run_id}
    [mail] = smtp.messages
    assert mail["Subject"] == f"[DataPipe] orders: schema changed at {stage} column_schema_change"
    _assert_no_secret([r.body.decode() for r in hooks.requests], smtp.password)
    assert [len(second.asset_events), len(third.asset_events)] == [3, 0]


def test_check_failed_covers_rejected_rows(tmp_path, hooks):
    directory = _project(
        tmp_path / "p",
        PAID,
        [CHECK_FAILED_HOOK],
        on_bad_rows={"action": "reject", "max_rejected": 1},
    )
    (directory / "orders.csv").write_text(ORDERS_CSV + "3,paid,5,extra\n")
    sensor = _sensors(directory)["datapipe_alerts__events"]
    with dg.instance_for_test() as instance:
        started = _tick(sensor, instance, None)
        result = run(directory, "orders", instance)
        assert result.success
        _tick(sensor, instance, started.cursor)

    [hook] = hooks.requests
    assert hook.json() == {
        "event": "check_failed", "org": "acme", "pipeline": "orders", "run_id": result.run_id,
        "stage": "acme/orders/raw/orders check rejected_rows",
        "error": "check rejected_rows failed (severity WARN): 1 row rejected; first "
                 "orders.csv line 4: expected 3 fields, found 4",
        "run_url": f"http://127.0.0.1:3000/runs/{result.run_id}",
    }  # fmt: skip


def test_slow_run_finished_and_still_running(tmp_path, hooks):
    directory = _project(
        tmp_path / "p",
        NO_ROWS,
        [{"on": "slow_run", "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}",
          "slow_run_after": "0.1s"}],
    )  # fmt: skip
    sensor = _sensors(directory)["datapipe_alerts__slow_runs"]
    with dg.instance_for_test() as instance:
        first = _tick(sensor, instance, None)
        finished = run(directory, "orders", instance)
        second = _tick(sensor, instance, first.cursor)
        third = _tick(sensor, instance, second.cursor)
        # A run still going: marked started the way a run worker marks it.
        running = instance.create_run_for_job(
            build_definitions(load_project(directory)).resolve_job_def("acme__orders"),
            tags={"datapipe/pipeline": "acme__orders"},
        )
        start = dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=running.job_name)
        instance.report_dagster_event(start, run_id=running.run_id)
        time.sleep(0.2)
        fourth = _tick(sensor, instance, third.cursor)
        record = instance.get_run_record_by_id(finished.run_id)
        tags = instance.get_run_by_id(running.run_id).tags  # type: ignore[union-attr]

    assert third.asset_events == []
    took = round(record.end_time - record.start_time)  # type: ignore[union-attr,operator]
    done, going = (r.json() for r in hooks.requests)
    assert (done["run_id"], done["stage"], done["error"]) == (
        finished.run_id, "run", f"the run took {took}s, longer than slow_run_after 0.1s"
    )  # fmt: skip
    assert going["run_id"] == running.run_id
    assert going["error"].startswith("the run has been running for ")
    assert len(fourth.asset_events) == 1
    assert tags["datapipe/slow_run_alert.pipeline-0-webhook"] == "sent"


def test_failing_channel_is_retried_and_recorded(tmp_path, hooks, smtp):
    directory = _project(
        tmp_path / "p",
        FAILING,
        [{"on": "failure", "channel": "slack", "url": "${SLACK_WEBHOOK_URL}"},
         {"on": "failure", "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}"},
         {"on": "failure", "channel": "email", "to": ["ops@example.com"]}],
    )  # fmt: skip
    # Slack is down for good; the webhook fails once; the SMTP server defers once.
    hooks.interruptions += [Response(500, {"error": "down"})] * 3 + [Response(503, "busy")]
    smtp.interruptions.append("451 try again later")
    _, _, log = _alert_on_failed_run(directory)

    paths = [r.path for r in hooks.requests]
    assert paths == [SLACK_TOKEN_PATH] * 3 + ["/hooks/datapipe"] * 2
    assert len(smtp.messages) == 1
    assert [(e["channel"], e["status"]) for e in log] == [
        ("slack", "failed"), ("webhook", "sent"), ("email", "sent")
    ]  # fmt: skip
    assert log[0]["error"] == (
        "connection 'alert webhook': POST *** still failed with HTTP 500 after retries (down); "
        "try again later or lower requests_per_second"
    )
    _assert_no_secret([json.dumps(log)], SLACK_TOKEN_PATH, HOOK_TOKEN, smtp.password)


def test_org_defaults_from_alerts_yaml(tmp_path, hooks):
    directory = _project(
        tmp_path / "p",
        FAILING,
        [],
        org_alerts={"acme": [{"on": ["failure"], "channel": "webhook",
                              "url": "${ALERT_WEBHOOK_URL}"}],
                    "other": [{"on": ["failure"], "channel": "email", "to": ["x@example.com"]}]},
    )  # fmt: skip
    result, _, log = _alert_on_failed_run(directory)

    [hook] = hooks.requests
    assert hook.json()["run_id"] == result.run_id
    assert [e["rule"] for e in log] == ["org-0-webhook"]


def test_invalid_alerts_yaml_is_reported(tmp_path):
    directory = _project(
        tmp_path / "p", NO_ROWS, [], org_alerts={"acme": [{"on": ["failure"], "channel": "slack"}]}
    )
    project = load_project(directory)
    assert load_alert_rules(project) == {}
    [error] = next(v for k, v in project.errors.items() if k.endswith("alerts.yaml"))
    assert (error.path, error.message) == ("acme[0]", "a slack alert needs a `url`")


def test_alert_after_consecutive_failures(tmp_path, hooks):
    directory = _project(
        tmp_path / "p",
        FAILING,
        [{"on": "failure", "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}",
          "after_consecutive_failures": 2}],
    )  # fmt: skip
    sensor = _sensors(directory)["datapipe_alerts__run_failure"]
    with dg.instance_for_test() as instance:
        first = _on_failure(sensor, instance, run(directory, "orders", instance))
        second_run = run(directory, "orders", instance)
        second = _on_failure(sensor, instance, second_run)

    assert isinstance(first, dg.SkipReason) and isinstance(second, dg.SensorResult)
    [hook] = hooks.requests
    assert hook.json()["run_id"] == second_run.run_id


def test_email_through_resend(tmp_path, env):
    resend = FakeServer()
    resend.route("POST", "/emails")(lambda request: Response(200, {"id": "email-1"}))
    directory = _project(
        tmp_path / "p", FAILING, [{"on": "failure", "channel": "email", "to": ["ops@example.com"]}]
    )
    with serve(resend):
        env.setenv("RESEND_API_KEY", "re_secret_123")
        env.setenv("RESEND_BASE_URL", resend.url)
        env.setenv("DATAPIPE_SMTP_FROM", "datapipe@example.com")
        result, _, log = _alert_on_failed_run(directory)

    [request] = resend.requests
    assert request.headers["authorization"] == "Bearer re_secret_123"
    body = request.json()
    assert (body["from"], body["to"]) == ("datapipe@example.com", ["ops@example.com"])
    assert body["subject"] == "[DataPipe] orders: run failed at acme/orders/bad"
    assert log[0]["status"] == "sent"
    assert body["text"].endswith(f"Run: http://127.0.0.1:3000/runs/{result.run_id}\n")


def test_failure_alert_from_postgres_run_storage(tmp_path, hooks, postgres, pg_database):
    """The same failure alert, with Dagster's runs and events in real PostgreSQL storage."""
    alert = {"on": "failure", "channel": "webhook", "url": "${ALERT_WEBHOOK_URL}"}
    directory = _project(tmp_path / "p", FAILING, [alert])
    sensor = _sensors(directory)["datapipe_alerts__run_failure"]
    storage = {"postgres_db": {"hostname": postgres.host, "port": postgres.port,
                               "username": postgres.user, "password": postgres.password,
                               "db_name": pg_database}}  # fmt: skip
    with dg.instance_for_test(overrides={"storage": {"postgres": storage}}) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = run(directory, "orders", instance)
        _on_failure(sensor, instance, result)
        log = _alert_log(instance)
    (hook,) = hooks.requests
    assert (hook.json()["run_id"], hook.json()["stage"]) == (result.run_id, "acme/orders/bad")
    assert [entry["status"] for entry in log] == ["sent"]


def test_check_alert_from_postgres_event_log(tmp_path, hooks, postgres, pg_database):
    """A failed check from the pipeline file, alerted once, with Dagster's storage in PostgreSQL."""
    directory = _project(
        tmp_path / "p",
        PAID,
        [CHECK_FAILED_HOOK],
        checks=[{"asset": "bad", "type": "expression", "expression": "amount > 10",
                 "name": "big_enough"}],
    )  # fmt: skip
    sensor = _sensors(directory)["datapipe_alerts__events"]
    storage = {"postgres_db": {"hostname": postgres.host, "port": postgres.port,
                               "username": postgres.user, "password": postgres.password,
                               "db_name": pg_database}}  # fmt: skip
    with dg.instance_for_test(overrides={"storage": {"postgres": storage}}) as instance:
        started = _tick(sensor, instance, None)
        result = run(directory, "orders", instance)
        second = _tick(sensor, instance, started.cursor)
        third = _tick(sensor, instance, second.cursor)
        # A stream the cursor does not know yet (as after an upgrade) starts at its newest
        # record rather than alerting on its history.
        known = {k: v for k, v in json.loads(second.cursor).items() if not k.startswith("runs/")}
        fresh = _tick(sensor, instance, json.dumps(known))
        log = _alert_log(instance)
    assert result.success
    assert fresh.asset_events == []
    assert json.loads(fresh.cursor) == json.loads(second.cursor)
    [hook] = hooks.requests
    assert hook.json() == {
        "event": "check_failed", "org": "acme", "pipeline": "orders", "run_id": result.run_id,
        "stage": "acme/orders/bad check big_enough",
        "error": "check big_enough failed (severity ERROR)",
        "run_url": f"http://127.0.0.1:3000/runs/{result.run_id}",
    }  # fmt: skip
    assert third.asset_events == []
    assert [(entry["event"], entry["status"]) for entry in log] == [("check_failed", "sent")]
