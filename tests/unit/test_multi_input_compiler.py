"""join, union and multi-input sql nodes: compiled, then run in the sandboxed DuckDB."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import TypeAdapter

from datapipe_assets.pipeline.compiler import (
    CompileError,
    Relation,
    compile_step,
    join_renames,
    relation_names,
    relation_views,
    step_lineage,
)
from datapipe_assets.pipeline.spec import Node, NodeInput
from resources.duckdb_sandbox import sandboxed_connection

NODE = TypeAdapter(Node)

ORDERS = pa.table(
    {
        "id": [1, 2, 3, 4],
        "customer_id": [10, 20, None, 30],
        "name": ["o1", "o2", "o3", "o4"],
    }
)
CUSTOMERS = pa.table({"id": [10, 20, 40, None], "name": ["ann", "bob", "cy", "nul"]})


def node(node_type: str, **data):
    return NODE.validate_python({"id": "n", "type": node_type, "data": data})


def run(n, inputs: list[tuple[str, str | None, pa.Table]]) -> tuple[list[str], list[tuple]]:
    """Run node `n` over (input node id, handle, table) inputs; rows sorted, NULLs last."""
    declared = [NodeInput(source, handle, "test") for source, handle, _ in inputs]
    relations = [
        Relation(name, source, table.schema)
        for name, (source, _, table) in zip(relation_names(n, declared), inputs, strict=True)
    ]
    tables = {r.name: t for r, (_, _, t) in zip(relations, inputs, strict=True)}
    with sandboxed_connection() as con:
        for view, relation in relation_views(n, relations).items():
            con.register(view, tables[relation.name])
        result = con.sql(compile_step(n, relations))
        rows = result.fetchall()
        return result.columns, sorted(rows, key=lambda r: tuple((v is None, v) for v in r))


def join(how: str, on=None):
    return node("join", how=how, on=on or [{"left": "customer_id", "right": "id"}])


def orders_with_customers(how: str):
    return run(join(how), [("orders", "left", ORDERS), ("customers", "right", CUSTOMERS)])


JOINED = ["id", "customer_id", "name", "id_customers", "name_customers"]


@pytest.mark.parametrize(
    ("how", "columns", "rows"),
    [
        ("inner", JOINED, [(1, 10, "o1", 10, "ann"), (2, 20, "o2", 20, "bob")]),
        (
            "left",
            JOINED,
            [
                (1, 10, "o1", 10, "ann"),
                (2, 20, "o2", 20, "bob"),
                # A NULL key never matches, not even the right side's NULL.
                (3, None, "o3", None, None),
                (4, 30, "o4", None, None),
            ],
        ),
        (
            "right",
            JOINED,
            [
                (1, 10, "o1", 10, "ann"),
                (2, 20, "o2", 20, "bob"),
                (None, None, None, 40, "cy"),
                (None, None, None, None, "nul"),
            ],
        ),
        (
            "full",
            JOINED,
            [
                (1, 10, "o1", 10, "ann"),
                (2, 20, "o2", 20, "bob"),
                (3, None, "o3", None, None),
                (4, 30, "o4", None, None),
                (None, None, None, 40, "cy"),
                (None, None, None, None, "nul"),
            ],
        ),
        ("semi", ["id", "customer_id", "name"], [(1, 10, "o1"), (2, 20, "o2")]),
        # Anti keeps the NULL-key row: nothing matches it.
        ("anti", ["id", "customer_id", "name"], [(3, None, "o3"), (4, 30, "o4")]),
    ],
)
def test_join_of_every_kind(how, columns, rows):
    assert orders_with_customers(how) == (columns, rows)


def test_join_inputs_are_placed_by_handle_not_by_order():
    reversed_inputs = [("customers", "right", CUSTOMERS), ("orders", "left", ORDERS)]
    assert run(join("inner"), reversed_inputs) == orders_with_customers("inner")


def test_join_on_shared_names_keeps_one_key_column():
    payments = pa.table({"order_id": [1, 1, 2, 9], "amount": [5.0, 2.5, 7.0, 1.0]})
    orders = ORDERS.rename_columns(["order_id", "customer_id", "name"])
    n = node("join", how="left", on=["order_id"])
    assert run(n, [("orders", "left", orders), ("payments", "right", payments)]) == (
        ["order_id", "customer_id", "name", "amount"],
        [(1, 10, "o1", 2.5), (1, 10, "o1", 5.0), (2, 20, "o2", 7.0), (3, None, "o3", None),
         (4, 30, "o4", None)],
    )  # fmt: skip


@pytest.mark.parametrize("how", ["right", "full"])
def test_right_and_full_joins_fill_a_shared_key_from_the_side_that_matched(how):
    payments = pa.table({"order_id": [1, 9], "amount": [5.0, 1.0]})
    orders = pa.table({"order_id": [1, 2], "status": ["paid", "open"]})
    n = node("join", how=how, on=["order_id"])
    columns, rows = run(n, [("orders", "left", orders), ("payments", "right", payments)])
    assert columns == ["order_id", "status", "amount"]
    expected = [(1, "paid", 5.0), (9, None, 1.0)]
    assert rows == (
        expected if how == "right" else [(1, "paid", 5.0), (2, "open", None), *expected[1:]]
    )


def test_join_renames_clashing_right_columns_and_reports_them():
    n = join("inner")
    left = Relation("left", "orders", ORDERS.schema)
    right = Relation("right", "customers", CUSTOMERS.schema)
    assert join_renames(n, left, right) == [("id", "id_customers"), ("name", "name_customers")]
    # A rename that is itself taken gets a number.
    taken = pa.table({"id": [1], "customer_id": [10], "name": ["x"], "name_customers": ["y"]})
    assert join_renames(n, Relation("left", "orders", taken.schema), right) == [
        ("id", "id_customers"),
        ("name", "name_customers_2"),
    ]


def test_self_join():
    people = pa.table({"id": [1, 2, 3], "manager_id": [None, 1, 1], "name": ["a", "b", "c"]})
    n = node("join", how="inner", on=[{"left": "manager_id", "right": "id"}])
    assert run(n, [("people", "left", people), ("people", "right", people)]) == (
        ["id", "manager_id", "name", "id_people", "manager_id_people", "name_people"],
        [(2, 1, "b", 1, None, "a"), (3, 1, "c", 1, None, "a")],
    )


def test_join_key_that_an_input_lacks():
    left = Relation("left", "orders", ORDERS.schema)
    right = Relation("right", "customers", CUSTOMERS.schema)
    with pytest.raises(CompileError) as error:
        compile_step(node("join", on=[{"left": "customer", "right": "id"}]), [left, right])
    assert str(error.value) == (
        "join key 'customer' is not a column of the left input 'orders'; its columns are "
        "id, customer_id, name"
    )


def test_join_lineage():
    left = Relation("left", "orders", ORDERS.schema)
    right = Relation("right", "customers", CUSTOMERS.schema)
    assert step_lineage(join("left"), [left, right], []) == {
        "id": [("orders", "id")],
        "customer_id": [("orders", "customer_id")],
        "name": [("orders", "name")],
        "id_customers": [("customers", "id")],
        "name_customers": [("customers", "name")],
    }


CARD = pa.table({"id": [1, 2], "amount": [5.0, 7.5], "card": ["visa", "amex"]})
BANK = pa.table({"iban": ["DE1"], "amount": [3], "id": [3]})


def test_union_by_name_fills_missing_columns_with_null():
    n = node("union")
    assert run(n, [("card", None, CARD), ("bank", None, BANK)]) == (
        ["id", "amount", "card", "iban"],
        [(1, 5.0, "visa", None), (2, 7.5, "amex", None), (3, 3.0, None, "DE1")],
    )


def test_union_by_position_takes_the_first_inputs_names():
    other = pa.table({"k": [9, 1], "v": [1.5, 5.0], "w": ["x", "visa"]})
    n = node("union", by="position")
    assert run(n, [("card", None, CARD), ("other", None, other)]) == (
        ["id", "amount", "card"],
        [(1, 5.0, "visa"), (1, 5.0, "visa"), (2, 7.5, "amex"), (9, 1.5, "x")],
    )
    assert run(node("union", by="position", distinct=True), [
        ("card", None, CARD), ("again", None, CARD.slice(0, 1))
    ])[1] == [(1, 5.0, "visa"), (2, 7.5, "amex")]  # fmt: skip


def test_union_distinct_removes_duplicate_rows():
    n = node("union", distinct=True)
    assert run(n, [("a", None, CARD), ("b", None, CARD)])[1] == [(1, 5.0, "visa"), (2, 7.5, "amex")]
    assert len(run(node("union"), [("a", None, CARD), ("b", None, CARD)])[1]) == 4


def test_union_by_position_needs_the_same_number_of_columns():
    n = node("union", by="position")
    relations = [
        Relation("input_1", "card", CARD.schema),
        Relation("input_2", "bank", BANK.slice(0).drop_columns(["id"]).schema),
    ]
    with pytest.raises(CompileError) as error:
        compile_step(n, relations)
    assert str(error.value) == (
        "union by position needs the same number of columns: input 'card' has 3, input 'bank' "
        "has 2; use by: name or select matching columns first"
    )


def test_union_refuses_incompatible_types_naming_both_inputs():
    text_amounts = pa.table({"id": [3], "amount": ["3.00"]})
    relations = [
        Relation("input_1", "card", CARD.schema),
        Relation("input_2", "bank", text_amounts.schema),
    ]
    with pytest.raises(CompileError) as error:
        compile_step(node("union"), relations)
    assert str(error.value) == (
        "union cannot line up column 'amount' (double) of input 'card' with 'amount' (string) "
        "of input 'bank'; convert one with a computed node first"
    )


def test_union_lineage_by_name():
    relations = [Relation("input_1", "card", CARD.schema), Relation("input_2", "bank", BANK.schema)]
    assert step_lineage(node("union"), relations, []) == {
        "id": [("card", "id"), ("bank", "id")],
        "amount": [("card", "amount"), ("bank", "amount")],
        "card": [("card", "card")],
        "iban": [("bank", "iban")],
    }


def test_sql_reads_each_input_by_its_node_id_or_handle():
    payments = pa.table({"order_id": [1, 1, 2], "amount": [5.0, 2.5, 7.0]})
    query = (
        "SELECT o.customer_id, sum(p.amount) AS ltv FROM orders o JOIN pay p "
        "ON p.order_id = o.id GROUP BY 1"
    )
    n = node("sql", query=query)
    assert run(n, [("orders", None, ORDERS), ("payments", "pay", payments)]) == (
        ["customer_id", "ltv"],
        [(10, 7.5), (20, 7.0)],
    )


def test_sql_with_one_input_still_reads_it_as_input():
    n = node("sql", query="SELECT count(*) AS n FROM input")
    assert run(n, [("orders", None, ORDERS)]) == (["n"], [(4,)])
    n = node("sql", query="SELECT count(*) AS n FROM orders WHERE customer_id IS NULL")
    assert run(n, [("orders", None, ORDERS)]) == (["n"], [(1,)])


def test_sql_lineage_where_duckdb_can_tell():
    orders = Relation("orders", "orders", ORDERS.schema)
    payments = Relation(
        "pay", "payments", pa.schema([("order_id", pa.int64()), ("amount", pa.float64())])
    )
    query = (
        "SELECT o.customer_id, sum(p.amount) AS ltv, count(*) AS n, name FROM orders o "
        "JOIN pay p ON p.order_id = o.id GROUP BY ALL"
    )
    n = node("sql", query=query)
    assert step_lineage(n, [orders, payments], ["customer_id", "ltv", "n", "name"]) == {
        "customer_id": [("orders", "customer_id")],
        "ltv": [("payments", "amount")],
        "name": [("orders", "name")],
    }
    # A star, or a name two inputs share unqualified, cannot be traced: no lineage at all.
    star = node("sql", query="SELECT * FROM orders")
    assert step_lineage(star, [orders], ["id", "customer_id", "name"]) is None
    shared = node("sql", query="SELECT amount FROM orders, pay")
    both = Relation("orders", "orders", pa.schema([("amount", pa.float64())]))
    assert step_lineage(shared, [both, payments], ["amount"]) is None
