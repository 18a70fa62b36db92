"""The Shopify source against a fake REST Admin API on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pyarrow as pa
import pytest
import yaml

from connectors.base import ConnectorError, CursorState
from connectors.sources.shopify import TABLES, ShopifySource
from datapipe_assets.pipeline.connections import ConnectionSpec
from datapipe_assets.pipeline.project import PROJECT_ROOT
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.fake_http import Response, serve
from tests.support.fake_shopify import RATE_LIMITED, FakeShopify, when

UTC = dt.UTC


def order(order_id: int, day: int, hour: int = 0, *, closed: bool = False) -> dict:
    return {
        "id": order_id, "name": f"#{1000 + order_id}", "email": f"buyer{order_id}@example.com",
        "financial_status": "paid", "fulfillment_status": None, "currency": "USD",
        "total_price": f"{order_id}9.99", "subtotal_price": f"{order_id}9.99",
        "total_tax": "0.00", "total_discounts": "0.00", "customer": {"id": 7},
        "line_items": [{"id": order_id * 10, "quantity": 1}], "tags": "", "test": False,
        "created_at": when(1), "updated_at": when(day, hour), "processed_at": when(1),
        "closed_at": when(day, hour) if closed else None, "cancelled_at": None,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
    }  # fmt: skip


def product(product_id: int, day: int, inventory_ids: range) -> dict:
    variants = [{"id": i + 5000, "inventory_item_id": i} for i in inventory_ids]
    return {"id": product_id, "title": f"Product {product_id}", "status": "active",
            "variants": variants, "created_at": when(1), "updated_at": when(day)}  # fmt: skip


def inventory_item(item_id: int, day: int) -> dict:
    return {"id": item_id, "sku": f"SKU-{item_id}", "cost": "2.50", "tracked": True,
            "created_at": when(1), "updated_at": when(day)}  # fmt: skip


def transaction(transaction_id: int, order_id: int, day: int) -> dict:
    return {"id": transaction_id, "order_id": order_id, "kind": "sale", "status": "success",
            "amount": "19.99", "currency": "USD", "gateway": "bogus", "created_at": when(day),
            "receipt": {"paid_amount": "19.99"}}  # fmt: skip


@pytest.fixture
def shop():
    fake = FakeShopify()
    with serve(fake.server):
        yield fake


def source(shop: FakeShopify, name: str = "shop", **config) -> ShopifySource:
    settings = {
        "shop_domain": "fake.myshopify.com",
        "access_token": shop.token,
        "base_url": shop.server.url,
        "requests_per_second": 1000,
        "page_size": 2,
    }
    return ShopifySource(name, {**settings, **config})


def rows(extraction, *columns: str) -> list[tuple]:
    table = pa.Table.from_batches(list(extraction), schema=extraction.schema)
    return [tuple(row[c] for c in columns) for row in table.to_pylist()]


def at(day: int, hour: int = 0) -> dt.datetime:
    """The UTC instant of the fake's shop-local `when(day, hour)`."""
    return dt.datetime.fromisoformat(when(day, hour)).astimezone(UTC)


def test_discover_lists_every_table_with_fixed_columns(shop):
    tables = {t.name: t.schema for t in source(shop).discover()}
    assert list(tables) == ["orders", "customers", "products", "inventory_items", "transactions"]
    assert tables["orders"].field("total_price").type == pa.decimal128(20, 4)
    assert tables["orders"].field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert tables["transactions"].names[:3] == ["id", "order_id", "parent_id"]
    assert shop.server.requests == []


def test_check_names_the_shop(shop):
    assert source(shop).check() == "Shopify shop 'Fake Store' reachable (API 2024-10)"
    assert shop.server.requests[0].path == "/admin/api/2024-10/shop.json"


def test_full_sync_of_every_order_status_across_pages(shop):
    shop.orders = [order(i, day=i, closed=i == 2) for i in range(1, 6)]
    extraction = source(shop).extract("orders")
    assert rows(extraction, "id", "name", "total_price", "updated_at", "line_items") == [
        (i, f"#{1000 + i}", Decimal(f"{i}9.99"), at(i), f'[{{"id": {i * 10}, "quantity": 1}}]')
        for i in range(1, 6)
    ]
    queries = [r.query for r in shop.server.requests]
    assert queries[0] == {"status": ["any"], "limit": ["2"]}
    # Follow-up pages carry only limit and the cursor, as Shopify requires.
    assert [sorted(q) for q in queries[1:]] == [["limit", "page_info"]] * 2
    assert shop.server.requests[0].headers["x-shopify-access-token"] == "shpat_secret"


def test_incremental_reads_only_orders_updated_since_the_cursor(shop):
    shop.orders = [order(1, 1), order(2, 2), order(3, 3), order(4, 3), order(5, 4, 6)]
    start = CursorState(cursor=at(3), boundary_keys=((3,),))
    extraction = source(shop).extract("orders", "updated_at", start=start, primary_key=["id"])
    assert rows(extraction, "id", "updated_at") == [(4, at(3)), (5, at(4, 6))]
    assert extraction.state.cursor == at(4, 6)
    assert shop.server.requests[0].param("updated_at_min") == "2024-05-03T04:00:00+00:00"


