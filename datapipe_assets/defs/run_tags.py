"""The tags every run of a pipeline carries, however it is started."""

from __future__ import annotations

import dagster as dg

from datapipe_assets.pipeline.keys import ORG_TAG, PIPELINE_TAG, dagster_name
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.spec import timeout_seconds

# The content version of the pipeline file the run was started from (`datapipe status`).
VERSION_TAG = "datapipe/pipeline_version"


def pipeline_run_tags(loaded: LoadedPipeline) -> dict[str, str]:
    """The pipeline's Dagster name (run queue limits, `datapipe status` and alerts go by
    it), its org, its file's version, and its timeout, which Dagster's run monitoring stops
    a run after (`dagster/max_runtime`)."""
    return {
        PIPELINE_TAG: dagster_name(loaded.pipeline),
        ORG_TAG: loaded.pipeline.org,
        VERSION_TAG: loaded.version,
        dg.MAX_RUNTIME_SECONDS_TAG: f"{timeout_seconds(loaded.pipeline.timeout):g}",
    }
