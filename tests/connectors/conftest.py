"""`target`: each SQL destination in turn (a module may define its own, for one of them)."""

from __future__ import annotations

import pytest

from tests.support.destination_cases import Target, target_for


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path) -> Target:
    return target_for(request, tmp_path)
