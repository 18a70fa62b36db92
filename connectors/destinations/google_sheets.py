"""Google Sheets as a destination: each table loaded into a sheet of one spreadsheet.

Writes stage the incoming table to a local Arrow file first, because the cell limit must be
checked before anything is written and a RecordBatchReader can only be read once.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from connectors.base import (
    CursorState,
    Destination,
    LoadMode,
    LoadRequest,
    LoadResult,
    TableSchema,
    connection_error,
)
from connectors.config.google_sheets import GoogleSheetsDestinationConfig
from connectors.shared.google_sheets_api import (
    WRITE_SCOPE,
    Spreadsheet,
    a1,
    grid_rows,
    header_names,
)

# Rows per write request: keeps a request body near the 2 MB Google recommends.
WRITE_ROWS = 5_000


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

    Config: see GoogleSheetsDestinationConfig. Modes: replace (clear, resize the grid to the
    table, write) and append (add rows; header only into an empty sheet; new columns are
    added to the header). Upsert is refused. Sheets keeps no cursor state, so `read_state`
    is always None and an incremental append is refused (every run would re-append all rows).
    A load is not atomic: a failure part-way leaves the rows written so far.
    """

    config_model = GoogleSheetsDestinationConfig
    settings: GoogleSheetsDestinationConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.book = Spreadsheet(connection, self.settings, WRITE_SCOPE)
        self.cell_limit = self.settings.cell_limit

    def check(self) -> str:
        sheets = self.book.sheets()
        return f"spreadsheet {self.book.spreadsheet_id} is writable; {len(sheets)} sheet(s)"

    def discover(self) -> list[TableSchema]:
        """Every sheet, with its header's columns as text (an empty sheet has none)."""
        tables = []
        for title in self.book.sheets():
            header = self.book.rows(title, 1, 1)
            names = header_names(header[0]) if header else []
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
                raise connection_error(
                    self.connection,
                    f"table {request.table!r} has {cells:,} cells, over the Google Sheets limit "
                    f"of {self.cell_limit:,}; load it to a database destination or filter it "
                    "first",
                )
            sheet, created = self._sheet(request, staged)
            if request.mode == LoadMode.REPLACE:
                self._replace(sheet, staged)
                return LoadResult(staged.rows, staged.rows, table_created=created)
            return self._append(sheet, staged, created)

    def _refuse(self, request: LoadRequest) -> None:
        if request.mode == LoadMode.UPSERT:
            raise connection_error(
                self.connection,
                f"Google Sheets cannot upsert (table {request.table!r}); use load_mode: "
                "replace or append",
            )
        if request.mode == LoadMode.APPEND and request.state_updates:
            raise connection_error(
                self.connection,
                f"Google Sheets keeps no cursor state, so an incremental append into "
                f"{request.table!r} would re-append every row each run; use sync_mode: full "
                "or load_mode: replace",
            )

    def _sheet(self, request: LoadRequest, staged: _Staged) -> tuple[dict[str, Any], bool]:
        """The target sheet's properties, adding the sheet (sized to the table) if missing."""
        sheets = self.book.sheets()
        if request.table in sheets:
            return sheets[request.table], False
        if not request.create_table_if_missing:
            raise connection_error(
                self.connection,
                f"spreadsheet {self.book.spreadsheet_id} has no sheet {request.table!r}; add it "
                "or set create_table_if_missing: true",
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
        existing = header_names(header_rows[0]) if header_rows else []
        added = tuple(name for name in staged.schema.names if name not in existing)
        columns = existing + list(added)
        if len(columns) > int(sheet["gridProperties"]["columnCount"]):
            # Appending inserts the rows it needs, but never columns.
            self._resize(sheet, grid_rows(sheet), len(columns))
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
