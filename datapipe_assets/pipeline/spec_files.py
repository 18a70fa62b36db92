"""Reading pipeline and settings files, and reporting their problems as one-line errors that
name the file, the place in it, what is wrong and what to do."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic.alias_generators import to_snake

from connectors.config.problems import did_you_mean
from datapipe_assets.pipeline.problems import Problem


@dataclass(frozen=True)
class SpecError:
    file: str
    path: str
    message: str
    hint: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}; {self.hint}"


def display_path(file: Path) -> str:
    try:
        return str(file.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(file)


# libyaml parses several times faster than PyYAML's pure-Python loader, where it is built.
FAST_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_document(file: Path) -> Any:
    text = file.read_text()
    if file.suffix == ".json":
        return json.loads(text)
    try:
        return yaml.load(text, Loader=FAST_YAML_LOADER)
    except yaml.YAMLError:
        # PyYAML's own loader words its errors more plainly than libyaml: report with it.
        return yaml.safe_load(text)


def parse_error(file: Path, error: Exception) -> SpecError:
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        reason = getattr(error, "problem", None) or "malformed YAML"
        return SpecError(
            display_path(file),
            where,
            f"malformed YAML: {reason}",
            "fix the indentation or quoting there",
        )
    if isinstance(error, json.JSONDecodeError):
        return SpecError(
            display_path(file),
            f"line {error.lineno}, column {error.colno}",
            f"malformed JSON: {error.msg}",
            "fix the JSON syntax there",
        )
    return SpecError(display_path(file), "", f"cannot be read: {error}", "check the file")


def spec_error(display: str, problem: Problem) -> SpecError:
    return SpecError(display, problem.path, problem.message, problem.hint)


HINTS = {
    "extra_forbidden": "remove it or check its spelling",
    "missing": "required; add it",
    "string_pattern_mismatch": "use lowercase letters, digits and _, starting with a letter",
    "literal_error": "use one of the values listed",
}


def pydantic_errors(file: Path, error: ValidationError, prefix: str = "") -> list[SpecError]:
    errors = []
    for item in error.errors():
        path = _location(item["loc"], prefix, snake_case=file.suffix != ".json")
        if item["type"] == "union_tag_invalid":
            errors.append(_unknown_node_type(display_path(file), path, item))
            continue
        hint = HINTS.get(item["type"], "fix the value")
        message = {
            "extra_forbidden": "unknown key",
            # Our own validators' messages, without pydantic's "Value error, " prefix.
            "value_error": str(item.get("ctx", {}).get("error", item["msg"])),
        }.get(item["type"], item["msg"])
        errors.append(SpecError(display_path(file), path, message, hint))
    return errors


def _unknown_node_type(file: str, path: str, item: Any) -> SpecError:
    """`node 'spin': unknown type 'pivot'`, with the closest type, instead of pydantic's
    tagged-union wording."""
    node = item.get("input")
    node_id = node.get("id") if isinstance(node, dict) else None
    tag = str(item.get("ctx", {}).get("tag", ""))
    named = f"node {node_id!r}" if isinstance(node_id, str) else "node"
    hint = did_you_mean(tag, NODE_TYPES) + f"use one of {', '.join(NODE_TYPES)}"
    return SpecError(file, path, f"{named}: unknown type {tag!r}", hint)


NODE_TYPES = (
    "source",
    "destination",
    "filter",
    "rename",
    "computed",
    "aggregate",
    "deduplicate",
    "sql",
    "join",
    "union",
)


def _location(loc: tuple[Any, ...], prefix: str, snake_case: bool) -> str:
    """`('transform', 'nodes', 2, 'filter', 'data')` -> `transform.nodes[2].data`.

    pydantic names fields by their camelCase alias; YAML files spell them in snake_case.
    """
    parts = [prefix] if prefix else []
    previous: Any = None
    for item in loc:
        if snake_case and isinstance(item, str):
            item = to_snake(item)
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        elif not (
            isinstance(previous, int) and parts[-1].startswith("nodes[") and item in NODE_TYPES
        ):
            # pydantic names the matched node type after a node's index; the path skips it.
            parts.append(str(item))
        previous = item
    return ".".join(parts)
