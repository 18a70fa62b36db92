"""Google Sheets as a source (each sheet a table) and as a destination (each table a sheet).

Both speak the Sheets API v4 with a service account (`connectors.google_auth`): the
spreadsheet must be shared with the account's client_email. Reads page through a sheet by
row ranges, so memory holds one page; writes stage the incoming table to a local Arrow file
first, because the cell limit must be checked before anything is written and a
RecordBatchReader can only be read once.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from connectors.base import (
    ConnectorError,
    CursorState,
    Destination,
    LoadMode,
    LoadRequest,
    LoadResult,
    Source,
    TableSchema,
)
from connectors.csv_source import parse_type
from connectors.google_auth import GoogleApi

SHEETS_URL = "https://sheets.googleapis.com"
READ_SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
WRITE_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
# Sheets allows 60 requests a minute per user: one a second never trips the quota.
REQUESTS_PER_SECOND = 1.0
# Google's limit for a whole spreadsheet, checked against each table before loading it.
CELL_LIMIT = 10_000_000
# Rows per read request (config `page_rows`): one page is what a read holds in memory.
PAGE_ROWS = 10_000
# Rows per write request: keeps a request body near the 2 MB Google recommends.
WRITE_ROWS = 5_000
CREDENTIAL_HINT = "service_account_json, and that the spreadsheet is shared with {client_email}"

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A date alone also matches, so a column mixing dates and timestamps is a timestamp column.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]+")


def a1(sheet: str, cells: str = "") -> str:
    """An A1 range on a sheet: the title quoted (quotes doubled), then `!cells` if given."""
    quoted = "'" + sheet.replace("'", "''") + "'"
    return f"{quoted}!{cells}" if cells else quoted


def table_name(sheet: str) -> str:
    """The table a sheet is offered as: its title with other characters than A-Z, 0-9, _ as _."""
    name = _NOT_IN_NAME.sub("_", sheet).strip("_") or "sheet"
    return f"_{name}" if name[0].isdigit() else name


# Sniffing: the first type whose test every non-empty value of a column passes.
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_SNIFFERS: tuple[tuple[pa.DataType, Callable[[Any], bool]], ...] = (
    (pa.bool_(), lambda v: isinstance(v, bool)),
    (pa.int64(), _is_int),
    (pa.float64(), _is_number),
    (pa.date32(), lambda v: isinstance(v, str) and bool(_DATE.fullmatch(v))),
    (pa.timestamp("us"), lambda v: isinstance(v, str) and bool(_TIMESTAMP.fullmatch(v))),
)


def sniff(values: Sequence[Any]) -> pa.DataType:
    """A column's type from its cells (unformatted values; dates as formatted strings)."""
    present = [v for v in values if not _is_empty(v)]
    for kind, test in _SNIFFERS:
        if present and all(test(v) for v in present):
            return kind
    return pa.string()


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


def _has_values(cells: Sequence[Any]) -> bool:
    return any(not _is_empty(cell) for cell in cells)


def _cell_value(value: Any, kind: pa.DataType) -> Any:
    """A cell as a Python value of the column's type; ValueError if it does not fit."""
    if _is_empty(value):
        return None
    if pa.types.is_string(kind):
        return str(value).upper() if isinstance(value, bool) else str(value)
    if isinstance(value, bool) != pa.types.is_boolean(kind):
        raise ValueError("a boolean and a non-boolean")
    if pa.types.is_boolean(kind):
        return value
    if pa.types.is_integer(kind):
        number = float(value) if isinstance(value, float) else int(value)
        if isinstance(number, float) and not number.is_integer():
            raise ValueError("not a whole number")
        return int(number)
    if pa.types.is_floating(kind):
        return float(value)
    if pa.types.is_decimal(kind):
        return decimal.Decimal(str(value))
    if pa.types.is_date(kind):
        return dt.date.fromisoformat(str(value))
    if pa.types.is_timestamp(kind):
        return dt.datetime.fromisoformat(str(value))
    raise ValueError(f"unsupported column type {kind}")


def _header(cells: Sequence[Any]) -> list[str]:
    """Column names from the first row: blanks become column_N, repeats get a _2, _3 suffix."""
    names: list[str] = []
    for index, cell in enumerate(cells, start=1):
        name = str(cell).strip() or f"column_{index}"
        unique, count = name, 1
        while unique in names:
            count += 1
            unique = f"{name}_{count}"
        names.append(unique)
    return names


