"""The BigQuery destination: load/merge SQL and job configuration against a local fake of
the REST endpoints google-cloud-bigquery calls (tests/fake_bigquery.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from connectors.base import (
    ConnectorError,
    CursorState,
    ExtractStart,
    LoadMode,
    LoadRequest,
    StateUpdate,
)
from connectors.destinations.bigquery import BigQueryDestination
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.fake_bigquery import PROJECT, FakeBigQuery
from tests.support.fake_http import serve

EXAMPLE = Path(__file__).parents[2] / "pipelines" / "examples" / "bigquery.yaml"
ORDERS = pa.table({"id": [1, 2, 2], "status": ["new", "new", "paid"]})
TARGET = {"projectId": PROJECT, "datasetId": "raw", "tableId": "orders"}


@pytest.fixture
def bq(monkeypatch):
    fake = FakeBigQuery()
    with serve(fake.server):
        for name, value in fake.proxy_environment().items():
            monkeypatch.setenv(name, value)
        yield fake


def destination(bq, **overrides):
    config = {"project": PROJECT, "dataset": "raw", "base_url": bq.url}
    config["service_account_json"] = bq.service_account()
    return BigQueryDestination("bq", {**config, **overrides})


def load(bq, table, mode, **kwargs):
    return destination(bq).load(table.to_reader(), LoadRequest("orders", mode, **kwargs))


def schema(*fields):
    return {"fields": [{"name": n, "type": t, "mode": "NULLABLE"} for n, t in fields]}


def test_append_creates_dataset_and_table_and_loads_parquet(bq):
    result = load(bq, ORDERS, LoadMode.APPEND)
    assert (result.rows_loaded, result.table_rows, result.table_created) == (3, 3, True)
    assert bq.datasets["raw"]["location"] == "US"
    assert bq.configs("load") == [
        {"sourceFormat": "PARQUET", "writeDisposition": "WRITE_APPEND", "destinationTable": TARGET,
         "schema": schema(("id", "INT64"), ("status", "STRING"))}
    ]  # fmt: skip
    assert load(bq, ORDERS, LoadMode.APPEND).table_rows == 6
    assert (
        bq.rows("raw", "orders", "id, status")
        == [(1, "new")] * 2 + [(2, "new")] * 2 + [(2, "paid")] * 2
    )
    uploads = [r.param("uploadType") for r in bq.server.requests if r.path.startswith("/upload")]
    assert uploads == ["multipart", "multipart"]


def test_replace_truncates_and_adds_new_columns_in_the_load_job(bq):
    load(bq, ORDERS, LoadMode.APPEND)
    wider = pa.table({"id": [7], "status": ["paid"], "paid_at": [dt.datetime(2026, 1, 2, 3, 4)]})
    result = load(bq, wider, LoadMode.REPLACE)
    assert (result.rows_loaded, result.table_rows, result.columns_added) == (1, 1, ("paid_at",))
    assert bq.configs("load")[-1] == {
        "sourceFormat": "PARQUET", "writeDisposition": "WRITE_TRUNCATE", "destinationTable": TARGET,
        "schema": schema(("id", "INT64"), ("status", "STRING"), ("paid_at", "DATETIME")),
        "schemaUpdateOptions": ["ALLOW_FIELD_ADDITION"],
    }  # fmt: skip
    assert bq.rows("raw", "orders") == [(7, "paid", dt.datetime(2026, 1, 2, 3, 4))]


def test_upsert_merges_the_last_staged_row_per_key_with_the_state_in_one_transaction(bq):
    load(bq, pa.table({"id": [1, 3], "status": ["old", "old"]}), LoadMode.APPEND)
    state = StateUpdate("orders_pipe", "orders", CursorState(dt.date(2026, 1, 5), ((2,),)))
    result = load(bq, ORDERS, LoadMode.UPSERT, upsert_key=["id"], state_updates=[state])
    assert (result.rows_loaded, result.table_rows) == (2, 3)
    assert bq.rows("raw", "orders") == [(1, "new"), (2, "paid"), (3, "old")]
    staging_config = bq.configs("load")[-1]
    staging = staging_config["destinationTable"]["tableId"]
    assert staging.startswith("orders__datapipe_staging_")
    assert staging_config["writeDisposition"] == "WRITE_EMPTY"
    assert staging_config["schema"]["fields"][-1]["name"] == "_datapipe_position"
    stage = f"`{PROJECT}`.`raw`.`{staging}`"
    assert bq.configs("query")[-1]["query"] == (
        "BEGIN TRANSACTION;\n"
        f"MERGE INTO `{PROJECT}`.`raw`.`orders` AS T\n"
        f"USING (SELECT `id`, `status` FROM {stage} WHERE TRUE QUALIFY ROW_NUMBER() OVER "
        "(PARTITION BY `id` ORDER BY `_datapipe_position` DESC) = 1) AS S\n"
        "ON T.`id` = S.`id`\n"
        "WHEN MATCHED THEN UPDATE SET `status` = S.`status`\n"
        "WHEN NOT MATCHED THEN INSERT (`id`, `status`) VALUES (S.`id`, S.`status`);\n"
        f"MERGE INTO `{PROJECT}`.`raw`.`_datapipe_state` AS T\n"
        "USING (SELECT @pipeline_0 AS pipeline, @source_table_0 AS source_table, "
        "@state_0 AS state) AS S\n"
        "ON T.pipeline = S.pipeline AND T.source_table = S.source_table\n"
        "WHEN MATCHED THEN UPDATE SET state = S.state, committed_at = @committed_at\n"
        "WHEN NOT MATCHED THEN INSERT (pipeline, source_table, state, committed_at) "
        "VALUES (S.pipeline, S.source_table, S.state, @committed_at);\n"
        "COMMIT TRANSACTION;\n"
        f"SELECT COUNT(*) FROM (SELECT DISTINCT `id` FROM {stage})"
    )
    assert ("raw", staging) not in bq.tables
    assert [r.method for r in bq.server.requests if r.path.endswith(staging)] == ["DELETE"]
    assert destination(bq).read_state("orders_pipe", "orders") == state.state
    assert destination(bq).read_state("orders_pipe", "other") is None
    assert [t.name for t in destination(bq).discover()] == ["orders"]


def test_a_failed_merge_changes_nothing_and_still_drops_the_staging_table(bq):
    first = StateUpdate("p", "orders", CursorState(1))
    load(bq, ORDERS, LoadMode.UPSERT, upsert_key=["id"], state_updates=[first])
    bq.query_failures.append("Query error: Resources exceeded during query execution")
    with pytest.raises(ConnectorError) as error:
        later = StateUpdate("p", "orders", CursorState(9))
        load(bq, pa.table({"id": [5], "status": ["x"]}), LoadMode.UPSERT, upsert_key=["id"],
             state_updates=[later])  # fmt: skip
    assert str(error.value) == (
        "connection 'bq': loading table 'orders' failed: Query error: Resources exceeded "
        "during query execution"
    )
    assert sorted(t for _, t in bq.tables) == ["_datapipe_state", "orders"]
    assert bq.rows("raw", "orders") == [(1, "new"), (2, "paid")]
    assert destination(bq).read_state("p", "orders") == CursorState(1)


@pytest.mark.parametrize("mode", [LoadMode.APPEND, LoadMode.UPSERT])
def test_a_load_refuses_a_cursor_committed_after_its_extract_started(bq, mode):
    first = StateUpdate("p", "orders", CursorState(2), ExtractStart(None))
    load(bq, ORDERS, mode, upsert_key=["id"], state_updates=[first])
    jobs = len(bq.configs("load"))
    with pytest.raises(ConnectorError) as error:
        load(bq, ORDERS, mode, upsert_key=["id"], state_updates=[first])
    assert str(error.value) == (
        "another run of pipeline 'p' committed table 'orders' after this run started; nothing "
        "was loaded; run again"
    )
    assert len(bq.configs("load")) == jobs
    following = StateUpdate("p", "orders", CursorState(3), ExtractStart(CursorState(2)))
    load(bq, pa.table({"id": [3], "status": ["new"]}), mode, upsert_key=["id"],
         state_updates=[following])  # fmt: skip
    assert destination(bq).read_state("p", "orders") == CursorState(3)
    assert sorted(bq.rows("raw", "orders"))[-1] == (3, "new")


def test_append_commits_the_cursor_state_in_a_merge_after_the_load(bq):
    state = StateUpdate("p", "orders", CursorState(dt.datetime(2026, 1, 1, 12)))
    load(bq, ORDERS, LoadMode.APPEND, state_updates=[state])
    merge = bq.configs("query")[0]["query"]
    assert merge.startswith(f"MERGE INTO `{PROJECT}`.`raw`.`_datapipe_state`")
    assert destination(bq).read_state("p", "orders") == state.state


def test_a_large_load_uses_the_resumable_upload(bq):
    ids = np.random.default_rng(1).integers(0, 2**62, 800_000)
    assert load(bq, pa.table({"id": ids}), LoadMode.APPEND).table_rows == 800_000
    uploads = [r.param("uploadType") for r in bq.server.requests if r.path.startswith("/upload")]
    assert uploads[0] == "resumable"


def test_missing_tables_and_type_conflicts_are_refused_before_any_job(bq):
    with pytest.raises(ConnectorError) as error:
        load(bq, ORDERS, LoadMode.APPEND, create_table_if_missing=False)
    assert str(error.value) == (
        "connection 'bq': table 'orders' does not exist in dataset raw and "
        "create_table_if_missing is false; create it or set create_table_if_missing: true"
    )
    load(bq, ORDERS, LoadMode.APPEND)
    with pytest.raises(ConnectorError) as error:
        load(bq, pa.table({"id": ["one"]}), LoadMode.APPEND)
    assert str(error.value) == (
        "connection 'bq': column 'id' of table 'orders' is INT64 but the data is STRING; "
        "change the column type or cast it in a computed step"
    )
    assert len(bq.jobs) == 1


def test_rejected_credentials_are_a_clear_error_without_secrets(bq):
    bq.reject_tokens = True
    with pytest.raises(ConnectorError) as error:
        load(bq, ORDERS, LoadMode.APPEND)
    assert str(error.value) == (
        "credentials rejected for connection 'bq' (token request refused: invalid_client); "
        "check service_account_json and its BigQuery roles"
    )
    assert "PRIVATE KEY" not in str(error.value)


def test_service_account_key_may_be_a_file_next_to_the_pipeline(bq, tmp_path):
    (tmp_path / "key.json").write_text(json.dumps(bq.service_account()))
    dest = destination(bq, service_account_json="key.json", base_dir=str(tmp_path))
    assert dest.check() == (
        "connection 'bq': BigQuery dataset acme-analytics.raw is created on the first load"
    )
    with pytest.raises(ConnectorError, match="service_account_json is neither JSON nor the path"):
        destination(bq, service_account_json="missing.json", base_dir=str(tmp_path)).check()


def test_example_pipeline_parses():
    pipeline = Pipeline.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    assert (pipeline.source.connector, pipeline.destination.connector) == ("csv", "bigquery")
