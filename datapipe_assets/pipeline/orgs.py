"""orgs.yaml: each organization's plan, its row limits, and where its usage is billed.

The file sits beside connections.yaml. Without it every pipeline belongs to an org with no
limits (a self-hosted team is one org); with it, every org a pipeline names must be listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from datapipe_assets.pipeline.spec import NAME_PATTERN, SpecModel

ORGS_FILES = ("orgs.yaml", "orgs.yml")
# The seed's plans and the rows one run of each may extract (None: unlimited).
PLAN_ROWS_PER_RUN: dict[str, int | None] = {
    "free": 10_000,
    "pro": 500_000,
    "team": 5_000_000,
    "enterprise": None,
}
PlanName = Literal["free", "pro", "team", "enterprise"]
RowCount = Annotated[int, Field(ge=1)]


class OrgSpec(SpecModel):
    """One organization: a plan, and limits that override the plan's."""

    plan: PlanName | None = None
    max_rows_per_run: RowCount | None = None
    max_rows_per_month: RowCount | None = None
    # Stripe billing: the customer whose meter receives this org's rows, and the meter's
    # event name. Both or neither.
    stripe_customer_id: str | None = None
    meter: str | None = None

    @model_validator(mode="after")
    def _billing_pair(self) -> OrgSpec:
        if (self.stripe_customer_id is None) != (self.meter is None):
            raise ValueError(
                "stripe_customer_id and meter go together: set both to report this org's "
                "rows to Stripe, or neither"
            )
        return self


class BillingSpec(SpecModel):
    """The Stripe account usage is reported to. The key may be `${ENV}` or `${secret:NAME}`."""

    stripe_api_key: str
    # Stripe's API by default; tests point it at a local server speaking the same API.
    api_base: str = "https://api.stripe.com"


class OrgsFile(SpecModel):
    billing: BillingSpec | None = None
    orgs: dict[Annotated[str, Field(pattern=NAME_PATTERN)], OrgSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _billing_for_meters(self) -> OrgsFile:
        metered = sorted(name for name, org in self.orgs.items() if org.meter is not None)
        if metered and self.billing is None:
            raise ValueError(
                f"org {metered[0]!r} has a Stripe meter but the file has no billing block; "
                "add billing: {stripe_api_key: ...}"
            )
        return self


@dataclass(frozen=True)
class OrgLimits:
    """What one org may extract: per run and per calendar month (UTC); None is unlimited."""

    org: str
    plan: str | None
    max_rows_per_run: int | None
    max_rows_per_month: int | None

    def run_limit_source(self) -> str:
        """How the per-run limit came about, for messages: `plan 'free'` or `org 'acme'`."""
        if self.plan is not None and self.max_rows_per_run == PLAN_ROWS_PER_RUN[self.plan]:
            return f"plan {self.plan!r} of org {self.org!r}"
        return f"org {self.org!r}"


@dataclass(frozen=True)
class Orgs:
    """The orgs of a project. `declared` is False when there is no orgs.yaml."""

    declared: bool = False
    orgs: dict[str, OrgSpec] | None = None
    billing: BillingSpec | None = None
    file: Path | None = None

    def names(self) -> list[str]:
        return sorted(self.orgs or {})

    def knows(self, org: str) -> bool:
        return not self.declared or org in (self.orgs or {})

    def limits(self, org: str) -> OrgLimits:
        spec = (self.orgs or {}).get(org)
        if spec is None:
            return OrgLimits(org, None, None, None)
        plan_rows = PLAN_ROWS_PER_RUN[spec.plan] if spec.plan is not None else None
        per_run = spec.max_rows_per_run if spec.max_rows_per_run is not None else plan_rows
        return OrgLimits(org, spec.plan, per_run, spec.max_rows_per_month)

    def spec(self, org: str) -> OrgSpec | None:
        return (self.orgs or {}).get(org)


def orgs_file(directory: Path) -> Path | None:
    """The orgs file in a pipelines folder, if there is one."""
    for name in ORGS_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def parse_orgs(document: object, file: Path) -> Orgs:
    """A parsed orgs.yaml document as Orgs; raises pydantic's ValidationError."""
    parsed = OrgsFile.model_validate(document if document is not None else {})
    return Orgs(True, dict(parsed.orgs), parsed.billing, file)
