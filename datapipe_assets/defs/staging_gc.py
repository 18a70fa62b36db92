"""Staging retention against a Dagster instance: which run folders it still points at.

`datapipe gc` and the daily `datapipe_staging_gc` job (staging_gc_job.py) both run
`staging_gc`, which reads the instance and leaves the removal to resources/staging_gc.py.
A run folder is kept while its run is queued or in progress, while a run in progress
re-executes it (from failure, it reads the staged data of the steps that succeeded), and
while any asset's latest materialization (of each partition, for a partitioned asset)
records a path in it (`staged_path`, a load's `loaded_from`, ...): a downstream step or a
check reads that file later, whichever run wrote it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import dagster as dg

from connectors.shared.object_store import filesystem_for, url_for
from datapipe_assets.defs.live_runs import IN_PROGRESS, fail_abandoned_runs
from resources.retention import Retention, RetentionError, staging_retention
from resources.staging import remove_stale_scratch, stale_scratch, storage_error
from resources.staging_gc import collect_garbage, staged_runs

# Run ids per run storage query.
BATCH = 100


class StagingGcError(Exception):
    """A one-line error: a bad retention, or staging that cannot be read or written."""


def gc_retention() -> Retention:
    try:
        return staging_retention(os.environ)
    except RetentionError as error:
        raise StagingGcError(str(error)) from None


def staging_gc(
    instance: dg.DagsterInstance, base_url: str, retention: Retention, dry_run: bool
) -> Iterator[str]:
    """Remove stale scratch folders and expired run folders (or, with dry_run, say which):
    a line for each, then a summary."""
    verb = "would remove" if dry_run else "removed"
    for folder in stale_scratch() if dry_run else remove_stale_scratch():
        yield f"{verb} stale scratch folder {folder}"
    try:
        filesystem, base = filesystem_for(base_url)
        # Listed before the instance is read: a run that starts or ends meanwhile is then
        # absent from the listing, seen in progress, or seen just ended (so too recent).
        folders = staged_runs(filesystem, base)
        referenced = referenced_runs(instance, url_for(filesystem, base))
        recorded = last_written(instance, [f.run_id for f in folders])
        yield from collect_garbage(filesystem, folders, recorded, referenced, retention, dry_run)
    except OSError as error:
        raise StagingGcError(storage_error(base_url, error)) from None


def referenced_runs(instance: dg.DagsterInstance, base_url: str) -> dict[str, str]:
    """Run id -> why its staging folder must stay."""
    reasons: dict[str, str] = {}
    # A run whose process was killed holds nothing.
    fail_abandoned_runs(instance)
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
        run = record.dagster_run
        reasons[run.run_id] = f"its run is {run.status.value}"
        for parent in {run.parent_run_id, run.root_run_id} - {None, run.run_id}:
            reasons.setdefault(parent, f"run {run.run_id} ({run.status.value}) re-executes it")
    for run_id, keys in latest_materializations(instance, base_url).items():
        assets = keys[0] + (f" and {len(keys) - 1} more asset(s)" if len(keys) > 1 else "")
        reasons.setdefault(run_id, f"it holds the latest materialization of {assets}")
    return reasons


def latest_materializations(instance: dg.DagsterInstance, base_url: str) -> dict[str, list[str]]:
    """Run id -> the assets whose latest materialization records a path in its folder; for
    a partitioned asset, each partition's latest (a partition's staged file is read by the
    next run of that partition, and by checks, however old)."""
    prefix = base_url.rstrip("/") + "/"
    found: dict[str, list[str]] = {}
    for key in sorted(instance.get_asset_keys(), key=lambda k: k.to_user_string()):
        for materialization in _latest_per_partition(instance, key):
            values = [entry.value for entry in materialization.metadata.values()]
            runs = {
                value.removeprefix(prefix).split("/", 1)[0]
                for value in values
                if isinstance(value, str) and value.startswith(prefix)
            }
            for run_id in runs:
                names = found.setdefault(run_id, [])
                if key.to_user_string() not in names:
                    names.append(key.to_user_string())
    return found


def _latest_per_partition(
    instance: dg.DagsterInstance, key: dg.AssetKey
) -> Iterator[dg.AssetMaterialization]:
    """The asset's latest materialization, or its latest of each partition if it has any."""
    by_partition = instance.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    if not by_partition:
        event = instance.get_latest_materialization_event(key)
        if event is not None and event.asset_materialization is not None:
            yield event.asset_materialization
        return
    storage_ids = sorted(by_partition.values())
    for start in range(0, len(storage_ids), BATCH):
        chunk = storage_ids[start : start + BATCH]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk)
        ).records
        for record in records:
            if record.asset_materialization is not None:
                yield record.asset_materialization


def last_written(instance: dg.DagsterInstance, run_ids: Sequence[str]) -> dict[str, float]:
    """Run id -> when the run ended (its last status change if it never did), for the runs
    the run storage knows.

    The end, not the start: a run writes its files until it ends, and a long run that ended
    just now may hold latest materializations.
    """
    times: dict[str, float] = {}
    for start in range(0, len(run_ids), BATCH):
        chunk = list(run_ids[start : start + BATCH])
        for record in instance.get_run_records(dg.RunsFilter(run_ids=chunk)):
            ended = record.end_time or record.update_timestamp.timestamp()
            times[record.dagster_run.run_id] = ended
    return times
