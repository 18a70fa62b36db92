"""Read the pipelines folder and connections.yaml into validated pipelines and problems.

Every file is checked on its own, so one bad file is reported while the others load.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import yaml
from pydantic import ValidationError

from connectors.base import ConnectorError
from connectors.registry import source_class
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.executor import executor_problems
from datapipe_assets.pipeline.keys import dagster_name, full_reference
from datapipe_assets.pipeline.org_connections import (
    ORGS_FOLDER,
    Connections,
    foreign_connections,
)
from datapipe_assets.pipeline.orgs import ORGS_FILES, Orgs, orgs_file, parse_orgs
from datapipe_assets.pipeline.row_limit import RunRowLimit, run_row_limit
from datapipe_assets.pipeline.secret_store import SECRETS_FILE
from datapipe_assets.pipeline.spec import (
    DEFAULT_ORG,
    Connection,
    ConnectionRef,
    Pipeline,
    normalize_editor_export,
)
from datapipe_assets.pipeline.spec_files import (
    SpecError,
    display_path,
    parse_error,
    pydantic_errors,
    read_document,
    spec_error,
)
from datapipe_assets.pipeline.validation import check_pipeline, trigger_problems

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PIPELINE_SUFFIXES = (".yaml", ".yml", ".json")
# Files in the pipelines folder that hold settings rather than a pipeline.
SETTINGS_FILES = (
    "connections.yaml",
    "connections.yml",
    "alerts.yaml",
    "alerts.yml",
    *ORGS_FILES,
    SECRETS_FILE,
)
# Connectors whose table schemas are cheap to read while definitions load.
CHEAP_DISCOVERY = ("csv",)


@dataclass(frozen=True)
class LoadedPipeline:
    """A valid pipeline with its connections resolved: the plan the Dagster layer builds."""

    pipeline: Pipeline
    file: Path
    sources: tuple[ConnectionSpec, ...]  # one per source block, in order
    destination: ConnectionSpec
    # What validation noted but need not be fixed, e.g. columns a join renamed.
    notes: tuple[str, ...] = ()
    # A hash of the file's content: each asset's code version and each run's tag, so the UI
    # marks assets whose pipeline changed since they were materialized.
    version: str = ""
    # The rows one run may extract, from the org's plan or limits (orgs.yaml); None: no limit.
    row_limit: RunRowLimit | None = None
    # The project's orgs.yaml: the pipeline's org limits and where its usage is billed.
    orgs: Orgs = field(default_factory=Orgs)

    def connections(self) -> list[ConnectionSpec]:
        """Every connection the pipeline uses, for masking their secrets in any output."""
        by_name = {c.name: c for c in [*self.sources, self.destination]}
        return list(by_name.values())

    def table_connection(self, table: str) -> ConnectionSpec:
        """The connection a source table (by its name in the pipeline) is read from."""
        return self.sources[self.pipeline.source_table(table).block]


@dataclass
class Project:
    directory: Path = Path(".")
    pipelines: list[LoadedPipeline] = field(default_factory=list)
    errors: dict[str, list[SpecError]] = field(default_factory=dict)
    # Every `org/name` a file declares, valid or not, and the files declaring it.
    declared: dict[str, list[str]] = field(default_factory=dict)
    # The valid connections of connections.yaml and the orgs' own files, used or not.
    connections: Connections = field(default_factory=Connections)
    # orgs.yaml: each org's plan and limits (no file: one org, no limits).
    orgs: Orgs = field(default_factory=Orgs)

    def get(self, reference: str) -> LoadedPipeline:
        """The valid pipeline `ORG/NAME` names, or `NAME` when one org alone has it."""
        found = self.named(reference)
        if len(found) == 1:
            return found[0]
        if found:
            choices = ", ".join(full_reference(p.pipeline.org, p.pipeline.name) for p in found)
            raise KeyError(
                f"pipeline name {reference!r} is used by several orgs; name one of: {choices}"
            )
        known = ", ".join(self.label(p.pipeline) for p in self.pipelines) or "none"
        raise KeyError(f"no valid pipeline named {reference!r}; valid pipelines: {known}")

    def label(self, pipeline: Pipeline) -> str:
        """How the CLI names a pipeline, as it accepts it: `NAME` when no other org declares
        that name, else `ORG/NAME`."""
        orgs = {key.rpartition("/")[0] for key in self.declaring(pipeline.name)}
        if orgs <= {pipeline.org}:
            return pipeline.name
        return full_reference(pipeline.org, pipeline.name)

    def named(self, reference: str) -> list[LoadedPipeline]:
        org, name = split_reference(reference)
        return [
            p for p in self.pipelines if p.pipeline.name == name and org in (None, p.pipeline.org)
        ]

    def declaring(self, reference: str) -> dict[str, list[str]]:
        """The files declaring each `org/name` a reference may mean, valid or not."""
        org, name = split_reference(reference)
        return {
            key: files
            for key, files in self.declared.items()
            if key.rpartition("/")[2] == name and org in (None, key.rpartition("/")[0])
        }


def split_reference(reference: str) -> tuple[str | None, str]:
    """`acme/orders` -> ("acme", "orders"); `orders` -> (None, "orders"): any org."""
    org, _, name = reference.rpartition("/")
    return org or None, name


def pipelines_dir() -> Path:
    return Path(os.environ.get("DATAPIPE_PIPELINES_DIR", PROJECT_ROOT / "pipelines"))


def connections_file(directory: Path) -> Path:
    return Path(os.environ.get("DATAPIPE_CONNECTIONS_FILE", directory / "connections.yaml"))


def secrets_file(directory: Path) -> Path:
    """The encrypted secrets `${secret:NAME}` reads: beside connections.yaml."""
    return connections_file(directory).with_name(SECRETS_FILE)


def load_project(directory: Path | None = None) -> Project:
    directory = directory or pipelines_dir()
    project = Project(directory)
    project.orgs = load_orgs(directory, project)
    project.connections = load_all_connections(directory, project)
    # By Dagster name, which is unique across orgs as (org, name) is.
    seen: dict[str, LoadedPipeline] = {}
    for file in sorted(directory.iterdir()) if directory.is_dir() else []:
        if file.suffix not in PIPELINE_SUFFIXES or file.name in SETTINGS_FILES:
            continue
        loaded = _load_pipeline(file, project)
        if loaded is None:
            continue
        other = seen.get(dagster_name(loaded.pipeline))
        if other is not None:
            project.errors[display_path(file)] = [_name_taken(loaded, other)]
            continue
        seen[dagster_name(loaded.pipeline)] = loaded
        project.pipelines.append(loaded)
    _drop_bad_triggers(project)
    return project


def _name_taken(loaded: LoadedPipeline, other: LoadedPipeline) -> SpecError:
    """A pipeline whose name its org already uses, or whose Dagster name another org's
    pipeline has (`acme__orders` in the org default, and `orders` in the org acme)."""
    display, name, org = display_path(loaded.file), loaded.pipeline.name, loaded.pipeline.org
    where = "" if org == DEFAULT_ORG else f" in org {org!r}"
    if other.pipeline.org == org:
        message = f"pipeline name {name!r} is already used{where} by {display_path(other.file)}"
        return SpecError(display, "name", message, "give each pipeline a unique name")
    return SpecError(
        display,
        "name",
        f"pipeline {full_reference(org, name)!r} and "
        f"{full_reference(other.pipeline.org, other.pipeline.name)!r} "
        f"({display_path(other.file)}) would share the "
        f"Dagster name {dagster_name(loaded.pipeline)!r}",
        "rename one of them",
    )


def _drop_bad_triggers(project: Project) -> None:
    """Report and drop pipelines whose triggers name missing pipelines of their org, until
    none do."""
    while True:
        dropped = False
        for org in sorted({p.pipeline.org for p in project.pipelines}):
            members = [p for p in project.pipelines if p.pipeline.org == org]
            problems = trigger_problems({p.pipeline.name: (p.pipeline, p.sources) for p in members})
            for loaded in [p for p in members if p.pipeline.name in problems]:
                display = display_path(loaded.file)
                found = problems[loaded.pipeline.name]
                project.errors[display] = [spec_error(display, problem) for problem in found]
                project.pipelines.remove(loaded)
                dropped = True
        if not dropped:
            return


def load_all_connections(directory: Path, project: Project) -> Connections:
    """connections.yaml's connections, then each org's own (`orgs/<org>/connections.yaml`).

    Every org's file reads `${secret:NAME}` from the one secrets file beside
    connections.yaml: the project has one master key, so one store.
    """
    top = connections_file(directory)
    secrets = top.with_name(SECRETS_FILE)
    connections = Connections()
    for spec in load_connections(top, project, secrets=secrets):
        connections.add(top, spec)
    folder = directory / ORGS_FOLDER
    for org_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        file = org_dir / "connections.yaml"
        if not file.is_file():
            continue
        if not project.orgs.knows(org_dir.name):
            what = f"folder {ORGS_FOLDER}/{org_dir.name}"
            unknown = _unknown_org(display_path(file), "", what, org_dir.name, project.orgs)
            project.errors[display_path(file)] = [unknown]
            continue
        for spec in load_connections(file, project, secrets=secrets, org=org_dir.name):
            problem = _org_entry_problem(file, org_dir.name, spec, connections)
            if problem is None:
                connections.add(file, spec)
            else:
                project.errors.setdefault(display_path(file), []).append(problem)
    return connections


def _org_entry_problem(
    file: Path, org: str, spec: ConnectionSpec, connections: Connections
) -> SpecError | None:
    """An entry of an org's own file that names another org, or that the org already has
    in connections.yaml."""
    if spec.org != org:
        return SpecError(
            display_path(file),
            f"{spec.name}.org",
            f"connection {spec.name!r} is in org {org!r}'s folder but says org {spec.org!r}",
            f"remove its org: key, or move it to orgs/{spec.org}/connections.yaml",
        )
    if spec.name in connections.own(org):
        return SpecError(
            display_path(file),
            spec.name,
            f"connection {spec.name!r} of org {org!r} is also declared in connections.yaml",
            "keep one of them",
        )
    return None


def _unknown_org(display: str, path: str, what: str, org: str, orgs: Orgs) -> SpecError:
    """An org that orgs.yaml does not list."""
    orgs_display = display_path(orgs.file) if orgs.file is not None else "orgs.yaml"
    known = ", ".join(orgs.names()) or "none"
    return SpecError(
        display,
        path,
        f"{what} names org {org!r}, which {orgs_display} does not list (orgs: {known})",
        f"add {org!r} to {orgs_display}, or use one of its orgs",
    )


def load_connections(
    file: Path, project: Project, secrets: Path | None = None, org: str | None = None
) -> list[ConnectionSpec]:
    """A connections file's valid connections; those of an org's own file are the org's."""
    if not file.exists():
        return []
    try:
        document = read_document(file) or {}
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        project.errors[display_path(file)] = [parse_error(file, error)]
        return []
    connections: list[ConnectionSpec] = []
    errors: list[SpecError] = []
    for name, entry in document.items() if isinstance(document, dict) else []:
        try:
            parsed = Connection.model_validate(entry)
        except ValidationError as error:
            errors += pydantic_errors(file, error, prefix=str(name))
            continue
        owner = parsed.org or org
        if owner is not None and not project.orgs.knows(owner):
            what, display = f"connection {name!r}", display_path(file)
            errors.append(_unknown_org(display, f"{name}.org", what, owner, project.orgs))
            continue
        connections.append(
            ConnectionSpec(
                name,
                parsed.connector,
                parsed.config,
                file.parent,
                secrets or file.with_name(SECRETS_FILE),
                owner,
            )
        )
    if not isinstance(document, dict):
        errors.append(
            SpecError(
                display_path(file),
                "",
                "must map connection names to {connector, config}",
                "see README: connections.yaml",
            )
        )
    if errors:
        project.errors[display_path(file)] = errors
    return connections


