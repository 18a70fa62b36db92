"""Retrying a step that failed for a transient reason, after the pipeline's own delays.

Extract, transform and load steps run their body inside `transient_retries`. A failure that
step_failures marked retryable (a transient one: see connectors.shared.transient) becomes
Dagster's RetryRequested, waiting the delay the pipeline's `retries` gives for that retry;
any other failure fails the step at once. Each failed attempt is logged with its reason,
and Dagster's STEP_UP_FOR_RETRY event carries the failure as its cause.

Why RetryRequested raised from the step, not a declarative dg.RetryPolicy: a policy has one
delay and a backoff factor, so it cannot wait 5, 30 and then 120 seconds; and it also retries
a step interrupted because its run is being stopped, so a run terminated for its timeout
would carry on with the step's next attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from datapipe_assets.pipeline.spec import RetriesSpec


@contextmanager
def transient_retries(context: dg.AssetExecutionContext, retries: RetriesSpec) -> Iterator[None]:
    """Retry the step on a retryable dg.Failure, while the pipeline allows another try."""
    try:
        yield
    except dg.Failure as failure:
        done = context.retry_number  # the attempts before this one
        attempt, attempts = done + 1, retries.max_retries + 1
        reason = failure.description or "failed"
        if not failure.allow_retries:
            context.log.error(
                f"attempt {attempt} of {attempts} failed, not retried (not a transient "
                f"error): {reason}"
            )
            raise
        if done >= retries.max_retries:
            context.log.error(f"attempt {attempt} of {attempts} failed, no retry left: {reason}")
            raise
        delay = retries.delay(done)
        context.log.warning(
            f"attempt {attempt} of {attempts} failed, attempt {attempt + 1} in {delay:g} s: "
            f"{reason}"
        )
        raise dg.RetryRequested(max_retries=retries.max_retries, seconds_to_wait=delay) from failure
