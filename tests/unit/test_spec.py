"""The pipeline model: YAML and the visual editor's JSON export mean the same pipeline."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.project import PROJECT_ROOT, load_project
from datapipe_assets.pipeline.spec import (
    Node,
    Pipeline,
    RetriesSpec,
    normalize_editor_export,
    timeout_seconds,
)
from tests.support.project_files import SIX_NODE_TRANSFORM

NODE = TypeAdapter(Node)

ORDERS_REVENUE_YAML = """\
name: orders_revenue
org: acme
description: Paid revenue per customer, from the shop's order export.
source:
  connection: orders_csv
  tables: [orders]
transform:
  nodes:
    - {id: orders, type: source, data: {table: orders}}
    - {id: paid, type: filter, data: {column: status, operator: eq, value: paid}}
    - {id: renamed, type: rename, data: {mappings: [{from: amount_cents, to: amount}], dropUnmapped: false}}
    - {id: usd, type: computed, data: {columns: [{name: amount_usd, expression: "amount / 100.0", resultType: "DECIMAL(12,2)"}]}}
    - {id: latest, type: deduplicate, data: {columns: [id], keepStrategy: last, orderBy: updated_at}}
    - {id: by_customer, type: aggregate, data: {groupBy: [customer_id], measures: [{column: amount_usd, function: sum, alias: revenue}, {column: id, function: count, alias: orders}]}}
    - {id: out, type: destination}
  edges:
    - {source: orders, target: paid}
    - {source: paid, target: renamed}
    - {source: renamed, target: usd}
    - {source: usd, target: latest}
    - {source: latest, target: by_customer}
    - {source: by_customer, target: out}
destination:
  connection: warehouse
  target_table: revenue_by_customer
  load_mode: upsert
  upsert_key: [customer_id]
schedule: daily
timezone: UTC
"""  # noqa: E501

# The shipped example keeps money as DECIMAL; the benchmarks' six nodes compute a DOUBLE.
USD_AS_DECIMAL = {
    "columns": [
        {"name": "amount_usd", "expression": "amount / 100.0", "resultType": "DECIMAL(12,2)"}
    ]
}

ORDERS_REVENUE_JSON = {
    "name": "orders_revenue",
    "org": "acme",
    "description": "Paid revenue per customer, from the shop's order export.",
    "sourceConfig": {"connection": "orders_csv", "tables": ["orders"]},
    # The six-node transform with the editor's canvas positions and edge ids.
    "transformConfig": {
        "nodes": [
            {
                **node,
                "position": {"x": 200 * i, "y": 0},
                "data": USD_AS_DECIMAL if node["id"] == "usd" else node.get("data", {}),
            }
            for i, node in enumerate(SIX_NODE_TRANSFORM["nodes"])
        ],
        "edges": [
            {"id": f"e{i}", **edge} for i, edge in enumerate(SIX_NODE_TRANSFORM["edges"], start=1)
        ],
    },
    "destinationConfig": {
        "connection": "warehouse",
        "targetTable": "revenue_by_customer",
        "loadMode": "upsert",
        "upsertKey": "customer_id",
    },
    "schedule": "daily",
    "timezone": "UTC",
}


def from_yaml(text: str) -> Pipeline:
    return Pipeline.model_validate(normalize_editor_export(yaml.safe_load(text)))


def from_json(document: dict) -> Pipeline:
    # Through a JSON round trip, as the loader reads the exported file.
    return Pipeline.model_validate(normalize_editor_export(json.loads(json.dumps(document))))


def without_canvas(document: dict) -> dict:
    """The export with the editor's canvas positions and edge ids removed."""
    document = json.loads(json.dumps(document))
    for node in document["transformConfig"]["nodes"]:
        del node["position"]
    for edge in document["transformConfig"]["edges"]:
        del edge["id"]
    return document


def test_yaml_example_matches_the_shipped_file():
    """The shipped example is the issue's pipeline on a CSV export, plus data-quality checks."""
    shipped = from_yaml((PROJECT_ROOT / "pipelines" / "orders_revenue.yaml").read_text())
    assert [c.type for c in shipped.checks] == [
        "row_count", "not_null", "accepted_values", "range", "unique", "schema", "reconcile",
    ]  # fmt: skip
    assert from_yaml(ORDERS_REVENUE_YAML) == shipped.model_copy(update={"checks": []})


def test_yaml_and_json_export_parse_to_equal_pipelines():
    assert from_yaml(ORDERS_REVENUE_YAML) == from_json(ORDERS_REVENUE_JSON)


