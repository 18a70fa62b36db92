"""How long staged runs are kept: `DATAPIPE_STAGING_RETENTION`, such as 36h, 14d or 2w."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from connectors.shared.durations import DURATION_UNITS, duration_seconds

RETENTION_VARIABLE = "DATAPIPE_STAGING_RETENTION"
DEFAULT_RETENTION = "14d"


class RetentionError(ValueError):
    """A retention the variable cannot mean; its text is the user's one-line error."""


@dataclass(frozen=True)
class Retention:
    text: str
    seconds: int


def staging_retention(environ: Mapping[str, str]) -> Retention:
    """The retention the environment sets; unset or empty is the default, 14 days.

    At least an hour: a run that ends while the cleanup runs may hold latest materializations
    the cleanup read too early to see, and only its recent end keeps its folder.
    """
    text = environ.get(RETENTION_VARIABLE, "").strip() or DEFAULT_RETENTION
    try:
        seconds = duration_seconds(text)
    except ValueError:
        seconds = 0
    if seconds < DURATION_UNITS["h"]:
        raise RetentionError(
            f"{RETENTION_VARIABLE}={text!r} is not a retention; use a duration of at least 1h, "
            "such as 36h, 14d or 2w"
        )
    return Retention(text, round(seconds))
