"""`datapipe discover` and `datapipe check` check a connection's config before opening it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datapipe_assets.cli.main import main

CONNECTIONS = {
    "shop_files": {
        "connector": "csv",
        "config": {"tables": {"customers": "customers.csv", "orders": "orders_*.csv"}},
    },
    "typo_db": {
        "connector": "postgres",
        "config": {
            "hostname": "127.0.0.1",
            "host": "127.0.0.1",
            "database": "shop",
            "username": "etl",
            # Unset: the misspelled key is still named, before anything is resolved.
            "password": "${TYPO_DB_PASSWORD_NEVER_SET}",
        },
    },
    "bad_csv": {"connector": "csv", "config": {"path": "orders_*.csv", "delimter": ";"}},
}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump(CONNECTIONS))
    (tmp_path / "customers.csv").write_text("id,name\n1,ann\n")
    (tmp_path / "orders_1.csv").write_text("id,customer_id\n10,1\n")
    (tmp_path / "orders_2.csv").write_text("id,customer_id\n11,1\n")
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(tmp_path))
    monkeypatch.delenv("DATAPIPE_CONNECTIONS_FILE", raising=False)
    return tmp_path


def test_discover_lists_every_table_of_a_csv_connection(folder, capsys):
    assert main(["discover", "shop_files"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "customers",
        "  id                               int64",
        "  name                             string",
        "orders",
        "  id                               int64",
        "  customer_id                      int64",
        "2 table(s)",
    ]
    assert main(["check", "shop_files"]) == 0
    assert capsys.readouterr().out == "ok: found 3 files for 2 tables\n"


@pytest.mark.parametrize("command", ["discover", "check"])
def test_a_misspelled_key_gets_a_did_you_mean(folder, capsys, command):
    assert main([command, "typo_db"]) == 1
    assert capsys.readouterr().err == (
        "error: connection 'typo_db': unknown config key 'hostname'; did you mean 'host'? "
        "(keys: host, port, database, username, password, sslmode, schema)\n"
    )
    assert main([command, "bad_csv"]) == 1
    assert capsys.readouterr().err == (
        "error: connection 'bad_csv': unknown config key 'delimter'; did you mean 'delimiter'? "
        "(keys: path, tables, table, table_per_file, delimiter, header, columns, block_size_mb, "
        "encoding, null_values, endpoint_url, region, aws_access_key_id, aws_secret_access_key)\n"
    )
