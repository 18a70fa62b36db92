"""Metadata every stage records, so the Dagster UI can plot it across runs."""

import time

import dagster as dg


def seconds_since(started: float) -> dg.FloatMetadataValue:
    """A stage's duration (from a `time.perf_counter()` reading) as metadata."""
    return dg.MetadataValue.float(round(time.perf_counter() - started, 3))
