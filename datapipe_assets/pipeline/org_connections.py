"""Which connections each org's pipelines may use.

A connection in connections.yaml without `org:` is shared by every org. One with `org: acme`,
or in `orgs/acme/connections.yaml`, is acme's own: only acme's pipelines may use it. Two orgs
may each have a connection of the same name, and an org's own connection wins over a shared
one of the same name, so an org can override a shared default without renaming its pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.problems import Problem
from datapipe_assets.pipeline.spec import Pipeline

# An org's own connections file: pipelines/orgs/<org>/connections.yaml.
ORGS_FOLDER = "orgs"


@dataclass
class Connections:
    """Every valid connection declared, with the file that declared it."""

    declared: list[tuple[Path, ConnectionSpec]] = field(default_factory=list)

    def add(self, file: Path, spec: ConnectionSpec) -> None:
        self.declared.append((file, spec))

    def shared(self) -> dict[str, ConnectionSpec]:
        return {spec.name: spec for _, spec in self.declared if spec.org is None}

    def own(self, org: str) -> dict[str, ConnectionSpec]:
        return {spec.name: spec for _, spec in self.declared if spec.org == org}

    def visible_to(self, org: str) -> dict[str, ConnectionSpec]:
        """The connections a pipeline of the org may use, by name: its own over shared ones."""
        return self.shared() | self.own(org)

    def owners(self, name: str) -> list[str]:
        """The orgs that have a connection of this name of their own."""
        return sorted({spec.org for _, spec in self.declared if spec.name == name and spec.org})

    def holds(self, spec: ConnectionSpec) -> bool:
        return any(declared is spec for _, declared in self.declared)

    def labels(self) -> list[str]:
        """Every connection as the CLI names it: `warehouse`, `acme/warehouse`."""
        return sorted(spec.label for _, spec in self.declared)

    def find(self, reference: str) -> ConnectionSpec | None:
        """The connection `NAME` or `ORG/NAME` names: a bare name is a shared connection, or
        the one org's connection of that name; None if there is none, or several."""
        org, _, name = reference.rpartition("/")
        if org:
            return self.own(org).get(name)
        if name in self.shared():
            return self.shared()[name]
        owners = self.owners(name)
        return self.own(owners[0])[name] if len(owners) == 1 else None


def foreign_connections(pipeline: Pipeline, connections: Connections) -> list[Problem]:
    """A connection the pipeline names that only other orgs have: refused, as a pipeline of
    one org may not read or write another org's data."""
    refs = [(f"{path}.connection", block.connection) for path, block in pipeline.source_blocks()]
    refs.append(("destination.connection", pipeline.destination.connection))
    visible = connections.visible_to(pipeline.org)
    problems = []
    for path, name in refs:
        owners = connections.owners(name) if name is not None and name not in visible else []
        if owners:
            problems.append(
                Problem(
                    path,
                    f"pipeline {pipeline.name!r} (org {pipeline.org!r}): connection {name!r} "
                    f"belongs to org {' and '.join(repr(o) for o in owners)}",
                    f"use a connection of org {pipeline.org!r} or a shared one",
                )
            )
    return problems
