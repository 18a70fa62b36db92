"""Google Sheets as a source: each sheet of one spreadsheet a table, full sync only.

Reads page through a sheet by row ranges, so memory holds one page; column types are
sniffed from the first page unless set in config.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from connectors.base import Source, TableSchema, connection_error
from connectors.config.google_sheets import GoogleSheetsSourceConfig, SheetConfig
from connectors.shared.column_types import parse_type
from connectors.shared.google_sheets_api import (
    READ_SCOPE,
    Spreadsheet,
    grid_rows,
    header_names,
    table_name,
)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A date alone also matches, so a column mixing dates and timestamps is a timestamp column.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")


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


@dataclass(frozen=True)
class SheetSpec:
    """A sheet the source offers: its title and the column types set in config."""

    title: str
    overrides: Mapping[str, pa.DataType] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return table_name(self.title)


@dataclass(frozen=True)
class _Layout:
    """How a sheet's cells become a table: the sheet and the schema fixed for every page."""

    sheet: str
    schema: pa.Schema


class GoogleSheetsSource(Source):
    """Sheets of one spreadsheet as tables, full sync only.

    Config: see GoogleSheetsSourceConfig. A sheet is offered as the table
    `table_name(title)`; its first row is the header, blank rows are skipped, and column
    types are sniffed from the first page.
    """

    config_model = GoogleSheetsSourceConfig
    settings: GoogleSheetsSourceConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.book = Spreadsheet(connection, self.settings, READ_SCOPE)
        self.page_rows = self.settings.page_rows
        self.specs = self._specs()

    def _specs(self) -> dict[str, SheetSpec]:
        settings = self.settings
        entries = settings.sheets or [
            SheetConfig(name=settings.sheet_name, columns=settings.columns)
        ]
        specs: dict[str, SheetSpec] = {}
        for entry in entries:
            spec = SheetSpec(entry.name, {name: parse_type(t) for name, t in entry.columns.items()})
            if spec.table in specs:
                raise connection_error(
                    self.connection,
                    f"sheets {specs[spec.table].title!r} and {spec.title!r} would both be "
                    f"table {spec.table!r}; read them with two connections",
                )
            specs[spec.table] = spec
        return specs

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
            raise connection_error(
                self.connection,
                f"Google Sheets supports full sync only (table {table!r}); set sync_mode: full",
            )
        spec = self._spec(table)
        sheets = self.book.sheets()
        first = self._first_page(spec, sheets)
        layout = self._layout(spec, first)
        return pa.RecordBatchReader.from_batches(
            layout.schema, self._batches(layout, first, grid_rows(sheets[spec.title]))
        )

    # Reading.

    def _spec(self, table: str) -> SheetSpec:
        for spec in self.specs.values():
            if table in (spec.table, spec.title):
                return spec
        raise connection_error(
            self.connection,
            f"no table {table!r}; this connection offers {', '.join(self.specs)} (add the sheet "
            "to `sheets` to read it)",
        )

    def _first_page(self, spec: SheetSpec, sheets: Mapping[str, dict[str, Any]]) -> list[list[Any]]:
        last_row = grid_rows(self.book.sheet(spec.title, sheets))
        rows = self.book.rows(spec.title, 1, min(self.page_rows, last_row))
        if not rows or not _has_values(rows[0]):
            raise connection_error(
                self.connection, f"sheet {spec.title!r} is empty; its first row must be the header"
            )
        return rows

    def _layout(self, spec: SheetSpec, first: list[list[Any]]) -> _Layout:
        """The schema: names from the header row, types sniffed from the page or overridden."""
        names = header_names(first[0])
        unknown = sorted(set(spec.overrides) - set(names))
        if unknown:
            raise connection_error(
                self.connection,
                f"columns names {', '.join(unknown)}, not in sheet {spec.title!r} (its columns "
                f"are {', '.join(names)}); fix the columns mapping",
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
                raise connection_error(
                    self.connection,
                    f"sheet {layout.sheet!r} row {number} has a value right of the header's "
                    f"last column ({width}); give that column a header",
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
            raise connection_error(
                self.connection,
                f"sheet {layout.sheet!r} row {number}: column {name!r} value {value!r} is not "
                f"{kind}; fix the cell or set columns: {{{name}: VARCHAR}} (or another type "
                "that fits)",
            ) from None