def test_customers_and_products_read_in_full(shop):
    shop.customers = [{"id": 1, "email": "a@example.com", "verified_email": True,
                       "addresses": [], "created_at": when(1), "updated_at": when(2)}]  # fmt: skip
    shop.products = [product(10, 1, range(1, 3)), product(11, 2, range(3, 4))]
    assert rows(source(shop).extract("customers"), "id", "email", "addresses") == [
        (1, "a@example.com", "[]")
    ]
    assert rows(source(shop).extract("products"), "id", "title", "updated_at") == [
        (10, "Product 10", at(1)), (11, "Product 11", at(2))
    ]  # fmt: skip


def test_inventory_items_come_by_variant_ids_in_chunks_of_100(shop):
    shop.products = [product(1, 1, range(1, 61)), product(2, 1, range(61, 106))]
    shop.inventory_items = [inventory_item(i, day=1 + i % 3) for i in range(1, 106)]
    extraction = source(shop, page_size=250).extract("inventory_items")
    assert rows(extraction, "id") == [(i,) for i in range(1, 106)]
    asked = [r.param("ids") for r in shop.server.requests if "inventory" in r.path]
    assert [len(ids.split(",")) for ids in asked] == [100, 5]


def test_inventory_items_incremental_filters_on_updated_at(shop):
    shop.products = [product(1, 1, range(1, 6))]
    shop.inventory_items = [inventory_item(i, day=i) for i in range(1, 6)]
    extraction = source(shop).extract(
        "inventory_items", "updated_at", start=CursorState(cursor=at(4)), primary_key=["id"]
    )
    assert rows(extraction, "id", "cost") == [(4, Decimal("2.50")), (5, Decimal("2.50"))]
    assert extraction.state.cursor == at(5)


def test_transactions_full_and_incremental_on_created_at(shop):
    shop.orders = [order(1, 2), order(2, 3, closed=True), order(3, 5)]
    shop.transactions = [transaction(101, 1, 2), transaction(201, 2, 3), transaction(301, 3, 4),
                         transaction(302, 3, 5)]  # fmt: skip
    assert rows(source(shop).extract("transactions"), "id", "order_id", "created_at") == [
        (101, 1, at(2)), (201, 2, at(3)), (301, 3, at(4)), (302, 3, at(5))
    ]  # fmt: skip
    shop.server.requests.clear()
    extraction = source(shop).extract(
        "transactions", "created_at", start=CursorState(cursor=at(4)), primary_key=["id"]
    )
    assert rows(extraction, "id", "amount") == [(301, Decimal("19.99")), (302, Decimal("19.99"))]
    assert extraction.state.cursor == at(5)
    # Only the order updated since the cursor is asked for its transactions.
    assert [r.path for r in shop.server.requests][-1] == (
        "/admin/api/2024-10/orders/3/transactions.json"
    )
    assert len(shop.server.requests) == 2


def test_429_waits_for_the_fractional_retry_after(shop):
    shop.orders = [order(1, 1)]
    shop.server.interruptions.append(RATE_LIMITED)
    started = time.monotonic()
    assert rows(source(shop).extract("orders"), "id") == [(1,)]
    assert time.monotonic() - started >= 1.5
    assert len(shop.server.requests) == 2


def test_5xx_is_retried(shop):
    shop.orders = [order(1, 1), order(2, 2), order(3, 3)]
    shop.server.interruptions.append(Response(503, "Service Unavailable"))
    assert rows(source(shop).extract("orders"), "id") == [(1,), (2,), (3,)]
    assert len(shop.server.requests) == 3


def test_rejected_token_is_a_clear_error_without_the_token(shop):
    with pytest.raises(ConnectorError) as error:
        source(shop, access_token="shpat_wrong").extract("orders")
    assert str(error.value) == (
        "credentials rejected for connection 'shop' (HTTP 401 on GET "
        "/admin/api/2024-10/orders.json); check access_token (and its API scopes)"
    )
    assert "shpat_wrong" not in str(error.value)


def test_empty_table_keeps_its_schema_and_state(shop):
    start = CursorState(cursor=at(1))
    extraction = source(shop).extract("customers", "updated_at", start=start)
    assert list(extraction) == []
    assert extraction.schema == TABLES["customers"].schema
    assert extraction.state == start


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"access_token": ""}, "access_token is empty; set it in the connection's config"),
        ({"page_size": 300}, "page_size must be at most 250, not 300; fix the value"),
        ({"page_size": "many"}, "page_size must be a whole number, not 'many'; fix the value"),
    ],
)
def test_bad_config_says_what_to_fix(shop, config, message):
    with pytest.raises(ConnectorError) as error:
        source(shop, **config)
    assert str(error.value) == f"connection 'shop': {message}"


def test_unsupported_incremental_key_names_the_ones_that_work(shop):
    with pytest.raises(ConnectorError) as error:
        source(shop).read("transactions", "updated_at", at(1))
    assert str(error.value) == (
        "connection 'shop': table 'transactions' can be read incrementally only on created_at; "
        "set incremental_key to one of them"
    )


def test_example_pipeline_parses_and_reads_real_tables(monkeypatch):
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_example")
    text = (PROJECT_ROOT / "pipelines/examples/shopify.yaml").read_text()
    source = Pipeline.model_validate(yaml.safe_load(text)).source
    config = ConnectionSpec("example", "shopify", source.config or {}).resolve()
    schemas = {t.name: t.schema for t in ShopifySource("example", config).discover()}
    assert (source.connector, config["access_token"]) == ("shopify", "shpat_example")
    assert all(source.incremental_key in schemas[t.name].names for t in source.tables)
