"""Which executor runs a pipeline's steps, and whether the deployment can support it.

A pipeline file's `executor:` wins; without one the deployment chooses with DATAPIPE_EXECUTOR
(in_process, multiprocess or celery); without that, every step runs in the run's process.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from datapipe_assets.pipeline.problems import Problem
from datapipe_assets.pipeline.spec import EXECUTOR_TYPES, ExecutorSpec, Pipeline

EXECUTOR_VARIABLE = "DATAPIPE_EXECUTOR"
BROKER_VARIABLE = "DATAPIPE_CELERY_BROKER"
STAGING_VARIABLE = "DATAPIPE_STAGING_URL"
# Steps share one process: DuckDB already uses every core for a transform.
DEFAULT_EXECUTOR = ExecutorSpec(type="in_process")
# The deployment's Celery executor reads its broker from the environment, never from a file.
DEPLOYMENT_CELERY = ExecutorSpec(type="celery", broker=f"${{{BROKER_VARIABLE}}}")


def pipeline_executor(pipeline: Pipeline, environ: Mapping[str, str]) -> ExecutorSpec:
    """The executor a pipeline's runs use: its file's, else the deployment's."""
    return pipeline.executor or deployment_executor(environ)


def deployment_executor(environ: Mapping[str, str]) -> ExecutorSpec:
    """The deployment's executor; an unknown DATAPIPE_EXECUTOR (which validation reports
    with each pipeline that would use it) leaves the default."""
    chosen = environ.get(EXECUTOR_VARIABLE, "").strip()
    if chosen == "celery":
        return DEPLOYMENT_CELERY
    if chosen == "multiprocess":
        return ExecutorSpec(type="multiprocess")
    return DEFAULT_EXECUTOR


def environment_name(value: str) -> str | None:
    """`NAME` for a value written `${NAME}`, else None."""
    if value.startswith("${") and value.endswith("}") and ":" not in value:
        return value[2:-1]
    return None


def executor_problems(pipeline: Pipeline, environ: Mapping[str, str]) -> list[Problem]:
    """What stops the pipeline's executor from working in this deployment."""
    chosen = environ.get(EXECUTOR_VARIABLE, "").strip()
    if pipeline.executor is None and chosen and chosen not in EXECUTOR_TYPES:
        return [
            Problem(
                "executor",
                f"{EXECUTOR_VARIABLE} is {chosen!r}, which is not an executor",
                f"set {EXECUTOR_VARIABLE} to {', '.join(EXECUTOR_TYPES[:-1])} or "
                f"{EXECUTOR_TYPES[-1]}, or give the pipeline its own executor",
            )
        ]
    spec = pipeline_executor(pipeline, environ)
    problems = _misplaced_settings(spec)
    if spec.type != "celery":
        return problems
    chooser = (
        "the celery executor"
        if pipeline.executor is not None
        else f"the deployment's celery executor ({EXECUTOR_VARIABLE}=celery)"
    )
    if spec.broker is None:
        problems.append(
            Problem(
                "executor.broker",
                "the celery executor needs a broker",
                f"give broker: ${{{BROKER_VARIABLE}}} and set it to the Redis URL the workers "
                "listen on, e.g. redis://redis:6379/0",
            )
        )
    problems += _url_problems(spec)
    if not environ.get(STAGING_VARIABLE, "").startswith("s3://"):
        problems.append(
            Problem(
                "executor",
                f"{chooser} needs staging on S3, and {STAGING_VARIABLE} is "
                "a local folder: each step runs on a Celery worker, possibly on another "
                "machine, and reads the data the steps before it staged",
                f"set {STAGING_VARIABLE} to an s3:// URL every worker can reach, or use the "
                "multiprocess executor",
            )
        )
    return problems


def _misplaced_settings(spec: ExecutorSpec) -> list[Problem]:
    """Settings of one executor type given to another."""
    problems = []
    if spec.max_concurrent is not None and spec.type != "multiprocess":
        problems.append(
            Problem(
                "executor.max_concurrent",
                f"max_concurrent applies to the multiprocess executor, not {spec.type}",
                "remove it, or use type: multiprocess",
            )
        )
    for key in ("broker", "backend"):
        if getattr(spec, key) is not None and spec.type != "celery":
            problems.append(
                Problem(
                    f"executor.{key}",
                    f"{key} applies to the celery executor, not {spec.type}",
                    "remove it, or use type: celery",
                )
            )
    return problems


def _url_problems(spec: ExecutorSpec) -> list[Problem]:
    """The broker and backend are given whole, as `${NAME}` or a URL without a password."""
    problems = []
    for key in ("broker", "backend"):
        url = getattr(spec, key)
        if url is None or environment_name(url) is not None:
            continue
        if "${" in url:
            # Dagster, not DataPipe, reads it where the run starts: from the environment only.
            problems.append(
                Problem(
                    f"executor.{key}",
                    f"the {key} is read whole from one environment variable: a ${{secret:NAME}}, "
                    "or a ${NAME} within the URL, is not filled in",
                    f"write {key}: ${{{BROKER_VARIABLE}}} and set that variable to the whole URL",
                )
            )
        elif urlsplit(url).password:
            # A password written into the file would show wherever the file does.
            problems.append(
                Problem(
                    f"executor.{key}",
                    f"the {key} URL holds a password",
                    f"read the URL from the environment instead, e.g. "
                    f"{key}: ${{{BROKER_VARIABLE}}}",
                )
            )
    return problems
