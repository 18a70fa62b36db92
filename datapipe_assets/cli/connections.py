"""`datapipe discover` and `datapipe check`: a connection's tables, and whether it answers."""

from __future__ import annotations

import argparse
from typing import Any

from connectors.base import ConnectorError
from connectors.config.problems import error_text
from connectors.registry import SOURCES, config_problems
from connectors.shared.secrets import mask
from datapipe_assets.cli.common import CommandError
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.project import (
    Project,
    load_all_connections,
    load_orgs,
    pipelines_dir,
)


def _connection(reference: str) -> ConnectionSpec:
    """The connection `NAME` or `ORG/NAME` names (a shared one, or one org's own)."""
    directory = pipelines_dir()
    project = Project(directory)
    project.orgs = load_orgs(directory, project)
    connections = load_all_connections(directory, project)
    spec = connections.find(reference)
    if spec is not None:
        return spec
    owners = connections.owners(reference)
    if len(owners) > 1:
        choices = ", ".join(f"{org}/{reference}" for org in owners)
        raise CommandError(
            f"connection name {reference!r} is used by several orgs; name one of: {choices}"
        )
    known = ", ".join(connections.labels()) or "none"
    raise CommandError(f"unknown connection {reference!r}; connections.yaml has: {known}")


def _open(spec: ConnectionSpec) -> Any:
    """The connection opened, after its config passed its connector's model.

    The model is checked before `${NAME}`s are resolved, so a misspelled key is named (with
    a did-you-mean) even when the environment is not set up yet.
    """
    role = "source" if spec.connector in SOURCES else "destination"
    problems = config_problems(spec.connector, role, spec.name, spec.config)
    if problems:
        raise CommandError(error_text(problems))
    return spec.open_source() if role == "source" else spec.open_destination()


def discover_command(args: argparse.Namespace) -> int:
    spec = _connection(args.connection)
    try:
        tables = _open(spec).discover()
    except ConnectorError as error:
        raise CommandError(mask(str(error), spec.secrets())) from None
    for table in tables:
        print(table.name)
        for field in table.schema:
            print(f"  {field.name:<32} {field.type}")
    print(f"{len(tables)} table(s)")
    return 0


def check_command(args: argparse.Namespace) -> int:
    spec = _connection(args.connection)
    try:
        print(f"ok: {_open(spec).check()}")
    except ConnectorError as error:
        raise CommandError(mask(str(error), spec.secrets())) from None
    return 0
