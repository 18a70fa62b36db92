"""A problem found in a pipeline file: where, what, and how to fix it."""

import zoneinfo
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    hint: str


def timezone_problems(path: str, name: str) -> list[Problem]:
    """An unknown time zone name, as a problem at `path` (the schedule's, the partitions')."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [
            Problem(
                path, f"unknown timezone {name!r}", "use an IANA name such as UTC or Europe/Berlin"
            )
        ]
    return []
