"""What `datapipe validate` warns about: a valid pipeline that cannot run as things stand,
and a secret written in plain text.

An unset `${NAME}`, a `${secret:NAME}` not in the secrets file and a CSV path that matches
no file pass validation (each may be fixed before the run), but until then the run fails:
after a full extract, in the worst case.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from connectors.shared.csv_files import local_files
from connectors.shared.secrets import REFERENCE, SECRET_KEY
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.executor import environment_name, pipeline_executor
from datapipe_assets.pipeline.project import LoadedPipeline, Project
from datapipe_assets.pipeline.secret_store import SecretStoreError, secret_names
from datapipe_assets.pipeline.spec_files import display_path

# Secret-named keys that say where a secret is sent or found, not the secret itself.
NOT_A_SECRET = re.compile(r"_(header|param|uri|url)$")
# Keys that take a key file's path as well as the key: only JSON text is the key itself.
KEY_FILE_KEYS = ("service_account_json",)


def readiness_warnings(loaded: LoadedPipeline) -> list[str]:
    """One line per unset variable, unknown secret and CSV path that matches no file."""
    named = f"pipeline {loaded.pipeline.name!r}"
    warnings = []
    for connection in loaded.connections():
        where = f"{named}: connection {connection.label!r}"
        warnings += [
            f"{where} uses ${{{variable}}}, which is not set; set it before the pipeline runs"
            for variable in connection.missing_variables()
        ]
        warnings += [
            f"{where} {problem}"
            for problem in _unknown_secrets(connection.secret_names(), connection.secrets_file)
        ]
        warnings += [
            f"{where} path {path!r} matches no file (relative to {connection.base_dir}); "
            "check the path, or add the file before the pipeline runs"
            for path in _missing_csv_paths(connection)
        ]
    return warnings + _executor_warnings(loaded) + _alert_warnings(loaded)


def _alert_warnings(loaded: LoadedPipeline) -> list[str]:
    """An alert url that reads an unset variable or an unknown secret: that alert could not
    be sent."""
    warnings = []
    for index, alert in enumerate(loaded.pipeline.alerts):
        where = f"pipeline {loaded.pipeline.name!r}: alerts[{index}].url"
        references = REFERENCE.findall(alert.url or "")
        warnings += [
            f"{where} uses ${{{variable}}}, which is not set; set it before an alert is sent"
            for variable, _ in references
            if variable and variable not in os.environ
        ]
        secrets = [secret for _, secret in references if secret]
        warnings += [
            f"{where} {problem}"
            for problem in _unknown_secrets(secrets, loaded.destination.secrets_file)
        ]
    return warnings


def _executor_warnings(loaded: LoadedPipeline) -> list[str]:
    """A broker read from a variable that is not set: the run could not reach its workers."""
    spec = pipeline_executor(loaded.pipeline, os.environ)
    return [
        f"pipeline {loaded.pipeline.name!r}: executor {key} uses ${{{variable}}}, which is not "
        "set; set it before the pipeline runs"
        for key in ("broker", "backend")
        if (value := getattr(spec, key)) is not None
        and (variable := environment_name(value)) is not None
        and variable not in os.environ
    ]


def _unknown_secrets(wanted: list[str], secrets_file: Path) -> list[str]:
    """Names only: the check needs no master key."""
    if not wanted:
        return []
    file = display_path(secrets_file)
    try:
        stored = secret_names(secrets_file)
    except SecretStoreError as error:
        return [f"uses secrets, but {error}"]
    return [
        f"uses ${{secret:{name}}}, which is not in {file}; run `datapipe secrets set {name}` "
        "before the pipeline runs"
        for name in wanted
        if name not in stored
    ]


def plaintext_warnings(project: Project) -> list[str]:
    """One line per secret written inline, in connections.yaml or a pipeline file: anyone
    who can read the file (or its history in git) has it."""
    declared = [(display_path(file), spec) for file, spec in project.connections.declared]
    declared += [
        (display_path(loaded.file), spec)
        for loaded in project.pipelines
        for spec in loaded.connections()
        if not project.connections.holds(spec)
    ]
    warnings = []
    for file, spec in declared:
        for path, key in _plaintext_keys(spec.config):
            name = re.sub(r"\W", "_", f"{spec.name}_{key}")
            warnings.append(
                f"{file}: connection {spec.label!r} has {path} in plain text; store it "
                f"encrypted with `datapipe secrets set {name}` and write {key}: "
                f"${{secret:{name}}}, or read it from the environment with ${{VARIABLE}}"
            )
    return warnings


def _plaintext_keys(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, key) of each secret-named key whose value is written out."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if SECRET_KEY.search(key) and not NOT_A_SECRET.search(key):
            if _is_literal(key, value):
                yield path, key
        elif isinstance(value, Mapping):
            yield from _plaintext_keys(value, f"{path}.")


def _is_literal(key: str, value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value)  # a key file written out as a mapping
    if isinstance(value, bool) or value is None or value == "":
        return False
    text = str(value)
    if key in KEY_FILE_KEYS and not text.lstrip().startswith("{"):
        return False  # the key file's path
    return REFERENCE.search(text) is None


def _missing_csv_paths(connection: ConnectionSpec) -> Iterator[str]:
    if connection.connector != "csv":
        return
    for path in _csv_paths(connection.config):
        # A path read from the environment, or on S3, is checked when the run reads it.
        if path.startswith("s3://") or REFERENCE.search(path):
            continue
        if not local_files(path, connection.base_dir):
            yield path


def _csv_paths(config: Mapping[str, Any]) -> list[str]:
    paths = [config["path"]] if isinstance(config.get("path"), str) else []
    for table in (config.get("tables") or {}).values():
        path = table if isinstance(table, str) else (table or {}).get("path")
        if isinstance(path, str):
            paths.append(path)
    return paths
