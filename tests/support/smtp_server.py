"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, recording the mail it accepts."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.services import free_port


@dataclass
class SmtpServer:
    host: str
    port: int
    user: str
    password: str
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    # Replies given instead of accepting, once each: a 451 injected by a test.
    interruptions: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.interruptions:
            return self.interruptions.pop(0)
        # As a mail client shows it: SMTP's CRLF line ends read as plain newlines.
        content = envelope.content.replace(b"\r\n", b"\n")
        self.messages.append(email.message_from_bytes(content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (self.user, self.password)
        if ok:
            self.logins.append(self.user)
        return AuthResult(success=ok)


@contextmanager
def alert_mail_server(monkeypatch: Any) -> Iterator[SmtpServer]:
    """An SMTP server that alert emails are sent through (DATAPIPE_SMTP_* point at it)."""
    with smtp_server() as server:
        monkeypatch.setenv("DATAPIPE_SMTP_HOST", server.host)
        monkeypatch.setenv("DATAPIPE_SMTP_PORT", str(server.port))
        monkeypatch.setenv("DATAPIPE_SMTP_USER", server.user)
        monkeypatch.setenv("DATAPIPE_SMTP_PASSWORD", server.password)
        monkeypatch.setenv("DATAPIPE_SMTP_FROM", "datapipe@example.com")
        yield server


@contextmanager
def smtp_server(user: str = "alerts", password: str = "Smtp-Pw-9931") -> Iterator[SmtpServer]:
    """An SMTP server requiring a login (over plain TCP: it only listens on loopback)."""
    server = SmtpServer("127.0.0.1", free_port(), user, password)
    controller = Controller(
        server,
        hostname=server.host,
        port=server.port,
        authenticator=server.authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
