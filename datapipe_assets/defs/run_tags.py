"""The tags every run of a pipeline carries, however it is started."""

from __future__ import annotations

import dagster as dg

from datapipe_assets.pipeline.keys import PIPELINE_TAG
from datapipe_assets.pipeline.spec import Pipeline, timeout_seconds


def pipeline_run_tags(pipeline: Pipeline) -> dict[str, str]:
    """The pipeline's name (run queue limits, `datapipe status` and alerts go by it) and its
    timeout, which Dagster's run monitoring stops a run after (`dagster/max_runtime`)."""
    return {
        PIPELINE_TAG: pipeline.name,
        dg.MAX_RUNTIME_SECONDS_TAG: f"{timeout_seconds(pipeline.timeout):g}",
    }
