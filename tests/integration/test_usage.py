"""Usage per org, pipeline and month, the monthly row limit and its alert, and Stripe meter
events, end to end: `datapipe run` on real CSV files into DuckDB, Dagster's event storage,
a real SMTP server and a local server speaking Stripe's meter-events API."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from datapipe_assets.cli.instance import dagster_instance
from datapipe_assets.cli.main import main
from datapipe_assets.defs.alerts.rules import load_alert_rules
from datapipe_assets.defs.alerts.sensors import alert_sensors
from datapipe_assets.defs.billing import event_identifier
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.defs.usage import month_usage, recorded_orgs
from datapipe_assets.pipeline.project import load_project
from datapipe_assets.pipeline.secret_store import put_secret
from datapipe_assets.pipeline.usage import UsageLine, month_of, next_month
from resources.notifications import Notifier
from tests.support.fake_http import serve
from tests.support.fake_stripe_meters import MeterFake
from tests.support.fake_stripe_prices import API_KEY
from tests.support.project_files import (
    PAID_ONLY_TRANSFORM,
    cli_folder,
    failure_messages,
    run,
    write_project,
)
from tests.support.smtp_server import SmtpServer, alert_mail_server

# 4 orders, 3 of them paid: `orders` extracts 4 rows and loads 3.
ORDERS_CSV = "id,status,amount\n1,paid,10\n2,pending,5\n3,paid,7\n4,paid,1\n"
REFUNDS_CSV = "id,amount\n1,3\n2,4\n"
PAYMENTS_CSV = "id,amount\n1,1\n2,2\n3,3\n4,4\n5,5\n"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def _pipeline(name: str, org: str, **settings: Any) -> dict[str, Any]:
    """A pipeline reading data/NAME.csv; with a transform, it loads NAME_out, else NAME."""
    destination = {"connection": "warehouse"}
    if "transform" in settings:
        destination["target_table"] = f"{name}_out"
    return {
        "name": name,
        "org": org,
        "source": {"connection": f"{name}_csv", "tables": [name]},
        "destination": destination,
        **settings,
    }


def _write(directory: Path, orgs: dict[str, Any], **orders: Any) -> None:
    """Three pipelines: acme's orders (paid orders only) and refunds, beta's payments."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    for name, text in (("orders", ORDERS_CSV), ("refunds", REFUNDS_CSV),
                       ("payments", PAYMENTS_CSV)):  # fmt: skip
        (directory / "data" / f"{name}.csv").write_text(text)
    (directory / "orgs.yaml").write_text(yaml.safe_dump(orgs))
    write_project(
        directory,
        {**{f"{name}_csv": {"connector": "csv", "config": {"path": f"data/{name}.csv"}}
            for name in ("orders", "refunds", "payments")},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {"orders.yaml": _pipeline("orders", "acme", transform=PAID_ONLY_TRANSFORM, **orders),
         "refunds.yaml": _pipeline("refunds", "acme"),
         "payments.yaml": _pipeline("payments", "beta")},
    )  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = cli_folder(tmp_path, monkeypatch)
    for name in ("DATAPIPE_SMTP_HOST", "RESEND_API_KEY", "DATAPIPE_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    return directory


def _run(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`datapipe run NAME`: its exit code, its run id and what it wrote to stderr."""
    code = main(["run", name])
    out, err = capsys.readouterr()
    run_id = out.splitlines()[-1].split()[2]
    return code, run_id, err


def _usage(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["usage", *args])
    return code, capsys.readouterr().out.splitlines()


def _observations(org: str) -> list[dict[str, Any]]:
    with dagster_instance() as instance:
        records = instance.fetch_observations(
            dg.AssetKey([org, "_usage"]), limit=100, ascending=True
        ).records
    return [
        {k: v.value for k, v in r.asset_observation.metadata.items()}  # type: ignore[union-attr]
        for r in records
    ]


def test_usage_per_org_pipeline_and_month_after_two_runs_of_each(folder, capsys):
    _write(folder, {"orgs": {"acme": {"plan": "pro", "max_rows_per_month": 1000},
                             "beta": {"plan": "free"}}})  # fmt: skip
    month = month_of(time.time())
    run_ids: dict[str, list[str]] = {}
    for name in ("orders", "refunds", "payments") * 2:
        code, run_id, err = _run(name, capsys)
        assert (code, err) == (0, ""), err
        run_ids.setdefault(name, []).append(run_id)

    assert _usage(capsys) == (0, [
        "org   pipeline  month    rows extracted  rows loaded  monthly limit  used",
        f"acme  orders    {month}               8            6",
        f"acme  refunds   {month}               4            4",
        f"acme  (total)   {month}              12           10          1,000  1.0%",
        f"beta  payments  {month}              10           10",
        f"beta  (total)   {month}              10           10      unlimited     -",
    ])  # fmt: skip
    assert _usage(capsys, "--org", "beta", "--month", month) == (0, [
        "org   pipeline  month    rows extracted  rows loaded  monthly limit  used",
        f"beta  payments  {month}              10           10",
        f"beta  (total)   {month}              10           10      unlimited     -",
    ])  # fmt: skip
    # Another month has none of these rows; each org still shows its limit.
    assert _usage(capsys, "--month", "2026-01") == (0, [
        "org   pipeline  month    rows extracted  rows loaded  monthly limit  used",
        "acme  (total)   2026-01               0            0          1,000  0.0%",
        "beta  (total)   2026-01               0            0      unlimited     -",
    ])  # fmt: skip

    # The durable record: one observation per table extracted and per table loaded.
    first, second = run_ids["orders"]
    assert _observations("acme")[:2] == [
        {"pipeline": "orders", "table": "orders", "month": month, "run_id": first,
         "rows_extracted": 4, "rows_loaded": 0},
        {"pipeline": "orders", "table": "orders_out", "month": month, "run_id": first,
         "rows_loaded": 3, "rows_extracted": 0},
    ]  # fmt: skip
    assert len(_observations("acme")) == 8
    # And the raw asset's own metadata: rows read from the source, next to rows staged.
    with dagster_instance() as instance:
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["acme", "orders", "raw", "orders"])
        )
    assert event is not None and event.run_id == second
    metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
    assert (metadata["rows_extracted"].value, metadata["dagster/row_count"].value) == (4, 4)


def test_usage_of_an_unknown_org_and_a_bad_month_are_one_line_errors(folder, capsys):
    _write(folder, {"orgs": {"acme": {"plan": "pro"}, "beta": {"plan": "free"}}})
    assert main(["usage", "--org", "acne"]) == 1
    assert capsys.readouterr().err == (
        "error: no org named 'acne' in orgs.yaml and no usage recorded for it; orgs: acme, beta\n"
    )
    with pytest.raises(SystemExit) as exit_:
        main(["usage", "--month", "2026-13"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "datapipe usage: error: argument --month: must be a month like 2026-12, not '2026-13'"
    )


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    with alert_mail_server(monkeypatch) as server:
        yield server


def test_a_reached_monthly_limit_refuses_runs_and_alerts(folder, capsys, smtp):
    alert = {"on": ["usage_limit"], "channel": "email", "to": ["billing@example.com"]}
    # Two runs of orders load 3 + 3 rows: acme's 6 rows for the month are used.
    _write(folder, {"orgs": {"acme": {"plan": "pro", "max_rows_per_month": 6},
                             "beta": {"plan": "free", "max_rows_per_month": 6}}},
           alerts=[alert], schedule="0 * * * *")  # fmt: skip
    month = month_of(time.time())
    assert [_run("orders", capsys)[0] for _ in range(2)] == [0, 0]
    # The schedule's next tick still starts a run: its refusal is what alerts.
    assert _tick(folder) == dg.RunRequest()

    code, run_id, err = _run("orders", capsys)
    message = (
        f"pipeline 'orders': org 'acme' has used 6 of its 6 rows for {month}; runs resume on "
        f"{next_month(month)}-01 or raise max_rows_per_month in orgs.yaml"
    )
    assert (code, err) == (1, f"  FAILED acme/orders/raw/orders: {message}\n")
    # Every pipeline of the org is refused; another org's run is not.
    assert _run("refunds", capsys)[0] == 1
    assert _run("payments", capsys)[0] == 0

    project = load_project(folder)
    [sensor] = alert_sensors(load_alert_rules(project), Notifier())
    with dagster_instance() as instance:
        run = instance.get_run_by_id(run_id)
        [failure] = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=failure.event_log_entry.dagster_event,  # type: ignore[arg-type]
            dagster_instance=instance,
            dagster_run=run,  # type: ignore[arg-type]
        ).for_run_failure()
        assert isinstance(sensor(context), dg.SensorResult)
    [mail] = smtp.messages
    assert (mail["To"], mail["Subject"]) == (
        "billing@example.com",
        "[DataPipe] orders: monthly limit reached at acme/orders/raw/orders",
    )
    assert mail.get_content() == (
        "Pipeline: orders (org acme)\n"
        "Event: usage_limit\n"
        "Stage: acme/orders/raw/orders\n"
        "Error:\n"
        f"  {message}\n"
        f"Run: http://127.0.0.1:3000/runs/{run_id}\n"
    )
    assert _usage(capsys, "--org", "acme")[1][-1] == (
        f"acme  (total)   {month}               8            6              6  100.0%"
    )
    # Once a run was refused, the schedule skips its ticks rather than alert on each.
    assert _tick(folder) == dg.SkipReason(message)


def _tick(folder: Path) -> Any:
    """The orders schedule's evaluation, now."""
    schedule = build_definitions(load_project(folder)).resolve_schedule_def(
        "acme__orders__schedule"
    )
    with dagster_instance() as instance:
        return schedule(dg.build_schedule_context(instance=instance))


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[MeterFake]:
    fake = MeterFake()
    with serve(fake.server):
        monkeypatch.setenv("STRIPE_BILLING_KEY", API_KEY)
        yield fake


def _warnings(run_id: str) -> list[str]:
    with dagster_instance() as instance:
        records = instance.get_records_for_run(run_id).records
    return [
        r.event_log_entry.user_message
        for r in records
        if r.event_log_entry.level == logging.WARNING
    ]


def _metered(folder: Path, stripe: MeterFake) -> None:
    """acme's rows billed to Stripe customer cus_acme, meter rows_synced; beta's not."""
    _write(folder, {
        "billing": {"stripe_api_key": "${STRIPE_BILLING_KEY}", "api_base": stripe.server.url},
        "orgs": {"acme": {"plan": "pro", "stripe_customer_id": "cus_acme",
                          "meter": "rows_synced"},
                 "beta": {"plan": "free"}},
    })  # fmt: skip


def test_loaded_rows_are_reported_to_stripe_once_even_when_it_is_down(folder, capsys, stripe):
    _metered(folder, stripe)

    def event(run_id: str, table: str, value: str) -> dict[str, Any]:
        identifier = event_identifier(run_id, table.removesuffix("_out"), table)  # its pipeline
        return {"event_name": "rows_synced", "customer": "cus_acme", "value": value,
                "identifier": identifier}  # fmt: skip

    def received() -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "timestamp"} for e in stripe.received]

    started = int(time.time())
    code, up, _ = _run("orders", capsys)
    assert code == 0 and received() == [event(up, "orders_out", "3")]
    assert started <= stripe.received[0]["timestamp"] <= time.time()
    # beta has no meter: its loads are not reported.
    assert _run("payments", capsys)[0] == 0 and len(stripe.received) == 1

    # Stripe takes the event, but its answer is lost: the library's two retries send the
    # same identifier, and the run records the event pending; the load has committed.
    stripe.mode = "lost"
    code, lost, _ = _run("refunds", capsys)
    assert code == 0 and received()[1:] == [event(lost, "refunds", "2")] * 3
    # Stripe is down: the run succeeds, warns and records the event pending.
    stripe.mode = "down"
    code, down, _ = _run("orders", capsys)
    assert code == 0 and received()[4:] == [event(down, "orders_out", "3")] * 3
    assert _warnings(down) == [
        f"org 'acme': 3 rows loaded into orders_out by pipeline 'orders' (run {down}) not "
        "reported to Stripe meter 'rows_synced': HTTP 503: Stripe is unavailable (test); it "
        "is sent again by the org's next run or `datapipe usage --report`"
    ]
    assert [o.get("stripe_status") for o in _observations("acme")] == [
        None,
        "reported",
        None,
        "pending",
        None,
        "pending",
    ]

    # A report while Stripe is still down stops at the first event and exits 1.
    assert main(["usage", "--report"]) == 1
    out, err = capsys.readouterr()
    assert out == "acme: 0 pending meter event(s) sent to Stripe, 2 still pending\n"
    assert err.startswith("warning: org 'acme': 2 rows of event ")
    assert len(stripe.received) == 10

    # Stripe is back: the next run reports its own load, then what Stripe missed.
    stripe.mode = "up"
    code, back, _ = _run("orders", capsys)
    assert code == 0
    assert received()[10:] == [
        event(back, "orders_out", "3"), event(lost, "refunds", "2"),
        event(down, "orders_out", "3"),
    ]  # fmt: skip
    # Nothing is left to send, and the lost event was counted once.
    assert _usage(capsys, "--report") == (
        0,
        ["acme: 0 pending meter event(s) sent to Stripe, 0 still pending"],
    )
    assert len(stripe.received) == 13
    assert stripe.totals() == {("rows_synced", "cus_acme"): 3 + 2 + 3 + 3}
    # The billing key is in no log line and no record.
    with dagster_instance() as instance:
        for run_id in (up, lost, down, back):
            for record in instance.get_records_for_run(run_id).records:
                assert API_KEY not in str(record.event_log_entry)


def test_usage_and_the_limit_on_postgres_storage(tmp_path, monkeypatch, postgres, pg_database):
    """The same records and refusal with Dagster's events in real PostgreSQL storage."""
    folder = cli_folder(tmp_path, monkeypatch)
    _write(folder, {"orgs": {"acme": {"plan": "pro", "max_rows_per_month": 5},
                             "beta": {"plan": "free"}}})  # fmt: skip
    month = month_of(time.time())
    server = {"hostname": postgres.host, "port": postgres.port, "db_name": pg_database,
              "username": postgres.user, "password": postgres.password}  # fmt: skip
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_db": server}}}) as pg:
        assert type(pg.event_log_storage).__name__ == "PostgresEventLogStorage"
        # orders loads 3 rows and refunds 2: acme's 5 rows are used.
        results = [run(folder, name, pg) for name in ("orders", "refunds", "orders", "payments")]
        assert [result.success for result in results] == [True, True, False, True]
        assert failure_messages(results[2]) == [
            f"pipeline 'orders': org 'acme' has used 5 of its 5 rows for {month}; runs resume "
            f"on {next_month(month)}-01 or raise max_rows_per_month in orgs.yaml"
        ]
        assert month_usage(pg, "acme", month) == [
            UsageLine("acme", "orders", month, 4, 3), UsageLine("acme", "refunds", month, 2, 2)
        ]  # fmt: skip
        assert month_usage(pg, "beta", month) == [UsageLine("beta", "payments", month, 5, 5)]
        assert recorded_orgs(pg) == ["acme", "beta"]


def test_the_billing_key_from_secrets_or_an_unset_one(folder, capsys, stripe, monkeypatch):
    """`${secret:NAME}` resolves as for connections; a key that cannot be resolved leaves
    the load done and its event pending, with a warning that names what to fix."""
    monkeypatch.setenv("DATAPIPE_MASTER_KEY", "billing master 5120")
    billing = {"stripe_api_key": "${secret:stripe_billing}", "api_base": stripe.server.url}
    orgs = {"acme": {"plan": "pro", "stripe_customer_id": "cus_acme", "meter": "rows_synced"},
            "beta": {"plan": "free"}}  # fmt: skip
    _write(folder, {"billing": billing, "orgs": orgs})
    put_secret(folder / "secrets.enc.yaml", "stripe_billing", API_KEY)
    code, first, _ = _run("refunds", capsys)
    assert code == 0 and [e["identifier"] for e in stripe.received] == [
        event_identifier(first, "refunds", "refunds")
    ]

    unset = {**billing, "stripe_api_key": "${UNSET_BILLING_KEY}"}
    _write(folder, {"billing": unset, "orgs": orgs})
    code, second, _ = _run("refunds", capsys)
    assert code == 0 and len(stripe.received) == 1
    assert _warnings(second) == [
        f"org 'acme': 2 rows loaded into refunds by pipeline 'refunds' (run {second}) not "
        "reported to Stripe meter 'rows_synced': connection 'orgs.yaml billing': environment "
        "variable UNSET_BILLING_KEY (for 'api_key') is not set; export it before running; it "
        "is sent again by the org's next run or `datapipe usage --report`"
    ]
    assert _observations("acme")[-1]["stripe_status"] == "pending"


def test_an_event_stripe_refuses_does_not_hold_back_the_others(folder, capsys, stripe):
    _metered(folder, stripe)
    stripe.mode = "down"
    runs = [_run(name, capsys) for name in ("orders", "refunds")]
    assert [code for code, _, _ in runs] == [0, 0] and stripe.counted == {}
    orders, refunds = (run_id for _, run_id, _ in runs)
    refused = event_identifier(orders, "orders", "orders_out")
    stripe.mode, stripe.refused = "up", {refused}

    assert main(["usage", "--report"]) == 1
    out, err = capsys.readouterr()
    assert out == "acme: 1 pending meter event(s) sent to Stripe, 1 still pending\n"
    assert err == (
        f"warning: org 'acme': 3 rows of event {refused} not reported to Stripe meter "
        "'rows_synced': HTTP 400: No such customer: 'cus_acme'; it is sent again by the org's "
        "next run or `datapipe usage --report`\n"
    )
    assert list(stripe.counted) == [event_identifier(refunds, "refunds", "refunds")]
