"""A local Google: the service-account token endpoint, Sheets API v4 and the GA4 Data API.

The token endpoint verifies each JWT assertion as Google does: RS256 signature against the
service account's public key, then iss, scope, aud (= token URI) and lifetime. API routes
accept only the access tokens it issued and answer Google's error bodies otherwise.
Spreadsheets are grids of cells with a row and column count, so writing past the grid fails
as it does on the real API; GA4 rows are aggregated over the requested dimensions.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.fake_http import FakeServer, Request, Response, serve

CLIENT_EMAIL = "loader@datapipe-test.iam.gserviceaccount.com"
PROPERTY_ID = "123456789"
SPREADSHEET_ID = "1AbCdEfGhIjKlMnOp"


def _google_error(code: int, status: str, message: str) -> Response:
    return Response(code, {"error": {"code": code, "message": message, "status": status}})


def unauthenticated() -> Response:
    return _google_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
    )


def quota_exhausted() -> Response:
    return _google_error(429, "RESOURCE_EXHAUSTED", "Exhausted concurrent requests quota.")


@functools.cache
def private_key() -> rsa.RSAPrivateKey:
    """One RSA key for the test session (generating one takes a moment)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem() -> str:
    return (
        private_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# Sheets: a grid of cells.


@dataclass
class FakeSheet:
    title: str
    sheet_id: int
    cells: list[list[Any]] = field(default_factory=list)
    row_count: int = 1000
    column_count: int = 26

    def properties(self, index: int) -> dict[str, Any]:
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.row_count, "columnCount": self.column_count},
        }

    def values(self) -> list[list[Any]]:
        """The cells as the API returns them: trailing empty cells and rows left out."""
        rows = [_trim(row) for row in self.cells]
        return _trim(rows, empty=[])

    def write(self, row: int, column: int, values: list[list[Any]]) -> None:
        """Write a block whose top-left cell is (row, column), both 0-based."""
        for r, cells in enumerate(values, start=row):
            while len(self.cells) <= r:
                self.cells.append([])
            line = self.cells[r]
            line.extend([""] * (column + len(cells) - len(line)))
            line[column : column + len(cells)] = cells

    def fit(self) -> None:
        """Drop cells outside the grid, as shrinking a sheet does."""
        self.cells = [row[: self.column_count] for row in self.cells[: self.row_count]]


def _trim(items: list[Any], empty: Any = "") -> list[Any]:
    items = list(items)
    while items and items[-1] in (empty, None):
        items.pop()
    return items


_RANGE = re.compile(r"'(?P<title>(?:[^']|'')*)'(?:!(?P<cells>.+))?")
_ROWS = re.compile(r"(\d+):(\d+)")
_CELL = re.compile(r"([A-Z]+)(\d+)")


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


