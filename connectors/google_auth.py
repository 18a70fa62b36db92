"""Google service-account access tokens, and the HTTP client every Google connector uses.

A service account signs a short-lived JWT with its private key (RS256) and trades it at the
key file's `token_uri` for an OAuth access token (the JWT-bearer grant, RFC 7523). The token
exchange goes through `api_client`, so it is rate-limited and retried like any API call.
The private key never leaves this module: errors describe the key file, never quote it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from google.auth import crypt, jwt

from connectors.base import ConnectorError
from connectors.http import api_client

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google caps a service-account assertion at one hour.
ASSERTION_SECONDS = 3600
# Refresh this long before a token expires, so a token never runs out mid-request.
EXPIRY_MARGIN_SECONDS = 60
# Marks a request's first attempt: its 401 goes to the auth flow (refresh and retry once)
# instead of straight to `api_client`'s error.
_FIRST_ATTEMPT = "datapipe.google_auth.first_attempt"


def service_account_info(connection: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The key file from config `service_account_json`: JSON text, a mapping, or a path.

    A relative path resolves against `base_dir` (the folder of the file that declared the
    connection). Errors never echo the value: it may be a (mangled) private key.
    """
    value = config.get("service_account_json")
    if not value:
        raise _error(connection, "config needs `service_account_json` (the key file or its path)")
    if isinstance(value, Mapping):
        info = dict(value)
    else:
        info = _parse_key_file(connection, _key_file_text(connection, str(value), config))
    if info.get("type", "service_account") != "service_account":
        raise _error(
            connection,
            f"service_account_json is a {info['type']!r} key, not a service account key; "
            "create a key for a service account in the Google Cloud console",
        )
    missing = [key for key in ("client_email", "private_key") if not info.get(key)]
    if missing:
        raise _error(
            connection,
            f"service_account_json has no {', '.join(missing)}; use the whole JSON key file",
        )
    return info


def _key_file_text(connection: str, value: str, config: Mapping[str, Any]) -> str:
    if value.lstrip().startswith("{"):
        return value
    path = Path(str(config.get("base_dir") or ".")) / value
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        # ValueError: a long or binary value is not a usable path either.
        raise _error(
            connection,
            "service_account_json is neither JSON nor the path of a readable file; give the "
            "key file's contents or its path (relative to the connection's folder)",
        ) from None


def _parse_key_file(connection: str, text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        # Only the position: the message of a JSON error can quote the text around it.
        raise _error(
            connection,
            f"service_account_json is not valid JSON (line {exc.lineno} column {exc.colno}); "
            "use the key file exactly as downloaded",
        ) from None
    if not isinstance(info, dict):
        raise _error(connection, "service_account_json must be a JSON object (the key file)")
    return info


class ServiceAccountAuth(httpx.Auth):
    """Adds `Authorization: Bearer <token>`; fetches a new token when it expires or on a 401.

    Thread-safe: extracts running in parallel share one token and refresh it once.
    """

    def __init__(
        self,
        connection: str,
        info: Mapping[str, Any],
        scopes: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.client_email = str(info["client_email"])
        self.token_uri = str(info.get("token_uri") or DEFAULT_TOKEN_URI)
        self.scopes = tuple(scopes)
        self._clock = clock
        self._signer = _signer(connection, info)
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        request.extensions = {**request.extensions, _FIRST_ATTEMPT: True}
        response = yield request
        if response.status_code == 401:
            # A token can be revoked before it expires: get a fresh one and try once more.
            request.headers["Authorization"] = f"Bearer {self.token(refresh=True)}"
            request.extensions = {**request.extensions, _FIRST_ATTEMPT: False}
            yield request

    def token(self, refresh: bool = False) -> str:
        """A valid access token, exchanging a new assertion when needed."""
        with self._lock:
            if refresh or self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = self._exchange()
                self._expires_at = self._clock() + lifetime - EXPIRY_MARGIN_SECONDS
            return self._token

    def _exchange(self) -> tuple[str, float]:
        """POST a signed assertion to the token URI; the access token and its lifetime."""
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": self._assertion()}
        with api_client(
            self.connection, self.token_uri, credential_fields="service_account_json"
        ) as http:
            body = http.post(self.token_uri, data=form).json()
        if not isinstance(body, dict) or not body.get("access_token"):
            raise _error(
                self.connection,
                f"the token endpoint of {self.client_email} returned no access_token; check "
                "token_uri in service_account_json",
            )
        return str(body["access_token"]), float(body.get("expires_in") or ASSERTION_SECONDS)

    def _assertion(self) -> str:
        now = int(self._clock())
        claims = {
            "iss": self.client_email,
            "scope": " ".join(self.scopes),
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_SECONDS,
        }
        return jwt.encode(self._signer, claims).decode()


def _signer(connection: str, info: Mapping[str, Any]) -> crypt.RSASigner:
    try:
        return crypt.RSASigner.from_service_account_info(info)
    except (ValueError, TypeError):
        # The parser's message may quote part of the key; say only which field is wrong.
        raise _error(
            connection,
            "service_account_json has a private_key that is not a PEM RSA key; use the key "
            "file exactly as downloaded",
        ) from None


def google_client(
    connection: str,
    base_url: str,
    auth: ServiceAccountAuth,
    *,
    requests_per_second: float,
    credential_fields: str,
) -> httpx.Client:
    """An `api_client` authorised by a service account, retrying a 401 once with a new token.

    `api_client` turns every 4xx into an error in a response hook, and httpx runs response
    hooks before the auth flow sees the response; so a first attempt's 401 is let through to
    `ServiceAccountAuth`, and only the retry's 401 becomes the usual clear error.
    """
    client = api_client(
        connection,
        base_url,
        auth=auth,
        requests_per_second=requests_per_second,
        credential_fields=credential_fields,
    )
    hooks = list(client.event_hooks["response"])

    def raise_unless_auth_retries(response: httpx.Response) -> None:
        if response.status_code == 401 and response.request.extensions.get(_FIRST_ATTEMPT):
            return
        for hook in hooks:
            hook(response)

    client.event_hooks = {**client.event_hooks, "response": [raise_unless_auth_retries]}
    return client


class GoogleApi:
    """One connection's authorised JSON API: config in, parsed responses or one-line errors out.

    Config: `service_account_json`, `base_url` (the real API when not given) and
    `requests_per_second`. `credential_hint` ends a rejected-credentials error; it may name
    `{client_email}`.
    """

    def __init__(
        self,
        connection: str,
        config: Mapping[str, Any],
        *,
        default_base_url: str,
        scopes: Sequence[str],
        requests_per_second: float,
        credential_hint: str,
    ) -> None:
        self.connection = connection
        auth = ServiceAccountAuth(connection, service_account_info(connection, config), scopes)
        self.http = google_client(
            connection,
            str(config.get("base_url") or default_base_url).rstrip("/"),
            auth,
            requests_per_second=float(config.get("requests_per_second") or requests_per_second),
            # Naming the account says exactly whom to share the sheet or property with.
            credential_fields=credential_hint.format(client_email=auth.client_email),
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return its JSON body (`api_client` raises clear errors)."""
        return self.http.request(method, path, **kwargs).json()


def _error(connection: str, message: str) -> ConnectorError:
    return ConnectorError(f"connection {connection!r}: {message}")
