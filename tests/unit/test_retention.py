"""DATAPIPE_STAGING_RETENTION: a duration of at least an hour; 14 days when unset."""

from __future__ import annotations

import pytest

from resources.retention import Retention, RetentionError, staging_retention

HOUR = 60 * 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, Retention("14d", 14 * 24 * HOUR)),
        ("", Retention("14d", 14 * 24 * HOUR)),
        ("1h", Retention("1h", HOUR)),
        ("36h", Retention("36h", 36 * HOUR)),
        (" 14d ", Retention("14d", 14 * 24 * HOUR)),
        ("2w", Retention("2w", 14 * 24 * HOUR)),
        ("90m", Retention("90m", 90 * 60)),
        ("1.5d", Retention("1.5d", 36 * HOUR)),
    ],
)
def test_accepted_forms(text: str | None, expected: Retention) -> None:
    environ = {} if text is None else {"DATAPIPE_STAGING_RETENTION": text}
    assert staging_retention(environ) == expected


@pytest.mark.parametrize("text", ["0d", "0h", "14", "59m", "14 days", "-1d", "30m", "2W", "d"])
def test_anything_else_is_a_one_line_error(text: str) -> None:
    with pytest.raises(RetentionError) as error:
        staging_retention({"DATAPIPE_STAGING_RETENTION": text})
    assert str(error.value) == (
        f"DATAPIPE_STAGING_RETENTION={text!r} is not a retention; use a duration of at least "
        "1h, such as 36h, 14d or 2w"
    )
