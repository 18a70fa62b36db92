"""The shared HTTP layer against a local server: retries, Retry-After, rate limit, errors."""

from __future__ import annotations

import time

import pytest

from connectors.base import ConnectorError
from connectors.shared.http import Backoff, RateLimiter, api_client
from tests.support.fake_http import FakeServer, Response, serve
from tests.support.services import free_port


@pytest.fixture
def fake():
    server = FakeServer()

    @server.route("GET", "/items")
    def items(request):
        return Response(200, {"data": [1, 2]})

    @server.route("GET", "/broken")
    def broken(request):
        return Response(400, {"error": {"message": "Invalid param: limit"}})

    with serve(server):
        yield server


def client(fake, name, **kwargs):
    return api_client(name, fake.url, backoff=Backoff(attempts=3, base_seconds=0.01), **kwargs)


def test_429_is_retried_after_the_delay_the_server_asks_for(fake):
    fake.interruptions.append(Response(429, {"error": "slow down"}, {"Retry-After": "1"}))
    started = time.monotonic()
    with client(fake, "retry_after") as http:
        assert http.get("/items").json() == {"data": [1, 2]}
    assert time.monotonic() - started >= 1.0
    assert len(fake.requests) == 2


def test_5xx_is_retried_and_gives_up_with_a_clear_error(fake):
    fake.interruptions.append(Response(503, "unavailable"))
    with client(fake, "flaky") as http:
        assert http.get("/items").status_code == 200
    fake.interruptions.extend([Response(502, {"message": "bad gateway"})] * 3)
    with client(fake, "down") as http, pytest.raises(ConnectorError) as error:
        http.get("/items")
    assert str(error.value) == (
        "connection 'down': GET /items still failed with HTTP 502 after retries (bad gateway); "
        "try again later or lower requests_per_second"
    )


def test_other_4xx_is_not_retried(fake):
    with client(fake, "bad") as http, pytest.raises(ConnectorError) as error:
        http.get("/broken", params={"limit": 5})
    assert str(error.value) == (
        "connection 'bad': GET /broken failed with HTTP 400 (Invalid param: limit); "
        "check the connection's settings"
    )
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_name_the_connection_and_never_the_key(fake, status):
    fake.interruptions.append(Response(status, {"error": "no"}))
    http = client(fake, "shop", headers={"Authorization": "Bearer sk_live_hidden"},
                  credential_fields="access_token")  # fmt: skip
    with http, pytest.raises(ConnectorError) as error:
        http.get("/items")
    assert str(error.value) == (
        f"credentials rejected for connection 'shop' (HTTP {status} on GET /items); "
        "check access_token"
    )
    assert fake.requests[0].headers["authorization"] == "Bearer sk_live_hidden"


def test_unreachable_server_is_retried_then_named():
    port = free_port()  # nothing listens here
    http = api_client("gone", f"http://127.0.0.1:{port}", backoff=Backoff(3, 0.01))
    with http, pytest.raises(ConnectorError) as error:
        http.get("/items")
    assert str(error.value) == (
        "connection 'gone': cannot reach 127.0.0.1 (ConnectError); check base_url and the network"
    )


def test_rate_limiter_spaces_requests_across_threads():
    slept = []
    limiter = RateLimiter(per_second=4, sleep=slept.append)
    for _ in range(5):
        limiter.acquire()
    assert len(slept) == 4
    assert all(0 < s <= 1.0 for s in slept)
    assert sum(slept) == pytest.approx(0.25 + 0.5 + 0.75 + 1.0, abs=0.05)
