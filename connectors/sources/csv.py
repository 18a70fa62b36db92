"""CSV files as a source: local files, globs of files, or objects on S3, as one or more tables.

A connection offers one table (`path`, named by `table` or the file name), one table per
file (`path` + `table_per_file`), or named tables (`tables: {name: path}`); a glob that is
one table reads all its files, which must share the same header.

Files are streamed with `pyarrow.csv.open_csv`, one block (a few MB) at a time, so memory
stays bounded whatever the file size. Column types are sniffed from the first block of the
first file and then fixed for every later block and file, so a batch can never change type
half-way through a load; a later value that does not fit is reported with its line number.

NULLs are honest: an unquoted empty field (or one of `null_values`) is NULL in every column,
while a quoted one ("") is an empty string in a text column. A column of another type cannot
hold text, so there a quoted marker is NULL too. To tell the two apart per column, every
column is parsed as text and the typed ones are converted here, batch by batch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from pyarrow import fs

from connectors.base import ConnectorError, Source, TableSchema, rows_since
from connectors.config.csv import DEFAULT_BLOCK_MB, MAX_BLOCK_MB, TABLE_NAME, CsvConfig
from connectors.shared.column_types import parse_type
from connectors.shared.csv_files import (
    CsvFile,
    default_table_name,
    has_glob,
    local_files,
    s3_files,
)
from connectors.shared.csv_lines import (
    file_line,
    first_long_line,
    first_undecodable_line,
    returned_row_number,
    row_lines,
)
from connectors.shared.csv_values import BadValue, as_text, settle, sorted_out, typed
from connectors.shared.object_store import s3_filesystem
from connectors.shared.rejects import Reject, RejectLog

__all__ = ["BLOCK_SIZE", "CsvSource", "default_table_name", "parse_type"]

# Bytes per parsed block by default (block_size_mb): the sniffing window, and the unit of
# memory a read holds.
BLOCK_SIZE = DEFAULT_BLOCK_MB << 20


@dataclass(frozen=True)
class CsvTable:
    """A table the connection offers: its files, and the column types set in config.

    `where` is the config key that names its files, for messages (`path`, `tables.orders`).
    `overrides` must name columns the files have; `shared` ones (the connection-wide
    `columns` of a connection offering several tables) apply where a table has the column.
    """

    name: str
    path: str
    where: str
    overrides: Mapping[str, pa.DataType] = field(default_factory=dict)
    shared: Mapping[str, pa.DataType] = field(default_factory=dict)
    file: CsvFile | None = None  # the one file of a table_per_file table


class _RowGuard:
    """An `invalid_row_handler` that remembers the first malformed row, then fails; or,
    when `rejecting`, skips every malformed row and remembers each."""

    def __init__(self, rejecting: bool = False) -> None:
        self.rejecting = rejecting
        self.row: pacsv.InvalidRow | None = None
        self.skipped: list[pacsv.InvalidRow] = []

    def __call__(self, row: pacsv.InvalidRow) -> str:
        if self.row is None:
            self.row = row
        if self.rejecting:
            self.skipped.append(row)
            return "skip"
        return "error"


@dataclass(frozen=True)
class _Rejecting:
    """Where a rejecting read puts the rows it rejects; with a cursor, the incremental key's
    column and the cursor in its type: a bad row whose key is below it was read by an earlier
    run, which rejected it then, so it is not rejected again (nor are good rows loaded again).
    """

    log: RejectLog
    key: int | None = None
    cursor: pa.Scalar | None = None

    def read_before(self, batch: pa.RecordBatch, offset: int) -> bool:
        """Whether a row of a batch read as bytes has a key below the cursor."""
        if self.key is None or self.cursor is None:
            return False
        value = batch.column(self.key)[offset].as_py()
        try:
            key = pa.scalar(value.decode().strip()).cast(self.cursor.type)
        except (AttributeError, UnicodeDecodeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False  # no key to place it by: rejected, as it would be the first time
        return bool(key.as_py() < self.cursor.as_py())


class CsvSource(Source):
    """CSV files offered as one table, one table per file, or several named tables.

    Config: see CsvConfig. Relative paths resolve against `base_dir`, else the working
    directory; `endpoint_url`, `region` and the two `aws_` keys override AWS_ENDPOINT_URL,
    AWS_REGION and the AWS credentials.
    """

    config_model = CsvConfig
    settings: CsvConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        settings = self.settings
        self.delimiter = settings.delimiter
        self.header = settings.header
        self.null_values = list(settings.null_values)
        self.encoding = settings.encoding
        self.block_size = settings.block_size_mb << 20
        self.overrides = self._types(settings.columns, "columns")
        # `path` of a single-table or per-file connection: what a file-arrival sensor lists.
        self.path = settings.path
        # The one table of a single-table connection (None when it offers several).
        self.table: str | None = None
        if self.path is not None and not settings.table_per_file:
            self.table = settings.table or self._checked_name(
                default_table_name(self.path), self.path, single=True
            )

    def _types(self, columns: Mapping[str, str], where: str) -> dict[str, pa.DataType]:
        try:
            return {name: parse_type(type_name) for name, type_name in columns.items()}
        except ValueError as exc:  # the model checks the names; this is a safety net
            raise self._error(f"{where}: {exc}") from None

    # The Source contract.

    def check(self) -> str:
        tables = self._tables()
        found = {table.name: self._files(table) for table in tables}
        for files in found.values():
            for file in files:
                try:
                    with file.open() as stream:
                        stream.read(1)
                except OSError as exc:
                    raise self._io_error(file.display, exc) from None
        count = sum(len(files) for files in found.values())
        if len(tables) > 1 or self.table is None:
            return f"found {_plural(count, 'file')} for {_plural(len(tables), 'table')}"
        if count == 1:
            return f"found 1 file ({found[tables[0].name][0].display})"
        return f"found {count} files"

    def discover(self) -> list[TableSchema]:
        return [
            TableSchema(table.name, self._sniff(self._files(table)[0], table))
            for table in self._tables()
        ]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        return self._read(table, incremental_key, cursor, None)

    def read_rejecting(
        self, table: str, incremental_key: str | None, cursor: Any, rejects: RejectLog
    ) -> pa.RecordBatchReader:
        """Rows with a wrong field count, text not valid in `encoding`, or a value that does
        not fit its column's type are rejected with their file, line and text.

        Files are then parsed single-threaded, so that every row keeps its number.
        """
        return self._read(table, incremental_key, cursor, rejects)

    def _read(
        self, table: str, incremental_key: str | None, cursor: Any, rejects: RejectLog | None
    ) -> pa.RecordBatchReader:
        offered = self._table(table)
        files = self._files(offered)
        schema = self._sniff(files[0], offered, rejecting=rejects is not None)
        if incremental_key is not None and incremental_key not in schema.names:
            raise self._error(
                f"table {table!r} has no column {incremental_key!r} to use as "
                f"incremental_key; pick one of {', '.join(schema.names)}"
            )
        rejecting = None
        if rejects is not None:
            rejecting = _Rejecting(rejects)
            if incremental_key is not None and cursor is not None:
                rejecting = _rejecting_since(rejects, schema, incremental_key, cursor)
        batches = self._stream(files, schema, offered, rejecting)
        reader = pa.RecordBatchReader.from_batches(schema, batches)
        if incremental_key is not None and cursor is not None:
            return rows_since(reader, incremental_key, cursor, self.connection)
        return reader

    # The tables.

    def _tables(self) -> list[CsvTable]:
        """Every table offered, in config order (per-file tables in file order)."""
        settings = self.settings
        if settings.tables is not None:
            return [
                CsvTable(
                    name,
                    entry.path,
                    f"tables.{name}",
                    self._types(entry.columns, f"tables.{name}.columns"),
                    self.overrides,
                )
                for name, entry in settings.tables.items()
            ]
        assert self.path is not None  # the model requires path or tables
        if self.table is not None:
            return [CsvTable(self.table, self.path, "path", self.overrides)]
        return self._file_tables(self.path)

    def _file_tables(self, path: str) -> list[CsvTable]:
        """table_per_file: one table per file the path matches, named after its stem."""
        tables: dict[str, CsvTable] = {}
        for file in self._matches(path, "path"):
            name = self._checked_name(file.stem, file.display, single=False)
            if name in tables:
                raise self._error(
                    f"files {tables[name].path} and {file.display} would both be table "
                    f"{name!r}; map them to different names with tables: {{...}}"
                )
            tables[name] = CsvTable(name, file.display, "path", {}, self.overrides, file)
        return list(tables.values())

    def _checked_name(self, name: str, shown: str, *, single: bool) -> str:
        """A table name derived from the file (or glob) `shown`, refused when not valid.

        `single`: the one table of a `path` connection, which `table:` can also name.
        """
        if TABLE_NAME.fullmatch(name):
            return name
        fixed = _valid_name(name)
        kind = "path" if single and has_glob(shown) else "file"
        alternative = f"(or table: {fixed})" if single else "(or rename the file)"
        raise self._error(
            f"{kind} {shown} gives the table name {name!r}, which is not a valid table name; "
            f"map it to one with tables: {{{fixed}: {shown}}} {alternative}"
        )

    def _table(self, name: str) -> CsvTable:
        tables = self._tables()
        for table in tables:
            if table.name == name:
                return table
        offered = ", ".join(table.name for table in tables)
        raise self._error(f"no table {name!r}; this CSV connection offers {offered}")

    # Finding files.

    def matching_files(self) -> list[str]:
        """The files the connection's paths match now, sorted, as `path` values; maybe none.

        A file-arrival sensor lists these; for a `tables:` connection, every table's files.
        """
        if self.settings.tables is not None:
            paths = {entry.path for entry in self.settings.tables.values()}
            return sorted({file.display for path in paths for file in self._listing(path)})
        assert self.path is not None
        return [file.display for file in self._listing(self.path)]

    def _files(self, table: CsvTable) -> list[CsvFile]:
        """The files of a table, in sorted order; never empty."""
        if table.file is not None:
            return [table.file]
        return self._matches(table.path, table.where)

    def _matches(self, path: str, where: str) -> list[CsvFile]:
        files = self._listing(path)
        if not files:
            raise self._no_files(path, where)
        return files

    def _no_files(self, path: str, where: str) -> ConnectorError:
        kind = "file matches" if has_glob(path) else "file found at"
        return self._error(f"no {kind} {path}; check {where}")

    def _listing(self, path: str) -> list[CsvFile]:
        if path.startswith("s3://"):
            try:
                return s3_files(self._s3_filesystem(), path)
            except OSError as exc:
                raise self._io_error(path, exc) from None
        return local_files(path, Path(self.settings.base_dir or os.getcwd()))

    def _s3_filesystem(self) -> fs.S3FileSystem:
        """An S3 filesystem from config keys, falling back to the standard AWS variables."""
        settings = self.settings
        return s3_filesystem(
            settings.endpoint_url,
            settings.region,
            settings.aws_access_key_id,
            settings.aws_secret_access_key,
        )

    # Sniffing and streaming.

    def _sniff(self, file: CsvFile, table: CsvTable, rejecting: bool = False) -> pa.Schema:
        """The fixed schema: types inferred from the first block, then the overrides.

        `rejecting`: malformed rows are left out of the sniffing, and a column holding text
        that does not decode is text (its undecodable rows are rejected as they are read).
        """
        with self._open(file, None, _RowGuard(rejecting)) as reader:
            sniffed = reader.schema
        if rejecting:
            sniffed = pa.schema(
                f.with_type(pa.string()) if pa.types.is_binary(f.type) else f for f in sniffed
            )
        if any(pa.types.is_binary(t) for t in sniffed.types):
            # Arrow reads a column whose text does not decode as bytes: that is the wrong
            # encoding, not binary data.
            raise self._encoding_error(file)
        names = self._column_names(len(sniffed)) or sniffed.names
        self._check_header(file, names)
        unknown = sorted(set(table.overrides) - set(names))
        if unknown:
            key = "columns" if table.where == "path" else f"{table.where}.columns"
            raise self._error(
                f"columns names {', '.join(unknown)}, not in {file.display} "
                f"(its columns are {', '.join(names)}); fix the {key} mapping"
            )
        overrides = {**table.shared, **table.overrides}
        return pa.schema(
            pa.field(name, overrides.get(name) or settle(field.type))
            for name, field in zip(names, sniffed, strict=True)
        )

    def _check_header(self, file: CsvFile, names: list[str]) -> None:
        """Every column needs a name of its own: SQL cannot name an unnamed column, and a
        table cannot hold two of one name."""
        for position, name in enumerate(names, start=1):
            if not name.strip():
                raise self._error(
                    f"{file.display}: column {position} of the header has no name; name it"
                )
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise self._error(
                    f"{file.display}: the header names column {name!r} twice; rename one"
                )
            seen.add(name)

    def _column_names(self, count: int) -> list[str] | None:
        return None if self.header else [f"column_{i}" for i in range(1, count + 1)]

    def _open(
        self,
        file: CsvFile,
        schema: pa.Schema | None,
        guard: _RowGuard,
        numbered: bool = False,
    ) -> pacsv.CSVStreamingReader:
        """A streaming reader: sniffing types without a schema, else every column as text.

        Parsing uses every core; only `numbered` (single-threaded) parsing makes pyarrow
        number the rows, so that is kept for finding a malformed row once one is known, and
        for a rejecting `guard`, which must number each row it rejects. Rejecting reads the
        columns as bytes, so that text that does not decode rejects its row, not the file.
        """
        rejecting = guard.rejecting and schema is not None
        read_options = pacsv.ReadOptions(
            block_size=self.block_size,
            # Any other encoding is transcoded into UTF-8 as the file is read.
            encoding=self.encoding,
            use_threads=not (numbered or guard.rejecting),
            column_names=None if self.header or schema is None else schema.names,
            autogenerate_column_names=not self.header and schema is None,
        )
        parse_options = pacsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=guard)
        convert_options = pacsv.ConvertOptions(
            column_types=None if schema is None else as_text(schema, rejecting),
            null_values=self.null_values,
            strings_can_be_null=True,
            # Sniffing ignores quoted markers too, so that "" in a number column leaves it
            # a number column; reading keeps a quoted "" as text, for text columns.
            quoted_strings_can_be_null=schema is None,
        )
        try:
            return pacsv.open_csv(file.open(), read_options, parse_options, convert_options)
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                # Arrow says the same of a first line longer than a block.
                if file.filesystem.get_file_info(file.path).size > self.block_size:
                    raise self._long_row_error(file) from None
                raise self._error(f"{file.display} is empty; it needs at least one line") from None
            raise self._parse_error(file, exc, guard, schema) from None
        except OSError as exc:
            raise self._io_error(file.display, exc) from None

    def _stream(
        self,
        files: list[CsvFile],
        schema: pa.Schema,
        table: CsvTable,
        rejecting: _Rejecting | None,
    ) -> Iterator[pa.RecordBatch]:
        """Every file's batches in order, as one stream with the fixed schema."""
        for file in files:
            if not self.header and file.filesystem.get_file_info(file.path).size == 0:
                continue  # without a header, an empty file is just one with no rows
            guard = _RowGuard(rejecting=rejecting is not None)
            with self._open(file, schema, guard) as reader:
                if reader.schema.names != schema.names:
                    raise self._error(
                        f"{file.display} has columns {', '.join(reader.schema.names)} but "
                        f"{files[0].display} has {', '.join(schema.names)}; every file "
                        f"matched by {table.where} must share the same header"
                    )
                if rejecting is None:
                    yield from self._file_batches(file, reader, guard, schema)
                else:
                    yield from self._sorted_batches(file, reader, guard, schema, rejecting)

    def _file_batches(
        self,
        file: CsvFile,
        reader: pacsv.CSVStreamingReader,
        guard: _RowGuard,
        schema: pa.Schema | None,
    ) -> Iterator[pa.RecordBatch]:
        markers = pa.array(self.null_values, pa.string())
        rows_before = 1 if self.header else 0  # pyarrow numbers the header row too
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                if "invalid UTF8" in str(exc):
                    raise self._encoding_error(file) from None
                raise self._parse_error(file, exc, guard, schema) from None
            except OSError as exc:
                raise self._io_error(file.display, exc) from None
            if schema is not None:
                try:
                    batch = typed(batch, schema, markers)
                except BadValue as bad:
                    raise self._conversion_error(file, schema, bad, rows_before) from None
            rows_before += batch.num_rows
            yield batch

    def _sorted_batches(
        self,
        file: CsvFile,
        reader: pacsv.CSVStreamingReader,
        guard: _RowGuard,
        schema: pa.Schema,
        rejecting: _Rejecting,
    ) -> Iterator[pa.RecordBatch]:
        """A file's rows that read cleanly, batch by batch; once the file has been read, the
        others go into the rejects, in line order, with their lines' text."""
        markers = pa.array(self.null_values, pa.string())
        # Rows the reader returned so far, and the reason of each rejected one by its index
        # among them: a malformed row is never returned, so it is not counted.
        returned = 0
        refused: dict[int, str] = {}
        for batch in self._file_batches(file, reader, guard, None):
            good, reasons = sorted_out(batch, schema, markers, self.encoding)
            refused.update(
                (returned + offset, reason)
                for offset, reason in reasons.items()
                if not rejecting.read_before(batch, offset)
            )
            returned += batch.num_rows
            if good.num_rows:
                yield good
        # pyarrow numbers rows from 1, the header included, and skips the malformed rows'
        # numbers in none of its counts: place each refused row among them.
        skipped = sorted(row.number for row in guard.skipped)
        numbered = {
            returned_row_number(index + (2 if self.header else 1), skipped): reason
            for index, reason in refused.items()
        }
        numbered.update(
            (row.number, f"expected {row.expected_columns} fields, found {row.actual_columns}")
            for row in guard.skipped
        )
        lines = row_lines(file, numbered.keys(), self.encoding)
        for number in sorted(numbered):
            line, text = lines[number]
            rejecting.log.add(Reject(numbered[number], file.display, line, text))

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
        """A malformed row, with its line number."""
        if guard.rejecting:
            # Malformed rows were skipped: this is something else, such as a row too long.
            guard = _RowGuard()
        if guard.row is not None and (guard.row.number is None or guard.row.number < 0):
            return self._numbered_parse_error(file, schema)
        if guard.row is not None:
            row = guard.row
            where = file_line(file, row.number)
            return self._error(
                f"{where}: expected {row.expected_columns} fields, found "
                f"{row.actual_columns}; fix the row or the delimiter "
                f"({self.delimiter!r})"
            )
        return self._error(f"cannot parse {file.display}: {str(exc).splitlines()[0]}")

    def _numbered_parse_error(self, file: CsvFile, schema: pa.Schema | None) -> ConnectorError:
        """Parse the file again, single-threaded, so the malformed row gets its number."""
        guard = _RowGuard()
        try:
            with self._open(file, schema, guard, numbered=True) as reader:
                for _ in self._file_batches(file, reader, guard, None):
                    pass
        except ConnectorError as error:
            return error
        return self._error(f"cannot parse {file.display}; check the delimiter and quoting")

    def _long_row_error(self, file: CsvFile) -> ConnectorError:
        """A row longer than a parse block: its line, and the block size that fits it."""
        line, size = first_long_line(file, self.block_size)
        where = file.display if line is None else f"{file.display} line {line}"
        needed = min(MAX_BLOCK_MB, max(2 * (size >> 20), (size >> 20) + 1))
        return self._error(
            f"{where} is a row of {size:,} bytes, longer than the {self.block_size >> 20} MB "
            f"blocks the file is parsed in; set block_size_mb to {needed} or more"
        )

    def _encoding_error(self, file: CsvFile) -> ConnectorError:
        """Text that does not decode: the first line that does not, and what to set."""
        line = first_undecodable_line(file, self.encoding)
        where = file.display if line is None else f"{file.display} line {line}"
        return self._error(
            f"{where} is not valid {self.encoding} text; set encoding in the connection's "
            "config to the file's encoding (such as latin-1 or cp1252)"
        )

    def _conversion_error(
        self, file: CsvFile, schema: pa.Schema, bad: BadValue, rows_before: int
    ) -> ConnectorError:
        name, expected = schema.names[bad.index], schema.types[bad.index]
        hint = (
            f"fix the value, list it in null_values if it means NULL, or set columns: "
            f"{{{name}: VARCHAR}} (or another type that fits)"
        )
        if bad.offset is None:
            return self._error(
                f"{file.display}: a value in column {name!r} is not {expected}; {hint}"
            )
        where = file_line(file, rows_before + bad.offset + 1)
        return self._error(
            f"{where}: column {name!r} value {bad.value!r} is not {expected}; {hint}"
        )

    def _io_error(self, where: str, exc: OSError) -> ConnectorError:
        text = str(exc)
        if "NETWORK_CONNECTION" in text or "curlCode" in text:
            endpoint = self.settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
            return self._error(
                f"cannot reach the S3 endpoint {endpoint or 'of AWS'} to read {where}; "
                "check endpoint_url or AWS_ENDPOINT_URL"
            )
        if "ACCESS_DENIED" in text or "InvalidAccessKeyId" in text or "SignatureDoes" in text:
            keys = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            if self.settings.aws_access_key_id is not None:
                keys = "aws_access_key_id and aws_secret_access_key"
            return self._error(f"S3 refused access to {where}; check {keys}")
        if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text:
            return self._error(f"the bucket of {where} does not exist; check path")
        reason = text.splitlines()[0] if text else type(exc).__name__
        return self._error(f"cannot read {where} ({reason}); check path and permissions")


def _rejecting_since(rejects: RejectLog, schema: pa.Schema, key: str, cursor: Any) -> _Rejecting:
    """A rejecting read from a cursor (see _Rejecting)."""
    try:
        bound = pa.scalar(cursor).cast(schema.field(key).type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return _Rejecting(rejects)  # rows_since reports the cursor that does not fit
    return _Rejecting(rejects, schema.get_field_index(key), bound)


def _valid_name(name: str) -> str:
    """A valid table name close to an invalid one: `la-riots` -> `la_riots`."""
    fixed = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "table"
    return f"t_{fixed}" if fixed[0].isdigit() else fixed


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
