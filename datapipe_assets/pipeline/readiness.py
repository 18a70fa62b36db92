"""What `datapipe validate` warns about: a valid pipeline that cannot run as things stand.

An unset `${NAME}` and a CSV path that matches no file pass validation (the variable may be
set, and the file may arrive, before the run), but until then the run fails: after a full
extract, in the worst case.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.shared.csv_files import local_files
from connectors.shared.secrets import PLACEHOLDER
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.project import LoadedPipeline


def readiness_warnings(loaded: LoadedPipeline) -> list[str]:
    """One line per unset variable and per CSV path that matches no file."""
    named = f"pipeline {loaded.pipeline.name!r}"
    warnings = []
    for connection in loaded.connections():
        where = f"{named}: connection {connection.name!r}"
        warnings += [
            f"{where} uses ${{{variable}}}, which is not set; set it before the pipeline runs"
            for variable in connection.missing_variables()
        ]
        warnings += [
            f"{where} path {path!r} matches no file (relative to {connection.base_dir}); "
            "check the path, or add the file before the pipeline runs"
            for path in _missing_csv_paths(connection)
        ]
    return warnings


def _missing_csv_paths(connection: ConnectionSpec) -> Iterator[str]:
    if connection.connector != "csv":
        return
    for path in _csv_paths(connection.config):
        # A path read from the environment, or on S3, is checked when the run reads it.
        if path.startswith("s3://") or PLACEHOLDER.search(path):
            continue
        if not local_files(path, connection.base_dir):
            yield path


def _csv_paths(config: Mapping[str, Any]) -> list[str]:
    paths = [config["path"]] if isinstance(config.get("path"), str) else []
    for table in (config.get("tables") or {}).values():
        path = table if isinstance(table, str) else (table or {}).get("path")
        if isinstance(path, str):
            paths.append(path)
    return paths
