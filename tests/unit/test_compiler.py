"""compile_node and column_lineage, executed in the sandboxed DuckDB against hand-computed rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest
from pydantic import TypeAdapter

from datapipe_assets.pipeline.compiler import (
    CompileError,
    column_lineage,
    compile_node,
    result_type,
)
from datapipe_assets.pipeline.spec import Node
from resources.duckdb_sandbox import sandboxed_connection

NODE = TypeAdapter(Node)

PEOPLE = pa.table(
    {
        "id": [1, 2, 3, 4, 5, 6],
        "name": ["Alice", "bob", None, "50% off", "a_b", "O'Brien"],
        "score": [10.5, None, 3.0, 7.25, 1.0, 7.25],
        "city": ["Berlin", "Paris", "Berlin", None, "Paris", "Rome"],
    }
)
PEOPLE_ROWS = {
    1: (1, "Alice", 10.5, "Berlin"),
    2: (2, "bob", None, "Paris"),
    3: (3, None, 3.0, "Berlin"),
    4: (4, "50% off", 7.25, None),
    5: (5, "a_b", 1.0, "Paris"),
    6: (6, "O'Brien", 7.25, "Rome"),
}
WEIRD = 'we"ird col'


def node(node_type: str, **data):
    return NODE.validate_python({"id": "n", "type": node_type, "data": data})


def run(n, table: pa.Table = PEOPLE) -> tuple[list[str], list[tuple]]:
    sql = compile_node(n, table.column_names)
    with sandboxed_connection() as con:
        con.register("input", table)
        result = con.sql(sql)
        return result.columns, result.fetchall()


def sorted_rows(rows: list[tuple]) -> list[tuple]:
    """Rows in a fixed order, for nodes whose output order is not defined (deduplicate)."""
    return sorted(rows, key=lambda row: tuple((value is None, value) for value in row))


def filter_ids(column: str, operator: str, value=None, table: pa.Table = PEOPLE) -> list[int]:
    columns, rows = run(node("filter", column=column, operator=operator, value=value), table)
    assert columns == table.column_names
    return [row[0] for row in rows]


# --- filter ------------------------------------------------------------------------------


def test_filter_eq_returns_exact_rows_in_input_order():
    columns, rows = run(node("filter", column="score", operator="eq", value=7.25))
    assert columns == ["id", "name", "score", "city"]
    assert rows == [PEOPLE_ROWS[4], PEOPLE_ROWS[6]]


@pytest.mark.parametrize(
    ("column", "operator", "value", "expected"),
    [
        ("name", "eq", "bob", [2]),
        ("name", "eq", "Bob", []),  # eq is case-sensitive, only contains ignores case
        ("id", "eq", 3, [3]),
        ("city", "neq", "Berlin", [2, 5, 6]),  # row 4 (NULL city) is dropped
        ("score", "neq", 7.25, [1, 3, 5]),  # row 2 (NULL score) is dropped
        ("score", "gt", 7.25, [1]),
        ("score", "gte", 7.25, [1, 4, 6]),
        ("score", "lt", 3.0, [5]),
        ("score", "lte", 3.0, [3, 5]),
        ("id", "gt", 4, [5, 6]),
        ("name", "is_null", None, [3]),
        ("score", "is_null", None, [2]),
        ("score", "is_not_null", None, [1, 3, 4, 5, 6]),
        ("city", "is_not_null", None, [1, 2, 3, 5, 6]),
        ("city", "in", ["Paris", "Rome"], [2, 5, 6]),
        ("city", "in", ["Rome"], [6]),
        ("id", "in", [1, 3, 99], [1, 3]),
        ("score", "in", [7.25, 1.0], [4, 5, 6]),
    ],
)
def test_filter_operators(column, operator, value, expected):
    assert filter_ids(column, operator, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("B", [2, 5, 6]),  # bob, a_b, O'Brien: case-insensitive
        ("ALICE", [1]),
        ("%", [4]),  # literal percent, not a LIKE wildcard matching everything
        ("50%", [4]),
        ("_", [5]),  # literal underscore, not a single-character wildcard
        ("a_b", [5]),
        ("a%b", []),  # would match "a_b" if % were a wildcard
        ("'", [6]),
        ("o'b", [6]),
        ("x' OR 1=1 --", []),
        ("zzz", []),
    ],
)
def test_filter_contains_is_case_insensitive_and_literal(value, expected):
    assert filter_ids("name", "contains", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("B", [1, 4]),  # NULL name (row 3) is dropped
        ("%", [1, 2, 5, 6]),
        ("_", [1, 2, 4, 6]),
        ("'", [1, 2, 4, 5]),
        ("zzz", [1, 2, 4, 5, 6]),
    ],
)
def test_filter_not_contains_drops_nulls_and_is_literal(value, expected):
    assert filter_ids("name", "not_contains", value) == expected


def test_filter_contains_on_a_number_column_matches_its_text():
    assert filter_ids("score", "contains", ".25") == [4, 6]


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("eq", []),
        ("contains", []),
        ("in", []),
        ("neq", [1, 2, 4, 5, 6]),
        ("not_contains", [1, 2, 4, 5, 6]),
    ],
)
def test_filter_injection_attempt_is_a_plain_literal(operator, expected):
    value = ["x' OR 1=1 --"] if operator == "in" else "x' OR 1=1 --"
    assert filter_ids("name", operator, value) == expected


def test_filter_eq_with_quote_in_value_matches_exactly():
    assert filter_ids("name", "eq", "O'Brien") == [6]
    assert filter_ids("name", "in", ["O'Brien", "bob"]) == [2, 6]


def test_filter_on_date_value():
    table = pa.table({"id": [1, 2, 3], "day": [dt.date(2026, 1, 1), dt.date(2026, 2, 1), None]})
    assert filter_ids("day", "gte", dt.date(2026, 1, 15), table) == [2]
    assert filter_ids("day", "neq", dt.date(2026, 1, 1), table) == [2]


def test_filter_on_boolean_value():
    table = pa.table({"id": [1, 2, 3], "ok": [True, False, None]})
    assert filter_ids("ok", "eq", True, table) == [1]
    assert filter_ids("ok", "neq", True, table) == [2]


# --- quoting of identifiers --------------------------------------------------------------

ODD = pa.table({"id": [1, 2, 3], WEIRD: ["a", None, "b"], "select": [5, 6, 7]})


def test_filter_on_identifier_with_quote_and_space():
    columns, rows = run(node("filter", column=WEIRD, operator="is_not_null"), ODD)
    assert columns == ["id", WEIRD, "select"]
    assert rows == [(1, "a", 5), (3, "b", 7)]
    assert filter_ids(WEIRD, "eq", "b", ODD) == [3]
    assert filter_ids("select", "gt", 5, ODD) == [2, 3]


def test_rename_identifier_with_quote_to_another_odd_name():
    n = node("rename", mappings=[{"from": WEIRD, "to": 'new "name"'}])
    assert run(n, ODD) == (["id", 'new "name"', "select"], [(1, "a", 5), (2, None, 6), (3, "b", 7)])


def test_aggregate_and_deduplicate_on_odd_identifiers():
    agg = node(
        "aggregate",
        groupBy=[WEIRD],
        measures=[{"column": "select", "function": "sum", "alias": 'total "s"'}],
    )
    assert run(agg, ODD) == ([WEIRD, 'total "s"'], [("a", 5), ("b", 7), (None, 6)])
    dedup = node("deduplicate", columns=["select"], orderBy=WEIRD)
    columns, rows = run(dedup, ODD)
    assert (columns, sorted_rows(rows)) == (
        ["id", WEIRD, "select"],
        [(1, "a", 5), (2, None, 6), (3, "b", 7)],
    )


def test_computed_expression_and_name_with_odd_identifiers():
    n = node(
        "computed",
        columns=[{"name": 'x "y" z', "expression": '"select" * 2', "resultType": "BIGINT"}],
    )
    assert run(n, ODD) == (
        ["id", WEIRD, "select", 'x "y" z'],
        [(1, "a", 5, 10), (2, None, 6, 12), (3, "b", 7, 14)],
    )


# --- rename ------------------------------------------------------------------------------


def test_rename_keeps_every_column_and_renamed_columns_keep_their_position():
    n = node("rename", mappings=[{"from": "score", "to": "points"}, {"from": "id", "to": "key"}])
    columns, rows = run(n)
    assert columns == ["key", "name", "points", "city"]
    assert rows == [PEOPLE_ROWS[i] for i in range(1, 7)]


def test_rename_drop_unmapped_keeps_only_mapped_columns_in_mapping_order():
    n = node(
        "rename",
        mappings=[{"from": "score", "to": "points"}, {"from": "id", "to": "key"}],
        dropUnmapped=True,
    )
    columns, rows = run(n)
    assert columns == ["points", "key"]
    assert rows == [(10.5, 1), (None, 2), (3.0, 3), (7.25, 4), (1.0, 5), (7.25, 6)]


def test_rename_swap_two_columns():
    table = pa.table({"a": [1], "b": [2], "c": [3]})
    n = node("rename", mappings=[{"from": "a", "to": "b"}, {"from": "b", "to": "a"}])
    assert run(n, table) == (["b", "a", "c"], [(1, 2, 3)])


def test_rename_onto_an_existing_column_is_an_error_unless_dropping_unmapped():
    n = node("rename", mappings=[{"from": "name", "to": "city"}])
    with pytest.raises(CompileError) as error:
        compile_node(n, PEOPLE.column_names)
    assert str(error.value) == (
        "renaming to 'city' clashes with an existing column; rename that column too or set "
        "dropUnmapped: true"
    )
    dropping = node("rename", mappings=[{"from": "name", "to": "city"}], dropUnmapped=True)
    columns, rows = run(dropping)
    assert columns == ["city"]
    assert rows == [("Alice",), ("bob",), (None,), ("50% off",), ("a_b",), ("O'Brien",)]


def test_rename_two_mappings_to_the_same_name():
    n = node("rename", mappings=[{"from": "id", "to": "x"}, {"from": "name", "to": "x"}])
    with pytest.raises(CompileError) as error:
        compile_node(n, PEOPLE.column_names)
    assert str(error.value) == "two mappings rename to the same name; give each a distinct `to`"


# --- computed ----------------------------------------------------------------------------

PRICES = pa.table(
    {
        "id": [1, 2],
        "cents": [1999, 250],
        "stamp": ["2026-01-02 03:04:05", "2026-12-31 23:59:59"],
    }
)


@pytest.mark.parametrize(
    ("expression", "type_name", "expected", "arrow_type"),
    [
        ("cents / 100", "DOUBLE", [19.99, 2.5], pa.float64()),
        ("cents // 100", "BIGINT", [19, 2], pa.int64()),
        ("'#' || id", "VARCHAR", ["#1", "#2"], pa.string()),
        ("cents > 1000", "BOOLEAN", [True, False], pa.bool_()),
        (
            "stamp",
            "TIMESTAMP",
            [dt.datetime(2026, 1, 2, 3, 4, 5), dt.datetime(2026, 12, 31, 23, 59, 59)],
            pa.timestamp("us"),
        ),
        ("substr(stamp, 1, 10)", "DATE", [dt.date(2026, 1, 2), dt.date(2026, 12, 31)], pa.date32()),
        ("cents / 100", "DECIMAL(10,2)", [Decimal("19.99"), Decimal("2.50")], pa.decimal128(10, 2)),
        ("id / 3", "DECIMAL(10,2)", [Decimal("0.33"), Decimal("0.67")], pa.decimal128(10, 2)),
        ("cents", "decimal( 6 , 1 )", [Decimal("1999.0"), Decimal("250.0")], pa.decimal128(6, 1)),
        ("cents", "double", [1999.0, 250.0], pa.float64()),
    ],
)
def test_computed_every_result_type(expression, type_name, expected, arrow_type):
    n = node(
        "computed", columns=[{"name": "out", "expression": expression, "resultType": type_name}]
    )
    sql = compile_node(n, PRICES.column_names)
    with sandboxed_connection() as con:
        con.register("input", PRICES)
        table = con.sql(sql).to_arrow_table()
    assert table.column_names == ["id", "cents", "stamp", "out"]
    assert table.schema.field("out").type == arrow_type
    assert table.column("out").to_pylist() == expected
    assert table.column("id").to_pylist() == [1, 2]


def test_computed_several_columns_are_added_after_existing_ones_in_order():
    n = node(
        "computed",
        columns=[
            {"name": "dollars", "expression": "cents / 100", "resultType": "DECIMAL(10,2)"},
            {"name": "label", "expression": "upper('id-') || id", "resultType": "VARCHAR"},
        ],
    )
    assert run(n, PRICES) == (
        ["id", "cents", "stamp", "dollars", "label"],
        [
            (1, 1999, "2026-01-02 03:04:05", Decimal("19.99"), "ID-1"),
            (2, 250, "2026-12-31 23:59:59", Decimal("2.50"), "ID-2"),
        ],
    )


@pytest.mark.parametrize(
    ("columns", "duplicate"),
    [
        pytest.param([("c", "1"), ("c", "2")], "c", id="name_given_twice_in_one_node"),
        # The message names the duplicate, not the first column.
        pytest.param([("b", "1"), ("c", "1"), ("c", "2")], "c", id="duplicate_after_another"),
        pytest.param([("cents", "1"), ("cents", "2")], "cents", id="replaced_twice"),
    ],
)
def test_computed_name_given_twice(columns, duplicate):
    n = node(
        "computed",
        columns=[{"name": c, "expression": e, "resultType": "BIGINT"} for c, e in columns],
    )
    with pytest.raises(CompileError) as error:
        compile_node(n, PRICES.column_names)
    assert str(error.value) == f"computed column '{duplicate}' is given twice; compute it once"


def test_computed_replaces_a_column_in_place_and_appends_new_ones():
    n = node(
        "computed",
        columns=[
            {"name": "doubled", "expression": "cents * 2", "resultType": "BIGINT"},
            # Replaces `cents` where it stands, computed from the input's own value.
            {"name": "cents", "expression": "cents / 100.0", "resultType": "DOUBLE"},
            {"name": "stamp", "expression": "stamp", "resultType": "TIMESTAMP"},
        ],
    )
    columns, rows = run(n, PRICES)
    assert columns == ["id", "cents", "stamp", "doubled"]
    assert rows == [
        (1, 19.99, dt.datetime(2026, 1, 2, 3, 4, 5), 3998),
        (2, 2.5, dt.datetime(2026, 12, 31, 23, 59, 59), 500),
    ]
    assert column_lineage(n, PRICES.column_names) == {
        "id": ["id"],
        "cents": ["cents"],
        "stamp": ["stamp"],
        "doubled": ["cents"],
    }


BAD_TYPE_HINT = (
    "is not supported; use one of DOUBLE, BIGINT, VARCHAR, BOOLEAN, TIMESTAMP, DATE, "
    "DECIMAL(p,s) (DECIMAL precision 1-38, scale <= precision)"
)


@pytest.mark.parametrize(
    "type_name",
    [
        "MONEY",
        "INTEGER",
        "DECIMAL(p,s)",
        "DECIMAL(39,2)",
        "DECIMAL(5,6)",
        "DECIMAL(0,0)",
        "DECIMAL",
    ],
)
def test_computed_bad_result_type(type_name):
    n = node("computed", columns=[{"name": "x", "expression": "1", "resultType": type_name}])
    with pytest.raises(CompileError) as error:
        compile_node(n, PRICES.column_names)
    assert str(error.value) == f"result type {type_name!r} {BAD_TYPE_HINT}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DOUBLE", "DOUBLE"),
        (" bigint ", "BIGINT"),
        ("Timestamp", "TIMESTAMP"),
        ("DECIMAL(38,38)", "DECIMAL(38,38)"),
        ("decimal(1,0)", "DECIMAL(1,0)"),
        ("DECIMAL( 10 ,2 )", "DECIMAL(10,2)"),
    ],
)
def test_result_type_spelling(name, expected):
    assert result_type(name) == expected


# --- aggregate ---------------------------------------------------------------------------

SALES = pa.table(
    {
        "region": ["n", "s", "n", "s", "n", None],
        "amount": [10, 5, None, 7, 10, 3],
        "customer": ["a", "b", "a", None, "c", "d"],
    }
)
ALL_MEASURES = [
    {"column": "amount", "function": "sum", "alias": "total"},
    {"column": "amount", "function": "count", "alias": "n_amount"},
    {"column": "amount", "function": "avg", "alias": "mean"},
    {"column": "amount", "function": "min", "alias": "low"},
    {"column": "amount", "function": "max", "alias": "high"},
    {"column": "customer", "function": "count_distinct", "alias": "customers"},
    {"column": "customer", "function": "count", "alias": "n_customer"},
]


def test_aggregate_all_six_functions_by_group():
    columns, rows = run(node("aggregate", groupBy=["region"], measures=ALL_MEASURES), SALES)
    assert columns == [
        "region",
        "total",
        "n_amount",
        "mean",
        "low",
        "high",
        "customers",
        "n_customer",
    ]
    # count counts non-NULL values; groups are ordered, the NULL group last.
    assert rows == [
        ("n", 20, 2, 10.0, 10, 10, 2, 3),
        ("s", 12, 2, 6.0, 5, 7, 1, 1),
        (None, 3, 1, 3.0, 3, 3, 1, 1),
    ]


def test_aggregate_without_group_by_gives_one_row():
    columns, rows = run(node("aggregate", measures=ALL_MEASURES), SALES)
    assert columns == ["total", "n_amount", "mean", "low", "high", "customers", "n_customer"]
    assert rows == [(35, 5, 7.0, 3, 10, 4, 5)]


def test_aggregate_without_group_by_on_empty_input():
    _, rows = run(node("aggregate", measures=ALL_MEASURES), SALES.slice(0, 0))
    assert rows == [(None, 0, None, None, None, 0, 0)]


def test_aggregate_two_group_columns_given_as_string_and_list():
    table = pa.table({"a": ["x", "x", "y", "x"], "b": [2, 1, 1, 2], "v": [1, 2, 3, 4]})
    measures = [{"column": "v", "function": "sum", "alias": "v"}]
    assert run(node("aggregate", groupBy=["a", "b"], measures=measures), table) == (
        ["a", "b", "v"],
        [("x", 1, 2), ("x", 2, 5), ("y", 1, 3)],
    )
    assert run(node("aggregate", groupBy="a", measures=measures), table) == (
        ["a", "v"],
        [("x", 7), ("y", 3)],
    )


@pytest.mark.parametrize(
    ("group_by", "aliases"),
    [([], ["x", "x"]), (["region"], ["region", "y"])],
)
def test_aggregate_output_name_twice(group_by, aliases):
    measures = [{"column": "amount", "function": "sum", "alias": a} for a in aliases]
    with pytest.raises(CompileError) as error:
        compile_node(node("aggregate", groupBy=group_by, measures=measures), SALES.column_names)
    assert str(error.value) == (
        f"output column {aliases[0]!r} appears twice; give each measure a unique alias"
    )


# --- deduplicate -------------------------------------------------------------------------

EVENTS = pa.table(
    {
        "key": ["a", "b", "a", "b", "a", "c"],
        "version": [2, 1, 3, None, 1, 5],
        "seq": [1, 2, 3, 4, 5, 6],
    }
)


@pytest.mark.parametrize(
    ("strategy", "order_by", "expected"),
    [
        # Without orderBy: the first/last row per key in input order.
        ("first", None, [("a", 2, 1), ("b", 1, 2), ("c", 5, 6)]),
        ("last", None, [("a", 1, 5), ("b", None, 4), ("c", 5, 6)]),
        # With orderBy: the lowest/highest non-NULL version per key.
        ("first", "version", [("a", 1, 5), ("b", 1, 2), ("c", 5, 6)]),
        ("last", "version", [("a", 3, 3), ("b", 1, 2), ("c", 5, 6)]),
    ],
)
def test_deduplicate(strategy, order_by, expected):
    data = {"columns": ["key"], "keepStrategy": strategy}
    if order_by:
        data["orderBy"] = order_by
    columns, rows = run(node("deduplicate", **data), EVENTS)
    assert columns == ["key", "version", "seq"]  # adds no columns
    assert sorted_rows(rows) == expected


def test_deduplicate_default_strategy_is_first():
    assert sorted_rows(run(node("deduplicate", columns="key"), EVENTS)[1]) == [
        ("a", 2, 1),
        ("b", 1, 2),
        ("c", 5, 6),
    ]


def test_deduplicate_ties_in_order_by_fall_back_to_input_order():
    table = pa.table({"k": ["x", "x", "x", "y"], "v": [1, 2, 2, 0], "seq": [1, 2, 3, 4]})
    first = node("deduplicate", columns=["k"], orderBy="v", keepStrategy="first")
    last = node("deduplicate", columns=["k"], orderBy="v", keepStrategy="last")
    assert sorted_rows(run(first, table)[1]) == [("x", 1, 1), ("y", 0, 4)]
    assert sorted_rows(run(last, table)[1]) == [("x", 2, 3), ("y", 0, 4)]


def test_deduplicate_on_several_columns():
    table = pa.table({"a": [1, 1, 1, 2], "b": ["p", "q", "p", "p"], "seq": [1, 2, 3, 4]})
    n = node("deduplicate", columns=["a", "b"], keepStrategy="last")
    columns, rows = run(n, table)
    assert (columns, sorted_rows(rows)) == (
        ["a", "b", "seq"],
        [(1, "p", 3), (1, "q", 2), (2, "p", 4)],
    )


def test_deduplicate_follows_input_order_on_a_large_input():
    size = 200_000
    table = pa.table({"k": [i % 100 for i in range(size)], "seq": list(range(size))})
    first = sorted_rows(run(node("deduplicate", columns=["k"]), table)[1])
    last = sorted_rows(run(node("deduplicate", columns=["k"], keepStrategy="last"), table)[1])
    assert first == [(k, k) for k in range(100)]
    assert last == [(k, size - 100 + k) for k in range(100)]


# --- sql ---------------------------------------------------------------------------------


def test_sql_node_runs_the_query_over_input():
    n = node(
        "sql",
        query="  SELECT name, score * 2 AS doubled FROM input WHERE score > 5 ORDER BY id;  ",
    )
    assert run(n) == (["name", "doubled"], [("Alice", 21.0), ("50% off", 14.5), ("O'Brien", 14.5)])


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n",
    [
        node("filter", column="nope", operator="eq", value=1),
        node("rename", mappings=[{"from": "nope", "to": "x"}]),
        node(
            "aggregate",
            groupBy=["nope"],
            measures=[{"column": "id", "function": "sum", "alias": "s"}],
        ),
        node("aggregate", measures=[{"column": "nope", "function": "sum", "alias": "s"}]),
        node("deduplicate", columns=["nope"]),
        node("deduplicate", columns=["id"], orderBy="nope"),
    ],
)
def test_unknown_column_message(n):
    with pytest.raises(CompileError) as error:
        compile_node(n, PEOPLE.column_names)
    assert str(error.value) == "unknown column 'nope'; the input has id, name, score, city"


def test_unknown_column_when_the_input_has_no_columns():
    with pytest.raises(CompileError) as error:
        compile_node(node("filter", column="x", operator="is_null"), [])
    assert str(error.value) == "unknown column 'x'; the input has no columns"


@pytest.mark.parametrize("value", ["Paris", None, []])
def test_in_without_a_list(value):
    with pytest.raises(CompileError) as error:
        compile_node(node("filter", column="city", operator="in", value=value), PEOPLE.column_names)
    assert str(error.value) == "operator 'in' needs `value` to be a non-empty list"


@pytest.mark.parametrize(("operator", "value"), [("eq", None), ("gt", [1]), ("contains", None)])
def test_comparison_without_one_value(operator, value):
    n = node("filter", column="id", operator=operator, value=value)
    with pytest.raises(CompileError) as error:
        compile_node(n, PEOPLE.column_names)
    assert str(error.value) == f"operator {operator!r} needs one non-null `value`"


def test_non_finite_and_unsupported_values():
    with pytest.raises(CompileError) as error:
        compile_node(node("filter", column="score", operator="gt", value=float("inf")), ["score"])
    assert str(error.value) == "value inf is not a finite number"
    with pytest.raises(CompileError) as error:
        compile_node(node("filter", column="score", operator="eq", value={"a": 1}), ["score"])
    assert str(error.value) == "value {'a': 1} must be a string, number, boolean or date"


# --- sandbox -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n",
    [
        node(
            "computed",
            columns=[
                {
                    "name": "leak",
                    "expression": "(SELECT count(*) FROM read_csv('/etc/passwd'))",
                    "resultType": "BIGINT",
                }
            ],
        ),
        node("sql", query="SELECT * FROM read_csv('/etc/passwd')"),
        node("sql", query="SELECT * FROM read_text('/etc/passwd')"),
        node("sql", query="SELECT * FROM glob('/etc/*')"),
    ],
)
def test_user_sql_cannot_read_files(n):
    with pytest.raises(duckdb.PermissionException, match="Permission Error"):
        run(n)


def test_user_sql_cannot_write_files():
    n = node("sql", query="SELECT * FROM input")
    with sandboxed_connection() as con:
        con.register("input", PEOPLE)
        with pytest.raises(duckdb.PermissionException, match="Permission Error"):
            con.execute(
                f"COPY ({compile_node(n, PEOPLE.column_names)}) TO '/tmp/datapipe-leak.csv'"
            )


def test_user_sql_cannot_turn_external_access_back_on():
    with sandboxed_connection() as con, pytest.raises(duckdb.Error, match="lock"):
        con.execute("SET enable_external_access = true")


# --- lineage -----------------------------------------------------------------------------

COLUMNS = ["id", "name", "score", "city"]


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (
            node("filter", column="id", operator="gt", value=1),
            {"id": ["id"], "name": ["name"], "score": ["score"], "city": ["city"]},
        ),
        (
            node("deduplicate", columns=["id"]),
            {"id": ["id"], "name": ["name"], "score": ["score"], "city": ["city"]},
        ),
        (
            node(
                "rename", mappings=[{"from": "score", "to": "points"}, {"from": "id", "to": "key"}]
            ),
            {"key": ["id"], "name": ["name"], "points": ["score"], "city": ["city"]},
        ),
        (
            node(
                "rename",
                mappings=[{"from": "score", "to": "points"}, {"from": "id", "to": "key"}],
                dropUnmapped=True,
            ),
            {"points": ["score"], "key": ["id"]},
        ),
        (
            node(
                "computed",
                columns=[
                    {"name": "s2", "expression": "score * id + 1", "resultType": "DOUBLE"},
                    {"name": "one", "expression": "1", "resultType": "BIGINT"},
                    {"name": "up", "expression": 'upper("name")', "resultType": "VARCHAR"},
                ],
            ),
            {
                "id": ["id"],
                "name": ["name"],
                "score": ["score"],
                "city": ["city"],
                "s2": ["id", "score"],
                "one": [],
                "up": ["name"],
            },
        ),
        (
            node(
                "aggregate",
                groupBy=["city"],
                measures=[
                    {"column": "score", "function": "sum", "alias": "total"},
                    {"column": "id", "function": "count", "alias": "n"},
                ],
            ),
            {"city": ["city"], "total": ["score"], "n": ["id"]},
        ),
        (node("sql", query="SELECT * FROM input"), None),
    ],
)
def test_column_lineage(n, expected):
    lineage = column_lineage(n, COLUMNS)
    assert lineage == expected
    if expected is not None:
        # Lineage lists the output columns in the node's real output order.
        assert list(lineage) == run(n)[0]


def test_column_lineage_of_quoted_identifier():
    n = node(
        "computed",
        columns=[{"name": "x", "expression": '"we""ird col" || "select"', "resultType": "VARCHAR"}],
    )
    assert column_lineage(n, ODD.column_names)["x"] == [WEIRD, "select"]


def test_column_lineage_matches_unquoted_identifiers_case_insensitively():
    # DuckDB resolves unquoted identifiers case-insensitively: SCORE is the column score.
    n = node("computed", columns=[{"name": "x", "expression": "SCORE * 2", "resultType": "DOUBLE"}])
    assert run(n)[1][0] == (1, "Alice", 10.5, "Berlin", 21.0)
    assert column_lineage(n, COLUMNS)["x"] == ["score"]
