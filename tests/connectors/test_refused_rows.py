"""With a reject log, the rows a SQL destination refuses (a value its column cannot hold, a
NOT NULL or CHECK constraint) are rejected with the database's own message and the others
load, in the load's one transaction; over the log's limit nothing is written."""

from __future__ import annotations

import pyarrow as pa
import pytest

from connectors.base import ConnectorError, CursorState, LoadMode, LoadRequest, StateUpdate
from connectors.shared.rejects import RejectLimitExceeded, RejectLog
from tests.support.destination_cases import (
    failing_reader,
    load,
)

# DuckDB has no VARCHAR(n) limit and calls its JSON type JSON.
TABLES = {
    "duckdb": "CREATE TABLE revenue (id BIGINT, n INTEGER NOT NULL, doc JSON, u UUID, "
    "code VARCHAR, k INTEGER CHECK (k > 0))",
    "postgres": "CREATE TABLE revenue (id BIGINT, n INTEGER NOT NULL, doc JSONB, u UUID, "
    "code VARCHAR(3), k INTEGER CHECK (k > 0))",
}
# Rows 1 and 8 are good; each other row has one value the table refuses.
ROWS = pa.table(
    {
        "id": list(range(1, 9)),
        "n": [1, 3_000_000_000, 3, 4, None, 6, 7, 8],
        "doc": ["{}", "{}", "{", "{}", "{}", "{}", "{}", "{}"],
        "u": [None, None, None, "zz", None, None, None, None],
        "code": ["a", "b", "c", "d", "e", "abcd", "g", "h"],
        "k": [1, 1, 1, 1, 1, 1, 0, 1],
    }
)
RAW = {
    2: '{"id": 2, "n": 3000000000, "doc": "{}", "u": null, "code": "b", "k": 1}',
    3: '{"id": 3, "n": 3, "doc": "{", "u": null, "code": "c", "k": 1}',
    4: '{"id": 4, "n": 4, "doc": "{}", "u": "zz", "code": "d", "k": 1}',
    5: '{"id": 5, "n": null, "doc": "{}", "u": null, "code": "e", "k": 1}',
    6: '{"id": 6, "n": 6, "doc": "{}", "u": null, "code": "abcd", "k": 1}',
    7: '{"id": 7, "n": 7, "doc": "{}", "u": null, "code": "g", "k": 0}',
}
REFUSALS = {
    "duckdb": {
        2: "Conversion Error: Type INT64 with value 3000000000 can't be cast because the value "
        "is out of range for the destination type INT32 when casting from source column n",
        3: "Conversion Error: Malformed JSON at byte 1 of input: unexpected end of data.  "
        'Input: "{" when casting from source column doc',
        4: "Conversion Error: Could not convert string 'zz' to UUID when casting from source "
        "column u",
        5: "Constraint Error: NOT NULL constraint failed: revenue.n",
        7: 'Constraint Error: CHECK constraint failed on table "revenue" with expression '
        "CHECK((k > 0))",
    },
    "postgres": {
        2: 'value "3000000000" is out of range for type integer',
        3: "invalid input syntax for type json",
        4: 'invalid input syntax for type uuid: "zz"',
        5: 'null value in column "n" of relation "revenue" violates not-null constraint',
        6: "value too long for type character varying(3)",
        7: 'new row for relation "revenue" violates check constraint "revenue_k_check"',
    },
}
# The order rows are rejected in: an upsert's stage takes the values (and refuses those its
# column types cannot hold) before its rows meet the table's constraints.
ORDER = {
    ("duckdb", LoadMode.APPEND): [2, 3, 4, 5, 7],
    ("duckdb", LoadMode.UPSERT): [2, 3, 4, 5, 7],
    ("postgres", LoadMode.APPEND): [2, 3, 4, 5, 6, 7],
    ("postgres", LoadMode.UPSERT): [2, 3, 4, 6, 5, 7],
}


def _rejects(log: RejectLog) -> list[tuple[str, str | None, int | None, str]]:
    return [(r.reason, r.file, r.line, r.raw) for r in log.rows]


