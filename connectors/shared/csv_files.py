"""Finding the files a CSV path names: one file, a glob of files, or objects on S3."""

from __future__ import annotations

import fnmatch
import glob
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
from pyarrow import fs

GLOB_CHARS = "*?["

_BRACKET_SET = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class CsvFile:
    """One matched file: where to open it, and how to name it in messages."""

    filesystem: fs.FileSystem
    path: str
    display: str

    def open(self) -> pa.NativeFile:
        # open_input_stream also decompresses .gz/.bz2/.zst files by their extension.
        return self.filesystem.open_input_stream(self.path)

    @property
    def stem(self) -> str:
        """The file name up to its first dot: `orders` for orders.csv.gz."""
        return PurePosixPath(self.display).name.split(".", 1)[0]


def has_glob(path: str) -> bool:
    return any(char in path for char in GLOB_CHARS)


def local_files(pattern: str, base_dir: Path) -> list[CsvFile]:
    """The files a local path or glob matches, sorted; relative ones against base_dir."""
    local = fs.LocalFileSystem()
    if has_glob(pattern):
        # root_dir keeps matches relative, as the user wrote them, for messages.
        matches = sorted(glob.glob(pattern, root_dir=base_dir, recursive=True))
    else:
        matches = [pattern]
    return [
        CsvFile(local, str(base_dir / match), match)
        for match in matches
        if (base_dir / match).is_file()
    ]


def s3_files(s3: fs.S3FileSystem, url: str) -> list[CsvFile]:
    """The objects an s3://bucket/key-or-glob URL matches, sorted; raises OSError."""
    location = url.removeprefix("s3://")
    if not has_glob(location):
        info = s3.get_file_info(location)
        return [CsvFile(s3, location, url)] if info.is_file else []
    infos = s3.get_file_info(
        fs.FileSelector(_glob_root(location), recursive=True, allow_not_found=True)
    )
    depth = location.count("/")
    paths = sorted(
        info.path
        for info in infos
        if info.is_file
        and info.path.count("/") == depth  # "*" must not cross a folder, as in a shell
        and fnmatch.fnmatchcase(info.path, location)
    )
    return [CsvFile(s3, path, f"s3://{path}") for path in paths]


def default_table_name(path: str) -> str:
    """The table name when the config gives none: the file stem, minus glob characters.

    `data/orders.csv` gives `orders`; `data/orders_*.csv` gives `orders` (wildcards, `[...]`
    sets and the separators left dangling around them are stripped). A stem that is nothing but
    glob characters, as in `exports/*.csv`, falls back to the folder name (`exports`).
    """
    pure = PurePosixPath(path.removeprefix("s3://"))
    stem = _BRACKET_SET.sub("", pure.name.split(".", 1)[0])
    stem = stem.replace("*", "").replace("?", "").strip("_-. ")
    return stem or pure.parent.name or "csv"


def _glob_root(location: str) -> str:
    """The folder above the first glob character: where an S3 listing must start."""
    first = min(location.index(char) for char in GLOB_CHARS if char in location)
    return location[:first].rsplit("/", 1)[0]
