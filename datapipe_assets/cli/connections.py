"""`datapipe discover` and `datapipe check`: a connection's tables, and whether it answers."""

from __future__ import annotations

import argparse
from typing import Any

from connectors.base import ConnectorError
from connectors.registry import SOURCES
from connectors.shared.secrets import mask
from datapipe_assets.cli.common import CommandError
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.project import (
    Project,
    connections_file,
    load_connections,
    pipelines_dir,
)


def _connection(name: str) -> ConnectionSpec:
    project = Project()
    connections = load_connections(connections_file(pipelines_dir()), project)
    if name not in connections:
        known = ", ".join(sorted(connections)) or "none"
        raise CommandError(f"unknown connection {name!r}; connections.yaml has: {known}")
    return connections[name]


def _open(spec: ConnectionSpec) -> Any:
    return spec.open_source() if spec.connector in SOURCES else spec.open_destination()


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
