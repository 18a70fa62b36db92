"""The encrypted secrets file: round trips, key derivation, and refusing wrong keys and
altered files (never reading them as plaintext)."""

from __future__ import annotations

import base64
import stat
import threading
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from connectors.base import ConnectorError
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.secret_store import (
    SecretStoreError,
    put_secret,
    read_secrets,
    remove_secret,
    reveal,
    secret_names,
)

MASTER = "correct horse battery staple 4417"
ALTERED = (
    "secret 'pg_password' cannot be decrypted: wrong DATAPIPE_MASTER_KEY or secrets.enc.yaml "
    "was altered"
)


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """A secrets file holding pg_password and api_token."""
    monkeypatch.setenv("DATAPIPE_MASTER_KEY", MASTER)
    path = tmp_path / "secrets.enc.yaml"
    put_secret(path, "pg_password", "pg-Secret-8812")
    put_secret(path, "api_token", "tok-5530\nsecond line")
    return path


def _edit(path: Path, change) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document))


def _flip(text: str, at: int) -> str:
    """The text with one base64 character changed."""
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def test_round_trip(store):
    assert secret_names(store) == ["api_token", "pg_password"]
    assert reveal(store, "pg_password") == "pg-Secret-8812"
    assert reveal(store, "api_token") == "tok-5530\nsecond line"
    assert put_secret(store, "pg_password", "rotated-1") is True
    assert put_secret(store, "new_one", "n") is False
    assert reveal(store, "pg_password") == "rotated-1"
    remove_secret(store, "api_token")
    assert secret_names(store) == ["new_one", "pg_password"]
    assert reveal(store, "new_one") == "n"


def test_the_file_holds_no_value_and_records_its_key_derivation(store):
    text = store.read_text()
    assert "pg-Secret-8812" not in text and "tok-5530" not in text
    document = yaml.safe_load(text)
    assert document["version"] == 1
    assert document["kdf"]["algorithm"] == "pbkdf2-hmac-sha256"
    assert document["kdf"]["iterations"] >= 600_000
    assert len(base64.b64decode(document["kdf"]["salt"])) == 16
    assert sorted(document["secrets"]) == ["api_token", "pg_password"]
    # Owner-only, and written through a temporary file that is gone.
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert [p.name for p in store.parent.iterdir()] == ["secrets.enc.yaml"]


def test_salt_and_data_key_are_random_per_file(store, tmp_path):
    other = tmp_path / "other" / "secrets.enc.yaml"
    other.parent.mkdir()
    put_secret(other, "pg_password", "pg-Secret-8812")
    first, second = read_secrets(store), read_secrets(other)
    assert first is not None and second is not None
    assert first.salt != second.salt
    assert first.wrapped_key != second.wrapped_key
    assert first.tokens["pg_password"] != second.tokens["pg_password"]


def test_a_wrong_master_key_is_refused(store, monkeypatch):
    monkeypatch.setenv("DATAPIPE_MASTER_KEY", "correct horse battery staple 4418")
    with pytest.raises(SecretStoreError) as error:
        reveal(store, "pg_password")
    assert str(error.value) == ALTERED
    with pytest.raises(SecretStoreError) as error:
        put_secret(store, "other", "x")
    assert str(error.value) == (
        "secret 'other' was not stored: wrong DATAPIPE_MASTER_KEY or secrets.enc.yaml was altered"
    )


def test_a_missing_master_key_is_named(store, monkeypatch):
    monkeypatch.delenv("DATAPIPE_MASTER_KEY")
    with pytest.raises(SecretStoreError) as error:
        reveal(store, "pg_password")
    assert str(error.value) == (
        "secret 'pg_password' cannot be decrypted: DATAPIPE_MASTER_KEY is not set; export the "
        "passphrase that encrypts secrets.enc.yaml (keep it outside the project)"
    )
    # Names are in clear: listing and removing need no master key.
    assert secret_names(store) == ["api_token", "pg_password"]
    remove_secret(store, "api_token")
    assert secret_names(store) == ["pg_password"]


def _tamper_token(document):
    document["secrets"]["pg_password"] = _flip(document["secrets"]["pg_password"], 60)


def _tamper_salt(document):
    document["kdf"]["salt"] = base64.b64encode(b"0123456789abcdef").decode()


def _tamper_wrapped_key(document):
    document["data_key"] = _flip(document["data_key"], 60)


def _swap_tokens(document):
    secrets = document["secrets"]
    secrets["pg_password"], secrets["api_token"] = secrets["api_token"], secrets["pg_password"]


def _other_iterations(document):
    document["kdf"]["iterations"] += 1


def _plaintext_value(document):
    # The seed read an undecryptable value as plaintext: that is a known bug.
    document["secrets"]["pg_password"] = "pg-Secret-8812"


