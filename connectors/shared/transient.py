"""Which failures are worth retrying: the one place that decides it.

A failure is transient when trying again later can succeed without anyone changing anything:
a refused or reset connection, a timeout, HTTP 429 or 5xx, a serialization failure or
deadlock, an object store that cannot be reached. Everything else (a wrong password, a
missing table, a value that does not fit its column, a bad pipeline) is permanent: a retry
would fail the same way, only later.

`is_transient` looks at every exception of the chain, because connectors raise their own
one-line ConnectorError while handling the driver's error: `raise ... from None` hides the
driver's error from tracebacks, but Python still keeps it as `__context__`. Driver classes
are looked up in `sys.modules`, so nothing here imports a driver: an error of a driver that
was never imported cannot occur.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

from connectors.base import ConnectorError

TRANSIENT_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})

# SQLSTATEs (PostgreSQL's, and the standard's) of failures that a later try can get past:
# connection exceptions (class 08), serialization failure, deadlock, too many connections,
# lock not available, statement timeout or cancel, a server shutting down or starting up.
TRANSIENT_SQLSTATE_CLASSES = ("08",)
TRANSIENT_SQLSTATES = frozenset(
    {"40001", "40P01", "53300", "55P03", "57014", "57P01", "57P02", "57P03"}
)

# MySQL and MariaDB error numbers of the same kind: too many connections, server shutdown,
# lock wait timeout, deadlock, cannot connect, server gone away, lost connection, connection
# killed, disconnected for inactivity.
TRANSIENT_MYSQL_ERRORS = frozenset(
    {1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055, 1927, 4031}
)

# Words of a driver's or the object store's message that mean the network or the server
# failed, for errors that carry no code (libpq's before the server answers, Arrow's S3).
TRANSIENT_TEXT = re.compile(
    "|".join(
        (
            r"connection refused",
            r"connection reset",
            r"connection aborted",
            r"broken pipe",
            r"timeout expired",
            r"timed out",
            r"timeout was reached",
            r"server closed the connection unexpectedly",
            r"no route to host",
            r"network is unreachable",
            r"eof detected",
            r"the database system is (starting up|shutting down)",
            r"couldn't connect to server",
            r"aws error (network_connection|slow_down|service_unavailable|throttling"
            r"|request_timeout|internal_failure)",
            r"http response code: (429|5\d\d)",
            # Another process holds a DuckDB file's write lock: it lets go when it is done.
            r"could not set lock on file",
        )
    ),
    re.IGNORECASE,
)


def is_transient(error: BaseException) -> bool:
    """True when any exception of the error's chain is a transient failure."""
    return any(_transient(link) for link in _chain(error))


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, then what caused it, or else what was being handled when it was raised."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _transient(error: BaseException) -> bool:
    if isinstance(error, ConnectorError):
        # Set where there is no exception to look at: an HTTP answer of 429 or 5xx.
        return error.transient
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    status = _http_status(error)
    if status is not None:
        return status in TRANSIENT_HTTP_STATUSES
    if _is(error, "httpx", "TimeoutException", "NetworkError", "RemoteProtocolError"):
        return True
    if _is(error, "requests", "ConnectionError", "Timeout"):
        return True
    if _is(error, "google.auth.exceptions", "TransportError"):
        return True
    if _is(error, "stripe", "APIConnectionError"):
        return True
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    if _is(error, "pymysql.err", "MySQLError"):
        code = error.args[0] if error.args else None
        return code in TRANSIENT_MYSQL_ERRORS
    if (
        isinstance(error, OSError)
        or _is_dbapi_operational(error)
        or _is(error, "duckdb", "IOException")
    ):
        return TRANSIENT_TEXT.search(str(error)) is not None
    return False


def _http_status(error: BaseException) -> int | None:
    """The HTTP status of an error that is an HTTP answer (httpx, requests, Google APIs)."""
    if _is(error, "google.api_core.exceptions", "GoogleAPICallError"):
        code: Any = getattr(error, "code", None)
        return code if isinstance(code, int) else None
    if _is(error, "httpx", "HTTPStatusError") or _is(error, "requests", "HTTPError"):
        response = getattr(error, "response", None)
        return getattr(response, "status_code", None)
    return None


def _is(error: BaseException, module: str, *names: str) -> bool:
    """Whether the error is one of a driver's classes, if that driver is imported at all."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return False
    classes = tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))
    return bool(classes) and isinstance(error, classes)


def _is_dbapi_operational(error: BaseException) -> bool:
    """A DB-API (PEP 249) OperationalError or InterfaceError: a lost or failed connection,
    whatever the driver (psycopg, ADBC, PyMySQL), when it gave no SQLSTATE."""
    return any(
        cls.__name__ in ("OperationalError", "InterfaceError") for cls in type(error).__mro__
    )
