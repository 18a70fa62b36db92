"""The `csv` source's config: one table from `path`, one per file, or named `tables`."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator, model_validator

from connectors.config.model import (
    ColumnType,
    ConfigModel,
    ConfigValueError,
    ConnectorConfig,
    Text,
    option,
)

# Parse blocks, in megabytes: a row (of one line or several) must fit in one.
DEFAULT_BLOCK_MB, MAX_BLOCK_MB = 4, 1024

# What a table name must look like: it becomes part of asset keys and SQL identifiers.
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _table_entry(value: Any) -> Any:
    # `orders: data/orders.csv` is shorthand for `orders: {path: data/orders.csv}`.
    return {"path": value} if isinstance(value, str) else value


class CsvTableConfig(ConfigModel):
    """One table of a `tables:` mapping."""

    path: Text = option(..., "A file, a glob (one table of all its files) or an s3:// URL.")
    columns: dict[str, ColumnType] = option({}, "Column name -> type, overriding sniffing.")


class CsvConfig(ConnectorConfig):
    """CSV files, local or on S3."""

    notes = "`path` or `tables`; an unquoted empty field (or one in `null_values`) is NULL"

    path: Text | None = option(
        None, "A file, a glob (one table of all its files) or s3://bucket/key-or-glob."
    )
    tables: dict[str, Annotated[CsvTableConfig, BeforeValidator(_table_entry)]] | None = option(
        None, "Table name -> path (or {path, columns}): several tables from one connection."
    )
    table: Text | None = option(None, "Name of the one table `path` gives.", shown="the file name")
    table_per_file: bool = option(
        False, "With a glob `path`: one table per file, named by its stem."
    )
    delimiter: str = option(",", "Field separator, one character.")
    header: bool = option(True, "First line names the columns (else column_1, column_2, ...).")
    columns: dict[str, ColumnType] = option(
        {}, "Column name -> type (BIGINT, DOUBLE, DATE, DECIMAL(p,s), ...), overriding sniffing."
    )
    block_size_mb: int = option(
        DEFAULT_BLOCK_MB, "Size of the blocks files are parsed in; a row must fit in one."
    )
    encoding: str = option(
        "utf-8", "The files' text encoding, e.g. latin-1 or cp1252 (read into UTF-8)."
    )
    null_values: list[str] = option(
        [""], "Unquoted values read as NULL in every column; a quoted one stays text."
    )
    endpoint_url: str | None = option(
        None, "S3 endpoint for s3:// paths.", shown="AWS_ENDPOINT_URL"
    )
    region: str | None = option(None, "S3 region for s3:// paths.", shown="AWS_REGION")
    aws_access_key_id: str | None = option(
        None, "S3 access key for s3:// paths.", shown="AWS_ACCESS_KEY_ID"
    )
    aws_secret_access_key: str | None = option(
        None, "S3 secret key (use ${ENV_VAR}).", shown="AWS_SECRET_ACCESS_KEY"
    )

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ConfigValueError(
                f"{{key}} {value!r} must be a single character", "use one such as , ; | or a tab"
            )
        return value

    @field_validator("block_size_mb")
    @classmethod
    def _block_size(cls, value: int) -> int:
        if not 1 <= value <= MAX_BLOCK_MB:
            raise ConfigValueError(
                f"{{key}} {value} is out of range", f"use 1 to {MAX_BLOCK_MB} (megabytes)"
            )
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ConfigValueError(
                f"{{key}} {value!r} is not a known text encoding",
                "use a name such as utf-8, latin-1 or cp1252",
            ) from None
        return value

    @field_validator("table")
    @classmethod
    def _valid_table(cls, value: str | None) -> str | None:
        if value is not None and not TABLE_NAME.fullmatch(value):
            raise ConfigValueError(f"{{key}} {value!r} is not a valid table name", NAME_RULE)
        return value

    @field_validator("tables")
    @classmethod
    def _valid_tables(cls, value: Mapping[str, CsvTableConfig] | None) -> Any:
        if value is not None and not value:
            raise ConfigValueError("{key} is empty", "map at least one table name to a path")
        for name in value or {}:
            if not TABLE_NAME.fullmatch(name):
                raise ConfigValueError(f"{{key}}: {name!r} is not a valid table name", NAME_RULE)
        return value

    @model_validator(mode="after")
    def _one_layout(self) -> CsvConfig:
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ConfigValueError(
                "aws_access_key_id and aws_secret_access_key go together",
                "set both, or neither to use the AWS environment variables",
            )
        if self.tables is not None and self.path is not None:
            raise ConfigValueError(
                "set either path or tables, not both",
                "use tables: {name: path, ...} alone for several tables",
            )
        if self.tables is None and self.path is None:
            raise ConfigValueError(
                "the config needs path or tables",
                "set path (a file, a glob or an s3:// URL) or tables: {name: path, ...}",
            )
        if self.tables is not None and (self.table is not None or self.table_per_file):
            raise ConfigValueError(
                f"{'table' if self.table is not None else 'table_per_file'} cannot be used "
                "with tables",
                "tables already names each table",
            )
        if self.table is not None and self.table_per_file:
            raise ConfigValueError(
                "table cannot be used with table_per_file",
                "table_per_file names each table after its file; remove table",
            )
        return self


NAME_RULE = "use letters, digits and _, not starting with a digit"
