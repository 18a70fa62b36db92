"""A step's usage, recorded as its extracts and loads end: the org's usage record, and
for a metered org the load's report to Stripe (see defs/usage.py and defs/billing.py)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from datapipe_assets.defs.billing import (
    REPORTED,
    STRIPE_STATUS,
    Billing,
    report_load,
    resend_pending,
)
from datapipe_assets.defs.usage import usage_observation
from datapipe_assets.pipeline.project import LoadedPipeline


@dataclass(frozen=True)
class Usage:
    """Rows one table's extract or load moved in a step."""

    table: str
    extracted: int = 0
    loaded: int = 0


def record_usage(context: dg.AssetExecutionContext, loaded: LoadedPipeline, usage: Usage) -> None:
    """Record a table's rows on its org's usage asset; report rows loaded to Stripe."""
    org, pipeline = loaded.pipeline.org, loaded.pipeline.name
    billing = Billing(loaded.orgs, loaded.destination.secrets_file, context.log.warning)
    report = (
        report_load(billing, org, pipeline, usage.table, context.run_id, usage.loaded)
        if usage.loaded
        else {}
    )
    context.log_event(
        usage_observation(
            loaded, usage.table, context.run_id, usage.extracted, usage.loaded, report
        )
    )
    if report.get(STRIPE_STATUS) == REPORTED:
        # Stripe answers again: what it missed before is sent now.
        resend_pending(context.instance, billing, org, context.log_event)
