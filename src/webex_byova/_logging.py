"""Package logging: the ``webex_byova`` logger tree and secret masking.

Nothing in the SDK logs a token, secret or refresh token. Values that might be secret go
through :func:`mask` (keeps a short prefix so operators can correlate) and free text that
might embed one goes through :func:`redact`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SECRET_KEYS", "get_logger", "mask", "redact", "redact_mapping"]

logging.getLogger("webex_byova").addHandler(logging.NullHandler())

SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "client_secret",
        "clientsecret",
        "secret",
        "code",
        "code_verifier",
        "password",
        "authorization",
        "jwstoken",
        "jwttoken",
        "token",
        "id_token",
        "x-spark-signature",
    }
)

_BEARER = re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{4})[A-Za-z0-9._~+/=-]*")
# ``key=value``, ``"key": "value"`` and ``'key': 'value'`` (a dict's repr), snake or camel case.
_KV = re.compile(
    r"(?i)\b(access_?token|refresh_?token|id_?token|client_?secret|code_verifier|code|secret|"
    r"password|jws_?token|token)([\"']?\s*[:=]\s*[\"']?)([^\"'&\s,}]{4})[^\"'&\s,}]*"
)
# An Authorization header value of any scheme (Basic, Bearer, custom) or none, any case.
_AUTH = re.compile(
    r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z][\w-]*\s+(?=[^\"'\s,}]))?)"
    r"([^\"'\s,}]{0,4})[^\"'\s,}]*"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4}[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def get_logger(name: str) -> logging.Logger:
    """Return a logger below ``webex_byova`` (``name`` may be given with or without prefix)."""
    if not name.startswith("webex_byova"):
        name = f"webex_byova.{name}"
    return logging.getLogger(name)


def mask(value: str | None, *, keep: int = 4) -> str:
    """Mask a secret for display: ``'abcd…(40)'``. Short values are fully hidden."""
    if value is None:
        return "None"
    if not value:
        return "''"
    if len(value) <= keep * 3:
        return "***"
    return f"{value[:keep]}…({len(value)})"


def redact(text: str) -> str:
    """Remove bearer tokens, Authorization values, JWTs and ``key=value`` secrets from text."""
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _AUTH.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _KV.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***", text)
    return _JWT.sub("eyJ***", text)


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a mapping (headers, form fields, JSON) with secret values masked, recursively."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if str(key).lower() in SECRET_KEYS and isinstance(value, str):
            out[key] = mask(value)
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif isinstance(value, str):
            out[key] = redact(value)
        else:
            out[key] = value
    return out
