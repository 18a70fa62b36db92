"""Which source a run reads: a file-arrival run, or a run of a file partition, reads only
that file (the Dagster layer tells which: datapipe_assets/defs/partitions.py, run_file)."""

from __future__ import annotations

import dataclasses
import glob

from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.project import LoadedPipeline

# A file-arrival sensor's runs name their file in this tag.
FILE_TAG = "datapipe/file"


def source_for_run(loaded: LoadedPipeline, table: str, file: str | None) -> ConnectionSpec:
    """The source a run reads: just `file` (a `path` value the source matched) when the run
    names one."""
    source = loaded.table_connection(table)
    if file is None:
        return source
    # Escaped, the file name is a glob matching only itself; the table name is pinned
    # because the CSV source would otherwise derive it from the (new) path.
    name = loaded.pipeline.source_table(table).source_name
    config = {**source.config, "path": glob.escape(file), "table": name}
    return dataclasses.replace(source, config=config)
