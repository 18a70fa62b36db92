"""Transient or permanent: each error raised for real by the driver that raises it in a run."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc_postgres
import duckdb
import httpx
import psycopg
import pymysql
import pytest
from google.api_core import exceptions as google_errors
from pyarrow import fs

from connectors.base import ConnectorError
from connectors.shared.http import Backoff, api_client
from connectors.shared.transient import is_transient
from tests.support.fake_http import FakeServer, Response, serve
from tests.support.services import PostgresServer, S3Server, free_port


def raised(action: Callable[[], object]) -> BaseException:
    """The exception the action raises."""
    with pytest.raises(BaseException) as caught:
        action()
    return caught.value


def connector_error_while_handling(error: BaseException) -> ConnectorError:
    """A connector's own one-line error, raised `from None` while handling the driver's."""
    try:
        raise error
    except BaseException:
        try:
            raise ConnectorError("connection 'db': cannot reach it") from None
        except ConnectorError as wrapped:
            return wrapped


# Closed ports: nothing listens there.


def test_psycopg_connection_refused_is_transient():
    error = raised(lambda: psycopg.connect(host="127.0.0.1", port=free_port(), connect_timeout=2))
    assert isinstance(error, psycopg.OperationalError)
    assert "Connection refused" in str(error)
    assert is_transient(error)
    # As the PostgreSQL source raises it: its own message, the driver's error as context.
    assert is_transient(connector_error_while_handling(error))


def test_adbc_connection_refused_is_transient():
    url = f"postgresql://u@127.0.0.1:{free_port()}/x"
    error = raised(lambda: adbc_postgres.connect(url))
    assert "Connection refused" in str(error)
    assert is_transient(error)


def test_pymysql_connection_refused_is_transient():
    error = raised(lambda: pymysql.connect(host="127.0.0.1", port=free_port(), connect_timeout=2))
    assert isinstance(error, pymysql.err.OperationalError)
    assert error.args[0] == 2003
    assert is_transient(error)


def test_socket_refused_and_reset_are_transient():
    refused = raised(lambda: socket.create_connection(("127.0.0.1", free_port()), timeout=2))
    assert isinstance(refused, ConnectionRefusedError)
    assert is_transient(refused)
    assert is_transient(ConnectionResetError(104, "Connection reset by peer"))


def test_httpx_connect_error_and_read_timeout_are_transient():
    refused = raised(lambda: httpx.get(f"http://127.0.0.1:{free_port()}/", timeout=2))
    assert isinstance(refused, httpx.ConnectError)
    assert is_transient(refused)
    release = threading.Event()
    fake = FakeServer()

    @fake.route("GET", "/slow")
    def slow(request):
        release.wait(5)
        return Response(200, {})

    with serve(fake):
        timeout = raised(lambda: httpx.get(f"{fake.url}/slow", timeout=0.2))
        release.set()
    assert isinstance(timeout, httpx.ReadTimeout)
    assert is_transient(timeout)


# HTTP answers: 429 and 5xx may pass; any other 4xx never will.


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        *((status, True) for status in (429, 500, 502, 503, 504)),
        *((status, False) for status in (400, 401, 403, 404, 422)),
    ],
)
def test_http_statuses(status, transient):
    fake = FakeServer()
    fake.route("GET", "/items")(lambda request: Response(status, {"message": "no"}))
    with serve(fake):
        answer = httpx.get(f"{fake.url}/items")
        status_error = raised(answer.raise_for_status)
        # As every API connector sees it: the shared client's ConnectorError, after its
        # own quick retries of 429 and 5xx.
        with api_client("api", fake.url, backoff=Backoff(attempts=1)) as client:
            connector_error = raised(lambda: client.get("/items"))
    assert isinstance(status_error, httpx.HTTPStatusError)
    assert is_transient(status_error) is transient
    assert isinstance(connector_error, ConnectorError)
    assert is_transient(connector_error) is transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (google_errors.ServiceUnavailable("backend error"), True),
        (google_errors.TooManyRequests("quota"), True),
        (google_errors.InternalServerError("oops"), True),
        (google_errors.BadRequest("invalid query"), False),
        (google_errors.NotFound("no dataset"), False),
        (google_errors.Forbidden("no permission"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_google_api_errors(error, transient):
    assert is_transient(error) is transient
    assert is_transient(connector_error_while_handling(error)) is transient


# A real PostgreSQL server: what it answers decides.


def table_of_rows(postgres: PostgresServer, database: str, table: str, ids: str) -> str:
    """A table `(id int PRIMARY KEY, n int)` holding the given ids with n = 0; the db's URL."""
    url = postgres.url(database)
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
        setup.execute(f"INSERT INTO {table} SELECT id, 0 FROM unnest(ARRAY[{ids}]) AS id")
    return url


