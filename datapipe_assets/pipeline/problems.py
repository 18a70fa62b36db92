"""A problem found in a pipeline file: where, what, and how to fix it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    hint: str