@pytest.mark.parametrize("mode", [LoadMode.APPEND, LoadMode.UPSERT])
def test_each_refused_value_is_rejected_with_the_database_message(target, mode):
    target.query(TABLES[target.name])
    log = RejectLog()
    result = target.dest.load(
        ROWS.to_reader(max_chunksize=3), LoadRequest("revenue", mode, ["id"], rejects=log)
    )
    good = [1, 8] if target.name == "postgres" else [1, 6, 8]
    assert (result.rows_loaded, result.table_rows) == (len(good), len(good))
    assert target.query("SELECT id FROM revenue ORDER BY id") == [(i,) for i in good]
    refusals = REFUSALS[target.name]
    assert _rejects(log) == [
        (refusals[row], None, None, RAW[row]) for row in ORDER[(target.name, mode)]
    ]


def test_a_reject_reason_is_the_error_the_row_fails_a_load_with(target):
    """Without a reject log each refused row fails the load with the very same message."""
    target.query(TABLES[target.name])
    for row, reason in REFUSALS[target.name].items():
        with pytest.raises(ConnectorError) as error:
            load(target.dest, ROWS.slice(row - 1, 1))
        assert str(error.value) == (
            f"connection 'warehouse': loading table 'revenue' failed: {reason}"
        )
    assert target.query("SELECT count(*) FROM revenue") == [(0,)]


def test_a_refused_row_in_a_later_batch_and_the_cursor_commit_with_the_others(target):
    target.query("CREATE TABLE revenue (id BIGINT, n INTEGER)")
    data = pa.table({"id": [1, 2, 3, 4, 5], "n": [1, 2, 3, 3_000_000_000, 5]})
    log = RejectLog()
    request = LoadRequest(
        "revenue",
        LoadMode.APPEND,
        state_updates=[StateUpdate("p", "s", CursorState(5))],
        rejects=log,
    )
    result = target.dest.load(data.to_reader(max_chunksize=2), request)
    assert result.rows_loaded == 4
    assert target.query("SELECT id, n FROM revenue ORDER BY id") == [
        (1, 1), (2, 2), (3, 3), (5, 5)
    ]  # fmt: skip
    assert [r.raw for r in log.rows] == ['{"id": 4, "n": 3000000000}']
    assert target.dest.read_state("p", "s") == CursorState(5)


@pytest.mark.parametrize("mode", [LoadMode.APPEND, LoadMode.UPSERT])
def test_refusals_over_the_limit_write_nothing(target, mode):
    target.query(TABLES[target.name])
    first = StateUpdate("p", "s", CursorState(1))
    load(target.dest, pa.table({"id": [9], "n": [9], "k": [9]}), state_updates=[first])
    log = RejectLog(lambda count: count > 4)
    request = LoadRequest(
        "revenue", mode, ["id"], state_updates=[StateUpdate("p", "s", CursorState(2))], rejects=log
    )
    refused = len(REFUSALS[target.name])
    with pytest.raises(
        RejectLimitExceeded, match=rf"^{refused} rows were rejected, over the limit$"
    ):
        target.dest.load(ROWS.to_reader(max_chunksize=3), request)
    assert target.query("SELECT id, n, k FROM revenue ORDER BY id") == [(9, 9, 9)]
    assert target.dest.read_state("p", "s") == CursorState(1)


def test_a_source_failing_mid_stream_still_fails_the_load_with_its_error(target):
    target.query("CREATE TABLE revenue (id BIGINT, n INTEGER)")
    data = pa.table({"id": [1, 2], "n": [1, 3_000_000_000]})
    log = RejectLog()
    with pytest.raises(RuntimeError, match=r"^source went away$"):
        target.dest.load(failing_reader(data), LoadRequest("revenue", LoadMode.APPEND, rejects=log))
    assert target.query("SELECT count(*) FROM revenue") == [(0,)]


