"""Google Analytics 4 reports as tables, through the Data API v1beta (`runReport`).

Each report declared in config (dimensions + metrics) is a table. Incremental sync is by the
`date` dimension, re-reading a lookback window before the cursor: GA4 keeps processing
events for a day or two, so recent days' numbers change after they were first loaded (load
such tables with load_mode upsert on the report's dimensions so re-read days replace the old
rows). A partition by day, week or month on `date` is the report's date range, from the
window's first to its last day.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connectors.base import Source, TableSchema, Window, connection_error
from connectors.config.ga4 import Ga4Config
from connectors.shared.google_auth import GoogleApi
from connectors.shared.records import as_date
from connectors.shared.windows import report_days

GA4_URL = "https://analyticsdata.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
CREDENTIAL_HINT = "service_account_json, and that {client_email} is a Viewer of the GA4 property"
# The one dimension with a typed value: YYYYMMDD text becomes a date column.
DATE_DIMENSION = "date"


def metric_type(ga4_type: str) -> pa.DataType:
    """The column type for a metric's `type`: TYPE_INTEGER is int64, every other a double."""
    return pa.int64() if ga4_type == "TYPE_INTEGER" else pa.float64()


def dimension_type(name: str) -> pa.DataType:
    return pa.date32() if name == DATE_DIMENSION else pa.string()


@dataclass(frozen=True)
class Metadata:
    """What a property offers: dimension API names, and metric API names with their type."""

    dimensions: frozenset[str]
    metric_types: Mapping[str, str]


@dataclass(frozen=True)
class Report:
    """A report declared in config: one table."""

    name: str
    dimensions: tuple[str, ...]
    metrics: tuple[str, ...]

    def request(self, start: str, end: str, offset: int, limit: int) -> dict[str, Any]:
        """A runReport body for rows from `start` to `end` (inclusive), ordered so pages
        never overlap."""
        return {
            "dateRanges": [{"startDate": start, "endDate": end}],
            "dimensions": [{"name": name} for name in self.dimensions],
            "metrics": [{"name": name} for name in self.metrics],
            "orderBys": [{"dimension": {"dimensionName": name}} for name in self.dimensions],
            "offset": offset,
            "limit": limit,
        }


def _column(kind: pa.DataType, value: str) -> Any:
    """A GA4 value (always text on the wire) as a Python value of its column's type."""
    if pa.types.is_date(kind):
        return dt.datetime.strptime(value, "%Y%m%d").date()
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_floating(kind):
        return float(value)
    return value


