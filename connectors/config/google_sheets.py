"""The `google_sheets` source's and destination's configs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, model_validator

from connectors.config.common import GoogleConfig
from connectors.config.model import ColumnType, ConfigModel, ConfigValueError, Rate, Text, option

# Google's limit for a whole spreadsheet, checked against each table before loading it.
CELL_LIMIT = 10_000_000
# Rows per read request: one page is what a read holds in memory.
PAGE_ROWS = 10_000


def _sheet_entry(value: Any) -> Any:
    # A bare title is shorthand for `{name: title}`.
    return {"name": value} if isinstance(value, str) else value


class SheetConfig(ConfigModel):
    """One sheet of a `sheets:` list."""

    name: Text = option(..., "The sheet's title (its tab).")
    columns: dict[str, ColumnType] = option({}, "Column name -> type, overriding sniffing.")


class GoogleSheetsConfig(GoogleConfig):
    """One spreadsheet, shared with the service account."""

    spreadsheet_id: Text = option(..., "The ID from the spreadsheet's URL.")
    # Sheets allows 60 requests a minute per user: one a second never trips the quota.
    requests_per_second: Rate = option(1.0, "Requests a second this connection may send.")


class GoogleSheetsSourceConfig(GoogleSheetsConfig):
    """Sheets of one spreadsheet, read as tables."""

    notes = "each sheet is a table; full sync only"

    sheet_name: Text = option("Sheet1", "The one sheet to read, as a table.")
    columns: dict[str, ColumnType] = option({}, "Column name -> type, overriding sniffing.")
    sheets: list[Annotated[SheetConfig, BeforeValidator(_sheet_entry)]] | None = option(
        None, "Several sheets, each a table: titles, or {name, columns}."
    )
    page_rows: int = option(PAGE_ROWS, "Rows a read request.", ge=1)

    @model_validator(mode="after")
    def _sheets_or_one(self) -> GoogleSheetsSourceConfig:
        if self.sheets is not None and ({"sheet_name", "columns"} & self.model_fields_set):
            raise ConfigValueError(
                "set either sheets or sheet_name/columns, not both",
                "list every sheet under sheets: [{name, columns}, ...]",
            )
        if self.sheets is not None and not self.sheets:
            raise ConfigValueError("sheets is empty", "list at least one sheet")
        return self


class GoogleSheetsDestinationConfig(GoogleSheetsConfig):
    """Sheets of one spreadsheet, written one table each."""

    notes = "loads replace or append"

    cell_limit: int = option(
        CELL_LIMIT, "Cells a table may fill; a larger one is refused before writing.", ge=1
    )
