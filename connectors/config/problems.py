"""Config problems: a model's validation errors as one-line messages with a fix.

Two checks use them. At load time no environment or secret is read, so a value holding a
`${NAME}` or `${secret:NAME}` placeholder is accepted for any key; only unknown and missing
keys and literal values are judged. At run time the resolved config is validated in full.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from connectors.config.model import ConfigValueError, ConnectorConfig, user_keys
from connectors.shared.secrets import REFERENCE, SECRET_KEY

# What a value must be, by pydantic error type.
_KINDS: dict[str, str] = {
    **dict.fromkeys(("int_parsing", "int_type", "int_from_float"), "a whole number"),
    **dict.fromkeys(("float_parsing", "float_type"), "a number"),
    **dict.fromkeys(("bool_parsing", "bool_type"), "true or false"),
    **dict.fromkeys(("string_type", "string_unicode"), "text"),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a mapping"),
    **dict.fromkeys(("list_type", "tuple_type", "set_type"), "a list"),
    **dict.fromkeys(("date_parsing", "date_type", "date_from_datetime_parsing"), "a date"),
}
_BOUNDS: dict[str, str] = {
    "greater_than": "more than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
}
SET_IT = "set it in the connection's config"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a connection's config.

    `key` is the dotted path of the value (`endpoints.users.pagination.type`; empty for the
    config as a whole), `message` says what is wrong and `hint` how to fix it.
    """

    connection: str
    key: str
    message: str
    hint: str

    def __str__(self) -> str:
        return f"connection {self.connection!r}: {self.message}; {self.hint}"


def validate(
    model: type[ConnectorConfig], connection: str, config: Any, *, resolved: bool
) -> tuple[ConnectorConfig | None, list[ConfigProblem]]:
    """The validated settings (None when invalid) and every problem found.

    With `resolved=False` (load time), errors about a value holding a `${NAME}` placeholder
    are dropped: its real value is only known when a run starts.
    """
    if config is None:
        config = {}  # `config:` with nothing after it
    try:
        return model.model_validate(config), []
    except ValidationError as error:
        problems = [
            _problem(model, connection, detail)
            for detail in error.errors(include_url=False)
            if resolved or not _is_placeholder(detail)
        ]
        return None, _unique(problems)


def error_text(problems: list[ConfigProblem]) -> str:
    """One line for a run-time error: every missing key at once, or the first problem."""
    unset = [p.key for p in problems if p.hint == SET_IT]
    if len(unset) > 1 and len(unset) == len(problems):
        return (
            f"connection {problems[0].connection!r}: config keys {', '.join(unset)} are "
            "missing or empty; set them in the connection's config"
        )
    more = len(problems) - 1
    return str(problems[0]) + (f" (and {more} more config problem(s))" if more else "")


def _is_placeholder(detail: ErrorDetails) -> bool:
    if detail["type"] in ("extra_forbidden", "missing"):
        return False
    value = detail.get("input")
    return isinstance(value, str) and REFERENCE.search(value) is not None


