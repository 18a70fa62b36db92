"""What `datapipe run` says about check results: outcomes, failing rows and skipped loads."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from datapipe_assets.pipeline.check_rules import (
    DESTINATION,
    check_targets,
    named_checks,
    reads_from,
)
from datapipe_assets.pipeline.spec import Pipeline

DETAIL_INDENT = " " * 11


def outcome(evaluation: dg.AssetCheckEvaluation) -> str:
    """`1 of 5 rows` (failed, for a row check), or the other figures the check recorded."""
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    if "rows_failed" in metadata:
        return f"{metadata['rows_failed']} of {metadata['rows_checked']} rows"
    return ", ".join(f"{key} {value}" for key, value in metadata.items())


def details(evaluation: dg.AssetCheckEvaluation) -> list[str]:
    """The failing rows (a markdown table) or, for checks that have none, the description."""
    rows = evaluation.metadata.get("failing_rows")
    text = str(rows.value) if rows is not None else evaluation.description or ""
    return [DETAIL_INDENT + line for line in text.splitlines() if line.strip()]


def failed_error_checks(evaluations: Sequence[dg.AssetCheckEvaluation]) -> list[str]:
    """`asset:check` of each failed check of severity error, as `datapipe status` lists them."""
    return [
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in evaluations
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]


def skipped_loads(
    pipeline: Pipeline,
    evaluations: Sequence[dg.AssetCheckEvaluation],
    materialized: set[dg.AssetKey],
) -> list[str]:
    """One line per destination table a failed blocking check kept from loading.

    A blocking check stops every asset built from its asset, so a load is skipped by the
    failed blocking checks on assets it is built from, when it did not materialize.
    """
    blocking = {
        (e.asset_key, e.check_name): e
        for e in evaluations
        if e.blocking and not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    }
    checks = [
        (named.target, blocking[key])
        for named in named_checks(pipeline)
        if (key := (dg.AssetKey(named.target.key), named.name)) in blocking
    ]
    lines = []
    for load in check_targets(pipeline, DESTINATION):
        if dg.AssetKey(load.key) in materialized:
            continue
        causes = [
            f"blocking check {e.check_name} on {e.asset_key.to_user_string()} failed ({outcome(e)})"
            for target, e in checks
            if reads_from(pipeline, load, target)
        ]
        if causes:
            lines.append(f"{pipeline.name}: load of {load.key[-1]} skipped: {'; '.join(causes)}")
    return lines
