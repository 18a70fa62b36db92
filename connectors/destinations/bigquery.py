"""BigQuery as a destination: parquet load jobs, MERGE upserts, cursor state in the dataset.

The incoming batches are streamed into a temporary local parquet file, which one load job
uploads (multipart below 5 MB, resumable above). Each mode maps onto BigQuery directly:

- append: a load job with WRITE_APPEND; replace: WRITE_TRUNCATE. A load job commits all of
  its rows or none, and with ALLOW_FIELD_ADDITION it adds new source columns in the same
  commit.
- upsert: a load job into a staging table `{table}__datapipe_staging_{id}` (created with a
  one-day expiry, so even a killed process leaves nothing behind for long), then a
  multi-statement query job `BEGIN TRANSACTION; MERGE target; MERGE _datapipe_state;
  COMMIT TRANSACTION`, then the staging table is dropped, also after a failure.

Atomicity, as far as BigQuery allows it: an upsert commits its rows and its cursor states
in one transaction. DDL cannot run inside a BigQuery transaction, so creating the table or
adding its new (nullable) columns happens just before and survives a failed MERGE. For
append and replace the cursor states are merged by a second query job after the load job
commits: a crash between the two leaves the state one load behind, so the next run
re-reads those rows (at-least-once); use upsert for exactly-once incremental loads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import bigquery
from google.oauth2 import service_account

from connectors.base import (
    ConnectorError,
    CursorState,
    Destination,
    LoadMode,
    LoadRequest,
    LoadResult,
    TableSchema,
    refuse_overtaken,
)
from connectors.config.bigquery import BigQueryConfig
from connectors.shared.google_auth import service_account_info
from connectors.shared.parquet import write_parquet
from connectors.shared.sql_destination import STATE_TABLE, check_upsert_key
from connectors.shared.sql_types import Family, SqlType, from_arrow, is_compatible, to_arrow

STATE_SCHEMA = (
    bigquery.SchemaField("pipeline", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("source_table", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("state", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("committed_at", "TIMESTAMP", mode="REQUIRED"),
)
# The staged row's position in the load, so the MERGE keeps the last row of each key.
POSITION = "_datapipe_position"
STAGING_LIFETIME = dt.timedelta(days=1)
SCOPES = ("https://www.googleapis.com/auth/bigquery",)
CREDENTIALS = "service_account_json and its BigQuery roles"

# BigQuery column type -> what it holds; parquet carries it as `to_arrow` of that.
_BQ_TYPES: dict[str, SqlType] = {
    "INT64": SqlType(Family.INTEGER, 64),
    "FLOAT64": SqlType(Family.FLOAT, 64),
    "NUMERIC": SqlType(Family.DECIMAL, precision=38, scale=9),
    "BIGNUMERIC": SqlType(Family.DECIMAL, precision=76, scale=38),
    "BOOL": SqlType(Family.BOOLEAN),
    "STRING": SqlType(Family.TEXT),
    "BYTES": SqlType(Family.BINARY),
    "DATE": SqlType(Family.DATE),
    "TIME": SqlType(Family.TIME),
    "DATETIME": SqlType(Family.TIMESTAMP),
    "TIMESTAMP": SqlType(Family.TIMESTAMPTZ),
    "JSON": SqlType(Family.JSON),
}
# The legacy names the API still reports for some columns.
_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
_FAMILY_TYPES = {
    Family.INTEGER: "INT64",
    Family.FLOAT: "FLOAT64",
    Family.BOOLEAN: "BOOL",
    Family.TEXT: "STRING",
    Family.NULL: "STRING",
    Family.BINARY: "BYTES",
    Family.DATE: "DATE",
    Family.TIME: "TIME",
    Family.TIMESTAMP: "DATETIME",
    Family.TIMESTAMPTZ: "TIMESTAMP",
}


def quote(identifier: str) -> str:
    """A BigQuery identifier in backticks, so any name (keywords, dashes) is safe."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def bq_type(arrow_type: pa.DataType) -> str:
    """The BigQuery column type that holds values of an Arrow type."""
    sql_type = from_arrow(arrow_type)
    if sql_type.family is Family.DECIMAL:
        precision, scale = sql_type.precision, sql_type.scale
        fits = precision is not None and scale <= 9 and precision - scale <= 29
        return "NUMERIC" if fits else "BIGNUMERIC"
    return _FAMILY_TYPES.get(sql_type.family, "JSON")