def test_yaml_and_json_export_without_canvas_fields_parse_to_equal_pipelines():
    assert from_yaml(ORDERS_REVENUE_YAML) == from_json(without_canvas(ORDERS_REVENUE_JSON))


def test_yaml_example_parses_to_the_expected_model():
    pipeline = from_yaml(ORDERS_REVENUE_YAML)
    assert (pipeline.name, pipeline.org, pipeline.schedule, pipeline.timezone) == (
        "orders_revenue",
        "acme",
        "daily",
        "UTC",
    )
    assert pipeline.source.connection == "orders_csv"
    assert pipeline.table_names() == ["orders"]
    assert [(n.id, n.type) for n in pipeline.transform.nodes] == [
        ("orders", "source"),
        ("paid", "filter"),
        ("renamed", "rename"),
        ("usd", "computed"),
        ("latest", "deduplicate"),
        ("by_customer", "aggregate"),
        ("out", "destination"),
    ]
    assert [(e.source, e.target) for e in pipeline.transform.edges] == [
        ("orders", "paid"),
        ("paid", "renamed"),
        ("renamed", "usd"),
        ("usd", "latest"),
        ("latest", "by_customer"),
        ("by_customer", "out"),
    ]
    rename = pipeline.transform.node("renamed").data
    assert [(m.from_, m.to) for m in rename.mappings] == [("amount_cents", "amount")]
    assert rename.drop_unmapped is False
    computed = pipeline.transform.node("usd").data.columns[0]
    assert (computed.name, computed.expression, computed.result_type) == (
        "amount_usd",
        "amount / 100.0",
        "DECIMAL(12,2)",
    )
    dedup = pipeline.transform.node("latest").data
    assert (dedup.columns, dedup.keep_strategy, dedup.order_by) == (["id"], "last", "updated_at")
    aggregate = pipeline.transform.node("by_customer").data
    assert aggregate.group_by == ["customer_id"]
    assert [(m.column, m.function, m.alias) for m in aggregate.measures] == [
        ("amount_usd", "sum", "revenue"),
        ("id", "count", "orders"),
    ]
    assert pipeline.transform.input_of("usd") == "renamed"
    assert pipeline.destination.upsert_key == ["customer_id"]
    assert pipeline.target_tables() == {"out": "revenue_by_customer"}


