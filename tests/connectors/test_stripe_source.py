"""StripeSource against localstripe (a stateful fake Stripe server) and, for what localstripe
lacks (`/v1/prices`, the `created` filter, injected 429/5xx), a Stripe-protocol fake."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import stripe
import yaml
from aiohttp import web

from connectors.base import ConnectorError, Window
from connectors.sources.stripe import TABLES, StripeSource
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.fake_http import Response, serve
from tests.support.fake_stripe_prices import API_KEY, stripe_fake

LOCALSTRIPE_KEY = "sk_test_localstripe_secret"
EXAMPLE = Path(__file__).parents[2] / "pipelines" / "examples" / "stripe.yaml"


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@contextmanager
def localstripe_server() -> Iterator[str]:
    """localstripe on a free port of 127.0.0.1, in a thread with its own event loop."""
    from localstripe import resources

    # It would otherwise pickle its whole store to /tmp on every write.
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    from localstripe.server import app

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    with localstripe_server() as url:
        yield url


@pytest.fixture
def localstripe(localstripe_url: str) -> stripe.StripeClient:
    """A client for setting up data on an emptied localstripe."""
    httpx.delete(f"{localstripe_url}/_config/data").raise_for_status()
    return stripe.StripeClient(LOCALSTRIPE_KEY, base_addresses={"api": localstripe_url})


def source(base_url: str, api_key: str = API_KEY, **config: Any) -> StripeSource:
    # A connection name per test keeps the shared rate limiters apart.
    name = f"stripe_{time.monotonic_ns()}"
    return StripeSource(name, {"api_key": api_key, "base_url": base_url, **config})


def read_error(stripe_source: StripeSource, table: str) -> str:
    """The message reading a table fails with; it must never contain an API key."""
    with pytest.raises(ConnectorError) as error:
        stripe_source.read(table).read_all()
    message = str(error.value)
    assert API_KEY not in message and LOCALSTRIPE_KEY not in message
    return message


def select(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    return [{column: row[column] for column in columns} for row in rows]


# localstripe.


def test_discover_needs_no_request_and_gives_every_table_its_columns():
    # Nothing listens on port 9: discover() must not send a request.
    tables = StripeSource(
        "billing", {"api_key": API_KEY, "base_url": "http://127.0.0.1:9"}
    ).discover()
    assert [t.name for t in tables] == [
        "charges",
        "customers",
        "invoices",
        "subscriptions",
        "payment_intents",
        "products",
        "prices",
        "disputes",
        "refunds",
        "balance_transactions",
    ]
    customers = next(t.schema for t in tables if t.name == "customers")
    assert customers.field("created").type == pa.timestamp("us", tz="UTC")
    assert customers.field("balance").type == pa.int64()
    assert customers.field("metadata").type == pa.string()
    assert all("id" in t.schema.names and "created" in t.schema.names for t in tables)


def test_check_reads_the_balance(localstripe, localstripe_url):
    stripe_source = source(localstripe_url, LOCALSTRIPE_KEY)
    assert stripe_source.check() == "connected to Stripe (test mode)"


def test_full_sync_pages_through_every_customer(localstripe, localstripe_url):
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    token = localstripe.v1.tokens.create(params={"card": card})
    created = [
        localstripe.v1.customers.create(
            params={"email": f"c{i}@example.com", "metadata": {"n": str(i)}}
        )
        for i in range(6)
    ]
    address = {"city": "Lyon", "country": "FR"}
    created.append(localstripe.v1.customers.create(params={"source": token.id, "address": address}))

    reader = source(localstripe_url, LOCALSTRIPE_KEY, page_size=2).read("customers")

    assert reader.schema == TABLES["customers"].schema
    rows = reader.read_all().to_pylist()
    # localstripe lists in creation order; 7 customers at 2 a page takes 4 pages.
    assert select(rows, "id", "email", "created", "metadata", "delinquent") == [
        {
            "id": customer.id,
            "email": customer.email,
            "created": at(customer.created),
            "metadata": f'{{"n": "{i}"}}' if i < 6 else "{}",
            "delinquent": False,
        }
        for i, customer in enumerate(created)
    ]
    last = rows[-1]
    assert last["default_source"] == created[-1].default_source
    assert last["default_source"].startswith("card_")
    assert last["address"] == '{"city": "Lyon", "country": "FR"}'
    assert last["invoice_settings"] == '{"default_payment_method": null}'


def test_an_empty_table_has_its_columns(localstripe, localstripe_url):
    table = source(localstripe_url, LOCALSTRIPE_KEY).read("refunds").read_all()
    assert table.num_rows == 0
    assert table.schema == TABLES["refunds"].schema


# The Stripe-protocol fake.


@pytest.fixture
def objects() -> dict[str, list[dict[str, Any]]]:
    return {"charges": [], "prices": []}


@pytest.fixture
def fake(objects):
    with serve(stripe_fake(objects)) as server:
        yield server


def price(number: int, created: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"price_{number}", "object": "price", "created": created, **fields}


def charge(number: int, created: int) -> dict[str, Any]:
    return {"id": f"ch_{number}", "object": "charge", "created": created, "amount": number}


def charge_row(number: int, created: int) -> dict[str, Any]:
    """The row `charge(number, created)` reads as: every column, null where absent."""
    columns = dict.fromkeys(TABLES["charges"].kinds)
    return {**columns, "id": f"ch_{number}", "created": at(created), "amount": number}


def test_prices_flatten_objects_and_timestamps(fake, objects):
    product = {"id": "prod_1", "object": "product", "name": "Pro"}
    objects["prices"] += [
        price(1, 1_700_000_000, product="prod_1", unit_amount=900, active=True),
        price(2, 1_700_000_100, product=product, recurring={"interval": "month"}),
        price(3, 1_700_000_200, metadata={"tier": "gold"}, unit_amount_decimal="12.5"),
    ]

    rows = source(fake.url, page_size=2).read("prices").read_all().to_pylist()

    columns = ("id", "created", "product", "unit_amount", "active", "recurring", "metadata")
    assert select(rows, *columns) == [
        # Newest first, as Stripe lists them.
        dict(zip(columns, values, strict=True))
        for values in [
            ("price_3", at(1_700_000_200), None, None, None, None, '{"tier": "gold"}'),
            ("price_2", at(1_700_000_100), "prod_1", None, None, '{"interval": "month"}', None),
            ("price_1", at(1_700_000_000), "prod_1", 900, True, None, None),
        ]
    ]
    assert rows[0]["unit_amount_decimal"] == "12.5"
    assert [(r.param("limit"), r.param("starting_after")) for r in fake.requests] == [
        ("2", None),
        ("2", "price_2"),
    ]


def test_incremental_on_created_reads_only_new_objects(fake, objects):
    objects["charges"] += [charge(1, 1_700_000_000), charge(2, 1_700_000_050)]
    stripe_source = source(fake.url)
    first = stripe_source.extract("charges", "created", None, ["id"])
    assert [batch.to_pylist() for batch in first] == [
        [charge_row(2, 1_700_000_050), charge_row(1, 1_700_000_000)]
    ]
    assert first.state is not None and first.state.cursor == at(1_700_000_050)

    # One new charge in the boundary second, one later.
    objects["charges"] += [charge(3, 1_700_000_050), charge(4, 1_700_000_900)]
    second = stripe_source.extract("charges", "created", first.state, ["id"])
    new = [row["id"] for batch in second for row in batch.to_pylist()]

    assert new == ["ch_4", "ch_3"]
    assert fake.requests[-1].param("created[gte]") == "1700000050"
    assert second.state is not None and second.state.cursor == at(1_700_000_900)


def test_a_partition_on_created_is_stripes_own_filter(fake, objects):
    day = 1_704_153_600  # 2024-01-02 00:00 UTC
    objects["charges"] += [charge(1, day - 1), charge(2, day), charge(3, day + 86_399)]
    objects["charges"] += [charge(4, day + 86_400)]
    window = Window("created", at(day), at(day + 86_400))
    rows = source(fake.url).read_window("charges", window).read_all().to_pylist()
    assert rows == [charge_row(3, day + 86_399), charge_row(2, day)]
    assert [(r.param("created[gte]"), r.param("created[lt]")) for r in fake.requests] == [
        (str(day), str(day + 86_400))
    ]


def test_429_is_retried_after_the_delay_stripe_asks_for(fake, objects):
    objects["charges"].append(charge(1, 1_700_000_000))
    busy = {"error": {"type": "rate_limit_error", "message": "Too many requests."}}
    fake.interruptions.append(Response(429, busy, {"Retry-After": "1"}))
    started = time.monotonic()

    rows = source(fake.url).read("charges").read_all().to_pylist()

    assert [row["id"] for row in rows] == ["ch_1"]
    assert time.monotonic() - started >= 1.0
    assert len(fake.requests) == 2


def test_5xx_is_retried_by_the_library_then_fails_clearly(fake, objects):
    objects["charges"].append(charge(1, 1_700_000_000))
    fake.interruptions.append(Response(503, {"error": {"message": "try again"}}))
    assert source(fake.url).read("charges").read_all().num_rows == 1
    assert len(fake.requests) == 2

    # The first try and 3 network retries.
    fake.interruptions.extend([Response(502, {"error": {"message": "bad gateway"}})] * 4)
    stripe_source = source(fake.url)
    assert read_error(stripe_source, "charges") == (
        f"connection {stripe_source.connection!r}: GET /v1/charges still failed with HTTP 502 "
        "after retries (bad gateway); try again later or lower requests_per_second"
    )
    assert len(fake.requests) == 6


def test_a_rejected_key_names_the_connection_and_never_the_key(fake):
    billing = StripeSource("billing", {"api_key": "sk_test_wrong_key", "base_url": fake.url})
    message = read_error(billing, "charges")
    assert message == (
        "credentials rejected for connection 'billing' (HTTP 401 on GET /v1/charges); check api_key"
    )
    assert "sk_test_wrong_key" not in message
    assert len(fake.requests) == 1  # a 401 is never retried


@pytest.mark.parametrize(
    ("config", "table", "key", "expected"),
    [
        (
            {"page_size": 101},
            "charges",
            None,
            "connection 'billing': page_size must be at most 100, not 101; fix the value",
        ),
        (
            {},
            "products",
            "updated",
            "connection 'billing': table 'products' can sync incrementally only on 'created' "
            "(the only filter of Stripe's list API); set incremental_key: created",
        ),
        (
            {},
            "payouts",
            None,
            "connection 'billing': no table 'payouts' in Stripe; use one of charges, customers, "
            "invoices, subscriptions, payment_intents, products, prices, disputes, refunds, "
            "balance_transactions",
        ),
        (
            {"api_key": ""},
            "charges",
            None,
            "connection 'billing': api_key is empty; set it in the connection's config",
        ),
    ],
)
def test_configuration_mistakes_say_what_to_fix(fake, config, table, key, expected):
    settings = {"api_key": API_KEY, "base_url": fake.url, **config}
    with pytest.raises(ConnectorError) as error:  # when opened, or on reading
        StripeSource("billing", settings).read(table, key).read_all()
    assert str(error.value) == expected
    assert fake.requests == []


def test_example_pipeline_parses():
    pipeline = Pipeline.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    assert pipeline.source.connector == "stripe"
    assert pipeline.source.config == {"api_key": "${STRIPE_API_KEY}"}
    assert pipeline.table_names() == ["charges", "customers"]
    assert (pipeline.source.sync_mode, pipeline.source.incremental_key) == (
        "incremental",
        "created",
    )
    assert pipeline.destination.connector == "duckdb"
    assert (pipeline.destination.load_mode, pipeline.destination.upsert_key) == (
        "upsert",
        ["id"],
    )
