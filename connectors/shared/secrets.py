"""Secrets in configs: `${NAME}` placeholders, which keys hold secrets, and masking them."""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Config keys whose values are secrets whether typed inline or read from the environment.
SECRET_KEY = re.compile(
    r"password|secret|token|api_key|apikey|credential|private_key|service_account", re.I
)
MASK = "***"


def mask(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