def _known(field_type: str) -> SqlType:
    name = _ALIASES.get(field_type, field_type)
    # GEOGRAPHY, INTERVAL, RECORD...: BigQuery parses them from text, like SQL's OTHER.
    return _BQ_TYPES.get(name, SqlType(Family.OTHER))


def _arrow_type(field_type: str) -> pa.DataType:
    """The Arrow type parquet carries a BigQuery column type's values as."""
    return to_arrow(_known(field_type))


@dataclass(frozen=True)
class TablePlan:
    """The target table's columns once loaded, and how the data's columns are written."""

    schema: tuple[bigquery.SchemaField, ...]
    added: tuple[str, ...]
    parquet: pa.Schema  # the incoming columns, typed as their BigQuery columns
    incoming: tuple[bigquery.SchemaField, ...]  # the BigQuery column of each incoming one


class BigQueryDestination(Destination):
    """Loads into tables of one BigQuery dataset."""

    config_model = BigQueryConfig
    settings: BigQueryConfig

    def __init__(self, connection: str, config: Mapping[str, Any]) -> None:
        super().__init__(connection, config)
        self.project = self.settings.project
        self.dataset = self.settings.dataset
        self.location = self.settings.location

    # --- the Destination contract -------------------------------------------------------

    def check(self) -> str:
        where = f"BigQuery dataset {self.project}.{self.dataset}"
        with self._client("checking the dataset") as client:
            try:
                dataset = client.get_dataset(self._dataset_ref())
            except api_exceptions.NotFound:
                return f"connection {self.connection!r}: {where} is created on the first load"
        return f"connection {self.connection!r}: {where} ({dataset.location})"

    def discover(self) -> list[TableSchema]:
        with self._client("listing tables") as client:
            try:
                items = list(client.list_tables(self._dataset_ref()))
            except api_exceptions.NotFound:
                return []
            tables = [client.get_table(item.reference) for item in items]
        return [
            TableSchema(
                t.table_id, pa.schema([(f.name, _arrow_type(f.field_type)) for f in t.schema])
            )
            for t in tables
            if t.table_id != STATE_TABLE
        ]

    def read_state(self, pipeline: str, source_table: str) -> CursorState | None:
        sql = (
            f"SELECT state FROM {self._sql_name(STATE_TABLE)} "
            "WHERE pipeline = @pipeline AND source_table = @source_table"
        )
        params = [_param("pipeline", pipeline), _param("source_table", source_table)]
        with self._client("reading the cursor state") as client:
            if _table_or_none(client, self._table_ref(STATE_TABLE)) is None:
                return None
            rows = list(_run_query(client, sql, params, self.location))
        return CursorState.from_json(json.loads(rows[0][0])) if rows else None

    def load(self, data: pa.RecordBatchReader, request: LoadRequest) -> LoadResult:
        check_upsert_key(self.connection, data.schema, request)
        target = self._table_ref(request.table)
        with (
            self._client(f"loading table {request.table!r}") as client,
            tempfile.TemporaryDirectory(prefix="datapipe-bq-") as tmp,
        ):
            existing = _table_or_none(client, target)
            plan = self._plan(existing, data.schema, request)
            if existing is None:
                self._create_table(client, target, plan.schema)
            if request.state_updates:
                self._create_table(client, self._table_ref(STATE_TABLE), STATE_SCHEMA)
                self._refuse_overtaken(client, request)
            if request.mode is LoadMode.UPSERT:
                rows = self._upsert(client, existing, data, plan, request, Path(tmp))
            else:
                rows = self._load_file(client, data, plan, request, Path(tmp))
                self._merge_states(client, request)
            table_rows = client.get_table(target).num_rows or 0
        return LoadResult(rows, table_rows, plan.added, table_created=existing is None)

    # --- planning ------------------------------------------------------------------------

    def _plan(
        self, existing: bigquery.Table | None, schema: pa.Schema, request: LoadRequest
    ) -> TablePlan:
        """Check the data against the table (all before anything is changed)."""
        if existing is None and not request.create_table_if_missing:
            raise ConnectorError(
                f"connection {self.connection!r}: table {request.table!r} does not exist in "
                f"dataset {self.dataset} and create_table_if_missing is false; create it or "
                "set create_table_if_missing: true"
            )
        current = {f.name.lower(): f for f in (existing.schema if existing else ())}
        fields = list(existing.schema if existing else ())
        added, parquet, incoming = [], [], []
        for column in schema:
            field = current.get(column.name.lower())
            if field is None:
                field = bigquery.SchemaField(column.name, bq_type(column.type))
                fields.append(field)
                added.append(column.name)
            else:
                self._check_compatible(request.table, column, field)
            parquet.append(pa.field(column.name, _arrow_type(field.field_type)))
            incoming.append(field)
        added_columns = tuple(added) if existing is not None else ()
        return TablePlan(tuple(fields), added_columns, pa.schema(parquet), tuple(incoming))

    def _check_compatible(self, table: str, column: pa.Field, field: bigquery.SchemaField) -> None:
        if not is_compatible(from_arrow(column.type), _known(field.field_type)):
            raise ConnectorError(
                f"connection {self.connection!r}: column {column.name!r} of table {table!r} is "
                f"{field.field_type} but the data is {bq_type(column.type)}; change the column "
                "type or cast it in a computed step"
            )

    # --- the steps of a load -------------------------------------------------------------

    def _create_table(
        self,
        client: bigquery.Client,
        ref: bigquery.TableReference,
        schema: Sequence[bigquery.SchemaField],
        expires: dt.datetime | None = None,
    ) -> None:
        # The dataset is created with the first table; exists_ok makes a re-run harmless.
        dataset = bigquery.Dataset(self._dataset_ref())
        dataset.location = self.location
        client.create_dataset(dataset, exists_ok=True)
        table = bigquery.Table(ref, schema=list(schema))
        table.expires = expires
        client.create_table(table, exists_ok=True)

    def _load_file(
        self,
        client: bigquery.Client,
        data: pa.RecordBatchReader,
        plan: TablePlan,
        request: LoadRequest,
        tmp: Path,
    ) -> int:
        """Append or replace with one load job; returns the rows it wrote."""
        config = bigquery.LoadJobConfig(
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE
            if request.mode is LoadMode.REPLACE
            else bigquery.WriteDisposition.WRITE_APPEND,
            schema=list(plan.schema),
        )
        if plan.added:
            config.schema_update_options = [bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION]
        batches = _typed_batches(data, plan.parquet)
        path = tmp / "data.parquet"
        return self._load_parquet(
            client, batches, plan.parquet, path, self._table_ref(request.table), config
        )

    def _upsert(
        self,
        client: bigquery.Client,
        existing: bigquery.Table | None,
        data: pa.RecordBatchReader,
        plan: TablePlan,
        request: LoadRequest,
        tmp: Path,
    ) -> int:
        """Stage the rows, then MERGE them and the cursor states in one transaction."""
        target = self._table_ref(request.table)
        if existing is not None and plan.added:
            existing.schema = list(plan.schema)
            client.update_table(existing, ["schema"])
        staged = plan.parquet.append(pa.field(POSITION, pa.int64()))
        staging_schema = [*plan.incoming, bigquery.SchemaField(POSITION, "INT64")]
        staging = self._table_ref(f"{target.table_id}__datapipe_staging_{uuid.uuid4().hex[:12]}")
        expires = dt.datetime.now(dt.UTC) + STAGING_LIFETIME
        self._create_table(client, staging, staging_schema, expires)
        try:
            self._load_parquet(
                client,
                _typed_batches(data, staged),
                staged,
                tmp / "stage.parquet",
                staging,
                bigquery.LoadJobConfig(
                    write_disposition=bigquery.WriteDisposition.WRITE_EMPTY, schema=staging_schema
                ),
            )
            script, params = self._upsert_script(target, staging, plan.parquet.names, request)
            return next(iter(_run_query(client, script, params, self.location)))[0]
        finally:
            client.delete_table(staging, not_found_ok=True)

    def _upsert_script(
        self,
        target: bigquery.TableReference,
        staging: bigquery.TableReference,
        columns: Sequence[str],
        request: LoadRequest,
    ) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
        """The MERGE of the rows and the states in one transaction; its last statement
        counts the distinct keys staged, the rows the MERGE wrote."""
        keys = ", ".join(quote(k) for k in request.upsert_key)
        merge = merge_sql(_sql_name(target), _sql_name(staging), columns, request.upsert_key)
        statements = ["BEGIN TRANSACTION", merge]
        state_merge, params = self._state_merge(request)
        statements += [state_merge] if state_merge else []
        statements += [
            "COMMIT TRANSACTION",
            f"SELECT COUNT(*) FROM (SELECT DISTINCT {keys} FROM {_sql_name(staging)})",
        ]
        return ";\n".join(statements), params

    def _refuse_overtaken(self, client: bigquery.Client, request: LoadRequest) -> None:
        """Refuse a cursor another run committed after this run's extract started.

        BigQuery has no lock to hold across the load job, so this narrows the window to the
        load itself rather than closing it, as PostgreSQL's lock does.
        """
        sql = f"SELECT source_table, state FROM {self._sql_name(STATE_TABLE)} WHERE pipeline = @p"
        refuse_overtaken(
            request.state_updates,
            lambda pipeline: _run_query(client, sql, [_param("p", pipeline)], self.location),
        )

    def _merge_states(self, client: bigquery.Client, request: LoadRequest) -> None:
        """Commit the cursor states after an append or replace: a job of their own."""
        sql, params = self._state_merge(request)
        if sql:
            _run_query(client, sql, params, self.location)

    def _state_merge(self, request: LoadRequest) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
        """The MERGE of the request's cursor states, with its query parameters."""
        if not request.state_updates:
            return "", []
        params = [
            bigquery.ScalarQueryParameter("committed_at", "TIMESTAMP", dt.datetime.now(dt.UTC))
        ]
        rows = []
        for i, update in enumerate(request.state_updates):
            params += [
                _param(f"pipeline_{i}", update.pipeline),
                _param(f"source_table_{i}", update.source_table),
                _param(f"state_{i}", json.dumps(update.state.to_json())),
            ]
            rows.append(
                f"SELECT @pipeline_{i} AS pipeline, @source_table_{i} AS source_table, "
                f"@state_{i} AS state"
            )
        return state_merge_sql(self._sql_name(STATE_TABLE), " UNION ALL ".join(rows)), params

    # --- plumbing ------------------------------------------------------------------------

    def _load_parquet(
        self,
        client: bigquery.Client,
        batches: Iterator[pa.RecordBatch],
        schema: pa.Schema,
        path: Path,
        ref: bigquery.TableReference,
        config: bigquery.LoadJobConfig,
    ) -> int:
        """Write the batches into a parquet file and load it with one load job; returns
        the rows it wrote."""
        write_parquet(path, schema, batches)
        config.source_format = bigquery.SourceFormat.PARQUET
        with path.open("rb") as file:
            job = client.load_table_from_file(
                file, ref, size=path.stat().st_size, job_config=config, location=self.location
            )
        job.result()
        return job.output_rows or 0

    def _dataset_ref(self) -> bigquery.DatasetReference:
        return bigquery.DatasetReference(self.project, self.dataset)

    def _table_ref(self, table: str) -> bigquery.TableReference:
        return self._dataset_ref().table(table)

    def _sql_name(self, table: str) -> str:
        return _sql_name(self._table_ref(table))

    def _credentials(self) -> service_account.Credentials:
        info = service_account_info(self.connection, self.settings.model_dump())
        try:
            return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except (ValueError, KeyError):
            # The parser's message may quote part of the key; say only what is wrong.
            raise ConnectorError(
                f"connection {self.connection!r}: service_account_json is not a usable "
                "service-account key; use the key file exactly as downloaded"
            ) from None

    @contextlib.contextmanager
    def _client(self, action: str) -> Iterator[bigquery.Client]:
        """A client whose errors become one-line ConnectorErrors naming `action`."""
        base_url = self.settings.base_url
        client = bigquery.Client(
            project=self.project,
            credentials=self._credentials(),
            location=self.location,
            client_options={"api_endpoint": base_url} if base_url else None,
        )
        try:
            yield client
        except auth_exceptions.RefreshError as error:
            raise ConnectorError(
                f"credentials rejected for connection {self.connection!r} (token request "
                f"refused{_refresh_reason(error)}); check {CREDENTIALS}"
            ) from None
        except (api_exceptions.Unauthorized, api_exceptions.Forbidden) as error:
            raise ConnectorError(
                f"credentials rejected for connection {self.connection!r} (HTTP {error.code}: "
                f"{_api_message(error)}); check {CREDENTIALS}"
            ) from None
        except api_exceptions.GoogleAPICallError as error:
            raise ConnectorError(
                f"connection {self.connection!r}: {action} failed: {_api_message(error)}"
            ) from None
        except requests.ConnectionError:
            raise ConnectorError(
                f"connection {self.connection!r}: cannot reach BigQuery; check base_url and "
                "the network"
            ) from None
        finally:
            client.close()


