"""What every command shares: its error type, the valid pipeline it names, DAGSTER_HOME."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
from pathlib import Path

from datapipe_assets.pipeline.project import (
    PROJECT_ROOT,
    LoadedPipeline,
    Project,
    load_project,
    pipelines_dir,
)
from datapipe_assets.pipeline.usage import MONTH_PATTERN


class CommandError(Exception):
    """A one-line error for the user; the command exits 1."""


def cli_project() -> Project:
    """The pipelines folder's project."""
    return load_project(existing_pipelines_dir())


def existing_pipelines_dir() -> Path:
    """The pipelines folder. One that does not exist is an error: read as an empty project,
    it passed for "0 valid pipelines"."""
    directory = pipelines_dir()
    if not directory.is_dir():
        raise CommandError(
            f"pipelines folder {directory} does not exist; create it, or set "
            "DATAPIPE_PIPELINES_DIR to the folder that holds your pipeline files"
        )
    return directory


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {text!r}")
    return value


def iso_date(text: str) -> dt.date:
    """An argparse type: a date written as YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date like 2024-01-31, not {text!r}") from None


def month(text: str) -> str:
    """An argparse type: a month written as YYYY-MM."""
    if not MONTH_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"must be a month like 2026-12, not {text!r}")
    return text


def valid_pipeline(project: Project, reference: str) -> LoadedPipeline:
    """The pipeline a command names, as `NAME` (when one org alone has it) or `ORG/NAME`.
    Refused when several files of an org declare the name; when its file is invalid, the
    error gives that file's own problems."""
    declaring = project.declaring(reference)
    for files in declaring.values():
        if len(files) > 1:
            raise CommandError(
                f"pipeline name {reference!r} is declared by {' and '.join(files)}; give each "
                "pipeline a unique name"
            )
    try:
        return project.get(reference)
    except KeyError as error:
        files = [file for found in declaring.values() for file in found]
        problems = [str(e) for file in files for e in project.errors.get(file, [])]
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise CommandError(f"{error.args[0]}{detail}") from None


def dagster_home() -> str:
    """DAGSTER_HOME, defaulting to the project's embedded instance (shared with `dagster dev`)."""
    home = os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster"))
    os.makedirs(home, exist_ok=True)
    config = os.path.join(home, "dagster.yaml")
    if not os.path.exists(config):
        shutil.copy(PROJECT_ROOT / "dagster.yaml", config)
    return home
