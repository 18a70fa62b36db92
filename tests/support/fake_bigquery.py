"""A local BigQuery REST API, as google-cloud-bigquery calls it, over an in-memory DuckDB.

Implements the documented endpoints the client uses: the OAuth token endpoint (JWT bearer
grant of a service account), datasets get/insert, tables list/get/insert/patch/delete, the
upload endpoint (`uploadType=multipart` and `resumable`) that starts load jobs, jobs
insert/get for query jobs, and `queries/{jobId}` (getQueryResults).

Tables are DuckDB tables in a schema named like the dataset, so rows uploaded as parquet
are really loaded and checkable, and query jobs really run: the SQL is executed by DuckDB
after backtick identifiers become double-quoted (the project part dropped) and `@params`
become literals. Every job configuration and SQL text is recorded in `jobs`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow.parquet as pq
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.fake_http import FakeServer, Request, Response

PROJECT = "acme-analytics"
V2 = r"/bigquery/v2/projects/(?P<project>[^/]+)"
TABLE = V2 + r"/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)"
DUCKDB_TYPES = {
    "INT64": "BIGINT", "INTEGER": "BIGINT", "FLOAT64": "DOUBLE", "FLOAT": "DOUBLE",
    "NUMERIC": "DECIMAL(38,9)", "BIGNUMERIC": "DOUBLE", "BOOL": "BOOLEAN", "BOOLEAN": "BOOLEAN",
    "STRING": "VARCHAR", "JSON": "VARCHAR", "BYTES": "BLOB", "DATE": "DATE", "TIME": "TIME",
    "DATETIME": "TIMESTAMP", "TIMESTAMP": "TIMESTAMPTZ",
}  # fmt: skip
RESULT_TYPES = {"BIGINT": "INTEGER", "INTEGER": "INTEGER", "DOUBLE": "FLOAT", "BOOLEAN": "BOOL"}


@functools.cache
def private_key_pem() -> str:
    """One RSA key per test run: service-account credentials sign their token requests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class JobFailed(Exception):
    """A job's error, reported in its status as BigQuery does."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def error(status: int, reason: str, message: str) -> Response:
    errors = [{"reason": reason, "message": message}]
    body = {"error": {"code": status, "message": message, "errors": errors}}
    return Response(status, body)


@dataclass
class FakeBigQuery:
    server: FakeServer = field(default_factory=FakeServer)
    db: duckdb.DuckDBPyConnection = field(default_factory=duckdb.connect)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Messages of query-job failures to inject, one per query job, in order.
    query_failures: list[str] = field(default_factory=list)
    reject_tokens: bool = False
    _tokens: set[str] = field(default_factory=set)
    _uploads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        routes = [
            ("POST", r"/token", self._token),
            ("GET", V2 + r"/datasets/(?P<dataset>[^/]+)", self._get_dataset),
            ("POST", V2 + r"/datasets", self._insert_dataset),
            ("GET", V2 + r"/datasets/(?P<dataset>[^/]+)/tables", self._list_tables),
            ("POST", V2 + r"/datasets/(?P<dataset>[^/]+)/tables", self._insert_table),
            ("GET", TABLE, self._get_table),
            ("PATCH", TABLE, self._patch_table),
            ("DELETE", TABLE, self._delete_table),
            ("POST", r"/upload" + V2 + r"/jobs", self._upload),
            ("PUT", r"/upload" + V2 + r"/jobs", self._upload_chunk),
            ("POST", V2 + r"/jobs", self._insert_query_job),
            ("GET", V2 + r"/jobs/(?P<job>[^/]+)", self._get_job),
            ("GET", V2 + r"/queries/(?P<job>[^/]+)", self._query_results),
        ]
        for method, pattern, handler in routes:
            self.server.route(method, pattern)(self._authorized(handler))

    # --- for tests -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    def service_account(self) -> dict[str, str]:
        return {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "key-1",
            "private_key": private_key_pem(),
            "client_email": f"loader@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1234",
            "token_uri": f"{self.url}/token",
        }

    def proxy_environment(self) -> dict[str, str]:
        """Environment that keeps google-auth's side requests on 127.0.0.1.

        After each token refresh google-auth looks up the service account's regional access
        boundary at iamcredentials.googleapis.com in a background thread. With this proxy
        setting that request is a CONNECT to this server, which refuses it (501), so tests
        never resolve or reach a Google host; requests to the fake itself bypass the proxy.
        """
        return {
            **dict.fromkeys(("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"), self.url),
            **dict.fromkeys(("NO_PROXY", "no_proxy"), "127.0.0.1"),
        }

    def rows(self, dataset: str, table: str, order_by: str = "1") -> list[tuple[Any, ...]]:
        return self.db.execute(
            f'SELECT * FROM "{dataset}"."{table}" ORDER BY {order_by}'
        ).fetchall()

    def configs(self, kind: str) -> list[dict[str, Any]]:
        """The configuration of every job of a kind (load, query), in order."""
        return [
            job["configuration"][kind] for job in self.jobs.values() if kind in job["configuration"]
        ]

    # --- auth ----------------------------------------------------------------------------

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in request.form().items()}
        if (
            self.reject_tokens
            or form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ):
            body = {
                "error": "invalid_client",
                "error_description": "The OAuth client was not found.",
            }
            return Response(401, body)
        token = f"ya29.bq-{len(self._tokens) + 1}"
        self._tokens.add(token)
        return Response(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _authorized(self, handler: Any) -> Any:
        @functools.wraps(handler)
        def check(request: Request, **parts: str) -> Response:
            if handler != self._token:
                token = request.headers.get("authorization", "").removeprefix("Bearer ")
                if token not in self._tokens:
                    return error(
                        401, "authError", "Request had invalid authentication credentials."
                    )
            return handler(request, **parts)

        return check

    # --- datasets and tables ------------------------------------------------------------

    def _dataset_resource(self, project: str, dataset: str) -> dict[str, Any]:
        return {
            "datasetReference": {"projectId": project, "datasetId": dataset},
            "id": f"{project}:{dataset}",
            "location": self.datasets[dataset].get("location", "US"),
        }

    def _get_dataset(self, request: Request, project: str, dataset: str) -> Response:
        if dataset not in self.datasets:
            return error(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        return Response(200, self._dataset_resource(project, dataset))

    def _insert_dataset(self, request: Request, project: str) -> Response:
        body = request.json()
        dataset = body["datasetReference"]["datasetId"]
        if dataset in self.datasets:
            return error(409, "duplicate", f"Already Exists: Dataset {project}:{dataset}")
        self.datasets[dataset] = body
        self.db.execute(f'CREATE SCHEMA "{dataset}"')
        return Response(200, self._dataset_resource(project, dataset))

    def _table_resource(self, project: str, dataset: str, table: str) -> dict[str, Any]:
        count = self.db.execute(f'SELECT count(*) FROM "{dataset}"."{table}"').fetchone()
        meta = self.tables[(dataset, table)]
        return {
            **meta,
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "id": f"{project}:{dataset}.{table}",
            "type": "TABLE",
            "numRows": str(count[0] if count else 0),
        }

    def _list_tables(self, request: Request, project: str, dataset: str) -> Response:
        if dataset not in self.datasets:
            return error(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        names = sorted(t for d, t in self.tables if d == dataset)
        refs = [
            {"tableReference": {"projectId": project, "datasetId": dataset, "tableId": t}}
            for t in names
        ]
        return Response(200, {"tables": refs, "totalItems": len(refs)})

    def _insert_table(self, request: Request, project: str, dataset: str) -> Response:
        body = request.json()
        table = body["tableReference"]["tableId"]
        if dataset not in self.datasets:
            return error(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        if (dataset, table) in self.tables:
            return error(409, "duplicate", f"Already Exists: Table {project}:{dataset}.{table}")
        kept = {k: v for k, v in body.items() if k in ("schema", "expirationTime")}
        self.tables[(dataset, table)] = {"schema": {"fields": []}, **kept}
        columns = ", ".join(_column(f) for f in body["schema"]["fields"])
        self.db.execute(f'CREATE TABLE "{dataset}"."{table}" ({columns})')
        return Response(200, self._table_resource(project, dataset, table))

    def _get_table(self, request: Request, project: str, dataset: str, table: str) -> Response:
        if (dataset, table) not in self.tables:
            return error(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        return Response(200, self._table_resource(project, dataset, table))

    def _patch_table(self, request: Request, project: str, dataset: str, table: str) -> Response:
        fields = request.json()["schema"]["fields"]
        self._add_fields(dataset, table, fields, allowed=True)
        return Response(200, self._table_resource(project, dataset, table))

    def _delete_table(self, request: Request, project: str, dataset: str, table: str) -> Response:
        if self.tables.pop((dataset, table), None) is None:
            return error(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        self.db.execute(f'DROP TABLE "{dataset}"."{table}"')
        return Response(204, b"")

    def _add_fields(self, dataset: str, table: str, fields: list[dict], allowed: bool) -> None:
        """Add the fields a new schema has beyond the table's; refuse any other change."""
        current = self.tables[(dataset, table)]["schema"]["fields"]
        names = {f["name"].lower() for f in current}
        new = [f for f in fields if f["name"].lower() not in names]
        if new and not allowed:
            raise JobFailed(
                "invalid",
                f"Provided Schema does not match Table {dataset}.{table}. "
                f"Cannot add fields (field: {new[0]['name']})",
            )
        for spec in new:
            self.db.execute(f'ALTER TABLE "{dataset}"."{table}" ADD COLUMN {_column(spec)}')
        current.extend(new)

    # --- load jobs via the upload endpoint -------------------------------------------------

    def _upload(self, request: Request, project: str) -> Response:
        if request.param("uploadType") == "resumable":
            upload_id = str(len(self._uploads) + 1)
            self._uploads[upload_id] = {"metadata": request.json(), "data": b""}
            location = (
                f"{self.url}/upload/bigquery/v2/projects/{project}/jobs"
                f"?uploadType=resumable&upload_id={upload_id}"
            )
            return Response(200, {}, {"Location": location})
        metadata, data = _multipart(request)
        return self._run_job(project, metadata, data)

    def _upload_chunk(self, request: Request, project: str) -> Response:
        upload = self._uploads[request.param("upload_id") or ""]
        upload["data"] += request.body
        total = request.headers.get("content-range", "").rpartition("/")[2]
        if total == "*" or len(upload["data"]) < int(total):
            return Response(308, b"", {"Range": f"bytes=0-{len(upload['data']) - 1}"})
        return self._run_job(project, upload["metadata"], upload["data"])

    def _load(self, config: dict[str, Any], data: bytes) -> dict[str, Any]:
        ref = config["destinationTable"]
        dataset, table = ref["datasetId"], ref["tableId"]
        fields = config.get("schema", {}).get("fields")
        if (dataset, table) not in self.tables:
            if not fields:
                raise JobFailed("invalid", "this fake needs an explicit schema to create a table")
            body = json.dumps({"tableReference": ref, "schema": {"fields": fields}}).encode()
            self._insert_table(Request("POST", "", {}, {}, body), ref["projectId"], dataset)
        disposition = config.get("writeDisposition", "WRITE_APPEND")
        if fields:
            allowed = "ALLOW_FIELD_ADDITION" in config.get("schemaUpdateOptions", ())
            self._add_fields(dataset, table, fields, allowed or disposition == "WRITE_TRUNCATE")
        target = f'"{dataset}"."{table}"'
        count = self.db.execute(f"SELECT count(*) FROM {target}").fetchone()
        if disposition == "WRITE_EMPTY" and count and count[0]:
            raise JobFailed("duplicate", f"Already Exists: Table {dataset}.{table}")
        staged = pq.read_table(io.BytesIO(data))
        columns = ", ".join(f'"{name}"' for name in staged.column_names)
        self.db.execute("BEGIN TRANSACTION")
        if disposition == "WRITE_TRUNCATE":
            self.db.execute(f"DELETE FROM {target}")
        self.db.register("upload", staged)
        self.db.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM upload")
        self.db.unregister("upload")
        self.db.execute("COMMIT")
        return {"load": {"outputRows": str(staged.num_rows), "inputFiles": "1"}}

    # --- query jobs ----------------------------------------------------------------------

    def _insert_query_job(self, request: Request, project: str) -> Response:
        return self._run_job(project, request.json(), b"")

    def _run_job(self, project: str, job: dict[str, Any], data: bytes) -> Response:
        ref = job.setdefault("jobReference", {})
        ref.setdefault("projectId", project)
        ref.setdefault("jobId", f"job_{len(self.jobs) + 1}")
        job["status"] = {"state": "DONE"}
        self.jobs[ref["jobId"]] = job
        config = job["configuration"]
        try:
            job["statistics"] = (
                self._load(config["load"], data) if "load" in config else self._query(job)
            )
        except (JobFailed, duckdb.Error) as failure:
            with contextlib.suppress(duckdb.Error):
                self.db.execute("ROLLBACK")
            reason = getattr(failure, "reason", "invalidQuery")
            job["status"]["errorResult"] = {"reason": reason, "message": str(failure)}
            job["status"]["errors"] = [job["status"]["errorResult"]]
        return Response(200, job)

    def _query(self, job: dict[str, Any]) -> dict[str, Any]:
        if self.query_failures:
            raise JobFailed("invalidQuery", self.query_failures.pop(0))
        query = job["configuration"]["query"]
        result = self.db.execute(_duckdb_sql(query["query"], query.get("queryParameters", [])))
        names = [d[0] for d in result.description or ()]
        types = [RESULT_TYPES.get(str(d[1]), "STRING") for d in result.description or ()]
        rows = [[{"v": None if v is None else str(v)} for v in row] for row in result.fetchall()]
        job["result"] = {
            "schema": {
                "fields": [{"name": n, "type": t} for n, t in zip(names, types, strict=True)]
            },
            "rows": [{"f": row} for row in rows],
            "totalRows": str(len(rows)),
        }
        return {"query": {"statementType": "SCRIPT" if ";" in query["query"] else "SELECT"}}

    def _get_job(self, request: Request, project: str, job: str) -> Response:
        return Response(200, self.jobs[job])

    def _query_results(self, request: Request, project: str, job: str) -> Response:
        resource = self.jobs[job]
        failure = resource["status"].get("errorResult")
        if failure:
            return error(400, failure["reason"], failure["message"])
        body = {"jobReference": resource["jobReference"], "jobComplete": True}
        return Response(200, {**body, **resource["result"]})