def merge_sql(target: str, staging: str, columns: Sequence[str], keys: Sequence[str]) -> str:
    """MERGE the last staged row of each key into the target."""
    column_list = ", ".join(quote(c) for c in columns)
    matches = " AND ".join(f"T.{quote(k)} = S.{quote(k)}" for k in keys)
    partition = ", ".join(quote(k) for k in keys)
    # BigQuery refuses a MERGE where two source rows match one target row: keep the last.
    source = (
        f"SELECT {column_list} FROM {staging} WHERE TRUE QUALIFY ROW_NUMBER() OVER "
        f"(PARTITION BY {partition} ORDER BY {quote(POSITION)} DESC) = 1"
    )
    updates = ", ".join(f"{quote(c)} = S.{quote(c)}" for c in columns if c not in keys)
    matched = f"\nWHEN MATCHED THEN UPDATE SET {updates}" if updates else ""
    values = ", ".join(f"S.{quote(c)}" for c in columns)
    return (
        f"MERGE INTO {target} AS T\nUSING ({source}) AS S\nON {matches}{matched}\n"
        f"WHEN NOT MATCHED THEN INSERT ({column_list}) VALUES ({values})"
    )


def state_merge_sql(state_table: str, rows: str) -> str:
    """MERGE cursor states (a SELECT of pipeline, source_table, state rows) into the table."""
    return (
        f"MERGE INTO {state_table} AS T\nUSING ({rows}) AS S\n"
        "ON T.pipeline = S.pipeline AND T.source_table = S.source_table\n"
        "WHEN MATCHED THEN UPDATE SET state = S.state, committed_at = @committed_at\n"
        "WHEN NOT MATCHED THEN INSERT (pipeline, source_table, state, committed_at) "
        "VALUES (S.pipeline, S.source_table, S.state, @committed_at)"
    )


