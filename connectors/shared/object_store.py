"""Local folders and S3 (or any S3-compatible store) behind one pyarrow filesystem.

S3 access goes through pyarrow's own client, configured from the standard AWS environment
variables, so no DuckDB extension download is ever needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from pyarrow import fs

# Seconds a request may wait for an answer; raise it for very slow links to the store.
TIMEOUT_VARIABLE = "DATAPIPE_S3_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 60


def s3_filesystem(
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> fs.S3FileSystem:
    """An S3 client from AWS_ENDPOINT_URL / AWS_REGION / the usual credential chain, or from
    the given values where set."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, object] = {
        "region": region or os.environ.get("AWS_REGION", "us-east-1"),
        # Without a request timeout, a store that accepts connections but never answers
        # (overloaded, or its process stopped) hangs a run for good.
        "connect_timeout": 5,
        "request_timeout": float(os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_SECONDS),
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    if access_key and secret_key:
        options["access_key"], options["secret_key"] = access_key, secret_key
    if endpoint:
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or parsed.path
        options["scheme"] = parsed.scheme or "https"
        # S3-compatible servers address buckets by path, not by virtual host.
        options["force_virtual_addressing"] = False
    return fs.S3FileSystem(**options)


def filesystem_for(url: str, base_dir: Path | None = None) -> tuple[fs.FileSystem, str]:
    """The filesystem and the path within it for `s3://bucket/key`, `file:///path` or a local
    path."""
    if url.startswith("s3://"):
        return s3_filesystem(), url.removeprefix("s3://").rstrip("/")
    # Read as a plain path, a file URL became a folder named "file:" under the working one.
    path = Path(url2pathname(urlparse(url).path)) if url.startswith("file://") else Path(url)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return fs.LocalFileSystem(), str(path.resolve())


def url_for(filesystem: fs.FileSystem, path: str) -> str:
    """The inverse of filesystem_for: a path within a filesystem as a URL."""
    return f"s3://{path}" if isinstance(filesystem, fs.S3FileSystem) else path