def load_orgs(directory: Path, project: Project) -> Orgs:
    """The folder's orgs.yaml; a file that doesn't validate is reported, and no org is
    known, so every pipeline naming an org is refused until it is fixed."""
    file = orgs_file(directory)
    if file is None:
        return Orgs()
    try:
        return parse_orgs(read_document(file), file)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        project.errors[display_path(file)] = [parse_error(file, error)]
    except ValidationError as error:
        project.errors[display_path(file)] = pydantic_errors(file, error)
    return Orgs(declared=True, file=file)


def _load_pipeline(file: Path, project: Project) -> LoadedPipeline | None:
    display = display_path(file)
    try:
        document = read_document(file)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        project.errors[display] = [parse_error(file, error)]
        return None
    if not isinstance(document, dict):
        project.errors[display] = [
            SpecError(
                display,
                "",
                "is not a pipeline",
                "a pipeline file is a mapping with name, source and destination",
            )
        ]
        return None
    document = normalize_editor_export(document)
    if isinstance(document.get("name"), str):
        org = document.get("org", DEFAULT_ORG)
        project.declared.setdefault(full_reference(org, document["name"]), []).append(display)
    try:
        pipeline = Pipeline.model_validate(document)
    except ValidationError as error:
        project.errors[display] = pydantic_errors(file, error)
        return None
    if not project.orgs.knows(pipeline.org):
        what = f"pipeline {pipeline.name!r}"
        project.errors[display] = [_unknown_org(display, "org", what, pipeline.org, project.orgs)]
        return None
    connections = project.connections.visible_to(pipeline.org)
    secrets = secrets_file(project.directory)
    sources = [
        _connection(pipeline, block, connections, file, pipeline.connection_name(index), secrets)
        for index, (_, block) in enumerate(pipeline.source_blocks())
    ]
    destination = _connection(
        pipeline, pipeline.destination, connections, file, f"{pipeline.name}.destination", secrets
    )
    schemas = known_schemas(pipeline, sources)
    validation = check_pipeline(pipeline, connections, schemas)
    # A connection of another org is reported as such, not as an unknown connection.
    foreign = foreign_connections(pipeline, project.connections)
    problems = foreign + [p for p in validation.problems if p.path not in {f.path for f in foreign}]
    problems += executor_problems(pipeline, os.environ)
    if problems or None in sources or destination is None:
        project.errors[display] = [spec_error(display, p) for p in problems]
        return None
    return LoadedPipeline(
        pipeline,
        file,
        tuple(s for s in sources if s is not None),
        destination,
        tuple(validation.notes),
        content_version(pipeline),
        run_row_limit(pipeline, project.orgs.limits(pipeline.org)),
        project.orgs,
    )


