"""Usage months and their wording: UTC calendar months, and the monthly limit's message."""

from __future__ import annotations

import datetime as dt

from datapipe_assets.pipeline import usage
from datapipe_assets.pipeline.usage import UsageLine


def test_months_are_utc_calendar_months() -> None:
    last_instant = dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    assert usage.month_of(last_instant) == "2026-12"
    assert usage.month_of(last_instant + 1) == "2027-01"
    # 00:30 in Berlin on January 1st is still December in UTC.
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert usage.month_of(dt.datetime(2027, 1, 1, 0, 30, tzinfo=berlin).timestamp()) == "2026-12"
    assert [usage.next_month(m) for m in ("2026-01", "2026-11", "2026-12")] == [
        "2026-02", "2026-12", "2027-01"
    ]  # fmt: skip
    assert usage.month_start("2027-01") == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def test_the_limit_message_names_the_org_its_rows_and_when_runs_resume() -> None:
    assert usage.monthly_limit_message("acme", 1_000, 1_000, "2026-12") == (
        "org 'acme' has used 1,000 of its 1,000 rows for 2026-12; runs resume on 2027-01-01 "
        "or raise max_rows_per_month in orgs.yaml"
    )


def test_lines_add_up_per_org_pipeline_and_month() -> None:
    lines = [
        UsageLine("beta", "payments", "2026-12", 5, 5),
        UsageLine("acme", "orders", "2026-12", 4, 0),
        UsageLine("acme", "orders", "2026-12", 0, 3),
        UsageLine("acme", "orders", "2026-11", 1, 1),
        UsageLine("acme", "refunds", "2026-12", 2, 2),
    ]
    assert usage.summed(lines) == [
        UsageLine("acme", "orders", "2026-11", 1, 1),
        UsageLine("acme", "orders", "2026-12", 4, 3),
        UsageLine("acme", "refunds", "2026-12", 2, 2),
        UsageLine("beta", "payments", "2026-12", 5, 5),
    ]
