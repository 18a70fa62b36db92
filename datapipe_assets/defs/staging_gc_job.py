"""The daily `datapipe_staging_gc` job and its schedule, running by default.

No `from __future__ import annotations` here: Dagster reads the op's context annotation.
"""

import dagster as dg

from datapipe_assets.defs.staging_gc import StagingGcError, gc_retention, staging_gc

GC_JOB = "datapipe_staging_gc"
# Daily, at an hour when few schedules run.
GC_CRON = "30 3 * * *"


@dg.op(
    name="remove_expired_staged_runs",
    required_resource_keys={"staging"},
    description="Removes staged runs older than DATAPIPE_STAGING_RETENTION (default 14d) "
    "that no run in progress and no latest materialization points at.",
)
def remove_expired_staged_runs(context: dg.OpExecutionContext) -> None:
    try:
        retention = gc_retention()
        for line in staging_gc(
            context.instance, context.resources.staging.base_url, retention, False
        ):
            context.log.info(line)
    except StagingGcError as error:
        raise dg.Failure(str(error), allow_retries=False) from None


@dg.job(
    name=GC_JOB,
    description="Removes expired staged runs, as `datapipe gc` does.",
)
def staging_gc_job() -> None:
    remove_expired_staged_runs()


# On by default: without it staging grows with every run.
staging_gc_schedule = dg.ScheduleDefinition(
    name=f"{GC_JOB}__schedule",
    job=staging_gc_job,
    cron_schedule=GC_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily staging cleanup (DATAPIPE_STAGING_RETENTION, default 14d).",
)