def test_loader_reads_the_json_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DATAPIPE_CONNECTIONS_FILE", raising=False)
    (tmp_path / "orders_revenue.json").write_text(json.dumps(ORDERS_REVENUE_JSON))
    (tmp_path / "connections.yaml").write_text(
        (PROJECT_ROOT / "pipelines" / "connections.yaml").read_text()
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text(
        "id,customer_id,status,amount_cents,currency,updated_at\n"
        "1,10,paid,26375,usd,2026-01-01 00:37:00\n"
    )
    project = load_project(tmp_path)
    assert project.errors == {}
    [loaded] = project.pipelines
    assert [(e.source, e.target) for e in loaded.pipeline.transform.edges] == [
        (e.source, e.target) for e in from_yaml(ORDERS_REVENUE_YAML).transform.edges
    ]
    assert loaded.pipeline.destination.upsert_key == ["customer_id"]


MAPPINGS = [{"from": "a", "to": "b"}]
MEASURES = [{"column": "v", "function": "sum", "alias": "s"}]


def _column(key: str) -> dict:
    return {"columns": [{"name": "x", "expression": "1", key: "DOUBLE"}]}


@pytest.mark.parametrize(
    ("node_type", "snake", "camel"),
    [
        (
            "rename",
            {"mappings": MAPPINGS, "drop_unmapped": True},
            {"mappings": MAPPINGS, "dropUnmapped": True},
        ),
        ("computed", _column("result_type"), _column("resultType")),
        (
            "aggregate",
            {"group_by": ["g"], "measures": MEASURES},
            {"groupBy": ["g"], "measures": MEASURES},
        ),
        (
            "deduplicate",
            {"columns": ["k"], "keep_strategy": "last", "order_by": "t"},
            {"columns": ["k"], "keepStrategy": "last", "orderBy": "t"},
        ),
    ],
)
def test_snake_case_node_data_equals_camel_case(node_type, snake, camel):
    parsed_snake = NODE.validate_python({"id": "n", "type": node_type, "data": snake})
    parsed_camel = NODE.validate_python({"id": "n", "type": node_type, "data": camel})
    assert parsed_snake == parsed_camel
    # The option really took effect: it differs from leaving it out.
    default = NODE.validate_python({"id": "n", "type": node_type, "data": _required_only(snake)})
    if node_type in ("rename", "deduplicate"):
        assert parsed_snake != default
    if node_type == "aggregate":
        assert parsed_snake.data.group_by == ["g"]
        assert parsed_snake != default


def _required_only(data: dict) -> dict:
    optional = {"drop_unmapped", "keep_strategy", "order_by", "group_by"}
    return {k: v for k, v in data.items() if k not in optional}


def test_snake_case_and_camel_case_pipeline_blocks_are_equal():
    blocks = """\
    name: p
    source: {{connection: c, tables: [t], {sync_mode}: incremental, {incremental_key}: updated_at,
             {primary_key}: [id]}}
    destination: {{connection: w, {target_table}: out, {table_prefix}: raw_, {load_mode}: append,
                  {create_table_if_missing}: false}}
    """
    camel_keys = {
        "sync_mode": "syncMode",
        "incremental_key": "incrementalKey",
        "primary_key": "primaryKey",
        "target_table": "targetTable",
        "table_prefix": "tablePrefix",
        "load_mode": "loadMode",
        "create_table_if_missing": "createTableIfMissing",
    }
    snake = blocks.format(**{key: key for key in camel_keys})
    camel = blocks.format(**camel_keys)
    parsed = from_yaml(textwrap.dedent(snake))
    assert parsed == from_yaml(textwrap.dedent(camel))
    assert (parsed.source.sync_mode, parsed.source.incremental_key) == ("incremental", "updated_at")
    assert parsed.destination.load_mode == "append"
    assert parsed.destination.create_table_if_missing is False
    assert parsed.destination.table_prefix == "raw_"


@pytest.mark.parametrize(
    ("block", "key", "as_list"),
    [
        ("destination", "upsert_key", ["id"]),
        ("destination", "upsertKey", ["id"]),
        ("source", "primary_key", ["id"]),
        ("source", "tables", ["id"]),
    ],
)
def test_key_given_as_string_equals_one_item_list(block, key, as_list):
    base = {
        "name": "p",
        "source": {"connection": "c", "tables": ["t"]},
        "destination": {"connection": "w", "load_mode": "upsert"},
    }
    one = json.loads(json.dumps(base))
    one[block][key] = "id"
    many = json.loads(json.dumps(base))
    many[block][key] = as_list
    assert Pipeline.model_validate(one) == Pipeline.model_validate(many)
    dumped = getattr(Pipeline.model_validate(one), block).model_dump()[_snake(key)]
    # A table given by name is a table spec with that name and the block's settings.
    assert [item["name"] if isinstance(item, dict) else item for item in dumped] == ["id"]


def _snake(key: str) -> str:
    return {"upsertKey": "upsert_key"}.get(key, key)


def test_node_column_lists_given_as_string():
    dedup = NODE.validate_python({"id": "d", "type": "deduplicate", "data": {"columns": "k"}})
    assert dedup.data.columns == ["k"]
    aggregate = NODE.validate_python(
        {
            "id": "a",
            "type": "aggregate",
            "data": {
                "groupBy": "g",
                "measures": [{"column": "v", "function": "max", "alias": "m"}],
            },
        }
    )
    assert aggregate.data.group_by == ["g"]


def test_defaults():
    pipeline = from_yaml(
        "name: p\nsource: {connection: c, tables: [t]}\ndestination: {connection: w}\n"
    )
    assert pipeline.org == "default"
    assert pipeline.description == ""
    assert pipeline.timezone == "UTC"
    assert pipeline.schedule is None
    assert pipeline.transform is None
    assert pipeline.source.sync_mode == "full"
    assert pipeline.source.incremental_key is None
    assert pipeline.source.primary_key == []
    assert pipeline.destination.load_mode == "replace"
    assert pipeline.destination.create_table_if_missing is True
    assert pipeline.destination.upsert_key == []
    assert pipeline.destination.table_prefix == ""
    assert pipeline.destination.target_table is None
    assert pipeline.target_tables() == {"t": "t"}
    assert (pipeline.retries.max_retries, pipeline.retries.delays) == (3, [5, 30, 120])
    assert timeout_seconds(pipeline.timeout) == 3600


def test_retry_delays_repeat_their_last_value():
    retries = from_yaml(
        "name: p\nsource: {connection: c, tables: [t]}\ndestination: {connection: w}\n"
        "retries: {max: 5, delays: [1, 2.5]}\n"
    ).retries
    assert [retries.delay(n) for n in range(5)] == [1, 2.5, 2.5, 2.5, 2.5]
    assert RetriesSpec(delays=7).delays == [7]  # one number is a one-item list
    assert [RetriesSpec().delay(n) for n in range(3)] == [5, 30, 120]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("2h", 7200), ("1.5 h", 5400), ("45s", 45), ("1d", 86400), ("90", 90)],
)
def test_timeout_forms(text, seconds):
    assert timeout_seconds(text) == seconds
    pipeline = from_yaml(
        "name: p\nsource: {connection: c, tables: [t]}\ndestination: {connection: w}\n"
        f"timeout: {text}\n"
    )
    assert timeout_seconds(pipeline.timeout) == seconds


