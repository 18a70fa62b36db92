"""Usage figures: rows extracted and loaded per org, pipeline and calendar month (UTC).

Pure values and wording; the Dagster layer (defs/usage.py) records and reads them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from datapipe_assets.pipeline.keys import AssetPath

# `[org, "_usage"]`: cannot clash with a pipeline's name, which starts with a letter.
USAGE_PART = "_usage"
MONTH_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def usage_path(org: str) -> AssetPath:
    """The asset that records an org's usage, one observation per table extracted or loaded."""
    return (org, USAGE_PART)


def month_of(timestamp: float) -> str:
    """The UTC calendar month of a Unix time, as YYYY-MM."""
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m")


def month_start(month: str) -> dt.datetime:
    """The first instant (UTC) of a YYYY-MM month."""
    year, number = (int(part) for part in month.split("-"))
    return dt.datetime(year, number, 1, tzinfo=dt.UTC)


def next_month(month: str) -> str:
    start = month_start(month)
    return f"{start.year + start.month // 12:04d}-{start.month % 12 + 1:02d}"


@dataclass(frozen=True)
class UsageLine:
    """An org's rows for one pipeline in one month."""

    org: str
    pipeline: str
    month: str
    rows_extracted: int = 0
    rows_loaded: int = 0


def summed(lines: Iterable[UsageLine]) -> list[UsageLine]:
    """Lines added up per (org, pipeline, month), sorted by org, month and pipeline."""
    totals: dict[tuple[str, str, str], tuple[int, int]] = {}
    for line in lines:
        key = (line.org, line.month, line.pipeline)
        extracted, loaded = totals.get(key, (0, 0))
        totals[key] = (extracted + line.rows_extracted, loaded + line.rows_loaded)
    return [
        UsageLine(org, pipeline, month, extracted, loaded)
        for (org, month, pipeline), (extracted, loaded) in sorted(totals.items())
    ]


def monthly_limit_message(org: str, used: int, limit: int, month: str) -> str:
    """Why an org's run was refused: its rows loaded this month reached its monthly limit."""
    return (
        f"org {org!r} has used {used:,} of its {limit:,} rows for {month}; runs resume on "
        f"{next_month(month)}-01 or raise max_rows_per_month in orgs.yaml"
    )
