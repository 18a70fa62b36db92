"""`datapipe usage`: rows extracted and loaded per org, pipeline and month, each org's total
against its monthly limit; `--report` sends Stripe the meter events still pending."""

from __future__ import annotations

import argparse
import sys
import time

import dagster as dg

from datapipe_assets.cli.common import CommandError, cli_project
from datapipe_assets.cli.instance import dagster_instance
from datapipe_assets.defs.billing import Billing, resend_pending
from datapipe_assets.defs.usage import month_usage, recorded_orgs
from datapipe_assets.pipeline.orgs import Orgs
from datapipe_assets.pipeline.project import Project, secrets_file
from datapipe_assets.pipeline.usage import UsageLine, month_of

HEADER = ("org", "pipeline", "month", "rows extracted", "rows loaded", "monthly limit", "used")
TOTAL = "(total)"


def usage_command(args: argparse.Namespace) -> int:
    project = cli_project()
    month = args.month or month_of(time.time())
    with dagster_instance() as instance:
        orgs = _orgs(instance, project.orgs, args.org)
        if args.report:
            return _report(instance, project, orgs)
        lines = {org: month_usage(instance, org, month) for org in orgs}
    if not orgs:
        print(f"no usage recorded for {month}")
        return 0
    print(format_usage(project.orgs, month, lines))
    return 0


def _orgs(instance: dg.DagsterInstance, declared: Orgs, named: str | None) -> list[str]:
    """The orgs to show: orgs.yaml's and those with usage recorded, or the one named."""
    known = sorted({*declared.names(), *recorded_orgs(instance)})
    if named is None:
        return known
    if named not in known:
        raise CommandError(
            f"no org named {named!r} in orgs.yaml and no usage recorded for it; orgs: "
            + (", ".join(known) or "none")
        )
    return [named]


def format_usage(orgs: Orgs, month: str, lines: dict[str, list[UsageLine]]) -> str:
    """One row per org and pipeline, then the org's total against its monthly limit."""
    rows: list[tuple[str, ...]] = [HEADER]
    for org, found in lines.items():
        for line in found:
            rows.append(
                (org, line.pipeline, month, f"{line.rows_extracted:,}", f"{line.rows_loaded:,}")
            )
        extracted = sum(line.rows_extracted for line in found)
        loaded = sum(line.rows_loaded for line in found)
        limit = orgs.limits(org).max_rows_per_month
        used = f"{100 * loaded / limit:.1f}%" if limit else "-"
        rows.append(
            (org, TOTAL, month, f"{extracted:,}", f"{loaded:,}",
             f"{limit:,}" if limit else "unlimited", used)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(HEADER))]
    text = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < 3 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        text.append("  ".join(cells).rstrip())
    return "\n".join(text)


def _report(instance: dg.DagsterInstance, project: Project, orgs: list[str]) -> int:
    """Send each metered org's pending meter events; exit 1 while any is still pending."""
    billing = Billing(project.orgs, secrets_file(project.directory), _warn)
    metered = [org for org in orgs if billing.metered(org)]
    if not metered:
        raise CommandError("no org has a Stripe meter in orgs.yaml; nothing to report")
    pending = 0
    for org in metered:
        sent, left = resend_pending(instance, billing, org, instance.report_runless_asset_event)
        print(f"{org}: {sent} pending meter event(s) sent to Stripe, {left} still pending")
        pending += left
    return 1 if pending else 0


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)