def test_node_data_defaults():
    rename = NODE.validate_python(
        {"id": "r", "type": "rename", "data": {"mappings": [{"from": "a", "to": "b"}]}}
    )
    assert rename.data.drop_unmapped is False
    dedup = NODE.validate_python({"id": "d", "type": "deduplicate", "data": {"columns": ["k"]}})
    assert (dedup.data.keep_strategy, dedup.data.order_by) == ("first", None)
    aggregate = NODE.validate_python(
        {"id": "a", "type": "aggregate", "data": {"measures": MEASURES}}
    )
    assert aggregate.data.group_by == []
    destination = NODE.validate_python({"id": "o", "type": "destination"})
    assert destination == NODE.validate_python({"id": "o", "type": "destination", "data": {}})


def test_target_tables_with_prefix_and_transform():
    raw = from_yaml(
        "name: p\nsource: {connection: c, tables: [public.orders, items]}\n"
        "destination: {connection: w, table_prefix: raw_}\n"
    )
    assert raw.target_tables() == {"public.orders": "raw_orders", "items": "raw_items"}
    transformed = from_yaml(
        ORDERS_REVENUE_YAML.replace("  target_table: revenue_by_customer\n", "  table_prefix: t_\n")
    )
    assert transformed.target_tables() == {"out": "t_orders_revenue"}


def test_inline_connector_and_config_in_source_config(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DATAPIPE_CONNECTIONS_FILE", raising=False)
    document = {
        "name": "inline",
        "sourceConfig": {
            "connector": "csv",
            "config": {"path": "orders.csv", "delimiter": ","},
            "tables": ["orders"],
        },
        "destinationConfig": {"connector": "duckdb", "config": {"path": "out.duckdb"}},
    }
    pipeline = from_json(document)
    assert pipeline.source.connection is None
    assert pipeline.source.connector == "csv"
    assert pipeline.source.config == {"path": "orders.csv", "delimiter": ","}
    assert pipeline.table_names() == ["orders"]

    (tmp_path / "inline.json").write_text(json.dumps(document))
    (tmp_path / "orders.csv").write_text("id,amount\n1,2\n")
    project = load_project(tmp_path)
    assert project.errors == {}
    [loaded] = project.pipelines
    secrets = tmp_path / "secrets.enc.yaml"
    assert loaded.sources == (
        ConnectionSpec(
            "inline.source", "csv", {"path": "orders.csv", "delimiter": ","}, tmp_path, secrets
        ),
    )
    assert loaded.destination == ConnectionSpec(
        "inline.destination", "duckdb", {"path": "out.duckdb"}, tmp_path, secrets
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"connection": "c", "connector": "csv", "tables": ["t"]},
            "give either `connection` or `connector` + `config`, not both",
        ),
        (
            {"connection": "c", "config": {"path": "x"}, "tables": ["t"]},
            "give either `connection` or `connector` + `config`, not both",
        ),
        ({"tables": ["t"]}, "give `connection` (a name from connections.yaml) or `connector`"),
    ],
)
def test_connection_and_connector_are_exclusive(source, message):
    with pytest.raises(ValidationError) as error:
        Pipeline.model_validate({"name": "p", "source": source, "destination": {"connection": "w"}})
    [item] = error.value.errors()
    assert item["loc"] == ("source",)
    assert item["msg"] == f"Value error, {message}"


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"extra": 1}, ("extra",)),
        ({"name": "1abc"}, ("name",)),
        ({"org": "Acme"}, ("org",)),
        ({"source": {"connection": "c", "tables": []}}, ("source", "tables")),
        (
            {"source": {"connection": "c", "tables": ["bad-table"]}},
            ("source", "tables", 0, "name"),
        ),
        ({"destination": {"connection": "w", "load_mode": "merge"}}, ("destination", "load_mode")),
    ],
)
def test_invalid_pipeline_fields(change, loc):
    document = {
        "name": "p",
        "source": {"connection": "c", "tables": ["t"]},
        "destination": {"connection": "w"},
        **change,
    }
    with pytest.raises(ValidationError) as error:
        Pipeline.model_validate(document)
    assert [e["loc"] for e in error.value.errors()] == [loc]