def _token_of_another_key(document):
    document["secrets"]["pg_password"] = Fernet(Fernet.generate_key()).encrypt(b"x").decode()


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_token,
        _tamper_salt,
        _tamper_wrapped_key,
        _swap_tokens,
        _other_iterations,
        _plaintext_value,
        _token_of_another_key,
    ],
)
def test_an_altered_file_is_refused_never_read_as_plaintext(store, tamper):
    _edit(store, tamper)
    with pytest.raises(SecretStoreError) as error:
        reveal(store, "pg_password")
    assert str(error.value) == ALTERED


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["kdf"].update(salt="not base64!"),
        lambda d: d["kdf"].update(iterations=1000),  # weakened: refused before deriving
        lambda d: d["kdf"].update(iterations=10**12),  # would hang: refused before deriving
        lambda d: d["kdf"].update(algorithm="md5"),
        lambda d: d.pop("data_key"),
        lambda d: d.update(secrets=["pg_password"]),
        lambda d: d.update(version=2),
    ],
)
def test_a_malformed_file_is_refused(store, tamper):
    _edit(store, tamper)
    with pytest.raises(SecretStoreError) as error:
        reveal(store, "pg_password")
    assert str(error.value) == (
        f"secret 'pg_password' cannot be decrypted: {store} is not a secrets file as "
        "`datapipe secrets` writes it; restore it from a backup, or delete it and set its "
        "secrets again"
    )


def test_unknown_names(store, tmp_path):
    with pytest.raises(SecretStoreError) as error:
        reveal(store, "pg_pasword")
    assert str(error.value) == (
        f"secret 'pg_pasword' is not in {store}; run `datapipe secrets set pg_pasword`"
    )
    with pytest.raises(SecretStoreError) as error:
        reveal(tmp_path / "none" / "secrets.enc.yaml", "x")
    assert str(error.value) == (
        f"secret 'x' is not in {tmp_path / 'none' / 'secrets.enc.yaml'}; run "
        "`datapipe secrets set x`"
    )
    with pytest.raises(SecretStoreError) as error:
        remove_secret(store, "nope")
    assert str(error.value) == (
        f"no secret named 'nope' in {store}; secrets: api_token, pg_password"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("pg-password", "x", "secret name 'pg-password' is not valid; use letters, digits and "
         "_, not starting with a digit"),
        ("1st", "x", "secret name '1st' is not valid; use letters, digits and _, not starting "
         "with a digit"),
        ("empty", "", "the value for secret 'empty' is empty; nothing was stored"),
    ],
)  # fmt: skip
def test_bad_names_and_empty_values_are_refused(store, name, value, message):
    with pytest.raises(SecretStoreError) as error:
        put_secret(store, name, value)
    assert str(error.value) == message


def test_concurrent_sets_all_land(store):
    """Each set reads, changes and replaces the file: unserialized, sets at once lose each
    other's values."""
    names = [f"s{i}" for i in range(24)]
    threads = [threading.Thread(target=put_secret, args=(store, n, f"v-{n}")) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert secret_names(store) == sorted(["api_token", "pg_password", *names])
    assert [reveal(store, n) for n in names] == [f"v-{n}" for n in names]


def test_a_connection_resolves_and_masks_its_secrets(store, monkeypatch):
    monkeypatch.setenv("PG_USER_FOR_TEST", "loader")
    spec = ConnectionSpec(
        "warehouse",
        "postgres",
        {"username": "${PG_USER_FOR_TEST}", "password": "${secret:pg_password}",
         "options": {"note": "token ${secret:api_token} in text"}},
        secrets_file=store,
    )  # fmt: skip
    assert spec.secret_names() == ["api_token", "pg_password"]
    assert spec.resolve() == {
        "username": "loader",
        "password": "pg-Secret-8812",
        "options": {"note": "token tok-5530\nsecond line in text"},
        "base_dir": ".",
    }
    assert sorted(spec.secrets()) == ["pg-Secret-8812", "tok-5530\nsecond line"]


def test_a_connection_names_itself_and_the_secret_it_cannot_read(store, monkeypatch):
    spec = ConnectionSpec(
        "warehouse", "postgres", {"password": "${secret:pg_password}"}, secrets_file=store
    )
    monkeypatch.setenv("DATAPIPE_MASTER_KEY", "wrong")
    with pytest.raises(ConnectorError) as error:
        spec.resolve()
    assert str(error.value) == f"connection 'warehouse': {ALTERED}"
    # Masking runs while another error is reported: it never raises.
    assert spec.secrets() == []
    unknown = ConnectionSpec(
        "warehouse", "postgres", {"password": "${secret:nope}"}, Path("."), store
    )
    with pytest.raises(ConnectorError) as error:
        unknown.resolve()
    assert str(error.value) == (
        f"connection 'warehouse': secret 'nope' is not in {store}; run `datapipe secrets set nope`"
    )
