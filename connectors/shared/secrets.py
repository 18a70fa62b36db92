"""Secrets in configs: `${NAME}` and `${secret:NAME}` references, which keys hold secrets,
and masking them."""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# `${secret:NAME}`: a value from the project's encrypted store. Any name is matched, so a
# misspelled one is reported as unknown rather than taken literally as the value.
SECRET_REFERENCE = re.compile(r"\$\{secret:([^}]*)\}")
# Either kind of reference: group 1 names a variable, group 2 a secret.
REFERENCE = re.compile(f"{PLACEHOLDER.pattern}|{SECRET_REFERENCE.pattern}")
# Config keys whose values are secrets whether typed inline or read from the environment.
SECRET_KEY = re.compile(
    r"password|secret|token|api_key|apikey|credential|private_key|service_account", re.I
)
MASK = "***"


def mask(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
