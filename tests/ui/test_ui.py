"""The Dagster UI after a real run: headless Chromium (Debian's) driven by Playwright.

The pipeline runs through the `datapipe` CLI into a temp DAGSTER_HOME, the webserver serves
that instance, and the browser checks that the assets, their checks and the run appear.
Screenshots are kept in tests/artifacts/ui_*.png (gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Browser, BrowserType, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.integration.test_end_to_end import ORDERS_CSV
from tests.support.project_files import SIX_NODE_TRANSFORM, write_project
from tests.support.webserver import dagster_webserver

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
CHECKS = [
    {"asset": "paid", "type": "not_null", "column": "customer_id", "blocking": True},
    {"asset": "out", "type": "reconcile"},
]
TIMEOUT_MS = 20_000


def _project(directory: Path) -> Path:
    """The orders pipeline (CSV -> six transforms -> DuckDB) with two checks."""
    (directory / "data").mkdir(parents=True)
    (directory / "data" / "orders.csv").write_text(ORDERS_CSV)
    return write_project(
        directory,
        {"orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
         "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
        {"orders_revenue.yaml": {
            "name": "orders_revenue", "org": "acme", "description": "Paid revenue per customer",
            "source": {"connection": "orders_csv", "tables": ["orders"]},
            "transform": SIX_NODE_TRANSFORM,
            "destination": {"connection": "warehouse", "target_table": "revenue_by_customer",
                            "load_mode": "replace"},
            "checks": CHECKS,
        }},
    )  # fmt: skip


def _environment(tmp_path: Path, project: Path) -> dict[str, str]:
    """A temp Dagster instance (the repo's dagster.yaml) the CLI and the webserver share."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return {**os.environ, "DAGSTER_HOME": str(home), "DATAPIPE_PIPELINES_DIR": str(project),
            "DATAPIPE_STAGING_URL": str(tmp_path / "staging")}  # fmt: skip


def _run_pipeline(env: dict[str, str], name: str) -> str:
    """`datapipe run NAME`; returns the run id it prints."""
    command = [str(Path(sys.executable).parent / "datapipe"), "run", name]
    completed = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    match = re.search(rf"^{name}: run ([0-9a-f-]{{36}}) succeeded$", completed.stdout, re.M)
    assert match, completed.stdout
    return match.group(1)


def _launch(chromium: BrowserType) -> Browser:
    """Debian's chromium, never a downloaded one; a missing binary names the apt package."""
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`"
    )
    return chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def _dismiss_welcome(page: Page) -> None:
    """Click Skip on the "Join the Dagster community" dialog when it shows (first visit)."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=5_000)
    except PlaywrightTimeout:
        return
    skip.click()
    expect(skip).to_be_hidden()


def _screenshot(page: Page, name: str) -> None:
    """Keep what the browser showed as tests/artifacts/ui_NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui_{name}.png"), full_page=True)


def test_ui_shows_the_assets_checks_and_run_of_a_cli_run(tmp_path):
    """After `datapipe run`, the UI lists the asset, its checks and the run by its id."""
    project = _project(tmp_path / "pipelines")
    env = _environment(tmp_path, project)
    run_id = _run_pipeline(env, "orders_revenue")
    assets = "/assets/acme/orders_revenue"

    with (
        dagster_webserver(env, "datapipe_assets.definitions", tmp_path / "webserver.log") as url,
        sync_playwright() as playwright,
    ):
        browser = _launch(playwright.chromium)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)

            page.goto(f"{url}{assets}/paid")
            _dismiss_welcome(page)
            expect(page.get_by_text("Keeps rows where status eq 'paid'.")).to_be_visible()
            expect(page.get_by_text("paid", exact=True).first).to_be_visible()  # breadcrumb
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            expect(page.get_by_text("Latest check results")).to_be_visible()
            expect(page.get_by_role("button", name="Materialize")).to_be_visible()
            _screenshot(page, "asset_paid")

            page.get_by_role("tab", name="Checks").click()
            expect(page).to_have_url(re.compile(r"view=checks"))
            expect(page.get_by_text("Checks (1)")).to_be_visible()
            expect(page.get_by_text("not_null_customer_id").first).to_be_visible()
            expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
            expect(page.get_by_text("Passed")).to_be_visible()
            _screenshot(page, "checks_paid")

            page.goto(f"{url}{assets}/load/revenue_by_customer?view=checks")
            expect(page.get_by_text("reconcile").first).to_be_visible()
            _screenshot(page, "checks_load")

            page.goto(f"{url}/runs")
            # The UI shows a run by the first 8 characters of its id, linking to the full id.
            run_link = page.get_by_role("link", name=run_id[:8]).first
            expect(run_link).to_be_visible()
            expect(run_link).to_have_text(run_id[:8])
            expect(run_link).to_have_attribute("href", f"/runs/{run_id}")
            expect(page.get_by_text("datapipe/pipeline: acme__orders_revenue")).to_be_visible()
            expect(page.get_by_text("Success", exact=True)).to_be_visible()
            _screenshot(page, "runs")
        finally:
            browser.close()
