"""What DuckDBDestination and PostgresDestination do alike, run against both real databases."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from connectors.base import (
    ConnectorError,
    CursorState,
    ExtractStart,
    LoadMode,
    LoadRequest,
    LoadResult,
    StateUpdate,
)
from tests.support.destination_cases import (
    ALL_TYPES_SCALARS,
    UTC,
    all_types_table,
    failing_reader,
    load,
)

# The column type each destination creates for each column of the all-types table.
MAPPED_TYPES = [
    # column, DuckDB, PostgreSQL
    ("i8", "SMALLINT", "smallint"),
    ("i16", "SMALLINT", "smallint"),
    ("i32", "INTEGER", "integer"),
    ("i64", "BIGINT", "bigint"),
    ("f32", "DOUBLE", "double precision"),
    ("f64", "DOUBLE", "double precision"),
    ("dec", "DECIMAL(12,2)", "numeric(12,2)"),
    ("s", "VARCHAR", "text"),
    ("ls", "VARCHAR", "text"),
    ("b", "BOOLEAN", "boolean"),
    ("d", "DATE", "date"),
    ("ts", "TIMESTAMP", "timestamp without time zone"),
    ("tstz", "TIMESTAMP WITH TIME ZONE", "timestamp with time zone"),
    ("bin", "BLOB", "bytea"),
    ("lst", "JSON", "jsonb"),
    ("st", "JSON", "jsonb"),
    ("dict", None, "text"),
]


@pytest.mark.parametrize(
    ("target", "extra_columns", "json_and_extra_values"),
    [
        ("duckdb", {}, ("[1,2]", '{"a":1,"b":"x"}')),
        (
            "postgres",
            {"dict": pa.array(["red"]).dictionary_encode()},
            ([1, 2], {"a": 1, "b": "x"}, "red"),
        ),
    ],
    indirect=["target"],
)
def test_first_load_creates_table_with_mapped_types(target, extra_columns, json_and_extra_values):
    result = load(target.dest, all_types_table(**extra_columns))
    assert result == LoadResult(rows_loaded=1, table_rows=1, columns_added=(), table_created=True)
    index = {"duckdb": 1, "postgres": 2}[target.name]
    assert target.column_types() == [(row[0], row[index]) for row in MAPPED_TYPES if row[index]]
    assert target.query("SELECT * FROM revenue") == [ALL_TYPES_SCALARS + json_and_extra_values]


def test_append_twice_keeps_all_rows(target):
    load(target.dest, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    result = load(target.dest, pa.table({"id": [3], "name": ["c"]}))
    assert result == LoadResult(rows_loaded=1, table_rows=3, columns_added=(), table_created=False)
    assert target.query("SELECT * FROM revenue ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]


def test_replace_leaves_exactly_the_new_rows(target):
    load(target.dest, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    result = load(target.dest, pa.table({"id": [7], "extra": [True]}), LoadMode.REPLACE)
    assert result == LoadResult(
        rows_loaded=1, table_rows=1, columns_added=("extra",), table_created=False
    )
    assert target.query("SELECT * FROM revenue") == [(7, None, True)]


PRIMARY_KEY_SQL = {
    "duckdb": "SELECT constraint_column_names FROM duckdb_constraints() "
    "WHERE table_name = 'revenue' AND constraint_type = 'PRIMARY KEY'",
    "postgres": "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = 'revenue'::regclass",
}


@pytest.mark.parametrize(
    ("target", "primary_key"),
    [("duckdb", [(["id"],)]), ("postgres", [("PRIMARY KEY (id)",)])],
    indirect=["target"],
)
def test_upsert_updates_inserts_and_keeps_last_duplicate(target, primary_key):
    upsert = {"mode": LoadMode.UPSERT, "upsert_key": ["id"]}
    load(target.dest, pa.table({"id": [1, 2], "name": ["a", "b"]}), **upsert)
    data = pa.table({"id": [2, 3, 3, 2], "name": ["b1", "c1", "c2", "b2"]})
    result = load(target.dest, data, **upsert)
    assert result.rows_loaded == 2
    assert target.query("SELECT * FROM revenue ORDER BY id") == [(1, "a"), (2, "b2"), (3, "c2")]
    assert target.query(PRIMARY_KEY_SQL[target.name]) == primary_key


def test_upsert_works_without_unique_constraint_and_composite_key(target):
    load(target.dest, pa.table({"a": [1, 1, 2], "b": ["x", "y", "x"], "v": [1, 2, 3]}))
    data = pa.table({"a": [1, 2, 2], "b": ["y", "y", "y"], "v": [20, 30, 31]})
    load(target.dest, data, LoadMode.UPSERT, upsert_key=["a", "b"])
    assert target.query("SELECT * FROM revenue ORDER BY a, b") == [
        (1, "x", 1),
        (1, "y", 20),
        (2, "x", 3),
        (2, "y", 31),
    ]


def test_upsert_refuses_null_keys_and_writes_nothing(target):
    upsert = {"mode": LoadMode.UPSERT, "upsert_key": ["id"]}
    load(target.dest, pa.table({"id": [1], "name": ["a"]}), **upsert)
    with pytest.raises(ConnectorError) as error:
        load(target.dest, pa.table({"id": [2, None], "name": ["b", "c"]}), **upsert)
    assert str(error.value) == (
        "connection 'warehouse': upsert key 'id' is NULL in 1 row(s) for table 'revenue'; "
        "filter them out (is_not_null) or choose another upsert_key"
    )
    assert target.query("SELECT * FROM revenue") == [(1, "a")]


@pytest.mark.parametrize(
    ("target", "types"),
    [
        ("duckdb", ["BIGINT", "VARCHAR", "DOUBLE"]),
        ("postgres", ["bigint", "text", "double precision"]),
    ],
    indirect=["target"],
)
def test_new_column_is_added_and_absent_columns_stay_null(target, types):
    load(target.dest, pa.table({"id": [1], "name": ["a"]}))
    result = load(target.dest, pa.table({"id": [2], "score": [9.5]}))
    assert result.columns_added == ("score",)
    assert target.column_types() == list(zip(["id", "name", "score"], types, strict=True))
    assert target.query("SELECT * FROM revenue ORDER BY id") == [(1, "a", None), (2, None, 9.5)]


JAN_1 = dt.datetime(2024, 1, 1)


@pytest.mark.parametrize(
    ("target", "column_type", "data", "message_types"),
    [
        ("duckdb", "INTEGER", pa.array(["12"]), "INTEGER but the data is VARCHAR"),
        ("duckdb", "BOOLEAN", pa.array([JAN_1]), "BOOLEAN but the data is TIMESTAMP"),
        ("duckdb", "VARCHAR", pa.array([1]), "VARCHAR but the data is BIGINT"),
        ("postgres", "INTEGER", pa.array(["12"]), "INTEGER but the data is TEXT"),
        ("postgres", "BOOLEAN", pa.array([JAN_1]), "BOOLEAN but the data is TIMESTAMP"),
        ("postgres", "TEXT", pa.array([1]), "TEXT but the data is BIGINT"),
        ("postgres", "DATE", pa.array([JAN_1]), "DATE but the data is TIMESTAMP"),
    ],
    indirect=["target"],
)  # fmt: skip
def test_type_conflict_fails_before_writing(target, column_type, data, message_types):
    target.query(f"CREATE TABLE revenue (id INTEGER, amount {column_type})")
    target.query("INSERT INTO revenue VALUES (1, NULL)")
    incoming = pa.table({"id": pa.array([2], pa.int32()), "new_col": ["x"], "amount": data})
    with pytest.raises(ConnectorError) as error:
        load(target.dest, incoming, state_updates=[StateUpdate("p", "s", CursorState(5))])
    assert str(error.value) == (
        f"connection 'warehouse': column 'amount' of table 'revenue' is {message_types}; "
        "change the column type or cast it in a computed step"
    )
    assert [name for name, _ in target.column_types()] == ["id", "amount"]
    assert target.query("SELECT * FROM revenue") == [(1, None)]
    assert target.dest.read_state("p", "s") is None


def test_missing_table_without_create_fails(target):
    with pytest.raises(ConnectorError) as error:
        load(target.dest, pa.table({"id": [1]}), create_table_if_missing=False)
    assert str(error.value) == (
        "connection 'warehouse': table 'revenue' does not exist and create_table_if_missing "
        "is false; create it or set create_table_if_missing: true"
    )
    assert target.dest.discover() == []


def test_upsert_without_key_fails(target):
    with pytest.raises(ConnectorError) as error:
        load(target.dest, pa.table({"id": [1]}), LoadMode.UPSERT)
    assert str(error.value) == (
        "connection 'warehouse': table 'revenue' is loaded with mode upsert but has no "
        "upsert_key; set upsert_key to the column(s) that identify a row"
    )


@pytest.mark.parametrize("mode", list(LoadMode))
def test_failure_mid_stream_rolls_back_rows_columns_and_state(target, mode):
    first = LoadRequest(
        "revenue", mode, ["id"], state_updates=[StateUpdate("p", "s", CursorState(1))]
    )
    target.dest.load(pa.table({"id": [1], "name": ["a"]}).to_reader(), first)
    request = LoadRequest(
        "revenue", mode, ["id"], state_updates=[StateUpdate("p", "s", CursorState(99))]
    )
    data = pa.table({"id": [1, 2], "name": ["changed", "b"], "added": [1, 2]})
    with pytest.raises(RuntimeError, match=r"^source went away$"):
        target.dest.load(failing_reader(data), request)
    assert target.query("SELECT * FROM revenue") == [(1, "a")]
    assert target.dest.read_state("p", "s") == CursorState(1)


def test_failure_mid_stream_does_not_create_the_table(target):
    request = LoadRequest(
        "revenue", LoadMode.APPEND, state_updates=[StateUpdate("p", "s", CursorState(9))]
    )
    with pytest.raises(RuntimeError, match=r"^source went away$"):
        target.dest.load(failing_reader(pa.table({"id": [1]})), request)
    assert target.dest.discover() == []
    assert target.dest.read_state("p", "s") is None


@pytest.mark.parametrize(
    ("target", "create_sql", "data", "message"),
    [
        (
            "duckdb",
            "CREATE TABLE revenue (id INTEGER NOT NULL, doc JSON)",
            {"id": pa.array([1, 2], pa.int16()), "doc": ['{"a": 1}', "no"]},
            "Conversion Error: Malformed JSON at byte 0 of input: invalid literal.  "
            'Input: "no" when casting from source column doc',
        ),
        (
            "postgres",
            "CREATE TABLE revenue (id INTEGER, code VARCHAR(3))",
            {"id": pa.array([1, 2], pa.int32()), "code": ["abc", "abcd"]},
            "value too long for type character varying(3)",
        ),
    ],
    indirect=["target"],
)
def test_bad_value_rolls_back_and_names_the_table(target, create_sql, data, message):
    target.query(create_sql)
    with pytest.raises(ConnectorError) as error:
        load(target.dest, pa.table(data))
    assert str(error.value) == f"connection 'warehouse': loading table 'revenue' failed: {message}"
    assert target.query("SELECT count(*) FROM revenue") == [(0,)]


AWARE_STATE = StateUpdate("p", "aware", CursorState(dt.datetime(2024, 1, 1, tzinfo=UTC)))


@pytest.mark.parametrize(
    ("target", "aware_states", "state_rows"),
    [
        ("duckdb", [], 4),
        ("postgres", [AWARE_STATE], 5),
    ],
    indirect=["target"],
)  # fmt: skip
def test_state_updates_commit_with_rows_and_read_back(target, aware_states, state_rows):
    dest = target.dest
    assert dest.read_state("p", "orders") is None
    cursor = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    states = [
        StateUpdate("p", "orders", CursorState(cursor, ((1, "a"), (2, "b")))),
        StateUpdate("p", "events", CursorState(42, ((42,),))),
        *aware_states,
        StateUpdate("p", "days", CursorState(dt.date(2024, 1, 1))),
        StateUpdate("p", "money", CursorState(decimal.Decimal("10.50"))),
    ]
    load(dest, pa.table({"id": [1]}), state_updates=states)
    for update in states:
        assert dest.read_state("p", update.source_table) == update.state
    assert dest.read_state("other", "orders") is None

    load(dest, pa.table({"id": [2]}), state_updates=[StateUpdate("p", "events", CursorState(43))])
    assert dest.read_state("p", "events") == CursorState(43)
    assert target.query("SELECT count(*) FROM _datapipe_state") == [(state_rows,)]
    assert [t.name for t in dest.discover()] == ["revenue"]


@pytest.mark.parametrize(
    ("target", "sql_type"),
    [("duckdb", "DECIMAL(18,4)"), ("postgres", "numeric(18,4)")],
    indirect=["target"],
)
def test_decimals_keep_exact_values(target, sql_type):
    values = [decimal.Decimal("12345678901234.5678"), decimal.Decimal("-0.0001"), None]
    load(target.dest, pa.table({"amount": pa.array(values, pa.decimal128(18, 4))}))
    assert target.column_types() == [("amount", sql_type)]
    assert target.query("SELECT amount FROM revenue") == [(v,) for v in values]


OVERTAKEN = (
    "another run of pipeline 'p' committed table 's' after this run started; nothing was "
    "loaded; run again"
)


@pytest.mark.parametrize("mode", list(LoadMode))
def test_a_load_refuses_a_cursor_committed_after_its_extract_started(target, mode):
    committed = StateUpdate("p", "s", CursorState(5), ExtractStart(None))
    load(target.dest, pa.table({"id": [1]}), mode, upsert_key=["id"], state_updates=[committed])
    # A second run also extracted from no committed state, and read the same rows.
    overtaken = StateUpdate("p", "s", CursorState(5), ExtractStart(None))
    with pytest.raises(ConnectorError) as error:
        load(target.dest, pa.table({"id": [1, 2]}), mode, upsert_key=["id"],
             state_updates=[overtaken])  # fmt: skip
    assert str(error.value) == OVERTAKEN
    assert target.query("SELECT * FROM revenue") == [(1,)]
    assert target.dest.read_state("p", "s") == CursorState(5)
    # The run that started from the committed state loads.
    following = StateUpdate("p", "s", CursorState(7), ExtractStart(CursorState(5)))
    load(target.dest, pa.table({"id": [2]}), mode, upsert_key=["id"], state_updates=[following])
    assert target.dest.read_state("p", "s") == CursorState(7)
    # Without a start (a full refresh) nothing is checked.
    load(target.dest, pa.table({"id": [3]}), mode, upsert_key=["id"],
         state_updates=[StateUpdate("p", "s", CursorState(1))])  # fmt: skip
    assert target.dest.read_state("p", "s") == CursorState(1)


def test_a_load_waits_for_a_concurrent_load_of_the_table_then_refuses(target, tmp_path):
    """Two loads from the same start overlap: the second waits for the first's commit, sees
    its cursor and loads nothing. Each load has its own destination object (connection)."""
    first_holds = threading.Event()
    release_first = threading.Event()

    def paused_batches() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"id": [1]})
        first_holds.set()
        release_first.wait(30)
        yield pa.record_batch({"id": [2]})

    update = StateUpdate("p", "s", CursorState(2), ExtractStart(None))
    request = LoadRequest("revenue", LoadMode.APPEND, state_updates=[update])
    reader = pa.RecordBatchReader.from_batches(pa.schema({"id": pa.int64()}), paused_batches())
    first = threading.Thread(target=target.dest.load, args=(reader, request))
    first.start()
    assert first_holds.wait(30)
    outcome: list[BaseException | LoadResult] = []

    def second_load() -> None:
        try:
            outcome.append(load(target.reopened(), pa.table({"id": [1, 2]}),
                                state_updates=[update]))  # fmt: skip
        except ConnectorError as error:
            outcome.append(error)

    second = threading.Thread(target=second_load)
    second.start()
    second.join(1.5)
    assert second.is_alive(), "the second load must wait for the first to commit"
    release_first.set()
    first.join(30)
    second.join(30)
    assert [str(e) for e in outcome] == [OVERTAKEN]
    assert target.query("SELECT * FROM revenue ORDER BY id") == [(1,), (2,)]
    assert target.dest.read_state("p", "s") == CursorState(2)