def test_serialization_failure_is_transient(postgres: PostgresServer, pg_database: str):
    url = table_of_rows(postgres, pg_database, "counter", "1")
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        for conn in (first, second):
            conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
        first.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
        first.commit()
        error = raised(lambda: second.execute("UPDATE counter SET n = n + 1 WHERE id = 1"))
    assert isinstance(error, psycopg.errors.SerializationFailure)
    assert error.sqlstate == "40001"
    assert is_transient(error)


def test_deadlock_is_transient(postgres: PostgresServer, pg_database: str):
    url = table_of_rows(postgres, pg_database, "pair", "1, 2")
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        first.execute("UPDATE pair SET n = 1 WHERE id = 1")
        second.execute("UPDATE pair SET n = 1 WHERE id = 2")
        errors: list[BaseException] = []

        def cross(conn: psycopg.Connection, row: int) -> None:
            try:
                conn.execute("SET LOCAL deadlock_timeout = '50ms'")
                conn.execute("UPDATE pair SET n = 2 WHERE id = %s", (row,))
            except psycopg.Error as error:
                errors.append(error)
                conn.rollback()  # lets the other transaction go on

        threads = [
            threading.Thread(target=cross, args=(first, 2)),
            threading.Thread(target=cross, args=(second, 1)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    assert [type(e) for e in errors] == [psycopg.errors.DeadlockDetected]
    assert errors[0].sqlstate == "40P01"
    assert is_transient(errors[0])


def test_server_errors_about_the_query_or_data_are_permanent(
    postgres: PostgresServer, pg_database: str
):
    with psycopg.connect(postgres.url(pg_database), autocommit=True) as conn:
        conn.execute("CREATE TABLE keyed (id int PRIMARY KEY)")
        conn.execute("INSERT INTO keyed VALUES (1)")
        duplicate = raised(lambda: conn.execute("INSERT INTO keyed VALUES (1)"))
        syntax = raised(lambda: conn.execute("SELEC 1"))
        missing = raised(lambda: conn.execute("SELECT * FROM nosuch"))
        overflow = raised(lambda: conn.execute("SELECT 2147483647::int + 1"))
    assert [e.sqlstate for e in (duplicate, syntax, missing, overflow)] == [
        "23505",
        "42601",
        "42P01",
        "22003",
    ]
    assert not any(is_transient(e) for e in (duplicate, syntax, missing, overflow))


def test_missing_database_is_permanent(postgres: PostgresServer):
    error = raised(lambda: psycopg.connect(postgres.url("no_such_database")))
    assert "does not exist" in str(error)
    assert not is_transient(error)
    assert not is_transient(connector_error_while_handling(error))


def test_terminated_session_is_transient(postgres: PostgresServer, pg_database: str):
    url = postgres.url(pg_database)
    with psycopg.connect(url, autocommit=True) as victim, psycopg.connect(url) as admin:
        pid = victim.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        error = raised(lambda: victim.execute("SELECT 1"))
    assert isinstance(error, psycopg.OperationalError)
    assert is_transient(error)


# The object store.


def test_unreachable_s3_is_transient():
    filesystem = fs.S3FileSystem(
        access_key="k",
        secret_key="s",
        endpoint_override=f"127.0.0.1:{free_port()}",
        scheme="http",
        connect_timeout=1,
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    error = raised(lambda: filesystem.get_file_info("bucket/key.parquet"))
    assert isinstance(error, OSError)
    assert is_transient(error)


def test_s3_access_denied_and_missing_bucket_are_permanent(s3: S3Server):
    host = s3.endpoint_url.removeprefix("http://")
    wrong_key = fs.S3FileSystem(
        access_key=s3.access_key, secret_key="wrong", endpoint_override=host, scheme="http"
    )
    denied = raised(lambda: wrong_key.get_file_info("bucket/key.parquet"))
    right_key = fs.S3FileSystem(
        access_key=s3.access_key, secret_key=s3.secret_key, endpoint_override=host, scheme="http"
    )
    missing = raised(lambda: right_key.open_input_file("no-such-bucket/key.parquet"))
    assert isinstance(denied, OSError) and isinstance(missing, OSError)
    assert not is_transient(denied)
    assert not is_transient(missing)


# Local files and DuckDB.


def test_duckdb_file_locked_by_another_process_is_transient(tmp_path: Path):
    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        error = raised(lambda: duckdb.connect(str(path)))
    finally:
        holder.communicate("", timeout=30)
    assert isinstance(error, duckdb.IOException)
    assert is_transient(error)


def test_data_and_configuration_errors_are_permanent(tmp_path: Path):
    con = duckdb.connect()
    conversion = raised(lambda: con.execute("SELECT 'abc'::INTEGER"))
    catalog = raised(lambda: con.execute("SELECT * FROM nosuch"))
    missing_file = raised((tmp_path / "absent.csv").read_text)
    errors = [
        conversion,
        catalog,
        missing_file,
        ConnectorError("connection 'db': no table 'orders' in schema 'public'"),
        connector_error_while_handling(missing_file),
        ValueError("bad value"),
    ]
    assert not any(is_transient(e) for e in errors)
