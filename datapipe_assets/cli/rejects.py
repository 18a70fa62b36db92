"""`datapipe rejects`: the rows a pipeline's run rejected (on_bad_rows: reject), from the
rejects files in staging: a given run's, or the latest run's that has any."""

from __future__ import annotations

import argparse

import dagster as dg
import pyarrow as pa

from datapipe_assets.cli.common import cli_project, valid_pipeline
from datapipe_assets.cli.instance import dagster_instance
from datapipe_assets.defs.factory import staging_url
from datapipe_assets.pipeline.keys import PIPELINE_TAG, dagster_name
from datapipe_assets.pipeline.spec import Pipeline
from resources.staging import run_rejects


def rejects_command(args: argparse.Namespace) -> int:
    project = cli_project()
    pipeline = valid_pipeline(project, args.pipeline).pipeline
    label = project.label(pipeline)
    if args.run is not None:
        run_id, found = args.run, _rejects(pipeline, args.run)
    else:
        run_id, found = _latest_rejects(pipeline)
    if run_id is None:
        print(f"{label}: no run has rejected rows")
        return 0
    if not found:
        print(f"{label}: run {run_id} rejected no rows")
        return 0
    count = sum(rows.num_rows for _, rows in found.values())
    print(f"{label}: run {run_id}: {count} rejected row{'s' if count != 1 else ''}")
    for asset, (url, rows) in found.items():
        print(f"{asset} ({url})")
        for line in _lines(rows):
            print(f"  {line}")
    return 0


def _rejects(pipeline: Pipeline, run_id: str) -> dict[str, tuple[str, pa.Table]]:
    return run_rejects(staging_url(), run_id, (pipeline.org, pipeline.name))


def _latest_rejects(pipeline: Pipeline) -> tuple[str | None, dict[str, tuple[str, pa.Table]]]:
    """The newest run of the pipeline that rejected rows, and its rejects."""
    with dagster_instance() as instance:
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={PIPELINE_TAG: dagster_name(pipeline)})
        )
    for record in records:
        found = _rejects(pipeline, record.dagster_run.run_id)
        if found:
            return record.dagster_run.run_id, found
    return None, {}


def _lines(rows: pa.Table) -> list[str]:
    """Each reject as two lines: where it was and why, then its text."""
    lines = []
    for reject in rows.to_pylist():
        origin = f"{reject['file']} line {reject['line']}: " if reject["file"] else ""
        lines += [f"{origin}{reject['reason']}", f"  {reject['raw']}"]
    return lines
