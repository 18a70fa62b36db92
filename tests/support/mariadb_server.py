"""A real MariaDB server for the tests, on 127.0.0.1 in a temp folder, stopped by PID.

Needs Debian's `mariadb-server` package (`apt-get install -y mariadb-server`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql

from tests.support.services import free_port, stop_process, wait_for_port

# A user with a password, as on a real server, so tests can check it never leaks.
MARIADB_USER = "etl"
MARIADB_PASSWORD = "Dp-test-My-5831"


@dataclass(frozen=True)
class MariaDBServer:
    host: str
    port: int
    user: str
    password: str

    def admin(self, database: str | None = None) -> pymysql.Connection:
        """A root connection (root logs in from 127.0.0.1 without a password)."""
        return pymysql.connect(
            host=self.host, port=self.port, user="root", database=database, autocommit=True
        )

    def create_database(self) -> str:
        """A fresh, empty database; one per test keeps tests independent and fast."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute(f"create database `{name}`")
        return name


@contextmanager
def mariadb_server() -> Iterator[MariaDBServer]:
    """mariadbd run as the mysql user (it refuses to run as root) on a free port."""
    if shutil.which("mariadbd") is None:
        raise RuntimeError("mariadbd is missing: apt-get install -y mariadb-server")
    root = Path(tempfile.mkdtemp(prefix="datapipe-mariadb-"))
    data, port = root / "data", free_port()
    shutil.chown(root, "mysql", "mysql")
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={data}",
            "--user=mysql",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
    )
    log = (root / "log").open("wb")
    process = subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={data}",
            "--user=mysql",
            "--bind-address=127.0.0.1",
            f"--port={port}",
            f"--socket={root / 'sock'}",
            f"--pid-file={root / 'pid'}",
            "--skip-name-resolve",
            # Durability is not under test: skip the fsyncs.
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        server = MariaDBServer("127.0.0.1", port, MARIADB_USER, MARIADB_PASSWORD)
        _create_user(server)
        yield server
    finally:
        stop_process(process, timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _create_user(server: MariaDBServer) -> None:
    with server.admin() as conn, conn.cursor() as cur:
        cur.execute(f"create user '{server.user}'@'%' identified by '{server.password}'")
        cur.execute(f"grant all on *.* to '{server.user}'@'%'")
