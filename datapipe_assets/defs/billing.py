"""Rows loaded reported to Stripe billing, for orgs with a `stripe_customer_id` and a `meter`.

Each load is reported once its rows are committed, from the step that loaded them: one meter
event per table and run, its identifier derived from both, so a step retried or an event
sent again is counted once by Stripe. A report that fails never fails the load (its rows are
in the destination): it is logged as a warning and recorded `pending` on the org's usage
record, and sent again, with its original identifier and time, by the org's next run that
reaches Stripe or by `datapipe usage --report`. A sent event is recorded `reported`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from pathlib import Path

import dagster as dg

from connectors.base import ConnectorError
from datapipe_assets.defs.usage import ROWS_LOADED, metadata_values, org_records, usage_key
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.orgs import Orgs
from resources.stripe_meter import MeterError, MeterEvent, StripeMeter

STRIPE_ID = "stripe_identifier"
STRIPE_STATUS = "stripe_status"
STRIPE_METER = "stripe_meter"
STRIPE_CUSTOMER = "stripe_customer"
REPORTED, PENDING = "reported", "pending"
# What one send did.
SENT, RETRY, REFUSED = "sent", "retry", "refused"
# Stripe takes events of the past 35 days; older pending events can no longer be sent.
RESEND_WINDOW = timedelta(days=35) - timedelta(hours=1)

Record = Callable[[dg.AssetObservation], None]


class Billing:
    """Where an org's rows are billed, and the warnings a failed report is logged as."""

    def __init__(self, orgs: Orgs, secrets_file: Path, warn: Callable[[str], None]) -> None:
        self._orgs, self._secrets_file, self._warn = orgs, secrets_file, warn

    def metered(self, org: str) -> bool:
        spec = self._orgs.spec(org)
        return spec is not None and spec.meter is not None and self._orgs.billing is not None

    def event(self, org: str, identifier: str, rows: int, timestamp: float) -> MeterEvent:
        spec = self._orgs.spec(org)
        assert spec is not None and spec.meter is not None and spec.stripe_customer_id is not None
        return MeterEvent(spec.meter, spec.stripe_customer_id, rows, identifier, int(timestamp))

    def send(self, org: str, event: MeterEvent, what: str) -> str:
        """Send one event: SENT, or with a warning naming `what` was not reported, RETRY
        (Stripe unreachable or failing, or no key: the next events would fail alike) or
        REFUSED (Stripe refused this event)."""
        billing = self._orgs.billing
        assert billing is not None
        try:
            StripeMeter(self._api_key, billing.api_base).send(event)
            return SENT
        except (ConnectorError, MeterError) as error:
            self._warn(
                f"org {org!r}: {what} not reported to Stripe meter {event.event_name!r}: "
                f"{error}; it is sent again by the org's next run or `datapipe usage --report`"
            )
            return REFUSED if isinstance(error, MeterError) and not error.transient else RETRY

    @cached_property
    def _api_key(self) -> str:
        """The billing key, read once for all of a step's sends (a secret's decryption derives
        the master key, which is slow): `${ENV}` and `${secret:NAME}` resolve as they do for
        a connection's config. ConnectorError, not cached, when it cannot be read."""
        billing, file = self._orgs.billing, self._orgs.file
        assert billing is not None and file is not None
        config = {"api_key": billing.stripe_api_key}
        secrets = self._secrets_file
        spec = ConnectionSpec("orgs.yaml billing", "stripe", config, file.parent, secrets)
        return str(spec.resolve()["api_key"])


def event_identifier(run_id: str, pipeline: str, table: str) -> str:
    """Unique per run and table, within Stripe's 100 characters whatever the names."""
    digest = hashlib.sha256(f"{pipeline}/{table}".encode()).hexdigest()[:16]
    return f"datapipe-{run_id}-{digest}"


def report_load(
    billing: Billing, org: str, pipeline: str, table: str, run_id: str, rows: int
) -> dict[str, str]:
    """Report a committed load's rows; what the load's usage record says of the report."""
    if rows == 0 or not billing.metered(org):
        return {}
    event = billing.event(org, event_identifier(run_id, pipeline, table), rows, time.time())
    what = f"{rows:,} rows loaded into {table} by pipeline {pipeline!r} (run {run_id})"
    status = REPORTED if billing.send(org, event, what) == SENT else PENDING
    return {
        STRIPE_ID: event.identifier,
        STRIPE_STATUS: status,
        STRIPE_METER: event.event_name,
        STRIPE_CUSTOMER: event.customer,
    }


def pending_events(instance: dg.DagsterInstance, org: str) -> list[MeterEvent]:
    """An org's events recorded pending and not reported since, oldest first."""
    since = time.time() - RESEND_WINDOW.total_seconds()
    pending: dict[str, MeterEvent] = {}
    reported: set[str] = set()
    for record in org_records(instance, org, since):
        values = metadata_values(record)
        identifier = values.get(STRIPE_ID)
        if not isinstance(identifier, str):
            continue
        if values.get(STRIPE_STATUS) == REPORTED:
            reported.add(identifier)
            continue
        rows = values[ROWS_LOADED]
        assert isinstance(rows, int)
        timestamp = int(record.event_log_entry.timestamp)
        meter, customer = str(values[STRIPE_METER]), str(values[STRIPE_CUSTOMER])
        pending[identifier] = MeterEvent(meter, customer, rows, identifier, timestamp)
    return [event for identifier, event in pending.items() if identifier not in reported]


def resend_pending(
    instance: dg.DagsterInstance, billing: Billing, org: str, record: Record
) -> tuple[int, int]:
    """Send an org's pending events again, recording each one sent; (sent, still pending)."""
    events = pending_events(instance, org) if billing.metered(org) else []
    sent = 0
    for event in events:
        outcome = billing.send(org, event, f"{event.value:,} rows of event {event.identifier}")
        if outcome == RETRY:
            # Stripe is still down: the others wait for the next try rather than each
            # waiting out the client's retries.
            return sent, len(events) - sent
        if outcome == REFUSED:
            continue  # this event alone: the others are still sent
        sent += 1
        record(
            dg.AssetObservation(
                asset_key=usage_key(org),
                description=f"{event.value:,} rows of event {event.identifier} sent to Stripe",
                metadata={STRIPE_ID: event.identifier, STRIPE_STATUS: REPORTED},
            )
        )
    return sent, len(events) - sent