def test_a_key_the_table_already_holds(target):
    """PostgreSQL rejects the row. DuckDB, which looks for refused values and constraints
    before writing but not for key conflicts, fails the load."""
    target.query("CREATE TABLE revenue (id BIGINT PRIMARY KEY, name TEXT)")
    target.query("INSERT INTO revenue VALUES (2, 'old')")
    log = RejectLog()
    data = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    request = LoadRequest("revenue", LoadMode.APPEND, rejects=log)
    if target.name == "duckdb":
        with pytest.raises(ConnectorError) as error:
            target.dest.load(data.to_reader(), request)
        assert str(error.value) == (
            "connection 'warehouse': loading table 'revenue' failed: Constraint Error: "
            'Duplicate key "id: 2" violates primary key constraint.'
        )
        assert (target.query("SELECT * FROM revenue"), log.rows) == ([(2, "old")], [])
        return
    assert target.dest.load(data.to_reader(), request).rows_loaded == 2
    assert target.query("SELECT * FROM revenue ORDER BY id") == [(1, "a"), (2, "old"), (3, "c")]
    assert _rejects(log) == [
        (
            'duplicate key value violates unique constraint "revenue_pkey"',
            None,
            None,
            '{"id": 2, "name": "b"}',
        )
    ]


@pytest.mark.parametrize("target", ["postgres"], indirect=True)
def test_postgres_does_not_halve_a_batch_for_an_error_that_is_not_a_refused_value(target):
    """A trigger's own exception (SQLSTATE P0001) fails the load, as without a reject log."""
    target.query("CREATE TABLE revenue (id BIGINT)")
    target.query(
        "CREATE FUNCTION refuse_all() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'loads are closed'; END $$"
    )
    target.query(
        "CREATE TRIGGER closed BEFORE INSERT ON revenue FOR EACH ROW EXECUTE FUNCTION refuse_all()"
    )
    log = RejectLog()
    with pytest.raises(ConnectorError) as error:
        target.dest.load(
            pa.table({"id": [1, 2]}).to_reader(),
            LoadRequest("revenue", LoadMode.APPEND, rejects=log),
        )
    assert str(error.value) == (
        "connection 'warehouse': loading table 'revenue' failed: loads are closed"
    )
    assert log.rows == []


@pytest.mark.parametrize("target", ["postgres"], indirect=True)
def test_postgres_refuses_overlong_text_that_goes_through_the_cast(target):
    """An INTEGER id sends the rows through the text cast; VARCHAR(3) still refuses 'abcd'
    rather than cutting it to 'abc'."""
    target.query("CREATE TABLE revenue (id INTEGER, code VARCHAR(3))")
    data = pa.table({"id": pa.array([1, 2], pa.int64()), "code": ["abc", "abcd"]})
    with pytest.raises(ConnectorError) as error:
        load(target.dest, data)
    assert str(error.value) == (
        "connection 'warehouse': loading table 'revenue' failed: "
        "value too long for type character varying(3)"
    )
    assert target.query("SELECT count(*) FROM revenue") == [(0,)]


def test_an_upsert_rejects_a_staged_row_as_the_table_typed_it(target):
    """A row refused on its way from the stage holds the table's types (here a UUID)."""
    target.query("CREATE TABLE revenue (id BIGINT, u UUID, k INTEGER CHECK (k > 0))")
    one = "00000000-0000-0000-0000-000000000001"
    log = RejectLog()
    data = pa.table({"id": [1, 2], "u": [one, one], "k": [1, 0]})
    request = LoadRequest("revenue", LoadMode.UPSERT, ["id"], rejects=log)
    assert target.dest.load(data.to_reader(), request).rows_loaded == 1
    assert target.query("SELECT id, k FROM revenue") == [(1, 1)]
    assert [r.raw for r in log.rows] == [f'{{"id": 2, "u": "{one}", "k": 0}}']


def test_a_column_the_load_leaves_out_takes_its_default_before_its_check(target):
    target.query(
        "CREATE TABLE revenue (id BIGINT, k INTEGER DEFAULT 5, CHECK (coalesce(k, 0) > 0))"
    )
    log = RejectLog()
    request = LoadRequest("revenue", LoadMode.APPEND, rejects=log)
    assert target.dest.load(pa.table({"id": [1, 2]}).to_reader(), request).rows_loaded == 2
    assert target.query("SELECT id, k FROM revenue ORDER BY id") == [(1, 5), (2, 5)]
    assert log.rows == []
