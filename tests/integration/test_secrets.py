"""`datapipe secrets` and `${secret:NAME}`, through the real command against a real
PostgreSQL server that checks passwords."""

from __future__ import annotations

import io
import os
import pty
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from datapipe_assets.cli.main import main
from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project
from datapipe_assets.pipeline.secret_store import _wrapping_key, reveal
from tests.support.project_files import postgres_config, write_project

MASTER = "correct horse battery staple 4417"
ORDERS_CSV = "id,amount_cents\n1,1000\n2,2550\n"
ALTERED = (
    "secret 'pg_password' cannot be decrypted: wrong DATAPIPE_MASTER_KEY or secrets.enc.yaml "
    "was altered"
)


@pytest.fixture
def project(tmp_path, monkeypatch, postgres, pg_database):
    """A CSV loaded into PostgreSQL, whose password is `${secret:pg_password}`."""
    directory = tmp_path / "pipelines"
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text(ORDERS_CSV)
    config = {**postgres_config(postgres, pg_database), "password": "${secret:pg_password}"}
    write_project(
        directory,
        {
            "orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
            "warehouse": {"connector": "postgres", "config": config},
        },
        {
            "orders.yaml": {
                "name": "orders",
                "source": {"connection": "orders_csv", "tables": ["orders"]},
                "destination": {"connection": "warehouse"},
            }
        },
    )
    monkeypatch.setenv("DATAPIPE_PIPELINES_DIR", str(directory))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DATAPIPE_STAGING_URL", str(tmp_path / "staging"))
    monkeypatch.setenv("DATAPIPE_MASTER_KEY", MASTER)
    return directory


def secrets(capsys, monkeypatch, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """`datapipe secrets ARGS`, with stdin piped in; (exit code, stdout, stderr)."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["secrets", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_set_list_rm(project, capsys, monkeypatch):
    store = project / "secrets.enc.yaml"
    assert secrets(capsys, monkeypatch, "list") == (0, f"0 secret(s) in {store}\n", "")
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin="first-Pw-1\n") == (
        0,
        f"stored secret 'pg_password' in {store}; use it in a connection as "
        "${secret:pg_password}\n",
        "",
    )
    assert secrets(capsys, monkeypatch, "set", "api_token", stdin="tok\n\n")[0] == 0
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin="second-Pw-2\r\n") == (
        0,
        f"replaced secret 'pg_password' in {store}; use it in a connection as "
        "${secret:pg_password}\n",
        "",
    )
    assert secrets(capsys, monkeypatch, "list") == (
        0,
        f"api_token\npg_password\n2 secret(s) in {store}\n",
        "",
    )
    # One trailing newline is dropped, as `echo` and files add it; the rest is the value.
    assert reveal(store, "pg_password") == "second-Pw-2"
    assert reveal(store, "api_token") == "tok\n"
    assert secrets(capsys, monkeypatch, "rm", "api_token") == (
        0,
        f"removed secret 'api_token' from {store}\n",
        "",
    )
    assert secrets(capsys, monkeypatch, "rm", "api_token") == (
        1,
        "",
        f"error: no secret named 'api_token' in {store}; secrets: pg_password\n",
    )
    assert secrets(capsys, monkeypatch, "list") == (0, f"pg_password\n1 secret(s) in {store}\n", "")
    assert "second-Pw-2" not in store.read_text()


def test_set_without_a_master_key(project, capsys, monkeypatch):
    monkeypatch.delenv("DATAPIPE_MASTER_KEY")
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin="x") == (
        1,
        "",
        "error: secret 'pg_password' was not stored: DATAPIPE_MASTER_KEY is not set; export the "
        "passphrase that encrypts secrets.enc.yaml (keep it outside the project)\n",
    )
    assert not (project / "secrets.enc.yaml").exists()


def test_set_reads_a_typed_value_at_a_prompt_that_does_not_echo(project):
    """From a terminal the value is typed at getpass's prompt, so it is never shown."""
    datapipe = str(Path(sys.executable).parent / "datapipe")
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the command, with the pseudo-terminal as its terminal
        os.execv(datapipe, [datapipe, "secrets", "set", "pg_password"])
    transcript = b""
    while not transcript.endswith(b"(not shown): "):
        transcript += os.read(terminal, 1024)
    os.write(terminal, b"typed-Pw-5521\n")
    while True:
        try:
            chunk = os.read(terminal, 1024)
        except OSError:  # EIO: the command ended and closed the terminal
            break
        if not chunk:
            break
        transcript += chunk
    assert os.waitpid(pid, 0)[1] == 0
    assert transcript.decode().splitlines() == [
        "value for secret 'pg_password' (not shown): ",
        f"stored secret 'pg_password' in {project / 'secrets.enc.yaml'}; use it in a "
        "connection as ${secret:pg_password}",
    ]
    assert reveal(project / "secrets.enc.yaml", "pg_password") == "typed-Pw-5521"


def test_a_run_reads_the_password_from_the_store_and_never_shows_it(
    project, capsys, monkeypatch, postgres, pg_database, tmp_path
):
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin=postgres.password)[0] == 0
    assert main(["check", "warehouse"]) == 0
    assert main(["run", "orders"]) == 0
    output = capsys.readouterr()
    assert output.out.splitlines()[-1].endswith(" succeeded")
    with psycopg.connect(postgres.url(pg_database)) as conn:
        assert conn.execute("SELECT id, amount_cents FROM orders ORDER BY id").fetchall() == [
            (1, 1000),
            (2, 2550),
        ]
    assert postgres.password not in output.out + output.err
    # Nor in the run's events and metadata, nor in anything staged.
    for folder in (tmp_path / "dagster_home", tmp_path / "staging"):
        files = [f for f in folder.rglob("*") if f.is_file()]
        assert files
        assert [f for f in files if postgres.password.encode() in f.read_bytes()] == []


