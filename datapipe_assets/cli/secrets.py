"""`datapipe secrets set|list|rm`: the encrypted values `${secret:NAME}` reads."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from datapipe_assets.cli.common import CommandError, existing_pipelines_dir
from datapipe_assets.pipeline.project import secrets_file
from datapipe_assets.pipeline.secret_store import (
    SecretStoreError,
    check_name,
    put_secret,
    remove_secret,
    secret_names,
)
from datapipe_assets.pipeline.spec_files import display_path


def set_command(args: argparse.Namespace) -> int:
    path = _secrets_path()
    try:
        check_name(args.name)  # before the value is typed, not after
        replaced = put_secret(path, args.name, _read_value(args.name))
    except SecretStoreError as error:
        raise CommandError(str(error)) from None
    print(
        f"{'replaced' if replaced else 'stored'} secret {args.name!r} in {display_path(path)}; "
        f"use it in a connection as ${{secret:{args.name}}}"
    )
    return 0


def list_command(args: argparse.Namespace) -> int:
    path = _secrets_path()
    try:
        names = secret_names(path)
    except SecretStoreError as error:
        raise CommandError(str(error)) from None
    for name in names:
        print(name)
    print(f"{len(names)} secret(s) in {display_path(path)}")
    return 0


def rm_command(args: argparse.Namespace) -> int:
    path = _secrets_path()
    try:
        remove_secret(path, args.name)
    except SecretStoreError as error:
        raise CommandError(str(error)) from None
    print(f"removed secret {args.name!r} from {display_path(path)}")
    return 0


def _secrets_path() -> Path:
    return secrets_file(existing_pipelines_dir())


def _read_value(name: str) -> str:
    """Typed at a prompt that does not echo it, or piped in: `... | datapipe secrets set X`.
    A piped value loses one trailing newline, which `echo` and files add."""
    if not sys.stdin.isatty():
        return sys.stdin.read().removesuffix("\n").removesuffix("\r")
    try:
        return getpass.getpass(f"value for secret {name!r} (not shown): ")
    except (EOFError, KeyboardInterrupt):
        raise CommandError("no value entered; nothing was stored") from None
