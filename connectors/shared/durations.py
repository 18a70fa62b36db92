"""Durations written in files and settings: a number and a unit, such as 15m or 26h."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^\d+(\.\d+)?\s*(s|m|h|d|w)$"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(text: str) -> float:
    """`26h` -> 93600.0, for values already validated against DURATION_PATTERN."""
    match = re.fullmatch(DURATION_PATTERN, text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r}; use a number and s, m, h, d or w, like 15m")
    return float(text.strip()[: match.start(2)]) * DURATION_UNITS[match.group(2)]
