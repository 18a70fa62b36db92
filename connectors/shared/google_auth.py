"""Google service-account access tokens, and the HTTP client every Google connector uses.

A service account signs a short-lived JWT with its private key (RS256) and trades it at the
key file's `token_uri` for an OAuth access token (the JWT-bearer grant, RFC 7523). The token
exchange goes through `api_client`, so it is rate-limited and retried like any API call.
The private key never leaves this module: errors describe the key file, never quote it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from google.auth import crypt, jwt

from connectors.base import connection_error
from connectors.config.common import GoogleConfig
from connectors.shared.http import RefreshingTokenAuth, api_client

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google caps a service-account assertion at one hour.
ASSERTION_SECONDS = 3600


def service_account_info(connection: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The key file from config `service_account_json`: JSON text, a mapping, or a path.

    A relative path resolves against `base_dir` (the folder of the file that declared the
    connection). Errors never echo the value: it may be a (mangled) private key.
    """
    value = config.get("service_account_json")
    if not value:
        raise connection_error(
            connection, "config needs `service_account_json` (the key file or its path)"
        )
    if isinstance(value, Mapping):
        info = dict(value)
    else:
        info = _parse_key_file(connection, _key_file_text(connection, str(value), config))
    if info.get("type", "service_account") != "service_account":
        raise connection_error(
            connection,
            f"service_account_json is a {info['type']!r} key, not a service account key; "
            "create a key for a service account in the Google Cloud console",
        )
    missing = [key for key in ("client_email", "private_key") if not info.get(key)]
    if missing:
        raise connection_error(
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
        raise connection_error(
            connection,
            "service_account_json is neither JSON nor the path of a readable file; give the "
            "key file's contents or its path (relative to the connection's folder)",
        ) from None


def _parse_key_file(connection: str, text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        # Only the position: the message of a JSON error can quote the text around it.
        raise connection_error(
            connection,
            f"service_account_json is not valid JSON (line {exc.lineno} column {exc.colno}); "
            "use the key file exactly as downloaded",
        ) from None
    if not isinstance(info, dict):
        raise connection_error(
            connection, "service_account_json must be a JSON object (the key file)"
        )
    return info


class ServiceAccountAuth(RefreshingTokenAuth):
    """Access tokens for a service account, from signed JWT assertions (RFC 7523)."""

    def __init__(
        self,
        connection: str,
        info: Mapping[str, Any],
        scopes: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self.connection = connection
        self.client_email = str(info["client_email"])
        self.token_uri = str(info.get("token_uri") or DEFAULT_TOKEN_URI)
        self.scopes = tuple(scopes)
        self._signer = _signer(connection, info)

    def fetch_token(self) -> tuple[str, float]:
        """POST a signed assertion to the token URI; the access token and its lifetime."""
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": self._assertion()}
        with api_client(
            self.connection, self.token_uri, credential_fields="service_account_json"
        ) as http:
            body = http.post(self.token_uri, data=form).json()
        if not isinstance(body, dict) or not body.get("access_token"):
            raise connection_error(
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
        raise connection_error(
            connection,
            "service_account_json has a private_key that is not a PEM RSA key; use the key "
            "file exactly as downloaded",
        ) from None


class GoogleApi:
    """One connection's authorised JSON API: settings in, parsed responses or one-line errors out.

    `settings` gives `service_account_json`, `base_url` (`default_base_url` when not set)
    and `requests_per_second`. `credential_hint` ends a rejected-credentials error; it may
    name `{client_email}`.
    """

    def __init__(
        self,
        connection: str,
        settings: GoogleConfig,
        *,
        default_base_url: str,
        scopes: Sequence[str],
        credential_hint: str,
    ) -> None:
        self.connection = connection
        info = service_account_info(connection, settings.model_dump())
        auth = ServiceAccountAuth(connection, info, scopes)
        self.http = api_client(
            connection,
            (settings.base_url or default_base_url).rstrip("/"),
            auth=auth,
            requests_per_second=settings.requests_per_second,
            # Naming the account says exactly whom to share the sheet or property with.
            credential_fields=credential_hint.format(client_email=auth.client_email),
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return its JSON body (`api_client` raises clear errors)."""
        return self.http.request(method, path, **kwargs).json()