def _sql_name(ref: bigquery.TableReference) -> str:
    return ".".join(quote(part) for part in (ref.project, ref.dataset_id, ref.table_id))


def _param(name: str, value: str) -> bigquery.ScalarQueryParameter:
    return bigquery.ScalarQueryParameter(name, "STRING", value)


def _run_query(
    client: bigquery.Client,
    sql: str,
    params: Sequence[bigquery.ScalarQueryParameter],
    location: str,
) -> bigquery.table.RowIterator:
    config = bigquery.QueryJobConfig(query_parameters=list(params))
    return client.query(sql, job_config=config, location=location).result()


def _table_or_none(client: bigquery.Client, ref: bigquery.TableReference) -> bigquery.Table | None:
    try:
        return client.get_table(ref)
    except api_exceptions.NotFound:
        return None


def _typed_batches(data: pa.RecordBatchReader, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The batches typed like the BigQuery columns, plus each row's position if staged."""
    position = 0
    staged = POSITION in schema.names
    for batch in data:
        columns = [_as_type(batch.column(f.name), f.type) for f in schema if f.name != POSITION]
        if staged:
            end = position + batch.num_rows
            columns.append(pa.array(np.arange(position, end, dtype=np.int64)))
        yield pa.RecordBatch.from_arrays(columns, schema=schema)
        position += batch.num_rows


def _as_type(column: pa.Array, target: pa.DataType) -> pa.Array:
    if column.type == target:
        return column
    if pa.types.is_string(target) and from_arrow(column.type).family is Family.JSON:
        # Nested values (lists, structs) have no cast to text; BigQuery reads them as JSON.
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()],
            pa.string(),
        )
    return column.cast(target)


def _refresh_reason(error: auth_exceptions.RefreshError) -> str:
    details = error.args[1] if len(error.args) > 1 else None
    code = details.get("error") if isinstance(details, dict) else None
    return f": {code}" if isinstance(code, str) else ""


def _api_message(error: api_exceptions.GoogleAPICallError) -> str:
    """BigQuery's own first error message, without the job id and location the client adds."""
    first = error.errors[0] if error.errors else None
    text = first.get("message") if isinstance(first, dict) else None
    return " ".join(str(text or error.message or "unknown error").split())[:300]