def test_models_are_frozen():
    pipeline = from_yaml(ORDERS_REVENUE_YAML)
    with pytest.raises(ValidationError):
        pipeline.name = "other"


def test_shipped_pipelines_folder_loads_with_zero_errors(monkeypatch):
    monkeypatch.delenv("DATAPIPE_CONNECTIONS_FILE", raising=False)
    project = load_project(PROJECT_ROOT / "pipelines")
    assert project.errors == {}
    assert sorted(p.pipeline.name for p in project.pipelines) == [
        "customer_ltv",
        "customers",
        "large_orders",
        "orders_revenue",
    ]
    large = project.get("large_orders").pipeline
    assert large.transform.node("usd").data.columns[0].result_type == "DECIMAL(12,2)"
    assert large.destination.create_table_if_missing is True
    assert project.get("customers").pipeline.target_tables() == {"customers": "raw_customers"}


def test_editor_export_with_several_sources_and_target_handles():
    """The editor's JSON: `sourceConfigs` beside `sourceConfig`, React Flow's `targetHandle`
    (and `sourceHandle`, ignored) on edges, camelCase per-table settings."""
    document = {
        "name": "ltv",
        "sourceConfigs": [
            {"connection": "shop_files", "tables": ["customers", "orders"], "syncMode": "full"},
            {"connection": "stripe", "syncMode": "incremental", "incrementalKey": "created",
             "tables": ["charges", {"name": "orders", "as": "stripe_orders", "primaryKey": "id"}]},
        ],
        "transformConfig": {
            "nodes": [
                {"id": "orders", "type": "source", "data": {"table": "orders"}},
                {"id": "customers", "type": "source", "data": {"table": "customers"}},
                {"id": "enriched", "type": "join", "position": {"x": 1, "y": 2},
                 "data": {"how": "left", "on": [{"left": "customer_id", "right": "id"}]}},
                {"id": "out", "type": "destination"},
            ],
            "edges": [
                {"id": "e1", "source": "orders", "target": "enriched", "targetHandle": "left",
                 "sourceHandle": "out"},
                {"id": "e2", "source": "customers", "target": "enriched", "targetHandle": "right"},
                {"id": "e3", "source": "enriched", "target": "out"},
            ],
        },
        "destinationConfig": {"connection": "warehouse"},
    }  # fmt: skip
    pipeline = Pipeline.model_validate(normalize_editor_export(document))
    assert [
        (t.name, t.source_name, t.block_path, t.sync_mode, t.incremental_key, t.primary_key)
        for t in pipeline.source_tables()
    ] == [
        ("customers", "customers", "sources[0]", "full", None, ()),
        ("orders", "orders", "sources[0]", "full", None, ()),
        ("charges", "charges", "sources[1]", "incremental", "created", ()),
        ("stripe_orders", "orders", "sources[1]", "incremental", "created", ("id",)),
    ]
    assert [(i.source, i.handle) for i in pipeline.transform.inputs_of("enriched")] == [
        ("orders", "left"),
        ("customers", "right"),
    ]
    yaml_form = from_yaml(
        """
        name: ltv
        sources:
          - {connection: shop_files, tables: [customers, orders], sync_mode: full}
          - connection: stripe
            sync_mode: incremental
            incremental_key: created
            tables: [charges, {name: orders, as: stripe_orders, primary_key: id}]
        transform:
          nodes:
            - {id: orders, type: source, data: {table: orders}}
            - {id: customers, type: source, data: {table: customers}}
            - {id: enriched, type: join, data: {how: left, on: [{left: customer_id, right: id}]}}
            - {id: out, type: destination}
          edges:
            - {source: orders, target: enriched, target_handle: left}
            - {source: customers, target: enriched, target_handle: right}
            - {source: enriched, target: out}
        destination: {connection: warehouse}
        """
    )
    assert yaml_form == pipeline


def test_node_inputs_as_a_list_or_by_handle_equal_edges():
    as_inputs = NODE.validate_python(
        {"id": "j", "type": "join", "inputs": {"left": "a", "right": "b"}, "data": {"on": "id"}}
    )
    assert as_inputs.inputs == {"left": "a", "right": "b"}
    # A join key given as one name is that column on both sides; `how` defaults to inner.
    assert [(k.left, k.right) for k in as_inputs.data.on] == [("id", "id")]
    assert as_inputs.data.how == "inner"
    union = NODE.validate_python({"id": "u", "type": "union", "inputs": ["a", "b"]})
    assert (union.data.by, union.data.distinct) == ("name", False)
