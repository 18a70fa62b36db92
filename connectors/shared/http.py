"""HTTP plumbing every API connector shares: rate limits, retries and clear errors.

Retries and the rate limit live in an httpx transport, so every request a connector makes
through `api_client` is limited and retried the same way: 429 (honouring Retry-After) and
5xx with exponential backoff and jitter, never any other 4xx.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.base import ConnectorError
from connectors.shared.transient import TRANSIENT_HTTP_STATUSES

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

# httpx logs every request URL at INFO, and a URL can carry an API key as a query parameter.
logging.getLogger("httpx").setLevel(logging.WARNING)
RETRIED_STATUSES = TRANSIENT_HTTP_STATUSES
# Marks a request whose 401 the auth flow will retry once with a fresh token.
AUTH_WILL_RETRY = "datapipe.auth_will_retry"
# A token is renewed this long before it expires, so it never lapses mid-request.
TOKEN_EXPIRY_MARGIN_SECONDS = 60


class RateLimiter:
    """A token bucket: at most `per_second` requests a second, across threads."""

    def __init__(self, per_second: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            wait = max(0.0, self._next - now)
            self._next = max(now, self._next) + self.interval
        if wait:
            self._sleep(wait)


_LIMITERS: dict[tuple[str, float], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(connection: str, per_second: float) -> RateLimiter:
    """One limiter per connection, shared by every extract of it in this process."""
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault((connection, per_second), RateLimiter(per_second))


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def delay(self, attempt: int) -> float:
        """Exponential with full jitter: spreads retries of concurrent extracts apart."""
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait, from Retry-After (seconds or an HTTP date)."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


@dataclass
class ResilientTransport(httpx.BaseTransport):
    """Rate-limits every request and retries 429, 5xx and network errors.

    A network error that outlasts the retries becomes the connection's ConnectorError here,
    so connectors never handle httpx's transport exceptions themselves.
    """

    connection: str
    limiter: RateLimiter
    backoff: Backoff = field(default_factory=Backoff)
    inner: httpx.BaseTransport = field(default_factory=httpx.HTTPTransport)
    sleep: Callable[[float], None] = time.sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self.backoff.attempts):
            last = attempt == self.backoff.attempts - 1
            self.limiter.acquire()
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError as error:
                if last:
                    raise transport_error(self.connection, request, error) from None
                self.sleep(self.backoff.delay(attempt))
                continue
            if response.status_code not in RETRIED_STATUSES or last:
                return response
            wait = retry_after(response.headers) if response.status_code == 429 else None
            response.close()
            self.sleep(wait if wait is not None else self.backoff.delay(attempt))
        raise AssertionError("unreachable: the last attempt always returns or raises")

    def close(self) -> None:
        self.inner.close()


def api_client(
    connection: str,
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | None = None,
    requests_per_second: float = 10.0,
    backoff: Backoff | None = None,
    credential_fields: str = "the credentials",
) -> httpx.Client:
    """An httpx client for one connection: limited, retried, and failing with clear errors."""
    transport = ResilientTransport(
        connection, shared_limiter(connection, requests_per_second), backoff or Backoff()
    )

    def raise_clearly(response: httpx.Response) -> None:
        if response.is_success or response.is_redirect:
            return
        if response.status_code == 401 and response.request.extensions.get(AUTH_WILL_RETRY):
            return  # a RefreshingTokenAuth sends it again with a new token
        response.read()
        raise http_error(connection, response, credential_fields)

    return httpx.Client(
        base_url=base_url,
        headers=dict(headers or {}),
        auth=auth,
        transport=transport,
        timeout=DEFAULT_TIMEOUT,
        event_hooks={"response": [raise_clearly]},
    )


class RefreshingTokenAuth(httpx.Auth, ABC):
    """Bearer tokens that renew themselves before they expire and once after a 401.

    A token can be revoked before it expires, so a 401 is retried once with a fresh one;
    only a second 401 reaches `api_client`'s error. Thread-safe: concurrent extracts share
    one token and renew it once.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    @abstractmethod
    def fetch_token(self) -> tuple[str, float]:
        """A new access token and its lifetime in seconds."""

    def token(self, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = self.fetch_token()
                self._expires_at = self._clock() + lifetime - TOKEN_EXPIRY_MARGIN_SECONDS
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        request.extensions = {**request.extensions, AUTH_WILL_RETRY: True}
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token(refresh=True)}"
            request.extensions = {**request.extensions, AUTH_WILL_RETRY: False}
            yield request


def http_error(connection: str, response: httpx.Response, credential_fields: str) -> ConnectorError:
    """A one-line error for a failed response; never echoes request headers or params."""
    request = response.request
    where = f"{request.method} {request.url.path}"
    if response.status_code in (401, 403):
        return ConnectorError(
            f"credentials rejected for connection {connection!r} (HTTP {response.status_code} "
            f"on {where}); check {credential_fields}"
        )
    detail = _error_detail(response)
    if response.status_code in RETRIED_STATUSES:
        return ConnectorError(
            f"connection {connection!r}: {where} still failed with HTTP {response.status_code} "
            f"after retries{detail}; try again later or lower requests_per_second",
            transient=True,
        )
    return ConnectorError(
        f"connection {connection!r}: {where} failed with HTTP {response.status_code}{detail}; "
        "check the connection's settings"
    )


def _error_detail(response: httpx.Response) -> str:
    """The API's own short error message, if its body has one."""
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    message = _find_message(body)
    return f" ({' '.join(str(message).split())[:200]})" if message else ""


def _find_message(body: Any) -> Any:
    if isinstance(body, dict):
        for key in ("message", "error_description", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, dict):
                return _find_message(value)
    if isinstance(body, list) and body:
        return _find_message(body[0])
    return None


def transport_error(
    connection: str, request: httpx.Request, error: httpx.TransportError
) -> ConnectorError:
    """A network failure (after retries) as one line naming the host."""
    kind = type(error).__name__
    return ConnectorError(
        f"connection {connection!r}: cannot reach {request.url.host} ({kind}); check base_url "
        "and the network"
    )
