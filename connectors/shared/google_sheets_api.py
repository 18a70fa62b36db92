"""What the Google Sheets source and destination share: constants, A1 ranges, table naming,
the header row, and the `Spreadsheet` wrapper of the Sheets API calls.

Both speak the Sheets API v4 with a service account (`connectors.shared.google_auth`): the
spreadsheet must be shared with the account's client_email. The source is
`connectors.sources.google_sheets`, the destination `connectors.destinations.google_sheets`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from connectors.base import connection_error
from connectors.config.google_sheets import GoogleSheetsConfig
from connectors.shared.google_auth import GoogleApi

SHEETS_URL = "https://sheets.googleapis.com"
READ_SCOPE = "https://www.googleapis.com/auth/spreadsheets.readonly"
WRITE_SCOPE = "https://www.googleapis.com/auth/spreadsheets"
CREDENTIAL_HINT = "service_account_json, and that the spreadsheet is shared with {client_email}"

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]+")


def a1(sheet: str, cells: str = "") -> str:
    """An A1 range on a sheet: the title quoted (quotes doubled), then `!cells` if given."""
    quoted = "'" + sheet.replace("'", "''") + "'"
    return f"{quoted}!{cells}" if cells else quoted


def table_name(sheet: str) -> str:
    """The table a sheet is offered as: its title with other characters than A-Z, 0-9, _ as _."""
    name = _NOT_IN_NAME.sub("_", sheet).strip("_") or "sheet"
    return f"_{name}" if name[0].isdigit() else name


def header_names(cells: Sequence[Any]) -> list[str]:
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


def grid_rows(sheet: Mapping[str, Any]) -> int:
    """How many rows a sheet's grid has: where reading pages stops."""
    return int(sheet["gridProperties"]["rowCount"])


class Spreadsheet:
    """The Sheets API calls of one spreadsheet, shared by the source and the destination."""

    def __init__(self, connection: str, settings: GoogleSheetsConfig, scope: str) -> None:
        self.connection = connection
        self.spreadsheet_id = settings.spreadsheet_id
        self.api = GoogleApi(
            connection,
            settings,
            default_base_url=SHEETS_URL,
            scopes=[scope],
            credential_hint=CREDENTIAL_HINT,
        )
        self.path = f"/v4/spreadsheets/{quote(self.spreadsheet_id, safe='')}"

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
            raise connection_error(
                self.connection,
                f"spreadsheet {self.spreadsheet_id} has no sheet {title!r}; its sheets are "
                f"{', '.join(sheets) or 'none'}",
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
