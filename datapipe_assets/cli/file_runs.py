"""The files `datapipe run` runs of a pipeline partitioned by file.

`--file PATH` runs that file's partition again (or for the first time); without it, every
file the source matches that is not a partition yet, which no run has picked up: what the
file-arrival sensor would run, for a project without a running daemon. Each file becomes a
partition of the pipeline first, as the sensor makes it one.
"""

from __future__ import annotations

import dagster as dg

from datapipe_assets.cli.common import CommandError
from datapipe_assets.defs.partitions import file_partitions
from datapipe_assets.defs.triggers import landed_files, watched_source
from datapipe_assets.pipeline.project import LoadedPipeline

# How many of the matched files an error lists.
LISTED_FILES = 5


def file_partition_keys(
    loaded: LoadedPipeline, instance: dg.DagsterInstance, file: str | None
) -> list[str]:
    """The partitions to run, each a file as the source's path matches it, added to the
    pipeline's partitions; none when no file is new."""
    partitions = file_partitions(loaded.pipeline)
    assert partitions is not None and partitions.name, "a pipeline partitioned by file"
    source = watched_source(loaded)
    matched = landed_files(source)
    if file is None:
        known = set(instance.get_dynamic_partitions(partitions.name))
        keys = [found for found in matched if found not in known]
    elif file in matched:
        keys = [file]
    else:
        raise CommandError(
            f"pipeline {loaded.pipeline.name!r} has no file {file!r}: the path "
            f"{source.config.get('path')} of connection {source.name!r} matches "
            f"{_listed(matched)}; give one of those, as listed"
        )
    instance.add_dynamic_partitions(partitions.name, keys)
    return keys


def _listed(files: list[str]) -> str:
    if not files:
        return "no file now"
    more = len(files) - LISTED_FILES
    return ", ".join(files[:LISTED_FILES]) + (f" and {more} more" if more > 0 else "")
