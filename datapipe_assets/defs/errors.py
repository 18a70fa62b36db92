"""Turn any error inside a step into a one-line, secret-free Dagster failure."""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from connectors.base import ConnectorError
from connectors.shared.secrets import mask
from connectors.shared.transient import is_transient
from datapipe_assets.pipeline.connections import ConnectionSpec, secrets_of
from resources.duckdb_sandbox import first_line


@contextmanager
def step_failures(where: str, connections: Iterable[ConnectionSpec]) -> Iterator[None]:
    """Re-raise errors as dg.Failure named after the step, with every secret masked.

    The original exception is dropped (`from None`): its text or traceback could hold a
    secret. The masked traceback is kept as metadata for debugging. Only a transient error
    (see connectors.shared.transient) may be retried.
    """
    try:
        yield
    except dg.Failure:
        raise
    except Exception as error:
        secrets = secrets_of(connections)
        text = first_line(error) if isinstance(error, duckdb.Error) else str(error)
        message = mask(" ".join(text.split()) or type(error).__name__, secrets)
        if not isinstance(error, ConnectorError):
            message = f"{where}: {message}"
        raise dg.Failure(
            description=message,
            metadata={"traceback": dg.MetadataValue.text(mask(traceback.format_exc(), secrets))},
            allow_retries=is_transient(error),
        ) from None


def failure_message(event: dg.DagsterEvent) -> str:
    """The user-facing message of a STEP_FAILURE event, on one line."""
    data = event.step_failure_data
    error = data.error
    while error is not None and error.cause is not None:
        error = error.cause
    user = data.user_failure_data
    if user is not None and user.description:
        text = user.description
    elif error is not None and error.cls_name == "DagsterExecutionInterruptedError":
        # Dagster's own words are its class name alone.
        text = "interrupted: the run was stopped before this step finished"
    else:
        text = error.message
    return " ".join(text.split())
