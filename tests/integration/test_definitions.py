"""The code location: one job per pipeline, schedules, and broken files shown, not fatal."""

from __future__ import annotations

import dagster as dg

from datapipe_assets.defs.factory import build_definitions
from datapipe_assets.pipeline.project import PROJECT_ROOT, load_project
from tests.support.project_files import write_project


def test_shipped_pipelines_build_jobs_schedules_and_asset_graph():
    project = load_project(PROJECT_ROOT / "pipelines")
    definitions = build_definitions(project)
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    revenue = dg.AssetKey(["acme", "orders_revenue", "load", "revenue_by_customer"])
    assert graph.get(revenue).parent_keys == {
        dg.AssetKey(["acme", "orders_revenue", "by_customer"])
    }
    paid = graph.get(dg.AssetKey(["acme", "orders_revenue", "paid"]))
    assert paid.parent_keys == {dg.AssetKey(["acme", "orders_revenue", "raw", "orders"])}
    assert paid.kinds == {"duckdb"}
    assert paid.group_name == "acme__orders_revenue"
    assert paid.description == "Keeps rows where `status` eq 'paid'."
    schedule = definitions.resolve_schedule_def("acme__orders_revenue__schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 0 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    refresh = definitions.resolve_job_def("acme__orders_revenue__full_refresh")
    # Every run of the pipeline carries its timeout (the default, 1 h) for run monitoring, and
    # its file's version. Names outside the org `default` start with the org.
    version = project.get("orders_revenue").version
    tags = {
        "datapipe/pipeline": "acme__orders_revenue",
        "datapipe/org": "acme",
        "datapipe/pipeline_version": version,
        "dagster/max_runtime": "3600",
    }
    assert refresh.tags == {"datapipe/full_refresh": "true", **tags}
    assert definitions.resolve_job_def("acme__orders_revenue").tags == tags


def test_a_broken_file_is_shown_in_the_ui_and_the_others_still_load(tmp_path):
    directory = write_project(
        tmp_path,
        {"warehouse": {"connector": "duckdb", "config": {"path": "w.duckdb"}},
         "files": {"connector": "csv", "config": {"path": "orders.csv"}}},
        {
            "good.yaml": {"name": "good", "source": {"connection": "files", "tables": ["orders"]},
                          "destination": {"connection": "warehouse"}},
            "bad.yaml": {"name": "bad", "source": {"connection": "nope", "tables": ["orders"]},
                         "destination": {"connection": "warehouse"}, "schedule": "sometimes"},
        },
    )  # fmt: skip
    (directory / "orders.csv").write_text("id\n1\n")
    definitions = build_definitions(load_project(directory))
    dg.Definitions.validate_loadable(definitions)
    keys = {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "default/good/raw/orders",
        "default/good/load/orders",
        "datapipe/invalid_pipelines/bad_yaml",
    }
    invalid = definitions.resolve_assets_def(
        dg.AssetKey(["datapipe", "invalid_pipelines", "bad_yaml"])
    )
    description = invalid.specs_by_key[invalid.key].description
    assert description.splitlines() == [
        f"**{directory / 'bad.yaml'} is invalid and was not loaded.**",
        "",
        "- `source.connection`: unknown connection 'nope'; add it to connections.yaml or use "
        "one of: files, warehouse",
        "- `schedule`: 'sometimes' is not a schedule; use hourly, daily or a 5-field cron "
        "string such as '30 6 * * 1-5'",
    ]