def test_a_run_with_a_wrong_master_key_names_the_secret_and_loads_nothing(
    project, capsys, monkeypatch, postgres, pg_database
):
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin=postgres.password)[0] == 0
    monkeypatch.setenv("DATAPIPE_MASTER_KEY", "correct horse battery staple 4418")
    assert main(["check", "warehouse"]) == 1
    assert capsys.readouterr().err == f"error: connection 'warehouse': {ALTERED}\n"
    assert main(["run", "orders"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "  FAILED default/orders/load/orders, default/orders/raw/orders: connection "
        f"'warehouse': {ALTERED}"
    )
    with psycopg.connect(postgres.url(pg_database)) as conn:
        assert conn.execute("SELECT to_regclass('public.orders')").fetchone() == (None,)


def test_a_tampered_secret_is_an_error_never_the_password(project, capsys, monkeypatch, postgres):
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin=postgres.password)[0] == 0
    store = project / "secrets.enc.yaml"
    document = yaml.safe_load(store.read_text())
    # The seed fell back to reading an undecryptable value as the plaintext password.
    document["secrets"]["pg_password"] = postgres.password
    store.write_text(yaml.safe_dump(document))
    assert main(["check", "warehouse"]) == 1
    assert capsys.readouterr().err == f"error: connection 'warehouse': {ALTERED}\n"


def test_an_unknown_secret_says_how_to_set_it(project, capsys):
    assert main(["check", "warehouse"]) == 1
    assert capsys.readouterr().err == (
        f"error: connection 'warehouse': secret 'pg_password' is not in "
        f"{project / 'secrets.enc.yaml'}; run `datapipe secrets set pg_password`\n"
    )


def test_a_secret_in_an_error_is_masked(project, capsys, monkeypatch, tmp_path):
    """A secret used in any value, not only a password, is masked out of what a run shows."""
    (project / "connections.yaml").write_text(
        yaml.safe_dump(
            {
                "orders_csv": {"connector": "csv", "config": {"path": "${secret:export_path}"}},
                "warehouse": {"connector": "duckdb", "config": {"path": "w.duckdb"}},
            }
        )
    )
    path = "private-share-7731/orders.csv"
    assert secrets(capsys, monkeypatch, "set", "export_path", stdin=path)[0] == 0
    assert main(["discover", "orders_csv"]) == 1
    assert capsys.readouterr().err == (
        "error: connection 'orders_csv': no file found at ***; check path\n"
    )
    assert main(["run", "orders"]) == 1
    output = capsys.readouterr()
    assert output.err.splitlines()[-1] == (
        "  FAILED default/orders/load/orders, default/orders/raw/orders: connection "
        "'orders_csv': no file found at ***; check path"
    )
    files = [f for f in (tmp_path / "dagster_home").rglob("*") if f.is_file()]
    assert [f for f in files if b"private-share-7731" in f.read_bytes()] == []


def test_secrets_are_decrypted_only_when_a_connection_is_opened(project, capsys, monkeypatch):
    """Loading the project and its Dagster definitions derives no key; opening connections
    derives the key once per file and process (about half a second), not once per secret."""
    config = {"path": "${secret:orders_path}", "delimiter": "${secret:delimiter}"}
    write_project(
        project,
        {**yaml.safe_load((project / "connections.yaml").read_text()),
         "orders_csv": {"connector": "csv", "config": config}},
        {},
    )  # fmt: skip
    for name, value in (("orders_path", "data/orders.csv"), ("delimiter", ",")):
        assert secrets(capsys, monkeypatch, "set", name, stdin=value)[0] == 0
    _wrapping_key.cache_clear()
    project_ = load_project(project)
    build_definitions(project_)
    assert _wrapping_key.cache_info().misses == 0
    [orders] = project_.pipelines
    assert [t.name for t in orders.sources[0].open_source().discover()] == ["orders"]
    assert orders.sources[0].resolve()["delimiter"] == ","
    assert _wrapping_key.cache_info().misses == 1


