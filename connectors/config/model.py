"""The base of every connector's config model, and the small types the models share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from connectors.shared.type_names import TYPE_NAMES, type_kind


class ConfigValueError(ValueError):
    """A config mistake found by a model's own validator, as a message and a fix.

    `message` may hold `{key}`, replaced by the dotted path of the value it is about, which
    only the caller knows (a validator sees the value, not where it sits in the config).
    """

    def __init__(self, message: str, hint: str = "fix the value") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigModel(BaseModel):
    """A config mapping, or a part of one: unknown keys are errors, null means "not set".

    Values are read leniently, as they arrive from YAML or from `${ENV}` placeholders: "5"
    is a number, "false" a boolean and 2024 (an unquoted YAML number) a text value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _unset_nulls(cls, data: Any) -> Any:
        # `key:` with nothing after it (YAML null) keeps the default, as if absent.
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value is not None}
        return data


class ConnectorConfig(ConfigModel):
    """A connection's whole config."""

    # Added when the connection is resolved for a run, not written by users: the folder
    # of the file that declared the connection, which relative paths resolve against.
    base_dir: str | None = Field(
        None,
        description="Folder that relative paths resolve against (set by DataPipe).",
        json_schema_extra={"internal": True},
    )

    # Shown after the keys in the README's connector table: tables offered, sync notes.
    notes: ClassVar[str] = ""


# Keys every connector of a kind shares: listed after the connector's own keys.
SHARED_KEYS = (
    "base_url",
    "requests_per_second",
    "endpoint_url",
    "region",
    "aws_access_key_id",
    "aws_secret_access_key",
)


def user_keys(model: type[BaseModel]) -> list[str]:
    """The keys a user may write in a model's mapping: its own first, then optional shared
    ones (a base_url that a connector requires stays in its place)."""
    fields = [
        (field.alias or name, field)
        for name, field in model.model_fields.items()
        if not (
            isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("internal")
        )
    ]
    shared = [k for k, f in fields if k in SHARED_KEYS and not f.is_required()]
    return [k for k, _ in fields if k not in shared] + shared


def option(
    default: Any = ..., description: str = "", *, shown: str | None = None, **kw: Any
) -> Any:
    """A config key: its default (`...` = required), a one-line description and, where the
    default is computed at run time, the text the docs show for it."""
    extra = {"shown_default": shown} if shown else None
    return Field(default, description=description, json_schema_extra=extra, **kw)


def _column_type(name: str) -> str:
    try:
        type_kind(name)
    except ValueError:
        raise ConfigValueError(
            f"{{key}}: unknown column type {name!r}",
            f"use one of {', '.join(TYPE_NAMES)} or DECIMAL(p,s)",
        ) from None
    return name


def _date_text(value: Any) -> Any:
    # An unquoted YAML date arrives as a date; the connectors want its ISO text.
    return value.isoformat() if isinstance(value, dt.date) else value


# A column type name such as BIGINT, VARCHAR or DECIMAL(12,2).
ColumnType = Annotated[str, AfterValidator(_column_type)]
# Text that must not be empty (names, hosts, identifiers, credentials).
Text = Annotated[str, Field(min_length=1)]
# A date as YYYY-MM-DD text (an unquoted YAML date too).
DateText = Annotated[str, BeforeValidator(_date_text)]
# Requests a second that one connection may send.
Rate = Annotated[float, Field(gt=0)]