def content_version(pipeline: Pipeline) -> str:
    """A short hash of what a pipeline says, as validated: reformatting its file, editing its
    comments or exporting it from the editor as JSON keeps its version."""
    return hashlib.sha256(pipeline.model_dump_json().encode()).hexdigest()[:12]


def _connection(
    pipeline: Pipeline,
    ref: ConnectionRef,
    connections: Mapping[str, ConnectionSpec],
    file: Path,
    inline_name: str,
    secrets: Path,
) -> ConnectionSpec | None:
    if ref.connection is not None:
        return connections.get(ref.connection)
    return ConnectionSpec(inline_name, str(ref.connector), ref.config or {}, file.parent, secrets)


def known_schemas(
    pipeline: Pipeline, sources: Sequence[ConnectionSpec | None]
) -> dict[str, pa.Schema]:
    """Source table schemas by the tables' names in the pipeline, where reading them is
    cheap and needs no secret."""
    schemas: dict[str, pa.Schema] = {}
    for index, source in enumerate(sources):
        discovered = _discover_cheaply(source) if source is not None else {}
        for table in pipeline.source_tables():
            if table.block == index and table.source_name in discovered:
                schemas[table.name] = discovered[table.source_name]
    return schemas


def _discover_cheaply(source: ConnectionSpec) -> dict[str, pa.Schema]:
    try:
        connector_class = source_class(source.connector, source.name)
        if connector_class.offline_discovery:
            # Placeholders stay unresolved: such a discover() never uses the config's values.
            connector = connector_class(source.name, source.config)
        elif source.connector in CHEAP_DISCOVERY and not (
            source.missing_variables() or source.secret_names()
        ):
            connector = source.open_source()
        else:
            return {}
        return {t.name: t.schema for t in connector.discover()}
    except ConnectorError:
        return {}  # the run reports an unreadable source, with the connection's name
