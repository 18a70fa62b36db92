"""How long staged runs are kept: `DATAPIPE_STAGING_RETENTION`, such as 36h, 14d or 2w."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

RETENTION_VARIABLE = "DATAPIPE_STAGING_RETENTION"
DEFAULT_RETENTION = "14d"
UNIT_SECONDS = {"h": 60 * 60, "d": 24 * 60 * 60, "w": 7 * 24 * 60 * 60}
_DURATION = re.compile(r"(\d+)([hdw])")


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
    match = _DURATION.fullmatch(text)
    seconds = int(match[1]) * UNIT_SECONDS[match[2]] if match else 0
    if seconds < UNIT_SECONDS["h"]:
        raise RetentionError(
            f"{RETENTION_VARIABLE}={text!r} is not a retention; use a whole number of hours, "
            "days or weeks of at least 1h, such as 36h, 14d or 2w"
        )
    return Retention(text, seconds)
