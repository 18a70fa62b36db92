"""CSV files as a source: one local file, a glob of files, or objects on S3.

Files are streamed with `pyarrow.csv.open_csv`, one block (a few MB) at a time, so memory
stays bounded whatever the file size. Column types are sniffed from the first block of the
first file and then fixed for every later block and file, so a batch can never change type
half-way through a load; a later value that does not fit is reported with its line number.
"""

from __future__ import annotations

import fnmatch
import glob
import io
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pyarrow import fs

from connectors.base import ConnectorError, Source, TableSchema, rows_since
from connectors.shared.object_store import s3_filesystem
from connectors.shared.sql_types import decimal_type

# Bytes per parsed block: the sniffing window, and the unit of memory a read holds.
BLOCK_SIZE = 4 << 20

GLOB_CHARS = "*?["

_TYPE_NAMES: dict[str, pa.DataType] = {
    **dict.fromkeys(("VARCHAR", "TEXT", "STRING"), pa.string()),
    # Every integer name reads as int64: a CSV value can never overflow it, and the
    # destination can still narrow the column.
    **dict.fromkeys(("BIGINT", "INTEGER", "INT", "SMALLINT"), pa.int64()),
    **dict.fromkeys(("DOUBLE", "FLOAT", "REAL"), pa.float64()),
    **dict.fromkeys(("BOOLEAN", "BOOL"), pa.bool_()),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
}
_DECIMAL = re.compile(r"(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_BRACKET_SET = re.compile(r"\[[^\]]*\]")
_CONVERSION_COLUMN = re.compile(r"In CSV column #(\d+)")


@dataclass(frozen=True)
class CsvFile:
    """One matched file: where to open it, and how to name it in messages."""

    filesystem: fs.FileSystem
    path: str
    display: str

    def open(self) -> pa.NativeFile:
        # open_input_stream also decompresses .gz/.bz2/.zst files by their extension.
        return self.filesystem.open_input_stream(self.path)


class _RowGuard:
    """An `invalid_row_handler` that remembers the first malformed row, then fails."""

    def __init__(self) -> None:
        self.row: pacsv.InvalidRow | None = None

    def __call__(self, row: pacsv.InvalidRow) -> str:
        if self.row is None:
            self.row = row
        return "error"


def parse_type(name: str) -> pa.DataType:
    """The Arrow type for a DuckDB/SQL-ish type name such as BIGINT or DECIMAL(12,2)."""
    text = name.strip().upper()
    if text in _TYPE_NAMES:
        return _TYPE_NAMES[text]
    match = _DECIMAL.fullmatch(text)
    if match:
        precision, scale = int(match[1]), int(match[2])
        return decimal_type(precision, scale)
    raise ValueError(
        f"unknown column type {name!r}; use one of {', '.join(_TYPE_NAMES)} or DECIMAL(p,s)"
    )


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


def _has_glob(path: str) -> bool:
    return any(char in path for char in GLOB_CHARS)


