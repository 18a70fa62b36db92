"""orgs.yaml: plans resolve to row limits, and a bad file is reported line by line."""

from __future__ import annotations

from pathlib import Path

from datapipe_assets.pipeline.orgs import OrgLimits
from datapipe_assets.pipeline.project import load_project


def _project(tmp_path: Path, orgs_yaml: str):
    (tmp_path / "orgs.yaml").write_text(orgs_yaml)
    return load_project(tmp_path)


def test_plans_give_the_seed_row_limits_and_explicit_limits_override_them(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        "orgs:\n"
        "  small: {plan: free}\n"
        "  shop: {plan: pro, max_rows_per_month: 2000000}\n"
        "  big: {plan: team}\n"
        "  corp: {plan: enterprise}\n"
        "  custom: {plan: free, max_rows_per_run: 25}\n"
        "  bare: {max_rows_per_month: 100}\n",
    )
    assert project.errors == {}
    orgs = project.orgs
    assert orgs.names() == ["bare", "big", "corp", "custom", "shop", "small"]
    assert orgs.limits("small") == OrgLimits("small", "free", 10_000, None)
    assert orgs.limits("shop") == OrgLimits("shop", "pro", 500_000, 2_000_000)
    assert orgs.limits("big") == OrgLimits("big", "team", 5_000_000, None)
    assert orgs.limits("corp") == OrgLimits("corp", "enterprise", None, None)
    assert orgs.limits("custom") == OrgLimits("custom", "free", 25, None)
    assert orgs.limits("bare") == OrgLimits("bare", None, None, 100)
    assert orgs.limits("small").run_limit_source() == "plan 'free' of org 'small'"
    assert orgs.limits("custom").run_limit_source() == "org 'custom'"
    assert orgs.knows("small") and not orgs.knows("other")


def test_without_orgs_yaml_every_org_is_known_and_unlimited(tmp_path: Path) -> None:
    project = load_project(tmp_path)
    assert project.errors == {}
    assert project.orgs.knows("default") and project.orgs.knows("anything")
    assert project.orgs.limits("default") == OrgLimits("default", None, None, None)


def test_a_bad_orgs_file_is_reported_one_line_per_problem(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        "orgs:\n  beta: {plan: gold, max_rows_per_run: 0}\n  gamma: {meter: rows_synced}\n",
    )
    orgs_file = str(tmp_path / "orgs.yaml")
    assert [str(error) for error in project.errors[orgs_file]] == [
        f"{orgs_file}: orgs.beta.plan: Input should be 'free', 'pro', 'team' or 'enterprise'; "
        "use one of the values listed",
        f"{orgs_file}: orgs.beta.max_rows_per_run: Input should be greater than or equal to 1; "
        "fix the value",
        f"{orgs_file}: orgs.gamma: stripe_customer_id and meter go together: set both to "
        "report this org's rows to Stripe, or neither; fix the value",
    ]
    # A file that doesn't validate knows no org, so pipelines naming one are held back.
    assert project.orgs.declared and not project.orgs.knows("beta")


def test_a_meter_needs_the_billing_account(tmp_path: Path) -> None:
    project = _project(tmp_path, "orgs:\n  acme: {stripe_customer_id: cus_1, meter: rows}\n")
    orgs_file = str(tmp_path / "orgs.yaml")
    assert [str(error) for error in project.errors[orgs_file]] == [
        f"{orgs_file}: org 'acme' has a Stripe meter but the file has no billing block; "
        "add billing: {stripe_api_key: ...}; fix the value",
    ]
