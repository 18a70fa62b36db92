"""`datapipe run` and check results: failing rows, skipped loads and the exit code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from datapipe_assets.cli.main import main
from tests.support.project_files import PAID_ONLY_TRANSFORM, cli_folder, write_project

ORDERS = (
    "id,customer_id,status,amount_cents\n"
    "1,10,paid,1000\n"
    "2,,paid,2550\n"
    "3,20,pending,999\n"
    "4,20,paid,-500\n"
)
HAS_CUSTOMER = {"asset": "paid", "type": "not_null", "column": "customer_id",
                "name": "has_customer"}  # fmt: skip
POSITIVE = {"asset": "paid", "type": "range", "column": "amount_cents", "min": 0}
NO_CUSTOMER_ROW = [
    "           | id | customer_id | status | amount_cents |",
    "           |---|---|---|---|",
    "           | 2 | NULL | paid | 2550 |",
]
NEGATIVE_ROW = [
    "           | id | customer_id | status | amount_cents |",
    "           |---|---|---|---|",
    "           | 4 | 20 | paid | -500 |",
]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Writes pipeline `shop` (CSV -> paid orders -> DuckDB) with the checks it is given."""
    directory = cli_folder(tmp_path, monkeypatch)

    def write(checks: list[dict[str, Any]]) -> Path:
        (directory / "data").mkdir(parents=True, exist_ok=True)
        (directory / "data" / "orders.csv").write_text(ORDERS)
        return write_project(
            directory,
            {"orders_csv": {"connector": "csv", "config": {"path": "data/orders.csv"}},
             "warehouse": {"connector": "duckdb", "config": {"path": "warehouse.duckdb"}}},
            {"shop.yaml": {"name": "shop", "org": "acme", "checks": checks,
                           "source": {"connection": "orders_csv", "tables": ["orders"]},
                           "transform": PAID_ONLY_TRANSFORM,
                           "destination": {"connection": "warehouse",
                                           "target_table": "paid_orders"}}},
        )  # fmt: skip

    return write


def _output(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The command's standard output, with the run id (a fresh UUID) as RUN."""
    text = capsys.readouterr().out
    return re.sub(r"run [0-9a-f-]{36}", "run RUN", text).splitlines()


def test_failed_error_check_fails_the_command_and_shows_its_rows(shop, capsys):
    shop([HAS_CUSTOMER, {**POSITIVE, "severity": "warn"}])
    assert main(["run", "shop"]) == 1
    lines = _output(capsys)
    assert [line for line in lines if not line.startswith("  done")] == [
        "running shop ...",
        "  check  acme/shop/paid: has_customer FAILED (ERROR): 1 of 3 rows",
        *NO_CUSTOMER_ROW,
        "  check  acme/shop/paid: range_amount_cents FAILED (WARN): 1 of 3 rows",
        *NEGATIVE_ROW,
        # The checks do not block: the data was loaded, and the command still fails.
        "shop: run RUN succeeded, but checks of severity error failed: "
        + "acme/shop/paid:has_customer",
    ]
    assert [line.split()[:2] for line in lines if line.startswith("  done")] == [
        ["done", "acme/shop/raw/orders"],
        ["done", "acme/shop/paid"],
        ["done", "acme/shop/load/paid_orders"],
    ]


def test_blocking_check_says_which_load_it_skipped(shop, capsys):
    shop([{**HAS_CUSTOMER, "blocking": True}, POSITIVE])
    assert main(["run", "shop"]) == 1
    lines = _output(capsys)
    assert [line.split()[:2] for line in lines if line.startswith("  done")] == [
        ["done", "acme/shop/raw/orders"],
        ["done", "acme/shop/paid"],
    ]
    assert [line for line in lines if not line.startswith("  done")] == [
        "running shop ...",
        "  check  acme/shop/paid: has_customer FAILED (ERROR, blocking): 1 of 3 rows",
        *NO_CUSTOMER_ROW,
        "  check  acme/shop/paid: range_amount_cents FAILED (ERROR): 1 of 3 rows",
        *NEGATIVE_ROW,
        "shop: load of paid_orders skipped: blocking check has_customer on acme/shop/paid "
        "failed (1 of 3 rows)",
        "shop: run RUN FAILED",
    ]


def test_failed_warn_checks_and_passed_checks_leave_the_command_successful(shop, capsys):
    shop([{**HAS_CUSTOMER, "severity": "warn"}, {**POSITIVE, "min": -1000, "blocking": True},
          {"asset": "out", "type": "row_count", "min": 5, "severity": "warn"}])  # fmt: skip
    assert main(["run", "shop"]) == 0
    lines = _output(capsys)
    assert [line for line in lines if not line.startswith("  done")] == [
        "running shop ...",
        "  check  acme/shop/paid: has_customer FAILED (WARN): 1 of 3 rows",
        *NO_CUSTOMER_ROW,
        "  check  acme/shop/paid: range_amount_cents passed",
        "  check  acme/shop/load/paid_orders: row_count FAILED (WARN): rows_checked 3",
        "shop: run RUN succeeded",
    ]
