"""`datapipe gc`: remove staged runs older than DATAPIPE_STAGING_RETENTION, as the daily
`datapipe_staging_gc` job does (see defs/staging_gc.py for what is always kept)."""

from __future__ import annotations

import argparse

from datapipe_assets.cli.common import CommandError
from datapipe_assets.cli.instance import dagster_instance
from datapipe_assets.defs.factory import staging_url
from datapipe_assets.defs.staging_gc import StagingGcError, gc_retention, staging_gc


def gc_command(args: argparse.Namespace) -> int:
    try:
        retention = gc_retention()
        with dagster_instance() as instance:
            for line in staging_gc(instance, staging_url(), retention, args.dry_run):
                print(line, flush=True)
    except StagingGcError as error:
        raise CommandError(str(error)) from None
    return 0