def _column(spec: dict[str, Any]) -> str:
    return f'"{spec["name"]}" {DUCKDB_TYPES.get(spec["type"], "VARCHAR")}'


def _multipart(request: Request) -> tuple[dict[str, Any], bytes]:
    """The JSON metadata and the file of a multipart/related upload."""
    boundary = re.search(r'boundary="?([^";]+)"?', request.headers["content-type"])
    assert boundary, "multipart upload without a boundary"
    parts = request.body.split(b"--" + boundary.group(1).encode())[1:-1]
    bodies = [part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n") for part in parts]
    return json.loads(bodies[0]), bodies[1]


def _literal(param: dict[str, Any]) -> str:
    value = param["parameterValue"].get("value")
    kind = param["parameterType"]["type"]
    if value is None:
        return "NULL"
    text = "'" + str(value).replace("'", "''") + "'"
    return f"TIMESTAMPTZ {text}" if kind == "TIMESTAMP" else text


def _duckdb_sql(sql: str, params: list[dict[str, Any]]) -> str:
    """BigQuery SQL as DuckDB runs it: `p`.`d`.`t` -> "d"."t", `x` -> "x", @p -> literal."""
    sql = re.sub(r"`([^`]+)`\.`([^`]+)`\.`([^`]+)`", r'"\2"."\3"', sql)
    sql = re.sub(r"`([^`]+)`", r'"\1"', sql)
    values = {p["name"]: _literal(p) for p in params}
    return re.sub(r"@(\w+)", lambda m: values[m.group(1)], sql)
