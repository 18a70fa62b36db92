"""Where a staging URL points: S3, a file URL or a local path."""

from __future__ import annotations

from pathlib import Path

from pyarrow import fs

from connectors.shared.object_store import filesystem_for, url_for


def test_a_file_url_is_the_local_path_it_names(tmp_path: Path) -> None:
    filesystem, path = filesystem_for(
        f"file://{tmp_path}/my%20staging", base_dir=Path("/elsewhere")
    )
    assert isinstance(filesystem, fs.LocalFileSystem)
    assert path == str(tmp_path / "my staging")
    assert url_for(filesystem, path) == str(tmp_path / "my staging")


def test_a_relative_path_is_read_against_the_base_folder(tmp_path: Path) -> None:
    filesystem, path = filesystem_for("staging", base_dir=tmp_path)
    assert (isinstance(filesystem, fs.LocalFileSystem), path) == (True, str(tmp_path / "staging"))
