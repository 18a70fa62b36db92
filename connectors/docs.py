"""Connector docs generated from the config models, so they cannot drift from the code.

`python -m connectors.docs` prints the README's connector table; `python -m connectors.docs
CONNECTOR` prints every key of one connector with its type, default and description.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from connectors.config.model import ConnectorConfig, user_keys
from connectors.registry import DESTINATION_CONFIGS, SOURCE_CONFIGS, Role, config_model

HEADER = "| connector | as | config (defaults) |\n|---|---|---|"


def connector_table() -> str:
    """The Markdown table of every connector: its roles, keys with defaults, and notes."""
    rows = [HEADER]
    for connector in sorted({*SOURCE_CONFIGS, *DESTINATION_CONFIGS}):
        for roles, model in _models(connector):
            rows.append(f"| `{connector}` | {', '.join(roles)} | {_cell(model)} |")
    return "\n".join(rows)


def key_reference(connector: str) -> str:
    """Every key of a connector's config models: type, default and description."""
    lines = []
    for roles, model in _models(connector):
        lines.append(f"{connector} ({', '.join(roles)})")
        for key in user_keys(model):
            field = _field(model, key)
            default = _default(field)
            shown = f" = {default}" if default else " (required)" if field.is_required() else ""
            lines.append(f"  {key}: {_type_name(field.annotation)}{shown}")
            lines.append(f"      {field.description}")
    return "\n".join(lines)


def _models(connector: str) -> list[tuple[list[Role], type[ConnectorConfig]]]:
    """The connector's models with the roles each serves (one model may serve both)."""
    found: list[tuple[list[Role], type[ConnectorConfig]]] = []
    for role in typing.get_args(Role):
        model = config_model(connector, role)
        if model is None:
            continue
        for roles, seen in found:
            if seen is model:
                roles.append(role)
                break
        else:
            found.append(([role], model))
    return found


def _cell(model: type[ConnectorConfig]) -> str:
    keys = []
    for key in user_keys(model):
        default = _default(_field(model, key))
        keys.append(f"`{key}` ({default})" if default else f"`{key}`")
    return ", ".join(keys) + (f"; {model.notes}" if model.notes else "")


def _field(model: type[BaseModel], key: str) -> FieldInfo:
    return next(f for name, f in model.model_fields.items() if key in (name, f.alias))


def _default(field: FieldInfo) -> str:
    """The default as the docs show it; empty for none (required, unset, or empty)."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and extra.get("shown_default"):
        return str(extra["shown_default"])
    value = field.default
    if value is PydanticUndefined or value is None or value == {} or value == []:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and (value == "" or not value.strip(",;|")):
        return f"`{value}`"  # punctuation such as the delimiter reads better as code
    if isinstance(value, list):
        return "`[" + ", ".join(f'"{item}"' for item in value) + "]`"
    return str(value)


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        members = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(members))
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "mapping"
    if origin is list:
        return f"list of {_type_name(args[0])}"
    names = {str: "text", int: "whole number", float: "number", bool: "true/false"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(connector_table())
        return 0
    connector = argv[0]
    if connector not in {*SOURCE_CONFIGS, *DESTINATION_CONFIGS}:
        known = ", ".join(sorted({*SOURCE_CONFIGS, *DESTINATION_CONFIGS}))
        print(f"error: unknown connector {connector!r}; use one of {known}", file=sys.stderr)
        return 1
    print(key_reference(connector))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
