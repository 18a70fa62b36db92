"""Remove staged runs older than the retention, except those something still points at.

Staging holds one folder per run, `{staging}/{run_id}/...`. This module lists them (one
recursive listing, local or S3), decides which to remove and removes them. It knows no
Dagster: the caller says which runs are still referenced, and when each recorded run last
wrote, from its run storage.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyarrow import fs

from connectors.shared.object_store import url_for
from resources.retention import Retention

# Dagster run ids: anything else under the staging URL is not a run folder, and stays.
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A publish uploads under this prefix, then moves the file into place. The upload is removed
# when the publish fails, unless the store stopped answering then: such a leftover is removed
# by the next collection once it is older than any upload takes, even from a kept folder.
PARTIAL_UPLOAD = "_incomplete-"
PARTIAL_UPLOAD_SECONDS = 3600


@dataclass
class RunFolder:
    """A run's staging folder: what it holds, and when its newest entry was written."""

    run_id: str
    path: str
    url: str
    files: int = 0
    size: int = 0
    newest_write: float | None = None
    # (path, written) of each partial upload in it.
    partial_uploads: list[tuple[str, float | None]] = field(default_factory=list)


@dataclass(frozen=True)
class Expiry:
    """When a run folder was last written, and by whose account."""

    at: float
    # True: the run's end (or start) in run storage; False: its newest file, the run unknown.
    recorded: bool


def staged_runs(filesystem: fs.FileSystem, base: str) -> list[RunFolder]:
    """Every run folder under `base`, sized and dated from one recursive listing."""
    selector = fs.FileSelector(base, recursive=True, allow_not_found=True)
    folders: dict[str, RunFolder] = {}
    for info in filesystem.get_file_info(selector):
        run_id = info.path[len(base) + 1 :].split("/", 1)[0]
        if not RUN_ID.fullmatch(run_id):
            continue
        if run_id not in folders:
            path = f"{base}/{run_id}"
            folders[run_id] = RunFolder(run_id, path, url_for(filesystem, path))
        folder = folders[run_id]
        if info.type == fs.FileType.File:
            folder.files += 1
            folder.size += info.size or 0
            if info.base_name.startswith(PARTIAL_UPLOAD):
                written = info.mtime_ns / 1e9 if info.mtime_ns is not None else None
                folder.partial_uploads.append((info.path, written))
        # S3 has no real folders, and so no time for one.
        if info.mtime_ns is not None:
            written = info.mtime_ns / 1e9
            folder.newest_write = max(folder.newest_write or written, written)
    return list(folders.values())


def expiry(folder: RunFolder, recorded: Mapping[str, float]) -> Expiry | None:
    """The run storage's time for the run when it knows the run, else its newest file's
    (a run deleted from the UI, or staging shared with another instance); None for an empty
    folder on S3, which has neither."""
    if folder.run_id in recorded:
        return Expiry(recorded[folder.run_id], recorded=True)
    if folder.newest_write is None:
        return None
    return Expiry(folder.newest_write, recorded=False)


def collect_garbage(
    filesystem: fs.FileSystem,
    folders: list[RunFolder],
    recorded: Mapping[str, float],
    referenced: Mapping[str, str],
    retention: Retention,
    dry_run: bool,
) -> Iterator[str]:
    """Remove the run folders older than the retention that `referenced` does not name (run
    id -> why it is still needed), yielding a line for each, then a summary.

    A referenced folder older than the retention gets a line saying why it stays.
    """
    cutoff = time.time() - retention.seconds
    verb = "would remove" if dry_run else "removed"
    dated = sorted(((expiry(f, recorded), f) for f in folders), key=_oldest_first)
    removed, kept, recent = [], 0, 0
    for when, folder in dated:
        if when is None or when.at >= cutoff or folder.run_id in referenced:
            yield from _remove_partial_uploads(filesystem, folder, verb, dry_run)
        if when is None or when.at >= cutoff:
            recent += 1
        elif folder.run_id in referenced:
            kept += 1
            reason = referenced[folder.run_id]
            yield f"kept {folder.url} (older than {retention.text}, but {reason})"
        else:
            if not dry_run:
                filesystem.delete_dir(folder.path)
            removed.append(folder)
            yield f"{verb} {folder.url} ({_contents(folder)}, {_written(when)})"
    yield (
        f"{verb} {len(removed)} run folder(s), {sum(f.files for f in removed)} file(s), "
        f"{sum(f.size for f in removed):,} bytes; kept {kept} still referenced and {recent} "
        f"newer than {retention.text}"
    )


def _remove_partial_uploads(
    filesystem: fs.FileSystem, folder: RunFolder, verb: str, dry_run: bool
) -> Iterator[str]:
    cutoff = time.time() - PARTIAL_UPLOAD_SECONDS
    for path, written in folder.partial_uploads:
        # S3 always dates an object; a leftover without a date is left for safety.
        if written is not None and written < cutoff:
            if not dry_run:
                filesystem.delete_file(path)
            yield f"{verb} partial upload {url_for(filesystem, path)}"


def _oldest_first(item: tuple[Expiry | None, RunFolder]) -> tuple[float, str]:
    when, folder = item
    return (when.at if when is not None else float("inf"), folder.run_id)


def _contents(folder: RunFolder) -> str:
    return f"{folder.files} file(s), {folder.size:,} bytes"


def _written(when: Expiry) -> str:
    stamp = datetime.fromtimestamp(when.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"run ended {stamp}" if when.recorded else f"no run record, newest file {stamp}"