def validate(capsys, *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["validate", *args])
    return code, capsys.readouterr().out.splitlines()


def test_validate_needs_no_master_key(project, capsys, monkeypatch):
    """Names are stored in clear: validate checks them without decrypting anything."""
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin="x")[0] == 0
    monkeypatch.delenv("DATAPIPE_MASTER_KEY")
    assert validate(capsys) == (
        0,
        ["ok     orders (orders.yaml)", "1 valid pipeline(s), 0 error(s)"],
    )


def test_validate_warns_of_an_unknown_secret(project, capsys):
    assert validate(capsys) == (
        0,
        [
            "ok     orders (orders.yaml)",
            "warn   pipeline 'orders': connection 'warehouse' uses ${secret:pg_password}, which "
            f"is not in {project / 'secrets.enc.yaml'}; run `datapipe secrets set pg_password` "
            "before the pipeline runs",
            "1 valid pipeline(s), 0 error(s), 1 warning(s)",
        ],
    )


def test_a_malformed_file_is_named_by_validate_and_list(project, capsys, monkeypatch):
    store = project / "secrets.enc.yaml"
    store.write_text("secrets: [pg_password]\n")
    problem = (
        f"{store} is not a secrets file as `datapipe secrets` writes it; restore it from a "
        "backup, or delete it and set its secrets again"
    )
    assert validate(capsys) == (
        0,
        [
            "ok     orders (orders.yaml)",
            f"warn   pipeline 'orders': connection 'warehouse' uses secrets, but {problem}",
            "1 valid pipeline(s), 0 error(s), 1 warning(s)",
        ],
    )
    assert secrets(capsys, monkeypatch, "list") == (1, "", f"error: {problem}\n")


PLAINTEXT = {
    "warehouse": {
        "connector": "postgres",
        "config": {"host": "127.0.0.1", "port": 5432, "database": "d", "username": "u",
                   "password": "hunter2"},
    },
    "api": {
        "connector": "rest_api",
        "config": {"base_url": "https://api.example.com", "auth_type": "api_key",
                   "api_key": "${API_KEY_FOR_TEST}", "api_key_header": "X-Api-Key",
                   "endpoints": {"orders": {"path": "/orders"}}},
    },
    "sheets": {
        "connector": "google_sheets",
        "config": {"spreadsheet_id": "abc", "service_account_json": "keys/sa.json",
                   "sheets": ["Budget"]},
    },
}  # fmt: skip


def test_validate_warns_of_plaintext_secrets_and_strict_fails(project, capsys, monkeypatch):
    """A literal password is a warning; a reference, a header name and a key file's path
    are not. An inline connection in a pipeline file is checked too."""
    monkeypatch.setenv("API_KEY_FOR_TEST", "k")
    write_project(
        project,
        {**yaml.safe_load((project / "connections.yaml").read_text()), **PLAINTEXT},
        {
            "inline.yaml": {
                "name": "inline",
                "source": {"connection": "orders_csv", "tables": ["orders"]},
                "destination": {
                    "connector": "postgres",
                    "config": {**PLAINTEXT["warehouse"]["config"], "password": 1234},
                },
            }
        },
    )
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin="x")[0] == 0
    warnings = [
        f"{project / 'connections.yaml'}: connection 'warehouse' has password in plain text; "
        "store it encrypted with `datapipe secrets set warehouse_password` and write password: "
        "${secret:warehouse_password}, or read it from the environment with ${VARIABLE}",
        f"{project / 'inline.yaml'}: connection 'inline.destination' has password in plain "
        "text; store it encrypted with `datapipe secrets set inline_destination_password` and "
        "write password: ${secret:inline_destination_password}, or read it from the "
        "environment with ${VARIABLE}",
    ]
    assert validate(capsys) == (
        0,
        [
            "ok     inline (inline.yaml)",
            "ok     orders (orders.yaml)",
            *[f"warn   {w}" for w in warnings],
            "2 valid pipeline(s), 0 error(s), 2 warning(s)",
        ],
    )
    assert validate(capsys, "--strict") == (
        1,
        [
            "ok     inline (inline.yaml)",
            "ok     orders (orders.yaml)",
            *[f"error  {w}" for w in warnings],
            "2 valid pipeline(s), 2 error(s)",
        ],
    )


def test_strict_fails_on_any_warning_and_passes_without_one(project, capsys, monkeypatch):
    code, lines = validate(capsys, "--strict")
    assert (code, lines[-1]) == (1, "1 valid pipeline(s), 1 error(s)")
    assert lines[1].startswith("error  pipeline 'orders': connection 'warehouse' uses ")
    assert secrets(capsys, monkeypatch, "set", "pg_password", stdin="x")[0] == 0
    assert validate(capsys, "--strict") == (
        0,
        ["ok     orders (orders.yaml)", "1 valid pipeline(s), 0 error(s)"],
    )