@dataclass
class FakeGoogle:
    """Token endpoint + Sheets + GA4 on one FakeServer; state the tests set and inspect."""

    server: FakeServer = field(default_factory=FakeServer)
    token_lifetime: int = 3600
    # Verified claims of every assertion exchanged for a token.
    assertions: list[dict[str, Any]] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    # False: every access token is refused, as when the account lost access.
    accept_tokens: bool = True
    sheets: dict[str, FakeSheet] = field(default_factory=dict)  # of SPREADSHEET_ID, by title
    # GA4: one row per (date, country, ...) with metric values, aggregated on request.
    ga4_rows: list[dict[str, Any]] = field(default_factory=list)
    ga4_metrics: dict[str, str] = field(
        default_factory=lambda: {
            "sessions": "TYPE_INTEGER",
            "totalUsers": "TYPE_INTEGER",
            "bounceRate": "TYPE_FLOAT",
            "purchaseRevenue": "TYPE_CURRENCY",
        }
    )
    ga4_dimensions: tuple[str, ...] = ("date", "country", "deviceCategory")
    today: dt.date = dt.date(2024, 3, 10)
    # What the token endpoint takes as now when checking iat/exp; tests may move it.
    clock: Callable[[], float] = time.time
    ga4_requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        route = self.server.route
        route("POST", r"/token")(self._token)
        sheet_path = rf"/v4/spreadsheets/{SPREADSHEET_ID}"
        route("GET", sheet_path)(self._authorized(self._spreadsheet))
        route("POST", sheet_path + ":batchUpdate")(self._authorized(self._batch_update))
        values = sheet_path + r"/values/(?P<cells>[^/:]+)"
        route("GET", values)(self._authorized(self._get_values))
        route("PUT", values)(self._authorized(self._put_values))
        route("POST", values + ":clear")(self._authorized(self._clear))
        route("POST", values + ":append")(self._authorized(self._append))
        property_path = rf"/v1beta/properties/{PROPERTY_ID}"
        route("GET", property_path + "/metadata")(self._authorized(self._metadata))
        route("POST", property_path + ":runReport")(self._authorized(self._run_report))

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def service_account(self) -> dict[str, Any]:
        """A service-account key file whose token_uri is this fake."""
        return {
            "type": "service_account",
            "project_id": "datapipe-test",
            "private_key_id": "0123456789abcdef",
            "private_key": private_key_pem(),
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def api_requests(self) -> list[Request]:
        return [r for r in self.server.requests if r.path != "/token"]

    def token_requests(self) -> list[Request]:
        return [r for r in self.server.requests if r.path == "/token"]

    def revoke_tokens(self) -> None:
        self.valid_tokens.clear()

    # The token endpoint.

    def _token(self, request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return Response(400, {"error": "unsupported_grant_type"})
        claims = self._verified_claims(form.get("assertion", [""])[0])
        if claims is None:
            return Response(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            )
        self.assertions.append(claims)
        token = f"ya29.token-{len(self.assertions)}"
        self.valid_tokens.add(token)
        return Response(
            200,
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"},
        )

    def _verified_claims(self, assertion: str) -> dict[str, Any] | None:
        """The JWT's claims if Google would accept it: signed by the key, for this endpoint."""
        try:
            header_part, claims_part, signature = assertion.split(".")
            header = json.loads(_b64decode(header_part))
            private_key().public_key().verify(
                _b64decode(signature),
                f"{header_part}.{claims_part}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims = json.loads(_b64decode(claims_part))
        except (ValueError, InvalidSignature):
            return None
        now = self.clock()
        valid = (
            header.get("alg") == "RS256"
            and claims.get("iss") == CLIENT_EMAIL
            and claims.get("aud") == self.token_uri
            and bool(claims.get("scope"))
            and claims["iat"] - 300 <= now < claims["exp"]
            and claims["exp"] - claims["iat"] <= 3600
        )
        return claims if valid else None

    def _authorized(self, handler: Any) -> Any:
        def check(request: Request, **groups: str) -> Response:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if not self.accept_tokens or token not in self.valid_tokens:
                return unauthenticated()
            return handler(request, **groups)

        return check

    # Sheets.

    def add_sheet(self, title: str, cells: list[list[Any]] | None = None, **grid: int) -> FakeSheet:
        sheet = FakeSheet(title, len(self.sheets) * 1000 + 7, list(cells or []), **grid)
        self.sheets[title] = sheet
        return sheet

    def _spreadsheet(self, request: Request) -> Response:
        if request.param("fields") != "sheets.properties":
            return _google_error(400, "INVALID_ARGUMENT", "fields must be sheets.properties")
        return Response(
            200,
            {
                "sheets": [
                    {"properties": s.properties(i)} for i, s in enumerate(self.sheets.values())
                ]
            },
        )

    def _range(self, cells: str) -> tuple[FakeSheet, str] | Response:
        match = _RANGE.fullmatch(unquote(cells))
        title = match["title"].replace("''", "'") if match else None
        if match is None or title not in self.sheets:
            return _google_error(
                400, "INVALID_ARGUMENT", f"Unable to parse range: {unquote(cells)}"
            )
        return self.sheets[title], match["cells"] or ""

    def _get_values(self, request: Request, cells: str) -> Response:
        found = self._range(cells)
        if isinstance(found, Response):
            return found
        sheet, part = found
        rows = sheet.values()
        body: dict[str, Any] = {"range": unquote(cells), "majorDimension": "ROWS"}
        if rows_match := _ROWS.fullmatch(part):
            first, last = int(rows_match[1]), int(rows_match[2])
            if last > sheet.row_count:
                return self._grid_error(sheet, unquote(cells))
            rows = _trim(rows[first - 1 : last], empty=[])
        elif part == "A:A" and request.param("majorDimension") == "COLUMNS":
            body["majorDimension"] = "COLUMNS"
            rows = [_trim([row[0] if row else "" for row in rows])]
        elif part:
            return _google_error(400, "INVALID_ARGUMENT", f"fake cannot read range {part}")
        if request.param("valueRenderOption") not in (None, "UNFORMATTED_VALUE"):
            return _google_error(400, "INVALID_ARGUMENT", "fake serves unformatted values only")
        if _trim(rows, empty=[]):
            body["values"] = rows
        return Response(200, body)

    def _grid_error(self, sheet: FakeSheet, cells: str) -> Response:
        return _google_error(
            400,
            "INVALID_ARGUMENT",
            f"Range ({cells}) exceeds grid limits. Max rows: {sheet.row_count}, max columns: "
            f"{sheet.column_count}",
        )

    def _put_values(self, request: Request, cells: str) -> Response:
        found = self._range(cells)
        if isinstance(found, Response):
            return found
        sheet, part = found
        start = _CELL.fullmatch(part)
        if request.param("valueInputOption") != "RAW" or start is None:
            return _google_error(400, "INVALID_ARGUMENT", "fake writes RAW from one cell only")
        values = request.json()["values"]
        row, column = int(start[2]) - 1, _column_index(start[1])
        width = max((len(v) for v in values), default=0)
        if row + len(values) > sheet.row_count or column + width > sheet.column_count:
            return self._grid_error(sheet, unquote(cells))
        sheet.write(row, column, values)
        return Response(200, {"updatedRange": unquote(cells), "updatedRows": len(values)})

    def _clear(self, request: Request, cells: str) -> Response:
        found = self._range(cells)
        if isinstance(found, Response):
            return found
        found[0].cells = []
        return Response(200, {"clearedRange": unquote(cells)})

    def _append(self, request: Request, cells: str) -> Response:
        found = self._range(cells)
        if isinstance(found, Response):
            return found
        sheet = found[0]
        if request.param("insertDataOption") != "INSERT_ROWS":
            return _google_error(400, "INVALID_ARGUMENT", "fake appends with INSERT_ROWS only")
        values = request.json()["values"]
        width = max((len(v) for v in values), default=0)
        if width > sheet.column_count:
            return self._grid_error(sheet, unquote(cells))
        first = len(sheet.values())
        sheet.row_count += len(values)  # INSERT_ROWS makes room for the rows it appends
        sheet.write(first, 0, values)
        quoted = unquote(cells).split("!")[0]
        return Response(
            200,
            {
                "spreadsheetId": SPREADSHEET_ID,
                "updates": {
                    "updatedRange": f"{quoted}!A{first + 1}:{chr(64 + width)}{first + len(values)}",
                    "updatedRows": len(values),
                },
            },
        )

    def _batch_update(self, request: Request) -> Response:
        replies = []
        for change in request.json()["requests"]:
            if "addSheet" in change:
                properties = change["addSheet"]["properties"]
                grid = properties.get("gridProperties", {})
                sheet = self.add_sheet(
                    properties["title"],
                    row_count=grid.get("rowCount", 1000),
                    column_count=grid.get("columnCount", 26),
                )
                replies.append({"addSheet": {"properties": sheet.properties(len(self.sheets))}})
            else:
                update = change["updateSheetProperties"]
                sheet = next(
                    s for s in self.sheets.values() if s.sheet_id == update["properties"]["sheetId"]
                )
                grid = update["properties"]["gridProperties"]
                sheet.row_count, sheet.column_count = grid["rowCount"], grid["columnCount"]
                sheet.fit()
                replies.append({})
        return Response(200, {"spreadsheetId": SPREADSHEET_ID, "replies": replies})

    # GA4.

    def _metadata(self, request: Request) -> Response:
        return Response(
            200,
            {
                "name": f"properties/{PROPERTY_ID}/metadata",
                "dimensions": [{"apiName": d, "uiName": d} for d in self.ga4_dimensions],
                "metrics": [{"apiName": m, "type": t} for m, t in self.ga4_metrics.items()],
            },
        )

    def _run_report(self, request: Request) -> Response:
        body = request.json()
        self.ga4_requests.append(body)
        dimensions = [d["name"] for d in body["dimensions"]]
        metrics = [m["name"] for m in body["metrics"]]
        unknown = [m for m in metrics if m not in self.ga4_metrics]
        if unknown:
            return _google_error(
                400, "INVALID_ARGUMENT", f"Field {unknown[0]} is not a valid metric."
            )
        rows = self._aggregate(body["dateRanges"][0], dimensions, metrics)
        page = rows[body.get("offset", 0) :][: body.get("limit", 10_000)]
        result: dict[str, Any] = {
            "dimensionHeaders": [{"name": d} for d in dimensions],
            "metricHeaders": [{"name": m, "type": self.ga4_metrics[m]} for m in metrics],
            "metadata": {"currencyCode": "USD", "timeZone": "Europe/Berlin"},
            "kind": "analyticsData#runReport",
        }
        if rows:  # like protobuf JSON, the API leaves out empty lists and zero counts
            result["rowCount"] = len(rows)
        if page:
            result["rows"] = [
                {
                    "dimensionValues": [{"value": value} for value in key],
                    "metricValues": [{"value": value} for value in values],
                }
                for key, values in page
            ]
        return Response(200, result)

    def _aggregate(
        self, date_range: dict[str, str], dimensions: list[str], metrics: list[str]
    ) -> list[tuple[tuple[str, ...], list[str]]]:
        """Rows in the date range, summed per dimension values, sorted by those values."""
        start = self._day(date_range["startDate"])
        end = self._day(date_range["endDate"])
        totals: dict[tuple[str, ...], list[float]] = {}
        for row in self.ga4_rows:
            if not start <= row["date"] <= end:
                continue
            key = tuple(
                row[d].strftime("%Y%m%d") if d == "date" else str(row[d]) for d in dimensions
            )
            sums = totals.setdefault(key, [0] * len(metrics))
            for i, metric in enumerate(metrics):
                sums[i] += row.get(metric, 0)
        return [(key, [str(v) for v in totals[key]]) for key in sorted(totals)]

    def _day(self, text: str) -> dt.date:
        return self.today if text == "today" else dt.date.fromisoformat(text)


@contextmanager
def fake_google() -> Iterator[FakeGoogle]:
    google = FakeGoogle()
    with serve(google.server):
        yield google
