"""Session-wide real servers: one PostgreSQL and one S3 store for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import PostgresServer, S3Server, postgres_server, s3_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_database(postgres: PostgresServer) -> str:
    """The name of a fresh database on the session's server."""
    return postgres.create_database()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server