def _unique(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    # A value failing every member of a union (text or a mapping, say) is one problem.
    seen: dict[str, ConfigProblem] = {}
    for problem in problems:
        seen.setdefault(problem.key, problem)
    return list(seen.values())


def _problem(model: type[ConnectorConfig], connection: str, detail: ErrorDetails) -> ConfigProblem:
    kind, value = detail["type"], detail.get("input")
    parts, owner = _walk(model, detail["loc"])
    key = ".".join(parts)
    if kind == "extra_forbidden":
        return ConfigProblem(
            connection, key, f"unknown config key {key!r}", _keys_hint(parts[-1], owner)
        )
    if kind == "missing":
        return ConfigProblem(connection, key, f"missing config key {key!r}", SET_IT)
    if kind == "string_too_short" and detail.get("ctx", {}).get("min_length") == 1:
        # Typically a variable exported empty: as good as missing.
        return ConfigProblem(connection, key, f"{key} is empty", SET_IT)
    if kind == "too_short" and detail.get("ctx", {}).get("min_length") == 1:
        return ConfigProblem(connection, key, f"{key} is empty", "add at least one entry")
    if kind == "union_tag_invalid":
        key = f"{key}.type" if key else "type"
        tags = ", ".join(re.findall(r"'([^']*)'", str(detail.get("ctx", {}).get("expected_tags"))))
        tag = detail.get("ctx", {}).get("tag")
        return ConfigProblem(
            connection, key, f"{key} must be one of {tags}, not {tag!r}", "fix the value"
        )
    error = detail.get("ctx", {}).get("error")
    if isinstance(error, ConfigValueError):
        # Not str.format: the message may quote a value holding braces.
        message = error.message.replace("{key}", key or "config")
        return ConfigProblem(connection, key, message, error.hint)
    if not key:
        return ConfigProblem(
            connection, key, f"the config must be {_requirement(detail)}", "fix it"
        )
    shown = "" if SECRET_KEY.search(key) else _shown(value)
    return ConfigProblem(
        connection, key, f"{key} must be {_requirement(detail)}{shown}", "fix the value"
    )


def _requirement(detail: ErrorDetails) -> str:
    kind, ctx = detail["type"], detail.get("ctx", {})
    if kind in _KINDS:
        return _KINDS[kind]
    if kind in _BOUNDS:
        return _BOUNDS[kind].format(**{k: _number(v) for k, v in ctx.items()})
    if kind == "literal_error":
        return "one of " + ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected"))))
    if kind in ("string_too_short", "too_short"):
        least = ctx.get("min_length", 1)
        return "non-empty" if least == 1 else f"at least {least} long"
    return detail["msg"].removeprefix("Input should be ").removeprefix("Value error, ")


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", not a mapping"
    if isinstance(value, list | tuple):
        return ", not a list"
    return f", not {value!r}"


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`did you mean 'x'? ` for the choice closest to a misspelled word; empty if none is."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _keys_hint(unknown: str, owner: type[BaseModel] | None) -> str:
    keys = user_keys(owner) if owner is not None else []
    if not keys:
        return "remove it"
    listed = ", ".join(keys)
    return f"{did_you_mean(unknown, keys) or 'remove it '}(keys: {listed})"


def _walk(
    model: type[BaseModel], loc: tuple[int | str, ...]
) -> tuple[list[str], type[BaseModel] | None]:
    """The dotted-path parts of an error location, and the model owning its last key.

    pydantic's locations also name the union member or tag a value was tried against
    (`pagination.cursor.next_cursor`); walking the model's types tells those from keys.
    """
    parts: list[str] = []
    owner: type[BaseModel] | None = None
    current: Any = model
    for step in loc:
        current, is_tag = _choose_member(current, step)
        if is_tag:
            continue
        if isinstance(step, int):
            if parts:
                parts[-1] += f"[{step}]"
            current = _item_type(current)
            continue
        parts.append(step)
        if _is_model(current):
            owner = current
            field = _field(current, step)
            current = field.annotation if field is not None else Any
        else:
            current = _value_type(current)
    return parts, owner


def _choose_member(annotation: Any, step: int | str) -> tuple[Any, bool]:
    """For a union: the member a location step names (then True: the step is a tag, not a
    key), or else the member that can hold the step. Other types come back unchanged."""
    annotation = _unannotated(annotation)
    if not _is_union(annotation):
        return annotation, False
    members = [m for m in typing.get_args(annotation) if m is not type(None)]
    for member in members:
        if step in (_tag_of(member), _name_of(member)):
            return _unannotated(member), True
    for member in members:
        inner = _unannotated(member)
        if isinstance(step, int) and typing.get_origin(inner) in (list, tuple):
            return inner, False
        if isinstance(step, str) and (_is_model(inner) or typing.get_origin(inner) is dict):
            return inner, False
    return Any, False


def _unannotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _tag_of(member: Any) -> str | None:
    if typing.get_origin(member) is Annotated:
        for extra in typing.get_args(member)[1:]:
            if isinstance(extra, Tag):
                return extra.tag
    return None


def _name_of(member: Any) -> str:
    inner = _unannotated(member)
    return inner.__name__ if isinstance(inner, type) else str(inner)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _value_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    return Any


def _item_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (list, tuple):
        return typing.get_args(annotation)[0]
    return Any
