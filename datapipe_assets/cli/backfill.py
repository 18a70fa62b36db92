"""`datapipe backfill PIPELINE --from DATE --to DATE`: run each partition of a partitioned
pipeline that starts on a day in the range, one after another, in this process.

Each partition is a run of its own, as `datapipe run` runs a pipeline (progress, checks and
outcome are printed the same way): a failed partition does not stop the others, and can be
run again alone with a range of its own day. Backfills from the Dagster UI go through the
pipeline's partitions definition instead, and the daemon launches their runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from datapipe_assets.cli.common import CommandError, cli_project, valid_pipeline
from datapipe_assets.cli.instance import dagster_instance
from datapipe_assets.cli.run import execute_run, overlap
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.defs.live_runs import live_runs, process_tags
from datapipe_assets.defs.partitions import partitions_starting
from datapipe_assets.pipeline.keys import dagster_name


def backfill_command(args: argparse.Namespace) -> int:
    project = cli_project()
    pipeline = valid_pipeline(project, args.pipeline).pipeline
    name = project.label(pipeline)
    if pipeline.partitions is None:
        raise CommandError(
            f"pipeline {name!r} has no partitions; add partitions: {{by: day, column: ..., "
            f"start: ...}} to its file, or run it whole with datapipe run {name}"
        )
    if pipeline.partitions.by_file:
        raise CommandError(
            f"pipeline {name!r} is partitioned by file, not by date; run one file with "
            f"datapipe run {name} --file PATH, or pick files' partitions in the Dagster UI"
        )
    if args.to < args.from_:
        raise CommandError(f"--to {args.to} is before --from {args.from_}; swap them")
    keys = partitions_starting(pipeline, args.from_, args.to, dt.datetime.now(dt.UTC))
    if not keys:
        raise CommandError(
            f"pipeline {name!r} has no complete partition starting from {args.from_} to "
            f"{args.to} (its partitions by {pipeline.partitions.by} start "
            f"{pipeline.partitions.start}, in {pipeline.partitions.timezone})"
        )
    definitions = build_definitions(project)
    failed = []
    with dagster_instance() as instance:
        if not args.force and (live := live_runs(instance, dagster_name(pipeline))):
            raise CommandError(overlap(name, live))
        for number, key in enumerate(keys, start=1):
            print(f"running {name} partition {key} ({number} of {len(keys)}) ...", flush=True)
            if not execute_run(definitions, instance, pipeline, name, process_tags(), key):
                failed.append(key)
    print(f"{name}: backfill of {len(keys)} partition(s), {len(keys) - len(failed)} succeeded")
    if failed:
        print(
            f"{name}: partitions that failed: {', '.join(failed)}; run one again with "
            f"datapipe backfill {name} --from DATE --to DATE for its day",
            file=sys.stderr,
        )
    return 1 if failed else 0
