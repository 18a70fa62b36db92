"""deploy/dagster.yaml as shipped, in a DAGSTER_HOME, its variables pointed at test servers."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.services import PostgresServer, S3Server

DEPLOY_INSTANCE = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"


def instance_env(
    postgres: PostgresServer, database: str, s3: S3Server, bucket: str
) -> dict[str, str]:
    """deploy/dagster.yaml's variables (but its home and log prefix) for test servers:
    storage in `database` on `postgres`, step logs in `bucket` on `s3`."""
    return {
        **s3.env(),
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_PG_DB": database,
        "DAGSTER_COMPUTE_LOG_BUCKET": bucket,
        "DAGSTER_COMPUTE_LOG_ENDPOINT_URL": s3.endpoint_url,
    }


def deploy_instance_env(
    home: Path, postgres: PostgresServer, database: str, s3: S3Server, bucket: str, prefix: str
) -> dict[str, str]:
    """Copy deploy/dagster.yaml into `home`; return the environment it reads, with step logs
    under `prefix`."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    return {
        **instance_env(postgres, database, s3, bucket),
        "DAGSTER_HOME": str(home),
        "DAGSTER_COMPUTE_LOG_PREFIX": prefix,
    }
