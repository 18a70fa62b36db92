"""Rejected rows: what a pipeline with `on_bad_rows: {action: reject}` keeps of each row it
could not read, convert or load, instead of failing the run or dropping the row.

Every reject has a reason, and where it came from: the file and line of a CSV row (with the
line's text), or, for a row that never was a line of a file (an API or database row, a row
refused at load), no file or line and the row as JSON. Rejects are the rare path: the code
that finds them may work row by row, but only over the rows it rejects.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("reason", pa.string()),
        pa.field("file", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("raw", pa.string()),
    ]
)


@dataclass(frozen=True)
class Reject:
    """One rejected row."""

    reason: str
    file: str | None
    line: int | None
    raw: str


class RejectLimitExceeded(Exception):
    """More rows were rejected than the pipeline allows: nothing of the load may commit.

    The step that raised the limit words the error: only it knows where the rejects went.
    """


class RejectLog:
    """The rows one table's extract or load rejected, in the order they were found.

    `over_limit(count)` says whether `count` rejects are more than the pipeline allows;
    `enforce` raises RejectLimitExceeded then, for a destination to call before it commits.
    """

    def __init__(self, over_limit: Callable[[int], bool] = lambda count: False) -> None:
        self._rows: list[Reject] = []
        self._over_limit = over_limit
        # A fused load's destination may add rejects while the extract's thread adds others.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> list[Reject]:
        return list(self._rows)

    def add(self, reject: Reject) -> None:
        with self._lock:
            self._rows.append(reject)

    def add_rows(self, rows: pa.Table | pa.RecordBatch, reasons: Sequence[str]) -> None:
        """Rows that have no file or line, kept as JSON, each with its reason."""
        for row, reason in zip(rows.to_pylist(), reasons, strict=True):
            self.add(Reject(reason, None, None, row_json(row)))

    def enforce(self) -> None:
        if self._over_limit(len(self)):
            raise RejectLimitExceeded(f"{len(self)} rows were rejected, over the limit")

    def table(self) -> pa.Table:
        rows = self.rows
        return pa.Table.from_pydict(
            {
                "reason": [r.reason for r in rows],
                "file": [r.file for r in rows],
                "line": [r.line for r in rows],
                "raw": [r.raw for r in rows],
            },
            schema=REJECTS_SCHEMA,
        )


def row_json(row: dict[str, Any]) -> str:
    """A row as JSON text, its columns in order; dates, times, decimals and UUIDs as text."""
    return json.dumps(row, default=_json_value, ensure_ascii=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.time | dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | dt.timedelta | uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    raise TypeError(f"{type(value).__name__} is not JSON")
