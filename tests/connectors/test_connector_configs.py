"""Every connector's typed config: unknown keys, placeholders, types and defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.base import ConnectorError
from connectors.docs import connector_table
from connectors.registry import (
    DESTINATION_CONFIGS,
    DESTINATIONS,
    SOURCE_CONFIGS,
    SOURCES,
    _load_class,
    config_model,
    config_problems,
    open_destination,
    open_source,
)
from datapipe_assets.pipeline.connections import ConnectionSpec

ROOT = Path(__file__).resolve().parents[2]

PG = {"host": "db.internal", "database": "shop", "username": "etl", "password": "${PG_PASSWORD}"}


def texts(connector: str, role: str, config: Any, name: str = "shop_db") -> list[str]:
    return [str(problem) for problem in config_problems(connector, role, name, config)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("connector", "role", "config", "expected"),
    [
        (
            "postgres",
            "source",
            {**PG, "hostname": "db.internal"},
            "connection 'shop_db': unknown config key 'hostname'; did you mean 'host'? (keys: "
            "host, port, database, username, password, sslmode, schema)",
        ),
        (
            "duckdb",
            "destination",
            {"path": "w.duckdb", "shema": "raw"},
            "connection 'shop_db': unknown config key 'shema'; did you mean 'schema'? (keys: "
            "path, schema)",
        ),
        (
            "stripe",
            "source",
            {"api_kye": "${STRIPE_API_KEY}", "api_key": "${STRIPE_API_KEY}"},
            "connection 'shop_db': unknown config key 'api_kye'; did you mean 'api_key'? (keys: "
            "api_key, page_size, base_url, requests_per_second)",
        ),
        (
            "csv",
            "source",
            {"path": "a.csv", "delimeter": ";"},
            "connection 'shop_db': unknown config key 'delimeter'; did you mean 'delimiter'? "
            "(keys: path, tables, table, table_per_file, delimiter, header, columns, "
            "block_size_mb, encoding, null_values, endpoint_url, region, aws_access_key_id, "
            "aws_secret_access_key)",
        ),
        (
            "csv",
            "source",
            {"path": "a.csv", "quotechar": "'"},
            "connection 'shop_db': unknown config key 'quotechar'; remove it (keys: path, tables, "
            "table, table_per_file, delimiter, header, columns, block_size_mb, encoding, "
            "null_values, endpoint_url, region, aws_access_key_id, aws_secret_access_key)",
        ),
        (
            "rest_api",
            "source",
            {"base_url": "https://api.example.com", "endpoints": {"users": {"pth": "/users"}}},
            "connection 'shop_db': unknown config key 'endpoints.users.pth'; did you mean "
            "'path'? (keys: path, params, data_path, pagination, incremental, window, "
            "schema, primary_key)",
        ),
        (
            "google_sheets",
            "destination",
            {"spreadsheet_id": "x", "service_account_json": "k.json", "sheet_name": "S"},
            # A source's key, on a destination.
            "connection 'shop_db': unknown config key 'sheet_name'; remove it (keys: "
            "service_account_json, spreadsheet_id, cell_limit, base_url, requests_per_second)",
        ),
    ],
)
def test_a_misspelled_key_gets_a_did_you_mean(connector, role, config, expected):
    assert texts(connector, role, config) == [expected]


def test_the_same_mistake_is_refused_when_the_connection_opens():
    with pytest.raises(ConnectorError) as error:
        open_source("postgres", "shop_db", {**PG, "password": "pw", "hostname": "x"})
    assert str(error.value) == (
        "connection 'shop_db': unknown config key 'hostname'; did you mean 'host'? (keys: "
        "host, port, database, username, password, sslmode, schema)"
    )


def test_placeholders_are_accepted_for_any_key_at_load_time():
    config = {**PG, "port": "${PG_PORT}", "sslmode": "${PG_SSLMODE}"}
    assert texts("postgres", "source", config) == []
    assert texts("stripe", "source", {"api_key": "${K}", "page_size": "${PAGE_SIZE}"}) == []
    assert texts("csv", "source", {"path": "${DATA}/*.csv", "header": "${HEADER}"}) == []
    assert texts("google_ads", "source", {
        "customer_id": "${ADS_CUSTOMER}", "developer_token": "${T}", "client_id": "${I}",
        "client_secret": "${S}", "refresh_token": "${R}", "lookback_days": "${DAYS}",
    }) == []  # fmt: skip
    # A placeholder does not make an unknown key known, nor a literal value right.
    assert texts("postgres", "source", {**PG, "port": "five", "hots": "${HOST}"}) == [
        "connection 'shop_db': port must be a whole number, not 'five'; fix the value",
        "connection 'shop_db': unknown config key 'hots'; did you mean 'host'? (keys: host, "
        "port, database, username, password, sslmode, schema)",
    ]


def test_missing_keys_are_problems_at_load_time():
    problems = config_problems("postgres", "destination", "warehouse", {"host": "h"})
    assert [(p.key, p.message, p.hint) for p in problems] == [
        ("database", "missing config key 'database'", "set it in the connection's config"),
        ("username", "missing config key 'username'", "set it in the connection's config"),
    ]


def test_literal_values_are_type_checked_at_load_time():
    assert texts("stripe", "source", {"api_key": "${K}", "page_size": 500}) == [
        "connection 'shop_db': page_size must be at most 100, not 500; fix the value"
    ]
    assert texts("postgres", "source", {**PG, "sslmode": "sometimes"}) == [
        "connection 'shop_db': sslmode must be one of disable, allow, prefer, require, "
        "verify-ca, verify-full, not 'sometimes'; fix the value"
    ]
    assert texts("hubspot", "source", {"access_token": "${T}", "properties": ["email"]}) == [
        "connection 'shop_db': properties must be a mapping, not a list; fix the value"
    ]


def test_a_wrong_type_at_run_time_names_the_connection_and_the_key(monkeypatch):
    monkeypatch.setenv("PG_PASSWORD", "pw")
    monkeypatch.setenv("PG_PORT", "5432x")
    spec = ConnectionSpec("shop_db", "postgres", {**PG, "port": "${PG_PORT}"})
    assert config_problems(spec.connector, "source", spec.name, spec.config) == []

    with pytest.raises(ConnectorError) as error:
        spec.open_source()
    assert str(error.value) == (
        "connection 'shop_db': port must be a whole number, not '5432x'; fix the value"
    )


def test_a_secret_is_never_quoted_in_an_error(monkeypatch):
    monkeypatch.setenv("STRIPE_KEY_AS_LIST", "sk_live_secret")
    with pytest.raises(ConnectorError) as error:
        open_source("stripe", "billing", {"api_key": ["sk_live_secret"]})
    assert str(error.value) == "connection 'billing': api_key must be text; fix the value"


def test_defaults_and_resolved_values(tmp_path):
    settings = open_source("postgres", "shop_db", {**PG, "password": "pw"}).settings
    assert (settings.port, settings.sslmode, settings.schema_) == (5432, "prefer", "public")

    stripe = open_source("stripe", "billing", {"api_key": "sk_test_1"}).settings
    assert (stripe.page_size, stripe.requests_per_second, stripe.base_url) == (100, 20.0, None)

    csv = open_source("csv", "files", {"path": "a.csv"}).settings
    assert (csv.delimiter, csv.header, csv.null_values, csv.table_per_file) == (
        ",", True, [""], False
    )  # fmt: skip

    # Resolved values arrive as text, and YAML nulls keep the default.
    duck = open_destination(
        "duckdb", "w", {"path": "w.duckdb", "schema": None, "base_dir": str(tmp_path)}
    )
    assert (duck.settings.schema_, duck.settings.base_dir) == ("main", str(tmp_path))
    mysql = open_source(
        "mysql", "m", {"host": "h", "port": "3307", "database": "d", "username": "u",
                       "connect_timeout": "2.5"},
    ).settings  # fmt: skip
    assert (mysql.port, mysql.connect_timeout) == (3307, 2.5)
    # A header flag from the environment is text.
    assert open_source("csv", "f", {"path": "a.csv", "header": "no"}).settings.header is False


def test_base_dir_is_accepted_but_not_offered():
    """DataPipe adds base_dir when it resolves a connection; users are not offered it."""
    assert texts("csv", "source", {"path": "a.csv", "base_dir": "/data"}) == []
    assert texts("duckdb", "destination", {"path": "w.duckdb", "base": "/x"}) == [
        "connection 'shop_db': unknown config key 'base'; remove it (keys: path, schema)"
    ]


def test_unknown_connectors_are_left_to_the_loader():
    assert config_problems("ftp", "source", "x", {"anything": 1}) == []
    assert config_problems("csv", "destination", "x", {"path": "a.csv"}) == []


def test_every_connector_has_its_registered_model():
    for role, classes, models in (
        ("source", SOURCES, SOURCE_CONFIGS),
        ("destination", DESTINATIONS, DESTINATION_CONFIGS),
    ):
        assert set(classes) == set(models), role
        for connector, path in classes.items():
            model = config_model(connector, role)  # type: ignore[arg-type]
            assert _load_class(path).config_model is model, connector
            for key, field in model.model_fields.items():
                assert field.description, f"{connector}.{key} has no description"


@pytest.mark.parametrize(
    ("connector", "config"),
    [
        ("stripe", {"api_key": "sk_test_x"}),
        ("shopify", {"shop_domain": "acme.myshopify.com", "access_token": "shpat_x"}),
        ("hubspot", {"access_token": "pat-x"}),
        (
            "google_ads",
            {"customer_id": "123-456-7890", "developer_token": "d", "client_id": "i",
             "client_secret": "s", "refresh_token": "r"},
        ),
    ],
)  # fmt: skip
def test_documented_tables_are_the_tables_offered(connector, config):
    source = open_source(connector, "docs", config)
    documented = source.config_model.notes.split("; ")[0].removeprefix("tables ").split(", ")
    assert [table.name for table in source.discover()] == documented


def test_readme_has_exactly_the_generated_connector_table():
    readme = (ROOT / "README.md").read_text()
    table = connector_table()
    assert table in readme
    start = readme.index("| connector | as | config (defaults) |")
    assert readme[start:].split("\n\n", 1)[0] == table


def test_docs_command_prints_the_table_and_one_connectors_keys():
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "connectors.docs", *args],
            capture_output=True, text=True, cwd=ROOT, check=False,
        )  # fmt: skip

    assert run().stdout == connector_table() + "\n"
    keys = run("duckdb")
    assert keys.stdout == (
        "duckdb (destination)\n"
        "  path: text (required)\n"
        "      The database file, created if missing.\n"
        "  schema: text = main\n"
        "      Schema the tables and cursor states live in.\n"
    )
    unknown = run("ftp")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "error: unknown connector 'ftp'; use one of bigquery, csv, duckdb, ga4, google_ads, "
        "google_sheets, hubspot, mysql, postgres, rest_api, shopify, stripe\n",
    )


CLIENT_LIBRARIES = ("stripe", "google", "pymysql", "psycopg", "httpx", "duckdb", "requests")


def test_models_import_no_client_library():
    """Checking configs at load time must not pay for (or need) any connector's driver."""
    code = (
        "import sys, json\n"
        "from connectors.registry import config_model, config_problems, SOURCES, DESTINATIONS\n"
        "for name in SOURCES: config_model(name, 'source')\n"
        "for name in DESTINATIONS: config_model(name, 'destination')\n"
        "config_problems('postgres', 'source', 'x', {'hostname': 'h'})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = json.loads(result.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in CLIENT_LIBRARIES]
    assert heavy == []
    assert not [
        m for m in loaded if m.startswith(("connectors.sources", "connectors.destinations"))
    ]


def connector_configs(node: Any, role: str = "source") -> list[tuple[str, str, dict]]:
    """Every {connector, config} block in a parsed pipeline or connections file."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("connector"), str):
            found.append((node["connector"], role, node.get("config") or {}))
        for key, value in node.items():
            inner = "destination" if "destination" in str(key).lower() else role
            found += connector_configs(value, inner)
    elif isinstance(node, list):
        for item in node:
            found += connector_configs(item, role)
    return found


def shipped_files() -> list[Path]:
    pipelines = ROOT / "pipelines"
    return sorted(
        [*pipelines.glob("*.yaml"), *pipelines.glob("*.json"), *pipelines.glob("examples/*")]
    )


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: p.name)
def test_shipped_configs_have_no_problems(path):
    data = yaml.safe_load(path.read_text())
    if path.name == "connections.yaml":
        blocks = [
            (c["connector"], role, c.get("config") or {})
            for c in data.values()
            for role in ("source", "destination")
        ]
    else:
        blocks = connector_configs(data)
    for connector, role, config in blocks:
        assert texts(connector, role, config, path.name) == []
