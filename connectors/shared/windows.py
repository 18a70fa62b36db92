"""A time partition's window as the bounds APIs' own date filters take.

An API's filter only narrows what is fetched. The sources still keep exactly the rows in
`[start, end)` with `rows_in_window`: APIs differ on whether their end bound is inclusive,
and on the precision they compare at.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Literal

import pyarrow as pa

from connectors.base import Window

BoundFormat = Literal["iso", "date", "unix"]
ONE_DAY = dt.timedelta(days=1)


def utc_iso(moment: dt.datetime) -> str:
    """`2024-01-02T00:00:00Z`: an instant in UTC, as ISO 8601 with a Z."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def unix_seconds(moment: dt.datetime) -> int:
    """Seconds since the epoch (windows start on whole hours, so nothing is lost)."""
    return calendar.timegm(moment.utctimetuple())


def covering_days(window: Window) -> tuple[dt.date, dt.date]:
    """The first day of the window and the day after its last, in the partitions' time zone:
    every day that holds a moment of the window lies in `[first, after_last)`."""
    last_moment = window.end - dt.timedelta(microseconds=1)
    return window.start.date(), last_moment.date() + ONE_DAY


def report_days(window: Window, connection: str) -> tuple[dt.date, dt.date]:
    """The first and last day (both inclusive) of a window over a date column, as report
    APIs (GA4, Google Ads) take them. An hourly window has no whole days: ConnectorError."""
    first, after_last = window.bounds(pa.date32(), connection)
    return first, after_last - ONE_DAY


def formatted_bounds(window: Window, style: BoundFormat) -> tuple[str | int, str | int]:
    """The window's start and end as query parameter values in one of three styles.

    `date` sends whole days covering the window, so an hourly window asks for its day.
    """
    if style == "date":
        first, after_last = covering_days(window)
        return first.isoformat(), after_last.isoformat()
    if style == "unix":
        return unix_seconds(window.start), unix_seconds(window.end)
    return utc_iso(window.start), utc_iso(window.end)
