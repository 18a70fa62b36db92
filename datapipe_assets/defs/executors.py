"""Dagster's executor for a pipeline's jobs, from its executor spec."""

from __future__ import annotations

from typing import Any

import dagster as dg

from datapipe_assets.pipeline.executor import environment_name
from datapipe_assets.pipeline.spec import ExecutorSpec


def job_executor(spec: ExecutorSpec) -> dg.ExecutorDefinition:
    """The executor definition a pipeline's jobs run with."""
    if spec.type == "multiprocess":
        if spec.max_concurrent is None:
            return dg.multiprocess_executor
        return dg.multiprocess_executor.configured({"max_concurrent": spec.max_concurrent})
    if spec.type == "celery":
        # Imported only here: Celery and its Redis client are not needed by other pipelines
        # and would slow every start of the code location.
        from dagster_celery import celery_executor

        broker = _string_source(str(spec.broker))
        backend = _string_source(spec.backend) if spec.backend is not None else broker
        return celery_executor.configured({"broker": broker, "backend": backend})
    return dg.in_process_executor


def _string_source(value: str) -> Any:
    """`${NAME}` as Dagster's `{env: NAME}`: the URL (and any password in it) is read where the
    run starts, and never appears in the job's config in the UI."""
    name = environment_name(value)
    return {"env": name} if name is not None else value
