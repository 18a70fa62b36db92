"""Alert channels as plain sending code: email (SMTP or Resend), Slack and generic webhooks.

Each send is retried (SMTP here, HTTP through `connectors.shared.http.api_client`'s transport) and
fails with a `NotificationError` whose text has every channel secret masked: the SMTP
password, the Resend key and webhook URLs (a Slack URL's path is its token).
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

import httpx

from connectors.base import ConnectorError
from connectors.shared.http import Backoff, api_client
from connectors.shared.secrets import PLACEHOLDER, REFERENCE, mask

RESEND_BASE_URL = "https://api.resend.com"
DEFAULT_SENDER = "datapipe@localhost"
# Rejected credentials or recipients: sending again cannot succeed.
ALERT_BACKOFF = Backoff(attempts=4, base_seconds=1.0, max_seconds=30.0)
PERMANENT_SMTP_ERRORS = (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused)


class NotificationError(Exception):
    """A channel that could not deliver, after retries; the text holds no secret."""


@dataclass(frozen=True)
class Message:
    """One alert, channel-independent: email and Slack use the text, webhooks the fields."""

    subject: str
    text: str
    fields: Mapping[str, str | None]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str | None
    password: str | None
    sender: str
    starttls: bool

    @classmethod
    def from_env(cls) -> SmtpSettings:
        starttls = os.environ.get("DATAPIPE_SMTP_STARTTLS", "").lower() in ("1", "true", "yes")
        return cls(
            host=os.environ["DATAPIPE_SMTP_HOST"],
            port=int(os.environ.get("DATAPIPE_SMTP_PORT") or (587 if starttls else 25)),
            user=os.environ.get("DATAPIPE_SMTP_USER") or None,
            password=os.environ.get("DATAPIPE_SMTP_PASSWORD") or None,
            sender=os.environ.get("DATAPIPE_SMTP_FROM", DEFAULT_SENDER),
            starttls=starttls,
        )


def resolve_url(url: str | None, channel: str) -> str:
    """A webhook URL with `${NAME}` read from the environment, at send time only."""
    if not url:
        raise NotificationError(f"the {channel} alert has no `url`; add one")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise NotificationError(
                f"the {channel} alert's url needs environment variable {name}; export it"
            )
        return os.environ[name]

    return PLACEHOLDER.sub(substitute, url)


def channel_secrets(urls: Sequence[str | None] = ()) -> list[str]:
    """Every secret a channel uses: to mask out of errors, logs and alert texts."""
    found = [os.environ.get(n, "") for n in ("DATAPIPE_SMTP_PASSWORD", "RESEND_API_KEY")]
    for url in urls:
        try:
            resolved = resolve_url(url, "webhook")
        except NotificationError:
            continue
        # A Slack webhook's token is its path: mask it also where only the path is quoted.
        found += [resolved, httpx.URL(resolved).raw_path.decode()]
    return [s for s in found if s and s != "/"]


@dataclass(frozen=True)
class Notifier:
    """Sends a message through one alert channel; `backoff` paces the retries."""

    backoff: Backoff = ALERT_BACKOFF
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def send(self, channel: str, to: Sequence[str], url: str | None, message: Message) -> None:
        secrets = channel_secrets([url])
        try:
            if channel == "email":
                self._email(to, message)
            elif channel == "slack":
                self._post(
                    resolve_url(url, channel), {"text": f"{message.subject}\n{message.text}"}
                )
            else:
                self._post(resolve_url(url, channel), dict(message.fields))
        except (NotificationError, ConnectorError) as error:
            raise NotificationError(mask(str(error), secrets)) from None

    def _email(self, to: Sequence[str], message: Message) -> None:
        if not to:
            raise NotificationError("the email alert has no `to` addresses; add some")
        if os.environ.get("DATAPIPE_SMTP_HOST"):
            self._smtp(SmtpSettings.from_env(), to, message)
        elif os.environ.get("RESEND_API_KEY"):
            self._resend(to, message)
        else:
            raise NotificationError(
                "email is not configured: set DATAPIPE_SMTP_HOST (SMTP) or RESEND_API_KEY (Resend)"
            )

    def _smtp(self, settings: SmtpSettings, to: Sequence[str], message: Message) -> None:
        email = EmailMessage()
        email["From"], email["To"], email["Subject"] = (
            settings.sender,
            ", ".join(to),
            message.subject,
        )
        email.set_content(message.text)
        for attempt in range(self.backoff.attempts):
            try:
                with smtplib.SMTP(settings.host, settings.port, timeout=30) as smtp:
                    if settings.starttls:
                        smtp.starttls(context=ssl.create_default_context())
                    if settings.user and settings.password:
                        smtp.login(settings.user, settings.password)
                    smtp.send_message(email)
                return
            except (smtplib.SMTPException, OSError) as error:
                if isinstance(error, PERMANENT_SMTP_ERRORS) or attempt == self.backoff.attempts - 1:
                    raise NotificationError(
                        f"email via SMTP {settings.host}:{settings.port} failed after "
                        f"{attempt + 1} attempt(s): {type(error).__name__}: {error}"
                    ) from None
                self.sleep(self.backoff.delay(attempt))

    def _resend(self, to: Sequence[str], message: Message) -> None:
        base_url = os.environ.get("RESEND_BASE_URL", RESEND_BASE_URL)
        headers = {"Authorization": f"Bearer {os.environ['RESEND_API_KEY']}"}
        body = {
            "from": os.environ.get("DATAPIPE_SMTP_FROM", DEFAULT_SENDER),
            "to": list(to),
            "subject": message.subject,
            "text": message.text,
        }
        with self._client("resend alerts", base_url, headers, "RESEND_API_KEY") as client:
            client.post("/emails", json=body)

    def _post(self, url: str, body: Mapping[str, object]) -> None:
        parsed = httpx.URL(url)
        # Posted to the exact path: as a base_url, httpx would append a slash to it.
        base_url = f"{parsed.scheme}://{parsed.netloc.decode()}"
        with self._client("alert webhook", base_url, {}, "the alert's url") as client:
            client.post(parsed.raw_path.decode(), json=body)

    def _client(
        self, name: str, base_url: str, headers: dict[str, str], credentials: str
    ) -> httpx.Client:
        return api_client(
            name, base_url, headers=headers, backoff=self.backoff, credential_fields=credentials
        )


def target_label(channel: str, to: Sequence[str], url: str | None) -> str:
    """Where a channel sends, safe to show: addresses, or a URL as declared or by host only."""
    if channel == "email":
        return ", ".join(to)
    if not url or REFERENCE.search(url):
        # `${SLACK_WEBHOOK_URL}` or `${secret:HOOK}` names the secret without holding it.
        return url or "(no url)"
    # A literal webhook URL's path and query are its token.
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}/..."
