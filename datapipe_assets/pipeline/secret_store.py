"""The project's encrypted secrets: `secrets.enc.yaml`, beside connections.yaml.

Each value is encrypted with a random Fernet data key. The data key is stored wrapped
(encrypted) by a key derived from DATAPIPE_MASTER_KEY with PBKDF2-HMAC-SHA256 and the
file's own random salt. Names stay in clear, so listing them needs no master key.

Fernet authenticates every token: a wrong master key or an altered file is an error, and
is never taken for a value.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

SECRETS_FILE = "secrets.enc.yaml"
MASTER_KEY = "DATAPIPE_MASTER_KEY"
VERSION = 1
KDF = "pbkdf2-hmac-sha256"
# OWASP's figure for PBKDF2-HMAC-SHA256. Each file records its own count, so raising this
# later leaves older files readable.
ITERATIONS = 600_000
# A count above this comes from an altered file: deriving with it would hang the command.
MAX_ITERATIONS = 10_000_000
SALT_BYTES = 16
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ALTERED = f"wrong {MASTER_KEY} or {SECRETS_FILE} was altered"
HEADER = f"# Written by `datapipe secrets`; values are encrypted with {MASTER_KEY}. Do not edit.\n"


class SecretStoreError(Exception):
    """A one-line reason the store cannot be read or written; never holds a value."""


@dataclass(frozen=True)
class StoredSecrets:
    """A parsed secrets file: the key-derivation settings, the wrapped data key and the
    encrypted values by name."""

    salt: bytes
    iterations: int
    wrapped_key: bytes
    tokens: dict[str, str]


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise SecretStoreError(
            f"secret name {name!r} is not valid; use letters, digits and _, not starting "
            "with a digit"
        )


def read_secrets(path: Path) -> StoredSecrets | None:
    """The file's contents, or None when there is no file yet. Needs no master key."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SecretStoreError(f"{path} cannot be read: {error.strerror}") from None
    return _parse(path, text)


def secret_names(path: Path) -> list[str]:
    stored = read_secrets(path)
    return sorted(stored.tokens) if stored else []


def reveal(path: Path, name: str) -> str:
    """A secret's value; a clear error naming it when it is unknown or cannot be decrypted."""
    try:
        stored = read_secrets(path)
        token = stored.tokens.get(name) if stored else None
        if stored is not None and token is not None:
            return _open_token(_data_key(stored), name, token)
    except SecretStoreError as error:
        raise SecretStoreError(f"secret {name!r} cannot be decrypted: {error}") from None
    raise SecretStoreError(f"secret {name!r} is not in {path}; run `datapipe secrets set {name}`")


def put_secret(path: Path, name: str, value: str) -> bool:
    """Store a value under a name, creating the file if needed; True if it replaced one."""
    check_name(name)
    if not value:
        raise SecretStoreError(f"the value for secret {name!r} is empty; nothing was stored")
    try:
        with _locked(path.parent):
            stored = read_secrets(path) or _new_store()
            token = _data_key(stored).encrypt(_sealed(name, value)).decode()
            _write(path, replace(stored, tokens={**stored.tokens, name: token}))
    except SecretStoreError as error:
        raise SecretStoreError(f"secret {name!r} was not stored: {error}") from None
    return name in stored.tokens


def remove_secret(path: Path, name: str) -> None:
    """Forget a secret. Needs no master key: names are stored in clear."""
    with _locked(path.parent):
        stored = read_secrets(path)
        if stored is None or name not in stored.tokens:
            known = ", ".join(sorted(stored.tokens)) if stored and stored.tokens else "none"
            raise SecretStoreError(f"no secret named {name!r} in {path}; secrets: {known}")
        _write(path, replace(stored, tokens={k: v for k, v in stored.tokens.items() if k != name}))


def _master_key() -> str:
    key = os.environ.get(MASTER_KEY, "")
    if not key:
        raise SecretStoreError(
            f"{MASTER_KEY} is not set; export the passphrase that encrypts {SECRETS_FILE} "
            "(keep it outside the project)"
        )
    return key


@functools.lru_cache(maxsize=8)
def _wrapping_key(master_key: str, salt: bytes, iterations: int) -> Fernet:
    """The key derived from the master key. Deriving takes about half a second by design,
    so it is done once per file and process, not once per secret."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(master_key.encode())))


def _data_key(stored: StoredSecrets) -> Fernet:
    wrapping = _wrapping_key(_master_key(), stored.salt, stored.iterations)
    try:
        return Fernet(wrapping.decrypt(stored.wrapped_key))
    except (InvalidToken, ValueError):
        raise SecretStoreError(ALTERED) from None


def _new_store() -> StoredSecrets:
    salt = os.urandom(SALT_BYTES)
    wrapped = _wrapping_key(_master_key(), salt, ITERATIONS).encrypt(Fernet.generate_key())
    return StoredSecrets(salt, ITERATIONS, wrapped, {})


def _sealed(name: str, value: str) -> bytes:
    # The name is encrypted with the value, so a token moved to another name is refused.
    return f"{name}\n{value}".encode()


def _open_token(data_key: Fernet, name: str, token: str) -> str:
    try:
        sealed_name, _, value = data_key.decrypt(token.encode()).decode().partition("\n")
    except (InvalidToken, UnicodeDecodeError):
        raise SecretStoreError(ALTERED) from None
    if sealed_name != name:
        raise SecretStoreError(ALTERED)
    return value


def _parse(path: Path, text: str) -> StoredSecrets:
    try:
        document = yaml.safe_load(text)
        kdf = document["kdf"]
        iterations = kdf["iterations"]
        tokens = document["secrets"] or {}
        if (
            document["version"] != VERSION
            or kdf["algorithm"] != KDF
            or type(iterations) is not int
            or not ITERATIONS <= iterations <= MAX_ITERATIONS
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in tokens.items())
        ):
            raise ValueError
        salt = base64.b64decode(kdf["salt"], validate=True)
        return StoredSecrets(salt, iterations, document["data_key"].encode(), dict(tokens))
    except (yaml.YAMLError, LookupError, TypeError, ValueError, AttributeError):
        raise SecretStoreError(
            f"{path} is not a secrets file as `datapipe secrets` writes it; restore it from a "
            "backup, or delete it and set its secrets again"
        ) from None


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialize read-modify-write across processes, so two `set`s at once both land. The
    folder itself is locked: no lock file is left beside the pipelines."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError as error:
        raise SecretStoreError(f"{directory} cannot be opened: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _write(path: Path, stored: StoredSecrets) -> None:
    """Replace the file atomically: a crash leaves the old file or the new one, never half.
    mkstemp creates the file readable by its owner only, and os.replace keeps that."""
    document = {
        "version": VERSION,
        "kdf": {
            "algorithm": KDF,
            "iterations": stored.iterations,
            "salt": base64.b64encode(stored.salt).decode(),
        },
        "data_key": stored.wrapped_key.decode(),
        "secrets": dict(sorted(stored.tokens.items())),
    }
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(HEADER + yaml.safe_dump(document, sort_keys=False))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise SecretStoreError(f"{path} cannot be written: {error.strerror}") from None