class CsvSource(Source):
    """CSV files offered as exactly one table.

    Config: `path` (file, glob, or `s3://bucket/key-or-glob`; relative paths resolve against
    `base_dir`, else the working directory), `delimiter` (","), `header` (true; when false
    columns are named column_1..n), `columns` (name -> type name, overriding sniffing),
    `table` (see `default_table_name`), and for S3 `endpoint_url` and `region`, which
    override AWS_ENDPOINT_URL and AWS_REGION.
    """

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        if not self.config.get("path"):
            raise self._error("config needs a `path` (a file, a glob or an s3:// URI)")
        self.path: str = str(self.config["path"])
        self.table: str = str(self.config.get("table") or default_table_name(self.path))
        self.delimiter: str = str(self.config.get("delimiter", ","))
        if len(self.delimiter) != 1:
            raise self._error(f"delimiter {self.delimiter!r} must be a single character")
        self.header: bool = self._flag("header", default=True)
        try:
            self.overrides: dict[str, pa.DataType] = {
                str(column): parse_type(str(type_name))
                for column, type_name in (self.config.get("columns") or {}).items()
            }
        except ValueError as exc:
            raise self._error(f"columns: {exc}") from None

    def _flag(self, key: str, default: bool) -> bool:
        """A boolean setting; env-resolved config can hold it as text such as "false"."""
        value = self.config.get(key, default)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1"):
            return True
        if text in ("false", "no", "0"):
            return False
        raise self._error(f"{key} must be true or false, not {value!r}")

    # The Source contract.

    def check(self) -> str:
        files = self._files()
        for file in files:
            try:
                with file.open() as stream:
                    stream.read(1)
            except OSError as exc:
                raise self._io_error(file.display, exc) from None
        if len(files) == 1:
            return f"found 1 file ({files[0].display})"
        return f"found {len(files)} files"

    def discover(self) -> list[TableSchema]:
        return [TableSchema(self.table, self._sniff(self._files()[0]))]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        if table != self.table:
            raise self._error(f"no table {table!r}; this CSV connection offers only {self.table!r}")
        files = self._files()
        schema = self._sniff(files[0])
        if incremental_key is not None and incremental_key not in schema.names:
            raise self._error(
                f"table {table!r} has no column {incremental_key!r} to use as "
                f"incremental_key; pick one of {', '.join(schema.names)}"
            )
        reader = pa.RecordBatchReader.from_batches(schema, self._stream(files, schema))
        if incremental_key is not None and cursor is not None:
            return rows_since(reader, incremental_key, cursor, self.connection)
        return reader

    # Finding files.

    def matching_files(self) -> list[str]:
        """The files the path matches now, sorted, as `path` values; possibly none."""
        return [file.display for file in self._listing()]

    def _listing(self) -> list[CsvFile]:
        return self._s3_files() if self.path.startswith("s3://") else self._local_files()

    def _files(self) -> list[CsvFile]:
        """The files the path matches, in sorted order; never empty."""
        files = self._listing()
        if not files:
            kind = "file matches" if _has_glob(self.path) else "file found at"
            raise self._error(f"no {kind} {self.path}; check path")
        return files

    def _local_files(self) -> list[CsvFile]:
        base = Path(self.config.get("base_dir") or os.getcwd())
        local = fs.LocalFileSystem()
        if _has_glob(self.path):
            # root_dir keeps matches relative, as the user wrote them, for messages.
            matches = sorted(glob.glob(self.path, root_dir=base, recursive=True))
        else:
            matches = [self.path]
        return [
            CsvFile(local, str(base / match), match)
            for match in matches
            if (base / match).is_file()
        ]

    def _s3_files(self) -> list[CsvFile]:
        s3 = self._s3_filesystem()
        location = self.path.removeprefix("s3://")
        try:
            if not _has_glob(location):
                info = s3.get_file_info(location)
                return [CsvFile(s3, location, self.path)] if info.is_file else []
            infos = s3.get_file_info(
                fs.FileSelector(_glob_root(location), recursive=True, allow_not_found=True)
            )
        except OSError as exc:
            raise self._io_error(self.path, exc) from None
        depth = location.count("/")
        paths = sorted(
            info.path
            for info in infos
            if info.is_file
            and info.path.count("/") == depth  # "*" must not cross a folder, as in a shell
            and fnmatch.fnmatchcase(info.path, location)
        )
        return [CsvFile(s3, path, f"s3://{path}") for path in paths]

    def _s3_filesystem(self) -> fs.S3FileSystem:
        """An S3 filesystem from config keys, falling back to the standard AWS variables."""
        return s3_filesystem(self.config.get("endpoint_url"), self.config.get("region"))

    # Sniffing and streaming.

    def _sniff(self, file: CsvFile) -> pa.Schema:
        """The fixed schema: types inferred from the first block, then the overrides."""
        with self._open(file, None, _RowGuard()) as reader:
            sniffed = reader.schema
        names = self._column_names(len(sniffed)) or sniffed.names
        unknown = sorted(set(self.overrides) - set(names))
        if unknown:
            raise self._error(
                f"columns names {', '.join(unknown)}, not in {file.display} "
                f"(its columns are {', '.join(names)}); fix the columns mapping"
            )
        return pa.schema(
            pa.field(name, self.overrides.get(name) or _settle(field.type))
            for name, field in zip(names, sniffed, strict=True)
        )

    def _column_names(self, count: int) -> list[str] | None:
        return None if self.header else [f"column_{i}" for i in range(1, count + 1)]

    def _open(
        self,
        file: CsvFile,
        schema: pa.Schema | None,
        guard: _RowGuard,
        numbered: bool = False,
    ) -> pacsv.CSVStreamingReader:
        """A streaming reader; with a schema, every column is parsed as its fixed type.

        Parsing uses every core; only `numbered` (single-threaded) parsing makes pyarrow
        number the rows, so that is kept for finding a malformed row once one is known.
        """
        read_options = pacsv.ReadOptions(
            block_size=BLOCK_SIZE,
            use_threads=not numbered,
            column_names=None if self.header or schema is None else schema.names,
            autogenerate_column_names=not self.header and schema is None,
        )
        parse_options = pacsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=guard)
        convert_options = pacsv.ConvertOptions(column_types=schema)
        try:
            return pacsv.open_csv(file.open(), read_options, parse_options, convert_options)
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                raise self._error(f"{file.display} is empty; it needs at least one line") from None
            raise self._parse_error(file, exc, guard, schema) from None
        except OSError as exc:
            raise self._io_error(file.display, exc) from None

    def _stream(self, files: list[CsvFile], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Every file's batches in order, as one stream with the fixed schema."""
        for file in files:
            if not self.header and file.filesystem.get_file_info(file.path).size == 0:
                continue  # without a header, an empty file is just one with no rows
            guard = _RowGuard()
            with self._open(file, schema, guard) as reader:
                if reader.schema.names != schema.names:
                    raise self._error(
                        f"{file.display} has columns {', '.join(reader.schema.names)} but "
                        f"{files[0].display} has {', '.join(schema.names)}; every file "
                        "matched by path must share the same header"
                    )
                yield from self._file_batches(file, reader, guard, schema)

    def _file_batches(
        self,
        file: CsvFile,
        reader: pacsv.CSVStreamingReader,
        guard: _RowGuard,
        schema: pa.Schema | None,
    ) -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise self._parse_error(file, exc, guard, schema) from None
            except OSError as exc:
                raise self._io_error(file.display, exc) from None
            yield batch

    # Errors.

    def _error(self, message: str) -> ConnectorError:
        return ConnectorError(f"connection {self.connection!r}: {message}")

    def _parse_error(
        self,
        file: CsvFile,
        exc: pa.ArrowInvalid,
        guard: _RowGuard,
        schema: pa.Schema | None,
    ) -> ConnectorError:
        """A malformed row or a value that does not fit its column, with its line number."""
        if guard.row is not None and (guard.row.number is None or guard.row.number < 0):
            return self._numbered_parse_error(file, schema)
        if guard.row is not None:
            row = guard.row
            where = _where(file, row.number)
            return self._error(
                f"{where}: expected {row.expected_columns} fields, found "
                f"{row.actual_columns}; fix the row or the delimiter "
                f"({self.delimiter!r})"
            )
        match = _CONVERSION_COLUMN.search(str(exc))
        if schema is not None and match:
            return self._conversion_error(file, schema, int(match[1]))
        return self._error(f"cannot parse {file.display}: {str(exc).splitlines()[0]}")

    def _numbered_parse_error(self, file: CsvFile, schema: pa.Schema | None) -> ConnectorError:
        """Parse the file again, single-threaded, so the malformed row gets its number."""
        guard = _RowGuard()
        try:
            with self._open(file, schema, guard, numbered=True) as reader:
                for _ in self._file_batches(file, reader, guard, schema):
                    pass
        except ConnectorError as error:
            return error
        return self._error(f"cannot parse {file.display}; check the delimiter and quoting")

    def _conversion_error(self, file: CsvFile, schema: pa.Schema, index: int) -> ConnectorError:
        name, expected = schema.names[index], schema.types[index]
        found = self._first_bad_value(file, schema, index)
        hint = f"fix the value or set columns: {{{name}: VARCHAR}} (or another type that fits)"
        if found is None:
            return self._error(
                f"{file.display}: a value in column {name!r} is not {expected}; {hint}"
            )
        row_number, value = found
        return self._error(
            f"{_where(file, row_number)}: column {name!r} value {value!r} is not {expected}; {hint}"
        )

    def _first_bad_value(
        self, file: CsvFile, schema: pa.Schema, index: int
    ) -> tuple[int, str] | None:
        """The CSV row number and text of the first value in a column that will not convert.

        Only runs after a conversion failed: pyarrow does not say which row it was, so the
        file is streamed again with the column as text and each block cast until one fails.
        """
        as_text = schema.set(index, pa.field(schema.names[index], pa.string()))
        target = schema.types[index]
        rows_before = 1 if self.header else 0
        with self._open(file, as_text, _RowGuard()) as reader:
            for batch in reader:
                # The CSV reader already read these markers as null; cast must see them so.
                column = pc.if_else(
                    pc.is_in(batch.column(index), pa.array(pacsv.ConvertOptions().null_values)),
                    None,
                    batch.column(index),
                )
                try:
                    column.cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    for offset, value in enumerate(column.to_pylist()):
                        if value is not None and not _casts(value, target):
                            return rows_before + offset + 1, value
                rows_before += batch.num_rows
        return None

    def _io_error(self, where: str, exc: OSError) -> ConnectorError:
        text = str(exc)
        if "NETWORK_CONNECTION" in text or "curlCode" in text:
            endpoint = self.config.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
            return self._error(
                f"cannot reach the S3 endpoint {endpoint or 'of AWS'} to read {where}; "
                "check endpoint_url or AWS_ENDPOINT_URL"
            )
        if "ACCESS_DENIED" in text or "InvalidAccessKeyId" in text or "SignatureDoes" in text:
            return self._error(
                f"S3 refused access to {where}; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text:
            return self._error(f"the bucket of {where} does not exist; check path")
        reason = text.splitlines()[0] if text else type(exc).__name__
        return self._error(f"cannot read {where} ({reason}); check path and permissions")


def _glob_root(location: str) -> str:
    """The folder above the first glob character: where an S3 listing must start."""
    first = min(location.index(char) for char in GLOB_CHARS if char in location)
    return location[:first].rsplit("/", 1)[0]


def _settle(sniffed: pa.DataType) -> pa.DataType:
    """The type a sniffed column is fixed to for the rest of the stream."""
    if pa.types.is_null(sniffed):
        # No value in the first block (or a header-only file): text is the safe choice.
        return pa.string()
    if pa.types.is_timestamp(sniffed):
        # Sniffing whole seconds must not reject a later value with fractional seconds.
        return pa.timestamp("us", tz=sniffed.tz)
    return sniffed


def _casts(value: str, target: pa.DataType) -> bool:
    try:
        pa.scalar(value).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _where(file: CsvFile, row_number: int | None) -> str:
    """`file line N`, turning pyarrow's row number (which skips blank lines) into a line."""
    if row_number is None:
        return file.display
    return f"{file.display} line {_physical_line(file, row_number)}"


def _physical_line(file: CsvFile, row_number: int) -> int:
    """The line number, as an editor shows it, of the row_number-th non-blank line.

    pyarrow skips blank lines without counting them, so its row numbers drift from what a
    user sees. This only runs on the error path: streaming the file once is affordable.
    """
    seen = 0
    with file.open() as stream:
        for line_number, line in enumerate(io.BufferedReader(stream, 1 << 20), start=1):
            if line.strip(b"\r\n"):
                seen += 1
                if seen == row_number:
                    return line_number
    return row_number
