"""The code location Dagster loads: every valid pipeline file, as assets."""

import dagster as dg

from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import load_project


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_project())
