"""Scratch folders of killed steps are removed once they are over a day old."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from resources.staging import STALE_SCRATCH_SECONDS, remove_stale_scratch, scratch_file


def _folder(root: Path, name: str, age_seconds: float) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "data.parquet").write_bytes(b"partial")
    then = time.time() - age_seconds
    for path in (folder / "data.parquet", folder):
        os.utime(path, (then, then))
    return folder


def test_only_folders_of_steps_killed_over_a_day_ago_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = _folder(tmp_path, "datapipe-step-killed", STALE_SCRATCH_SECONDS + 60)
    download = _folder(tmp_path, "datapipe-input-killed", STALE_SCRATCH_SECONDS + 60)
    running = _folder(tmp_path, "datapipe-step-running", 60)
    other = _folder(tmp_path, "not-ours", STALE_SCRATCH_SECONDS + 60)
    # A long step's folder is old but its file is being written.
    busy = _folder(tmp_path, "datapipe-step-busy", STALE_SCRATCH_SECONDS + 60)
    (busy / "data.parquet").write_bytes(b"more")

    with scratch_file() as path:  # the next step cleans up before it starts
        path.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [running.name, other.name, busy.name, path.parent.name]
    )
    assert not killed.exists() and not download.exists()
    assert remove_stale_scratch() == []
