"""The generic REST API source against local fake APIs: paging, auth, incremental, errors."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from connectors.base import ConnectorError, CursorState
from connectors.shared.http import Backoff
from connectors.sources.rest_api import RestApiSource
from datapipe_assets.pipeline.spec import Pipeline
from tests.support.fake_http import FakeServer, Request, Response, serve

USERS = [{"id": i, "name": f"user{i}", "tags": ["a"] if i == 1 else []} for i in range(1, 6)]
EXPECTED = [{**user, "tags": '["a"]' if user["id"] == 1 else "[]"} for user in USERS]
PAGE = 2
EXAMPLE = Path(__file__).parents[2] / "pipelines" / "examples" / "rest_api.yaml"


def _slice(request: Request, offset_param: str = "offset") -> tuple[list[dict], int]:
    offset = int(request.param(offset_param, "0"))
    return USERS[offset : offset + PAGE], offset + PAGE


@pytest.fixture
def fake():
    """One small API offering the same five users through every pagination style."""
    server = FakeServer()

    @server.route("GET", "/next_body")
    def next_body(request):
        users, after = _slice(request, "after")
        link = f"/next_body?after={after}" if after < len(USERS) else None
        return Response(200, {"data": {"items": users}, "links": {"next": link}})

    @server.route("GET", "/next_header")
    def next_header(request):
        users, after = _slice(request, "after")
        headers = {"Link": f'<{server.url}/next_header?after={after}>; rel="next"'}
        return Response(200, users, headers if after < len(USERS) else {})

    @server.route("GET", "/cursor")
    def cursor(request):
        # Always hands out a next cursor, so only the empty last page ends the paging.
        users, after = _slice(request, "cursor")
        return Response(200, {"items": users, "meta": {"next": str(after)}})

    @server.route("GET", "/pages")
    def pages(request):
        size = int(request.param("size", "0"))
        start = int(request.param("p", "0")) * size
        return Response(200, {"results": USERS[start : start + size]})

    @server.route("GET", "/offset")
    def offset(request):
        return Response(200, {"rows": _slice(request)[0]})

    @server.route("GET", "/empty")
    def empty(request):
        return Response(200, {"data": []})

    with serve(server):
        yield server


def source(fake: FakeServer, name: str = "api", **config) -> RestApiSource:
    """A source on the fake, fast: no meaningful rate limit and short retry delays."""
    src = RestApiSource(name, {"base_url": fake.url, "requests_per_second": 1000, **config})
    src.backoff = Backoff(attempts=3, base_seconds=0.01)
    return src


def queries(fake: FakeServer) -> list[dict[str, list[str]]]:
    return [request.query for request in fake.requests]


PAGINATIONS = {
    "next link in body": (
        {"path": "/next_body", "data_path": "data.items",
         "pagination": {"type": "next_link", "next_path": "links.next"}},
        [{}, {"after": ["2"]}, {"after": ["4"]}],
    ),
    "next link in Link header": (
        {"path": "/next_header", "pagination": {"type": "next_link"}},
        [{}, {"after": ["2"]}, {"after": ["4"]}],
    ),
    "cursor": (
        {"path": "/cursor", "data_path": "items",
         "pagination": {"type": "cursor", "cursor_path": "meta.next", "cursor_param": "cursor"}},
        [{}, {"cursor": ["2"]}, {"cursor": ["4"]}, {"cursor": ["6"]}],
    ),
    "page number": (
        {"path": "/pages", "data_path": "results",
         "pagination": {"type": "page_number", "page_param": "p", "start_page": 0,
                        "page_size_param": "size", "page_size": 2}},
        [{"p": [str(n)], "size": ["2"]} for n in range(4)],
    ),
    "offset": (
        {"path": "/offset", "data_path": "rows", "params": {"sort": "id"},
         "pagination": {"type": "offset", "limit": 2}},
        # The offset advances by the rows received: the last page held only one.
        [{"sort": ["id"], "offset": [str(n)], "limit": ["2"]} for n in (0, 2, 4, 5)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("endpoint, expected_queries", PAGINATIONS.values(), ids=PAGINATIONS)
def test_every_pagination_style_reads_all_pages(fake, endpoint, expected_queries):
    reader = source(fake, endpoints={"users": endpoint}).read("users")
    assert reader.read_all().to_pylist() == EXPECTED
    assert queries(fake) == expected_queries


def test_loop_guard_stops_at_a_repeated_cursor(fake):
    @fake.route("GET", "/stuck")
    def stuck(request):
        users, _ = _slice(request, "cursor")
        return Response(200, {"items": users, "next": "2"})

    pagination = {"type": "cursor", "cursor_path": "next"}
    src = source(fake, endpoints={"users": {"path": "/stuck", "data_path": "items",
                                            "pagination": pagination}})  # fmt: skip
    assert [row["id"] for row in src.read("users").read_all().to_pylist()] == [1, 2, 3, 4]
    assert queries(fake) == [{}, {"cursor": ["2"]}]


def test_loop_guard_stops_when_the_api_ignores_the_page_param(fake):
    pagination = {"type": "page_number", "page_param": "page_that_does_not_exist"}
    src = source(fake, endpoints={"users": {"path": "/offset", "data_path": "rows",
                                            "pagination": pagination}})  # fmt: skip
    assert [row["id"] for row in src.read("users").read_all().to_pylist()] == [1, 2]
    assert len(fake.requests) == 2


def test_a_next_link_to_another_host_is_refused(fake):
    @fake.route("GET", "/leaky")
    def leaky(request):
        return Response(200, USERS[:1], {"Link": '<https://evil.example/steal>; rel="next"'})

    src = source(fake, endpoints={"users": {"path": "/leaky", "pagination": {"type": "next_link"}}})
    with pytest.raises(ConnectorError) as error:
        src.read("users").read_all()
    assert str(error.value) == (
        "connection 'api': endpoint 'users': the next-page link points to evil.example, not "
        "127.0.0.1; not following it, so credentials never leave base_url's host"
    )
    assert len(fake.requests) == 1


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


AUTHS = {
    "bearer": ({"auth_type": "bearer", "api_key": "k1"}, {"authorization": "Bearer k1"}, {}),
    "api_key header": ({"auth_type": "api_key", "api_key": "k2"}, {"x-api-key": "k2"}, {}),
    "api_key custom header": (
        {"auth_type": "api_key", "api_key": "k3", "api_key_header": "Api-Token"},
        {"api-token": "k3"},
        {},
    ),
    "api_key query param": (
        {"auth_type": "api_key", "api_key": "k4", "api_key_param": "key"},
        {},
        {"key": ["k4"]},
    ),
    "basic": (
        {"auth_type": "basic", "username": "ann", "password": "pw"},
        {"authorization": _basic("ann", "pw")},
        {},
    ),
    "none": ({}, {}, {}),
}


@pytest.mark.parametrize("auth, sent_headers, sent_query", AUTHS.values(), ids=AUTHS)
def test_each_auth_type_sends_exactly_its_credentials(fake, auth, sent_headers, sent_query):
    endpoints = {"users": {"path": "/next_header", "pagination": {"type": "next_link"}}}
    src = source(fake, endpoints=endpoints, headers={"Accept-Language": "en"}, **auth)
    assert len(src.read("users").read_all()) == len(USERS)
    credential_headers = ("authorization", "x-api-key", "api-token")
    for request in fake.requests:  # every page, next links included
        sent = {k: v for k, v in request.headers.items() if k in credential_headers}
        assert sent == sent_headers
        assert request.headers["accept-language"] == "en"
        assert {k: v for k, v in request.query.items() if k != "after"} == sent_query


EVENTS = [
    {"id": 1, "updated_at": "2024-01-01T00:00:00Z"},
    {"id": 2, "updated_at": "2024-01-02T00:00:00Z"},  # loaded last time, at the boundary
    {"id": 3, "updated_at": "2024-01-02T00:00:00Z"},  # new, at the boundary
    {"id": 4, "updated_at": "2024-01-03T00:00:00Z"},  # changed since
]


@pytest.fixture
def events(fake):
    @fake.route("GET", "/events")
    def filtered(request):
        since = request.param("updated_since", "")
        return Response(200, [e for e in EVENTS if e["updated_at"] >= since])

    @fake.route("GET", "/events_unfiltered")
    def unfiltered(request):
        return Response(200, EVENTS)

    return fake


@pytest.mark.parametrize("path", ["/events", "/events_unfiltered"])
def test_incremental_reads_only_new_and_changed_records(events, path):
    """The cursor goes to the API; rows it sends back from before the cursor are dropped."""
    incremental = {"cursor_param": "updated_since", "cursor_field": "updated_at"}
    src = source(events, endpoints={"events": {"path": path, "incremental": incremental}})
    start = CursorState(cursor="2024-01-02T00:00:00Z", boundary_keys=((2,),))
    extraction = src.extract("events", "updated_at", start=start, primary_key=["id"])
    assert [row for batch in extraction for row in batch.to_pylist()] == EVENTS[2:]
    assert extraction.state == CursorState("2024-01-03T00:00:00Z", boundary_keys=((4,),))
    assert events.requests[0].query == {"updated_since": ["2024-01-02T00:00:00Z"]}


def test_incremental_with_nothing_new_keeps_the_cursor(fake):
    endpoint = {"path": "/empty", "data_path": "data", "incremental": {"cursor_param": "since"}}
    src = source(fake, endpoints={"events": endpoint})
    start = CursorState(cursor="2024-01-03T00:00:00Z", boundary_keys=((4,),))
    extraction = src.extract("events", "updated_at", start=start, primary_key=["id"])
    assert list(extraction) == []
    assert extraction.state == start
    assert fake.requests[0].query == {"since": ["2024-01-03T00:00:00Z"]}


def test_declared_schema_types_the_columns_and_serves_an_empty_endpoint(fake):
    @fake.route("GET", "/typed")
    def typed(request):
        return Response(200, [{"id": "7", "at": "2024-01-02T03:04:05Z", "amount": 1.5,
                               "ok": True, "extra": "dropped"}])  # fmt: skip

    schema = {"id": "BIGINT", "at": "TIMESTAMPTZ", "amount": "DECIMAL(10,2)", "ok": "BOOLEAN"}
    src = source(fake, endpoints={"typed": {"path": "/typed", "schema": schema},
                                  "nothing": {"path": "/empty", "data_path": "data",
                                              "schema": {"id": "BIGINT"}}})  # fmt: skip
    assert src.read("typed").read_all().to_pylist() == [
        {"id": 7, "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
         "amount": decimal.Decimal("1.50"), "ok": True},
    ]  # fmt: skip
    empty = src.read("nothing").read_all()
    assert (empty.num_rows, empty.schema) == (0, pa.schema([("id", pa.int64())]))
    tables = {table.name: table.schema for table in src.discover()}
    assert tables["nothing"] == pa.schema([("id", pa.int64())])
    assert tables["typed"].field("at").type == pa.timestamp("us", tz="UTC")
    assert len(fake.requests) == 2  # declared schemas are not sampled


def test_discover_samples_the_first_page_and_check_fetches_it(fake):
    endpoint = {"path": "/offset", "data_path": "rows", "pagination": {"type": "offset"}}
    src = source(fake, endpoints={"users": endpoint})
    assert src.check() == "GET /offset answered with 2 record(s)"
    [table] = src.discover()
    assert (table.name, table.schema) == (
        "users",
        pa.schema([("id", pa.int64()), ("name", pa.string()), ("tags", pa.string())]),
    )
    assert queries(fake) == [{"offset": ["0"], "limit": ["100"]}] * 2


def test_429_waits_as_long_as_retry_after_says(fake):
    fake.interruptions.append(Response(429, {"error": "slow down"}, {"Retry-After": "1"}))
    started = time.monotonic()
    rows = source(fake, endpoints={"users": {"path": "/offset", "data_path": "rows"}}).read("users")
    assert [row["id"] for row in rows.read_all().to_pylist()] == [1, 2]
    assert time.monotonic() - started >= 1.0
    assert len(fake.requests) == 2


def test_a_5xx_is_retried(fake):
    fake.interruptions.append(Response(503, "unavailable"))
    rows = source(fake, endpoints={"users": {"path": "/offset", "data_path": "rows"}}).read("users")
    assert [row["id"] for row in rows.read_all().to_pylist()] == [1, 2]
    assert len(fake.requests) == 2


def test_401_is_a_clear_error_without_the_key(fake):
    fake.interruptions.append(Response(401, {"message": "bad key"}))
    src = source(fake, "crm", auth_type="bearer", api_key="sk_secret_123",
                 endpoints={"users": {"path": "/offset"}})  # fmt: skip
    with pytest.raises(ConnectorError) as error:
        src.check()
    assert str(error.value) == (
        "credentials rejected for connection 'crm' (HTTP 401 on GET /offset); check api_key"
    )
    assert "sk_secret_123" not in str(error.value)
    assert len(fake.requests) == 1


def test_404_is_not_retried(fake):
    src = source(fake, endpoints={"users": {"path": "/nope"}})
    with pytest.raises(ConnectorError) as error:
        src.read("users")
    assert str(error.value) == (
        "connection 'api': GET /nope failed with HTTP 404 (no route for /nope); "
        "check the connection's settings"
    )
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "data_path, problem",
    [
        ("data.entries", "no key 'entries'; the keys there are items"),
        ("data", "an object (keys: items), not a list"),
        ("", "an object (keys: data, links), not a list"),
    ],
)
def test_a_bad_data_path_names_the_endpoint_and_the_path(fake, data_path, problem):
    src = source(fake, endpoints={"users": {"path": "/next_body", "data_path": data_path}})
    with pytest.raises(ConnectorError) as error:
        src.read("users")
    assert str(error.value) == (
        f"connection 'api': endpoint 'users': data_path {data_path!r} does not lead to a list "
        f"of records in the response to GET /next_body ({problem}); fix "
        "endpoints.users.data_path"
    )


@pytest.mark.parametrize(
    "config, message",
    [
        ({"endpoints": {"u": {}}},
         "missing config key 'base_url'; set it in the connection's config"),
        ({"base_url": "http://127.0.0.1"},
         "missing config key 'endpoints'; set it in the connection's config"),
        ({"base_url": "http://127.0.0.1", "endpoints": {}},
         "endpoints is empty; add at least one entry"),
        ({"base_url": "http://127.0.0.1", "auth_type": "bearer", "endpoints": {"u": {}}},
         "auth_type bearer needs api_key; set it (e.g. to ${ENV_VAR})"),
        ({"base_url": "http://127.0.0.1", "auth_type": "oauth", "endpoints": {"u": {}}},
         "auth_type must be one of none, bearer, api_key, basic, not 'oauth'; fix the value"),
        ({"base_url": "http://127.0.0.1", "endpoints": {"u": {"pagination": {"type": "pages"}}}},
         "endpoints.u.pagination.type must be one of none, next_link, cursor, page_number, "
         "offset, not 'pages'; fix the value"),
        ({"base_url": "http://127.0.0.1",
          "endpoints": {"u": {"pagination": {"type": "cursor", "next_cursor": "x"}}}},
         "unknown config key 'endpoints.u.pagination.next_cursor'; remove it (keys: type, "
         "cursor_path, cursor_param)"),
        ({"base_url": "http://127.0.0.1",
          "endpoints": {"u": {"pagination": {"type": "offset", "limt": 10}}}},
         "unknown config key 'endpoints.u.pagination.limt'; did you mean 'limit'? (keys: "
         "type, offset_param, limit_param, limit)"),
        ({"base_url": "http://127.0.0.1", "endpoints": {"u": {"data": "x"}}},
         "unknown config key 'endpoints.u.data'; did you mean 'data_path'? (keys: path, "
         "params, data_path, pagination, incremental, window, schema, primary_key)"),
        ({"base_url": "http://127.0.0.1", "endpoints": {"u": {"schema": {"id": "LONG"}}}},
         "endpoints.u.schema.id: unknown column type 'LONG'; use one of VARCHAR, TEXT, "
         "STRING, BIGINT, INTEGER, INT, SMALLINT, DOUBLE, FLOAT, REAL, BOOLEAN, BOOL, DATE, "
         "TIMESTAMP, TIMESTAMPTZ or DECIMAL(p,s)"),
    ],
)  # fmt: skip
def test_config_mistakes_are_named(config, message):
    with pytest.raises(ConnectorError) as error:
        RestApiSource("api", config)
    assert str(error.value) == f"connection 'api': {message}"


def test_example_pipeline_parses():
    pipeline = Pipeline.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    assert pipeline.source.connector == "rest_api"
    assert pipeline.source.config["api_key"] == "${REST_API_KEY}"
    assert pipeline.destination.config == {"path": "../.datapipe/examples.duckdb"}
    RestApiSource("example", pipeline.source.config)  # its endpoints are valid too


def test_a_value_that_does_not_fit_its_declared_type_names_the_column(fake):
    @fake.route("GET", "/one")
    def one(request):
        return Response(200, [{"id": 1, "name": "ann"}])

    endpoint = {"path": "/one", "schema": {"id": "BIGINT", "name": "INT"}}
    with pytest.raises(ConnectorError) as error:
        source(fake, endpoints={"users": endpoint}).read("users").read_all()
    assert str(error.value) == (
        "connection 'api': endpoint 'users': column 'name' has a value that is not int64 "
        "(Failed to parse string: 'ann' as a scalar of type int64); fix its type in "
        "endpoints.users.schema"
    )