class Ga4Source(Source):
    """Reports of one GA4 property, full or incremental by `date`.

    Config: see Ga4Config.
    """

    config_model = Ga4Config
    settings: Ga4Config

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.property_path = f"/v1beta/properties/{self.settings.property_id}"
        self.reports = {
            name: Report(name, tuple(spec.dimensions), tuple(spec.metrics))
            for name, spec in self.settings.reports.items()
        }
        self.start_date = self.settings.start_date
        self.lookback_days = self.settings.lookback_days
        self.page_size = self.settings.page_size
        self.api = GoogleApi(
            connection,
            self.settings,
            default_base_url=GA4_URL,
            scopes=[SCOPE],
            credential_hint=CREDENTIAL_HINT,
        )

    # The Source contract.

    def check(self) -> str:
        metadata = self._metadata()
        return (
            f"GA4 property {self.property_path.rsplit('/', 1)[1]} offers "
            f"{len(metadata.metric_types)} metrics; reports {', '.join(self.reports)} are valid"
        )

    def discover(self) -> list[TableSchema]:
        """Each report's columns, typed from the property's metadata (custom ones included)."""
        types = self._metadata().metric_types
        return [
            TableSchema(
                report.name,
                pa.schema(
                    [(name, dimension_type(name)) for name in report.dimensions]
                    + [(name, metric_type(types[name])) for name in report.metrics]
                ),
            )
            for report in self.reports.values()
        ]

    def read(
        self, table: str, incremental_key: str | None = None, cursor: Any = None
    ) -> pa.RecordBatchReader:
        """A report's rows from `start_date` (or cursor minus lookback_days) to today."""
        report = self._report(table)
        if incremental_key is not None and incremental_key != DATE_DIMENSION:
            raise connection_error(
                self.connection,
                f"GA4 reports are incremental by date only, not {incremental_key!r}; set "
                "incremental_key: date",
            )
        if incremental_key is not None and DATE_DIMENSION not in report.dimensions:
            raise connection_error(
                self.connection,
                f"report {table!r} has no date dimension to sync incrementally; add date to "
                "its dimensions or set sync_mode: full",
            )
        start = self._start(cursor) if incremental_key is not None else self.start_date
        return self._read_range(report, start, "today")

    def narrowed(self, table: str, window: Window) -> pa.RecordBatchReader | None:
        """A partition on the date dimension asks GA4 for its days only (endDate is
        inclusive: the window's last day)."""
        report = self._report(table)
        if window.column != DATE_DIMENSION or DATE_DIMENSION not in report.dimensions:
            return None
        first, last = report_days(window, self.connection)
        return self._read_range(report, first.isoformat(), last.isoformat())

    def _read_range(self, report: Report, start: str, end: str) -> pa.RecordBatchReader:
        """A report's rows for the days from `start` to `end`, both inclusive."""
        pages = self._pages(report, start, end)
        first = next(pages)
        schema = self._schema(first)
        return pa.RecordBatchReader.from_batches(
            schema, (self._batch(schema, page) for page in itertools.chain([first], pages))
        )

    # Requests.

    def _metadata(self) -> Metadata:
        """The property's dimensions and metrics (custom ones too); every report must fit."""
        body = self.api.call("GET", f"{self.property_path}/metadata")
        metadata = Metadata(
            frozenset(d["apiName"] for d in body.get("dimensions", [])),
            {m["apiName"]: m.get("type", "TYPE_FLOAT") for m in body.get("metrics", [])},
        )
        for report in self.reports.values():
            unknown = [d for d in report.dimensions if d not in metadata.dimensions] + [
                m for m in report.metrics if m not in metadata.metric_types
            ]
            if unknown:
                raise connection_error(
                    self.connection,
                    f"report {report.name!r} asks for {', '.join(unknown)}, which this GA4 "
                    "property does not offer; use API names such as sessions, totalUsers, date",
                )
        return metadata

    def _report(self, table: str) -> Report:
        if table not in self.reports:
            raise connection_error(
                self.connection,
                f"no report {table!r}; this connection offers {', '.join(self.reports)} (declare "
                "it under reports)",
            )
        return self.reports[table]

    def _start(self, cursor: Any) -> str:
        """The first day to request: the cursor's day minus the lookback window."""
        if cursor is None:
            return self.start_date
        return (as_date(cursor) - dt.timedelta(days=self.lookback_days)).isoformat()

    def _pages(self, report: Report, start: str, end: str) -> Iterator[dict[str, Any]]:
        """runReport responses, `page_size` rows each, until `rowCount` rows have come."""
        offset = 0
        while True:
            page = self.api.call(
                "POST",
                f"{self.property_path}:runReport",
                json=report.request(start, end, offset, self.page_size),
            )
            yield page
            offset += len(page.get("rows", []))
            if not page.get("rows") or offset >= int(page.get("rowCount") or 0):
                return

    # Conversion.

    def _schema(self, page: Mapping[str, Any]) -> pa.Schema:
        """Columns in the response's order, metrics typed by their metricHeaders."""
        return pa.schema(
            [(h["name"], dimension_type(h["name"])) for h in page.get("dimensionHeaders", [])]
            + [
                (h["name"], metric_type(h.get("type", "TYPE_FLOAT")))
                for h in page.get("metricHeaders", [])
            ]
        )

    def _batch(self, schema: pa.Schema, page: Mapping[str, Any]) -> pa.RecordBatch:
        rows = [
            [v["value"] for v in row.get("dimensionValues", [])]
            + [v["value"] for v in row.get("metricValues", [])]
            for row in page.get("rows", [])
        ]
        columns = [
            pa.array([self._value(schema.field(i), row[i]) for row in rows], schema.types[i])
            for i in range(len(schema))
        ]
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    def _value(self, column: pa.Field, value: str) -> Any:
        try:
            return _column(column.type, value)
        except ValueError:
            raise connection_error(
                self.connection,
                f"GA4 returned {value!r} for {column.name}, which is not a {column.type}; "
                "narrow the report (fewer dimensions or days) so GA4 does not group rows",
            ) from None