@dataclass(frozen=True)
class SheetSpec:
    """A sheet the source offers: its title and the column types set in config."""

    title: str
    overrides: Mapping[str, pa.DataType] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return table_name(self.title)


class Spreadsheet:
    """The Sheets API calls of one spreadsheet, shared by the source and the destination."""

    def __init__(self, connection: str, config: Mapping[str, Any], scope: str) -> None:
        self.connection = connection
        if not config.get("spreadsheet_id"):
            raise self.error("config needs `spreadsheet_id` (from the spreadsheet's URL)")
        self.spreadsheet_id = str(config["spreadsheet_id"])
        self.api = GoogleApi(
            connection,
            config,
            default_base_url=SHEETS_URL,
            scopes=[scope],
            requests_per_second=REQUESTS_PER_SECOND,
            credential_hint=CREDENTIAL_HINT,
        )
        self.path = f"/v4/spreadsheets/{quote(self.spreadsheet_id, safe='')}"

    def error(self, message: str) -> ConnectorError:
        return ConnectorError(f"connection {self.connection!r}: {message}")

    def sheets(self) -> dict[str, dict[str, Any]]:
        """Each sheet's properties (sheetId, gridProperties ...) by title, in tab order."""
        body = self.api.call("GET", self.path, params={"fields": "sheets.properties"})
        return {s["properties"]["title"]: s["properties"] for s in body.get("sheets", [])}

    def sheet(
        self, title: str, sheets: Mapping[str, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """One sheet's properties; a clear error, listing the sheets there are, if missing."""
        sheets = self.sheets() if sheets is None else sheets
        if title not in sheets:
            raise self.error(
                f"spreadsheet {self.spreadsheet_id} has no sheet {title!r}; its sheets are "
                f"{', '.join(sheets) or 'none'}"
            )
        return sheets[title]

    def rows(self, sheet: str, first: int, last: int) -> list[list[Any]]:
        """Rows first..last (1-based) as unformatted values, dates as formatted text."""
        body = self.api.call(
            "GET",
            self.values_path(a1(sheet, f"{first}:{last}")),
            params={
                "valueRenderOption": "UNFORMATTED_VALUE",
                "dateTimeRenderOption": "FORMATTED_STRING",
            },
        )
        return body.get("values", [])

    def values_path(self, cells: str, action: str = "") -> str:
        return f"{self.path}/values/{quote(cells, safe='')}{action}"

    def batch_update(self, *requests: Mapping[str, Any]) -> dict[str, Any]:
        return self.api.call("POST", f"{self.path}:batchUpdate", json={"requests": requests})


@dataclass(frozen=True)
class _Layout:
    """How a sheet's cells become a table: the sheet and the schema fixed for every page."""

    sheet: str
    schema: pa.Schema


class GoogleSheetsSource(Source):
    """Sheets of one spreadsheet as tables, full sync only.

    Config: `spreadsheet_id`, `service_account_json` (JSON text, a mapping, or a path relative
    to base_dir), `sheet_name` ("Sheet1") with `columns` (name -> type name, as for CSV), or
    `sheets` (a list of titles, or of `{name, columns}`) to offer several, `base_url`
    (https://sheets.googleapis.com), `page_rows` (10000), `requests_per_second` (1).
    A sheet is offered as the table `table_name(title)`; its first row is the header, blank
    rows are skipped, and column types are sniffed from the first page.
    """

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.book = Spreadsheet(connection, self.config, READ_SCOPE)
        self.page_rows = int(self.config.get("page_rows") or PAGE_ROWS)
        self.specs = self._specs()

    def _specs(self) -> dict[str, SheetSpec]:
        entries = self.config.get("sheets") or [
            {
                "name": self.config.get("sheet_name") or "Sheet1",
                "columns": self.config.get("columns"),
            }
        ]
        specs: dict[str, SheetSpec] = {}
        for entry in entries:
            spec = self._spec_of(entry if isinstance(entry, Mapping) else {"name": entry})
            if spec.table in specs:
                raise self.book.error(
                    f"sheets {specs[spec.table].title!r} and {spec.title!r} would both be "
                    f"table {spec.table!r}; read them with two connections"
                )
            specs[spec.table] = spec
        return specs

    def _spec_of(self, entry: Mapping[str, Any]) -> SheetSpec:
        title = str(entry.get("name") or "")
        if not title:
            raise self.book.error("each entry of `sheets` needs a name (the sheet's title)")
        try:
            overrides = {
                str(column): parse_type(str(type_name))
                for column, type_name in (entry.get("columns") or {}).items()
            }
        except ValueError as exc:
            raise self.book.error(f"columns of sheet {title!r}: {exc}") from None
        return SheetSpec(title, overrides)

    # The Source contract.

    def check(self) -> str:
        sheets = self.book.sheets()
        for spec in self.specs.values():
            self.book.sheet(spec.title, sheets)
        listed = ", ".join(sheets)
        return f"spreadsheet {self.book.spreadsheet_id} has {len(sheets)} sheet(s): {listed}"

    def discover(self) -> list[TableSchema]:
        sheets = self.book.sheets()
        return [
            TableSchema(table, self._layout(spec, self._first_page(spec, sheets)).schema)
            for table, spec in self.specs.items()
        ]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        if incremental_key is not None:
            raise self.book.error(
                f"Google Sheets supports full sync only (table {table!r}); set sync_mode: full"
            )
        spec = self._spec(table)
        sheets = self.book.sheets()
        first = self._first_page(spec, sheets)
        layout = self._layout(spec, first)
        return pa.RecordBatchReader.from_batches(
            layout.schema, self._batches(layout, first, _grid_rows(sheets[spec.title]))
        )

    # Reading.

    def _spec(self, table: str) -> SheetSpec:
        for spec in self.specs.values():
            if table in (spec.table, spec.title):
                return spec
        raise self.book.error(
            f"no table {table!r}; this connection offers {', '.join(self.specs)} (add the sheet "
            "to `sheets` to read it)"
        )

    def _first_page(self, spec: SheetSpec, sheets: Mapping[str, dict[str, Any]]) -> list[list[Any]]:
        last_row = _grid_rows(self.book.sheet(spec.title, sheets))
        rows = self.book.rows(spec.title, 1, min(self.page_rows, last_row))
        if not rows or not _has_values(rows[0]):
            raise self.book.error(
                f"sheet {spec.title!r} is empty; its first row must be the header"
            )
        return rows

    def _layout(self, spec: SheetSpec, first: list[list[Any]]) -> _Layout:
        """The schema: names from the header row, types sniffed from the page or overridden."""
        names = _header(first[0])
        unknown = sorted(set(spec.overrides) - set(names))
        if unknown:
            raise self.book.error(
                f"columns names {', '.join(unknown)}, not in sheet {spec.title!r} (its columns "
                f"are {', '.join(names)}); fix the columns mapping"
            )
        data = first[1:]
        fields = [
            pa.field(
                name,
                spec.overrides.get(name)
                or sniff([row[i] if i < len(row) else None for row in data]),
            )
            for i, name in enumerate(names)
        ]
        return _Layout(spec.title, pa.schema(fields))

    def _batches(
        self, layout: _Layout, first: list[list[Any]], last_row: int
    ) -> Iterator[pa.RecordBatch]:
        """The first page's data, then each later page up to the sheet's last grid row."""
        yield self._batch(layout, first[1:], 2)
        for start in range(self.page_rows + 1, last_row + 1, self.page_rows):
            rows = self.book.rows(layout.sheet, start, min(start + self.page_rows - 1, last_row))
            if rows:
                yield self._batch(layout, rows, start)

    def _batch(self, layout: _Layout, rows: list[list[Any]], first_row: int) -> pa.RecordBatch:
        """One page as a batch; `first_row` is the sheet row number of rows[0], for errors."""
        width = len(layout.schema)
        numbered = [
            (number, row) for number, row in enumerate(rows, start=first_row) if _has_values(row)
        ]
        for number, row in numbered:
            if _has_values(row[width:]):
                raise self.book.error(
                    f"sheet {layout.sheet!r} row {number} has a value right of the header's "
                    f"last column ({width}); give that column a header"
                )
        columns = [
            pa.array([self._cell(layout, number, row, i) for number, row in numbered], kind)
            for i, kind in enumerate(layout.schema.types)
        ]
        return pa.RecordBatch.from_arrays(columns, schema=layout.schema)

    def _cell(self, layout: _Layout, number: int, row: list[Any], index: int) -> Any:
        name, kind = layout.schema.names[index], layout.schema.types[index]
        value = row[index] if index < len(row) else None
        try:
            return _cell_value(value, kind)
        except (ValueError, ArithmeticError):
            raise self.book.error(
                f"sheet {layout.sheet!r} row {number}: column {name!r} value {value!r} is not "
                f"{kind}; fix the cell or set columns: {{{name}: VARCHAR}} (or another type "
                "that fits)"
            ) from None


def _grid_rows(sheet: Mapping[str, Any]) -> int:
    """How many rows a sheet's grid has: where reading pages stops."""
    return int(sheet["gridProperties"]["rowCount"])


def _to_cell(value: Any) -> Any:
    """A Python value as a cell written RAW: dates as ISO text, NULL as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity; the text keeps them visible in the sheet.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)  # Sheets stores every number as a double
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return json.dumps(value, default=str, sort_keys=True)


@dataclass(frozen=True)
class _Staged:
    """The table to load, staged to a local Arrow file so it can be counted, then written."""

    path: Path
    schema: pa.Schema
    rows: int

    def chunks(self, columns: Sequence[str]) -> Iterator[list[list[Any]]]:
        """Rows as cell lists in `columns` order (missing columns empty), WRITE_ROWS at a time."""
        present = [name if name in self.schema.names else None for name in columns]
        with pa.memory_map(str(self.path)) as source:
            reader = pa.ipc.open_file(source)
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                for offset in range(0, batch.num_rows, WRITE_ROWS):
                    records = batch.slice(offset, WRITE_ROWS).to_pylist()
                    yield [
                        [_to_cell(record[name]) if name else "" for name in present]
                        for record in records
                    ]


def _stage(data: pa.RecordBatchReader, path: Path) -> _Staged:
    rows = 0
    with pa.ipc.new_file(str(path), data.schema) as writer:
        for batch in data:
            writer.write_batch(batch)
            rows += batch.num_rows
    return _Staged(path, data.schema, rows)


class GoogleSheetsDestination(Destination):
    """Tables loaded into sheets of one spreadsheet (a sheet per table, named as the table).

    Config: `spreadsheet_id`, `service_account_json`, `base_url`, `requests_per_second` (1),
    `cell_limit` (10,000,000, Google's limit). Modes: replace (clear, resize the grid to the
    table, write) and append (add rows; header only into an empty sheet; new columns are
    added to the header). Upsert is refused. Sheets keeps no cursor state, so `read_state`
    is always None and an incremental append is refused (every run would re-append all rows).
    A load is not atomic: a failure part-way leaves the rows written so far.
    """

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.book = Spreadsheet(connection, self.config, WRITE_SCOPE)
        self.cell_limit = int(self.config.get("cell_limit") or CELL_LIMIT)

    def check(self) -> str:
        sheets = self.book.sheets()
        return f"spreadsheet {self.book.spreadsheet_id} is writable; {len(sheets)} sheet(s)"

    def discover(self) -> list[TableSchema]:
        """Every sheet, with its header's columns as text (an empty sheet has none)."""
        tables = []
        for title in self.book.sheets():
            header = self.book.rows(title, 1, 1)
            names = _header(header[0]) if header else []
            tables.append(TableSchema(title, pa.schema([(n, pa.string()) for n in names])))
        return tables

    def read_state(self, pipeline: str, source_table: str) -> CursorState | None:
        return None

    def load(self, data: pa.RecordBatchReader, request: LoadRequest) -> LoadResult:
        self._refuse(request)
        with tempfile.TemporaryDirectory(prefix="datapipe-sheets-") as folder:
            staged = _stage(data, Path(folder) / "table.arrow")
            cells = (staged.rows + 1) * len(staged.schema)
            if cells > self.cell_limit:
                raise self.book.error(
                    f"table {request.table!r} has {cells:,} cells, over the Google Sheets limit "
                    f"of {self.cell_limit:,}; load it to a database destination or filter it "
                    "first"
                )
            sheet, created = self._sheet(request, staged)
            if request.mode == LoadMode.REPLACE:
                self._replace(sheet, staged)
                return LoadResult(staged.rows, staged.rows, table_created=created)
            return self._append(sheet, staged, created)

    def _refuse(self, request: LoadRequest) -> None:
        if request.mode == LoadMode.UPSERT:
            raise self.book.error(
                f"Google Sheets cannot upsert (table {request.table!r}); use load_mode: "
                "replace or append"
            )
        if request.mode == LoadMode.APPEND and request.state_updates:
            raise self.book.error(
                f"Google Sheets keeps no cursor state, so an incremental append into "
                f"{request.table!r} would re-append every row each run; use sync_mode: full "
                "or load_mode: replace"
            )

    def _sheet(self, request: LoadRequest, staged: _Staged) -> tuple[dict[str, Any], bool]:
        """The target sheet's properties, adding the sheet (sized to the table) if missing."""
        sheets = self.book.sheets()
        if request.table in sheets:
            return sheets[request.table], False
        if not request.create_table_if_missing:
            raise self.book.error(
                f"spreadsheet {self.book.spreadsheet_id} has no sheet {request.table!r}; add it "
                "or set create_table_if_missing: true"
            )
        grid = {"rowCount": staged.rows + 1, "columnCount": max(1, len(staged.schema))}
        reply = self.book.batch_update(
            {"addSheet": {"properties": {"title": request.table, "gridProperties": grid}}}
        )
        return reply["replies"][0]["addSheet"]["properties"], True

    def _resize(self, sheet: dict[str, Any], rows: int, columns: int) -> None:
        grid = {"rowCount": rows, "columnCount": max(1, columns)}
        self.book.batch_update(
            {
                "updateSheetProperties": {
                    "properties": {"sheetId": sheet["sheetId"], "gridProperties": grid},
                    "fields": "gridProperties.rowCount,gridProperties.columnCount",
                }
            }
        )

    def _replace(self, sheet: dict[str, Any], staged: _Staged) -> None:
        """Clear the sheet, fit its grid to the table exactly, then write header and rows."""
        title = sheet["title"]
        self.book.api.call("POST", self.book.values_path(a1(title), ":clear"), json={})
        # values.update cannot write past the grid; an exact grid also drops stale rows.
        self._resize(sheet, staged.rows + 1, len(staged.schema))
        self._put(title, 1, [staged.schema.names])
        next_row = 2
        for chunk in staged.chunks(staged.schema.names):
            self._put(title, next_row, chunk)
            next_row += len(chunk)

    def _put(self, title: str, row: int, values: list[list[Any]]) -> None:
        cells = a1(title, f"A{row}")
        self.book.api.call(
            "PUT",
            self.book.values_path(cells),
            params={"valueInputOption": "RAW"},
            json={"range": cells, "majorDimension": "ROWS", "values": values},
        )

    def _append(self, sheet: dict[str, Any], staged: _Staged, created: bool) -> LoadResult:
        """Add rows under the existing ones, matching the sheet's header by column name."""
        title = sheet["title"]
        header_rows = [] if created else self.book.rows(title, 1, 1)
        existing = _header(header_rows[0]) if header_rows else []
        added = tuple(name for name in staged.schema.names if name not in existing)
        columns = existing + list(added)
        if len(columns) > int(sheet["gridProperties"]["columnCount"]):
            # Appending inserts the rows it needs, but never columns.
            self._resize(sheet, _grid_rows(sheet), len(columns))
        if added:
            self._put(title, 1, [columns])
        last_row = 0
        for chunk in staged.chunks(columns):
            last_row = self._append_rows(title, chunk)
        table_rows = last_row - 1 if last_row else self._data_rows(title)
        return LoadResult(
            staged.rows,
            table_rows,
            columns_added=added if existing else (),
            table_created=created,
        )

    def _append_rows(self, title: str, values: list[list[Any]]) -> int:
        """Append rows after the sheet's table; the sheet row number of the last one."""
        body = self.book.api.call(
            "POST",
            self.book.values_path(a1(title, "A1"), ":append"),
            params={"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"},
            json={"majorDimension": "ROWS", "values": values},
        )
        updated = str(body.get("updates", {}).get("updatedRange", ""))
        match = re.search(r"(\d+)$", updated)
        return int(match[1]) if match else 0

    def _data_rows(self, title: str) -> int:
        """Rows under the header, counted down column A: for an append that added none."""
        body = self.book.api.call(
            "GET", self.book.values_path(a1(title, "A:A")), params={"majorDimension": "COLUMNS"}
        )
        column = (body.get("values") or [[]])[0]
        return max(0, len(column) - 1)
